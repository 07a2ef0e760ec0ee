//! `harness run` with local worker processes: when one process would pass
//! its open-files limit (or with `--workers N`), the run provisions Redis
//! and the servers itself, starts N `harness run --shard I/N` processes
//! of this same binary against them (same seed; one time origin agreed
//! through Redis), and merges their shard directories with `harness merge`'s
//! code. Exactly the sharded path, on one machine.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use super::{merge, MergeOptions, ShardError};
use crate::auth::Credentials;
use crate::runner::{self, RunOptions, RunOutcome};

/// File descriptors a process keeps besides its sockets (Redis, files,
/// the runtime, metrics), so a worker never reaches the limit.
const FDS_RESERVED: u64 = 1_000;

/// How long the workers wait for each other before the run starts.
const WORKERS_RENDEZVOUS: Duration = Duration::from_secs(120);

/// This process's open-files limit (soft), if readable.
pub fn open_files_limit() -> Option<u64> {
    // SAFETY: getrlimit only writes into the zeroed struct we pass.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some(limit.rlim_cur)
}

/// How many worker processes a scenario needs so that none passes
/// `open_files` (1: one process is enough).
pub fn workers_needed(total_sockets: u64, open_files: u64) -> u32 {
    // A small limit keeps a quarter for the rest rather than everything.
    let reserved = FDS_RESERVED.min(open_files / 4);
    let per_worker = open_files.saturating_sub(reserved).max(1);
    total_sockets.div_ceil(per_worker).max(1) as u32
}

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("worker {index} of {count} could not start ({program}): {source}")]
    Spawn {
        index: u32,
        count: u32,
        program: String,
        source: std::io::Error,
    },
    #[error("worker {index} of {count} failed (exit {code:?}); its output is above")]
    Failed {
        index: u32,
        count: u32,
        code: Option<i32>,
    },
    #[error("the scenario injects faults, which need one process to own Redis, the servers and the proxies; run it without worker processes (fewer sockets) or drop the faults")]
    Faults,
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// Plays the run as `count` local worker processes of `program`, then
/// merges them into one run directory under `options.out_root`.
pub async fn run_with_workers(
    options: RunOptions,
    scenario_path: &Path,
    count: u32,
    program: &Path,
) -> Result<RunOutcome, WorkersError> {
    let (scenario, seed) = runner::settle_scenario(&options);
    if !scenario.faults.is_empty() {
        return Err(WorkersError::Faults);
    }
    let run_dir = options.out_root.join(runner::run_dir_name(&scenario.name));
    let shards_out = run_dir.join("shards");
    std::fs::create_dir_all(&shards_out).map_err(|source| ShardError::Write {
        path: shards_out.clone(),
        source,
    })?;
    let provisioned = runner::provision(&scenario, &options)
        .await
        .map_err(ShardError::from)?;
    let Some(redis_url) = provisioned.redis_url.clone() else {
        return Err(ShardError::NeedsRedis.into());
    };
    println!(
        "{} sockets: {count} worker processes (open files per process: {})",
        scenario.population.total_sockets(),
        open_files_limit().map_or_else(|| "unknown".to_string(), |l| l.to_string())
    );
    let run_id = format!("{}-{seed}-{}", scenario.name, std::process::id());
    // This process owns the servers and Redis while the workers play, so
    // it measures what they cost, as a single-process run does.
    let cost_sampler =
        runner::cost::CostSampler::start(provisioned.rig.clone(), Some(&redis_url)).await;
    let traffic_end = traffic_end_sample(&cost_sampler, &redis_url, &run_id, &scenario);
    let setup = WorkerSetup {
        scenario_path,
        seed,
        program,
        targets: provisioned
            .targets
            .iter()
            .map(url::Url::to_string)
            .collect(),
        redis_url: &redis_url,
        credentials: &provisioned.credentials,
        run_id: &run_id,
        shards_out: &shards_out,
        quiet: !options.progress,
    };
    let workers = play_workers(&setup, count);
    tokio::pin!(workers);
    // The workers end after their traffic phase: the memory sample at its
    // end is taken on the way, unless the workers end first (failed).
    let (played, at_traffic_end) = tokio::select! {
        played = &mut workers => (played, Default::default()),
        at_traffic_end = traffic_end => (workers.await, at_traffic_end),
    };
    let system_cost = cost_sampler.finish(at_traffic_end).await;
    // Servers stop now; Redis stays up (the handle) until the merge has
    // read the log back.
    let _redis_alive = match Arc::try_unwrap(provisioned.rig) {
        Ok(rig) => rig.into_inner().stop_all().await,
        Err(_) => None,
    };
    let shard_dirs = played?;
    let outcome = merge(MergeOptions {
        shard_dirs,
        out: run_dir,
        redis_url: Some(redis_url.clone()),
        system_cost: Some(system_cost),
    })
    .await?;
    Ok(outcome)
}

/// Waits for the time origin the workers agree through Redis, then for
/// their traffic phase's end, and samples the servers' and Redis's memory
/// there. Without an agreed origin (the workers never met) it samples
/// nothing and never returns: the workers' own end decides.
async fn traffic_end_sample(
    sampler: &runner::cost::CostSampler,
    redis_url: &str,
    run_id: &str,
    scenario: &crate::scenario::Scenario,
) -> runner::cost::AtTrafficEnd {
    // The workers wait up to `--wait-for-shards` (2 m) for each other.
    let wait = WORKERS_RENDEZVOUS + Duration::from_secs(10);
    match super::sync::wait_for_agreed_start(redis_url, run_id, wait).await {
        Ok(Some(start_at_unix_ms)) => {
            let traffic_end_unix_ms =
                start_at_unix_ms + (scenario.ramp_up + scenario.duration).as_millis() as u64;
            let wait_ms = traffic_end_unix_ms.saturating_sub(runner::unix_ms());
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            sampler.at_traffic_end().await
        }
        Ok(None) => std::future::pending().await,
        Err(err) => {
            tracing::warn!(%err, "cannot read the workers' start: no memory sample at traffic end");
            std::future::pending().await
        }
    }
}

struct WorkerSetup<'a> {
    scenario_path: &'a Path,
    seed: u64,
    program: &'a Path,
    targets: Vec<String>,
    redis_url: &'a str,
    credentials: &'a Credentials,
    run_id: &'a str,
    shards_out: &'a Path,
    quiet: bool,
}

/// Starts the workers, waits for all (each bounded by its own schedule
/// and drain timeout), and returns their shard directories.
async fn play_workers(
    setup: &WorkerSetup<'_>,
    count: u32,
) -> Result<Vec<std::path::PathBuf>, WorkersError> {
    let mut children = Vec::new();
    for index in 0..count {
        let mut command = tokio::process::Command::new(setup.program);
        command
            .arg("run")
            .arg(setup.scenario_path)
            .arg("--shard")
            .arg(format!("{index}/{count}"))
            .arg("--seed")
            .arg(setup.seed.to_string())
            .arg("--run-id")
            .arg(setup.run_id)
            .arg("--wait-for-shards")
            .arg(humantime::format_duration(WORKERS_RENDEZVOUS).to_string())
            .arg("--redis-url")
            .arg(setup.redis_url)
            .arg("--out")
            .arg(setup.shards_out)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for target in &setup.targets {
            command.arg("--target").arg(target);
        }
        // Only the first worker shows progress; the others would interleave.
        if setup.quiet || index > 0 {
            command.arg("--quiet");
        }
        match setup.credentials {
            // The secret travels in the environment, never the command line.
            Credentials::Secret(secret) => {
                command.env("HARNESS_JWT_SECRET", secret);
            }
            Credentials::Command(token_command) => {
                command.arg("--token-command").arg(token_command);
            }
            Credentials::None => {}
        }
        let child = command.spawn().map_err(|source| WorkersError::Spawn {
            index,
            count,
            program: setup.program.display().to_string(),
            source,
        })?;
        children.push(child);
    }
    let mut failed = None;
    for (index, mut child) in children.into_iter().enumerate() {
        let status = child.wait().await;
        let code = status.as_ref().ok().and_then(|s| s.code());
        if code != Some(0) && failed.is_none() {
            failed = Some(WorkersError::Failed {
                index: index as u32,
                count,
                code,
            });
        }
    }
    if let Some(err) = failed {
        return Err(err);
    }
    Ok((0..count)
        .map(|index| {
            setup.shards_out.join(super::play::shard_dir_name(
                setup.run_id,
                super::ShardSpec { index, count },
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_keep_each_process_under_its_file_limit() {
        assert_eq!(workers_needed(2_000, 20_000), 1);
        assert_eq!(workers_needed(19_000, 20_000), 1);
        assert_eq!(workers_needed(19_001, 20_000), 2);
        assert_eq!(workers_needed(50_000, 20_000), 3);
        assert_eq!(workers_needed(100_000, 20_000), 6);
        assert_eq!(workers_needed(10, 500), 1);
        assert_eq!(workers_needed(1_000, 1_024), 2);
    }
}
