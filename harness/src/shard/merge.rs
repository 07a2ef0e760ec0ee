//! `harness merge DIR... --out RUN_DIR`: the shards of one run become one
//! run directory, as if one process had played it. Histories are read and
//! written only through the history module; the events of all shards,
//! stamped on the shared time origin, are merged in time order; the
//! latency histograms and series are computed from the merged history
//! (a delivery on one shard often answers a send from another, so no
//! shard alone can measure it). The message log is read back once, the
//! history checked once, and the normal report written, with `harness
//! run`'s exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ShardError, ShardManifest, MANIFEST_FILE};
use crate::history::{read_history, History};
use crate::report;
use crate::runner::{self, population, Played, RunOutcome};
use crate::scenario::{load_scenario, Scenario};

pub struct MergeOptions {
    pub shard_dirs: Vec<PathBuf>,
    /// The run directory to write (created if missing).
    pub out: PathBuf,
    /// Read the log from this Redis instead of the one the shards used.
    pub redis_url: Option<String>,
    /// What the servers and Redis cost, when this process owned them
    /// while the shards played (`harness run --workers`); `None` for
    /// shards played elsewhere.
    pub system_cost: Option<runner::cost::SystemCost>,
}

/// One shard directory, read.
#[derive(Debug)]
struct Shard {
    dir: PathBuf,
    manifest: ShardManifest,
    scenario_text: String,
}

fn read_shard(dir: &Path) -> Result<Shard, ShardError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| ShardError::Read { path, source })
    };
    let manifest_text = read(MANIFEST_FILE)?;
    let manifest = serde_json::from_str(&manifest_text).map_err(|source| ShardError::Manifest {
        path: dir.join(MANIFEST_FILE),
        source,
    })?;
    Ok(Shard {
        dir: dir.to_path_buf(),
        manifest,
        scenario_text: read("scenario.toml")?,
    })
}

/// Refuses shards of different runs, and a set that is not exactly the
/// shards 0..N once each. Returns the shards in index order.
fn check_complete(mut shards: Vec<Shard>) -> Result<Vec<Shard>, ShardError> {
    let Some(first) = shards.first() else {
        return Err(ShardError::NoShards);
    };
    let first_dir = first.dir.clone();
    let expect = first.manifest.clone();
    let expect_scenario = first.scenario_text.clone();
    for shard in &shards[1..] {
        let m = &shard.manifest;
        let mismatch = |what: &'static str, expected: String, found: String| {
            Err(ShardError::Mismatch {
                dir: shard.dir.clone(),
                first_dir: first_dir.clone(),
                what,
                expected,
                found,
            })
        };
        if m.scenario_name != expect.scenario_name {
            return mismatch(
                "scenario",
                expect.scenario_name.clone(),
                m.scenario_name.clone(),
            );
        }
        if m.seed != expect.seed {
            return mismatch("seed", expect.seed.to_string(), m.seed.to_string());
        }
        if m.shard.count != expect.shard.count {
            return mismatch(
                "shard count N",
                expect.shard.count.to_string(),
                m.shard.count.to_string(),
            );
        }
        if m.run_id != expect.run_id {
            return mismatch("run id", expect.run_id.clone(), m.run_id.clone());
        }
        if m.start_at_unix_ms != expect.start_at_unix_ms {
            return mismatch(
                "time origin (unix ms)",
                expect.start_at_unix_ms.to_string(),
                m.start_at_unix_ms.to_string(),
            );
        }
        if shard.scenario_text != expect_scenario {
            return mismatch(
                "scenario.toml",
                "the first shard's".into(),
                "a different scenario body".into(),
            );
        }
    }
    let count = expect.shard.count;
    let mut by_index: BTreeMap<u32, PathBuf> = BTreeMap::new();
    for shard in &shards {
        let index = shard.manifest.shard.index;
        if let Some(first) = by_index.insert(index, shard.dir.clone()) {
            return Err(ShardError::DuplicateShard {
                index,
                first,
                second: shard.dir.clone(),
            });
        }
    }
    let missing: Vec<u32> = (0..count).filter(|i| !by_index.contains_key(i)).collect();
    if !missing.is_empty() {
        return Err(ShardError::MissingShards { missing, count });
    }
    shards.sort_by_key(|shard| shard.manifest.shard.index);
    Ok(shards)
}

/// The shards' histories as one: the cast from the first (every shard
/// records the whole cast), every shard's events in time order (stable,
/// so a socket's own events keep their order on equal stamps), and every
/// shard's fault windows, named by shard.
fn merge_histories(shards: &[Shard]) -> Result<History, ShardError> {
    let mut merged: Option<History> = None;
    for shard in shards {
        let history = read_history(&shard.dir.join(report::HISTORY_FILE))?;
        let label = format!("shard {}", shard.manifest.shard);
        match &mut merged {
            None => {
                let mut history = history;
                for fault in &mut history.meta.faults {
                    fault.target = format!("{label}: {}", fault.target);
                }
                merged = Some(history);
            }
            Some(merged) => {
                if history.meta.devices != merged.meta.devices
                    || history.meta.conversations != merged.meta.conversations
                {
                    return Err(ShardError::Mismatch {
                        dir: shard.dir.clone(),
                        first_dir: shards[0].dir.clone(),
                        what: "cast (devices and conversations)",
                        expected: "the first shard's".into(),
                        found: "another cast".into(),
                    });
                }
                merged
                    .meta
                    .faults
                    .extend(history.meta.faults.into_iter().map(|mut fault| {
                        fault.target = format!("{label}: {}", fault.target);
                        fault
                    }));
                merged.events.extend(history.events);
            }
        }
    }
    let mut merged = merged.ok_or(ShardError::NoShards)?;
    merged.events.sort_by_key(|event| event.at_us);
    merged.meta.faults.sort_by_key(|fault| fault.start_us);
    Ok(merged)
}

/// Merges, checks and reports; the outcome carries `harness run`'s exit
/// code for the verdict and thresholds.
pub async fn merge(options: MergeOptions) -> Result<RunOutcome, ShardError> {
    let started = Instant::now();
    let shards = options
        .shard_dirs
        .iter()
        .map(|dir| read_shard(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let shards = check_complete(shards)?;
    let first = &shards[0].manifest;
    let scenario: Scenario = load_scenario(&shards[0].dir.join("scenario.toml"))?;
    println!(
        "merging {} shards of run {} (scenario {}, seed {})",
        shards.len(),
        first.run_id,
        first.scenario_name,
        first.seed
    );
    let history = merge_histories(&shards)?;
    let mut intruders = Vec::new();
    for shard in &shards {
        intruders
            .extend(crate::intruders::read_records(&shard.dir).map_err(ShardError::Intruders)?);
    }
    std::fs::create_dir_all(&options.out).map_err(|source| ShardError::Write {
        path: options.out.clone(),
        source,
    })?;
    let manifests: Vec<&ShardManifest> = shards.iter().map(|s| &s.manifest).collect();
    runner::write_json(&options.out.join("shards.json"), &manifests)?;

    let sum = |field: fn(&ShardManifest) -> u64| manifests.iter().map(|m| field(m)).sum::<u64>();
    let mut unknown_reasons = Vec::new();
    let mut stragglers = Vec::new();
    for m in &manifests {
        unknown_reasons.extend(
            m.unknown_reasons
                .iter()
                .map(|reason| format!("shard {}: {reason}", m.shard)),
        );
        stragglers.extend(m.stragglers.iter().cloned());
    }
    let drain_complete = manifests.iter().all(|m| m.drain_complete);
    let sends_skipped = report::SendsSkipped {
        scheduled: sum(|m| m.sends_scheduled),
        skipped: sum(|m| m.sends_skipped),
        no_socket_online: sum(|m| m.sends_skipped_no_socket_online),
        queue_full: sum(|m| m.sends_skipped_queue_full),
    };
    let redis_url = options.redis_url.clone().or(first.redis_url.clone());
    // The merged events go through a recorder like a played run's, so the
    // collect stage writes the merged history the same way.
    let recorder =
        crate::history::Recorder::create(&options.out.join(crate::report::HISTORY_FILE))?;
    for event in history.events {
        recorder.record(event);
    }
    let system_cost = options.system_cost.clone().unwrap_or_default();
    let played = Played {
        history: recorder,
        cast: population::Cast {
            devices: history.meta.devices,
            conversations: history.meta.conversations,
            sockets: Vec::new(),
        },
        faults: history.meta.faults,
        clock_started_at_unix_ms: first.start_at_unix_ms,
        drain_complete,
        stragglers,
        unknown_reasons,
        peak_sockets: sum(|m| m.peak_sockets),
        rss_at_traffic_end_bytes: manifests
            .iter()
            .map(|m| m.harness_rss_at_traffic_end_bytes)
            .sum(),
        server_cost: system_cost.servers,
        redis_cost: system_cost.redis,
        sends_skipped,
        acks: sum(|m| m.acks),
        intruders,
    };
    // The same collect stage as a single-process run: the log read back
    // once (or rebuilt from acks and receipts), the files written.
    let store = runner::log_store(&scenario, redis_url.as_deref());
    let collected = runner::collect(&options.out, &scenario, store, played).await?;
    let check = runner::check_collected(&collected, &scenario)?;
    let facts = runner::facts_of(
        &collected,
        scenario.clone(),
        first.seed,
        first.start_at_unix_ms,
        first.redis_description.clone(),
        first.targets.clone(),
    );
    let shards_cpu = Duration::from_millis(sum(|m| m.harness_cpu_ms));
    let shards_peak_rss = manifests
        .iter()
        .map(|m| m.harness_peak_rss_bytes)
        .max()
        .unwrap_or(0);
    let last_finish_ms = manifests
        .iter()
        .map(|m| m.finished_at_unix_ms)
        .max()
        .unwrap_or(first.start_at_unix_ms);
    let played_span = Duration::from_millis(last_finish_ms.saturating_sub(first.start_at_unix_ms));
    let summary =
        runner::report_with_facts(&options.out, facts, &collected.history, &check, |facts| {
            // The run's cost is every shard's plus the merge's; its peak
            // memory is the largest process's.
            let usage = runner::resources::harness_usage();
            facts.harness_cpu = shards_cpu + usage.cpu;
            facts.harness_peak_rss_bytes = shards_peak_rss.max(usage.peak_rss_bytes);
            facts.wall_duration = played_span + started.elapsed();
        })?;
    if let Some(url) = &redis_url {
        if let Err(err) = super::sync::forget_run(url, &first.run_id, first.start_at_unix_ms).await
        {
            tracing::warn!(%err, "could not delete the shards' coordination keys (they expire on their own)");
        }
    }
    let exit_code = report::exit_code(&summary);
    Ok(RunOutcome {
        run_dir: options.out,
        summary,
        exit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ShardSpec;

    fn shard(dir: &str, index: u32, count: u32, seed: u64) -> Shard {
        Shard {
            dir: PathBuf::from(dir),
            manifest: ShardManifest {
                scenario_name: "smoke".into(),
                seed,
                run_id: "smoke-1".into(),
                shard: ShardSpec { index, count },
                start_at_unix_ms: 1000,
                finished_at_unix_ms: 2000,
                targets: Vec::new(),
                redis_url: None,
                redis_description: String::new(),
                sockets: 1,
                total_sockets: 3,
                peak_sockets: 1,
                drain_complete: true,
                stragglers: Vec::new(),
                unknown_reasons: Vec::new(),
                sends_scheduled: 0,
                sends_skipped: 0,
                sends_skipped_no_socket_online: 0,
                sends_skipped_queue_full: 0,
                acks: 0,
                harness_cpu_ms: 0,
                harness_peak_rss_bytes: 0,
                harness_rss_at_traffic_end_bytes: None,
            },
            scenario_text: "name = \"smoke\"".into(),
        }
    }

    #[test]
    fn a_complete_set_is_sorted_by_index() {
        let shards = check_complete(vec![shard("b", 1, 2, 7), shard("a", 0, 2, 7)]).unwrap();
        assert_eq!(shards[0].dir, PathBuf::from("a"));
    }

    #[test]
    fn missing_duplicate_and_foreign_shards_are_refused() {
        let err = check_complete(vec![shard("a", 0, 3, 7), shard("c", 2, 3, 7)]).unwrap_err();
        assert!(
            matches!(&err, ShardError::MissingShards { missing, .. } if missing == &[1]),
            "{err}"
        );
        let err = check_complete(vec![shard("a", 0, 2, 7), shard("b", 0, 2, 7)]).unwrap_err();
        assert!(
            matches!(err, ShardError::DuplicateShard { index: 0, .. }),
            "{err}"
        );
        let err = check_complete(vec![shard("a", 0, 2, 7), shard("b", 1, 2, 8)]).unwrap_err();
        assert!(err.to_string().contains("seed is 8"), "{err}");
        let err = check_complete(vec![shard("a", 0, 2, 7), shard("b", 1, 3, 7)]).unwrap_err();
        assert!(err.to_string().contains("shard count N is 3"), "{err}");
        let mut other = shard("b", 1, 2, 7);
        other.scenario_text = "name = \"smoke\"\nduration = \"1s\"".into();
        let err = check_complete(vec![shard("a", 0, 2, 7), other]).unwrap_err();
        assert!(err.to_string().contains("scenario.toml"), "{err}");
        assert!(matches!(
            check_complete(Vec::new()),
            Err(ShardError::NoShards)
        ));
    }
}
