//! `harness run SCENARIO --shard I/N`: plays the devices of one shard
//! against running servers and writes a shard directory: the history
//! (through the history module's writer), the scenario as run, the
//! intruders' records (shard 0) and `shard.json`. Nothing is checked
//! here: the merge checks the whole run once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ShardError, ShardManifest, ShardPlay, ShardSpec, ShardSync, MANIFEST_FILE};
use crate::history::{Recorder, RunMeta};
use crate::runner::{self, metrics, RunOptions};
use crate::scenario::render_scenario;

/// `harness run --shard` settings besides the run's own.
pub struct ShardRunOptions {
    pub run: RunOptions,
    pub spec: ShardSpec,
    /// The shared time origin; `None`: agreed through Redis once all
    /// shards are up.
    pub start_at_unix_ms: Option<u64>,
    /// Names the run's coordination keys and shard directories
    /// (default `SCENARIO-SEED`).
    pub run_id: Option<String>,
    /// How long to wait for the other shards to come up.
    pub wait_for_shards: Duration,
}

/// The directory a shard writes: `OUT/RUN_ID-shard-I-of-N`.
pub fn shard_dir_name(run_id: &str, spec: ShardSpec) -> String {
    format!("{run_id}-shard-{}-of-{}", spec.index, spec.count)
}

/// Plays one shard and writes its directory; returns the directory.
pub async fn play_shard(options: ShardRunOptions) -> Result<PathBuf, ShardError> {
    let started = Instant::now();
    let run = &options.run;
    if run.targets.as_ref().is_none_or(Vec::is_empty) {
        return Err(ShardError::NeedsTargets);
    }
    if !run.extra_server_args.is_empty() {
        return Err(ShardError::FlawWithShard);
    }
    let Some(redis_url) = run.redis_url.clone() else {
        return Err(ShardError::NeedsRedis);
    };
    let (scenario, seed) = runner::settle_scenario(run);
    let run_id = options
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{}-{seed}", scenario.name));
    let shard_dir = run.out_root.join(shard_dir_name(&run_id, options.spec));
    if shard_dir.join(MANIFEST_FILE).exists() {
        return Err(ShardError::ShardDirTaken { path: shard_dir });
    }
    std::fs::create_dir_all(&shard_dir).map_err(|source| ShardError::Write {
        path: shard_dir.clone(),
        source,
    })?;
    let live_slot = metrics::LiveSlot::default();
    let _metrics = match run.metrics_listen {
        Some(addr) => {
            let server = metrics::MetricsServer::start(addr, live_slot.clone())
                .await
                .map_err(runner::RunError::from)?;
            println!("metrics: http://{}/metrics", server.local_addr);
            Some(server)
        }
        None => None,
    };
    let schedule = scenario.ramp_up + scenario.duration + scenario.drain_timeout;
    let mut sync = ShardSync::connect(
        &redis_url,
        &run_id,
        options.spec,
        schedule + options.wait_for_shards + Duration::from_secs(3600),
    )
    .await?;
    let provisioned = runner::provision(&scenario, run).await?;
    let start_at_unix_ms = match options.start_at_unix_ms {
        Some(start) => start,
        None => {
            println!(
                "shard {}: waiting for {} shards of run {run_id} (up to {:?})",
                options.spec, options.spec.count, options.wait_for_shards
            );
            sync.rendezvous(
                options.wait_for_shards,
                scenario.ramp_up + Duration::from_secs(60),
            )
            .await?
        }
    };
    sync.set_origin(start_at_unix_ms);
    let total_sockets = scenario.population.total_sockets();
    println!(
        "shard {} of run {run_id}: time origin unix ms {start_at_unix_ms} (in {} ms)",
        options.spec,
        start_at_unix_ms.saturating_sub(runner::unix_ms())
    );
    let shard = ShardPlay {
        spec: options.spec,
        start_at_unix_ms,
        sync,
    };
    // The shard's sockets stream their events into its directory.
    let recorder = Recorder::create(&shard_dir.join(crate::report::HISTORY_FILE))?;
    let played = runner::play(
        &scenario,
        seed,
        &provisioned,
        run.progress,
        &live_slot,
        Some(&shard),
        recorder,
    )
    .await;
    // As in a single-process run: the rig (client proxies, if any) is ours
    // again once play has waited for the fault tasks.
    if let Ok(rig) = Arc::try_unwrap(provisioned.rig) {
        // The handle keeps a Redis the harness started, which a shard never does.
        let _redis = rig.into_inner().stop_all().await;
    }
    let played = played?;
    let sockets = played.cast.sockets.len() as u64;
    played
        .history
        .finish(RunMeta {
            scenario_name: scenario.name.clone(),
            seed,
            started_at_unix_ms: start_at_unix_ms,
            devices: played.cast.devices.clone(),
            conversations: played.cast.conversations.clone(),
            faults: played.faults.clone(),
        })
        .await?;
    if !played.intruders.is_empty() {
        runner::write_json(
            &shard_dir.join(crate::intruders::INTRUDERS_FILE),
            &played.intruders,
        )?;
    }
    let scenario_path = shard_dir.join("scenario.toml");
    std::fs::write(&scenario_path, render_scenario(&scenario)).map_err(|source| {
        ShardError::Write {
            path: scenario_path,
            source,
        }
    })?;
    let usage = runner::resources::harness_usage();
    let manifest = ShardManifest {
        scenario_name: scenario.name.clone(),
        seed,
        run_id,
        shard: options.spec,
        start_at_unix_ms,
        finished_at_unix_ms: runner::unix_ms(),
        targets: provisioned
            .targets
            .iter()
            .map(url::Url::to_string)
            .collect(),
        redis_url: Some(redis_url),
        redis_description: provisioned.redis_description,
        sockets,
        total_sockets,
        peak_sockets: played.peak_sockets,
        drain_complete: played.drain_complete,
        stragglers: played.stragglers,
        unknown_reasons: played.unknown_reasons,
        sends_scheduled: played.sends_skipped.scheduled,
        sends_skipped: played.sends_skipped.skipped,
        sends_skipped_no_socket_online: played.sends_skipped.no_socket_online,
        sends_skipped_queue_full: played.sends_skipped.queue_full,
        acks: played.acks,
        harness_cpu_ms: usage.cpu.as_millis() as u64,
        harness_peak_rss_bytes: usage.peak_rss_bytes,
        harness_rss_at_traffic_end_bytes: played.rss_at_traffic_end_bytes,
    };
    runner::write_json(&shard_dir.join(MANIFEST_FILE), &manifest)?;
    println!(
        "shard {}: {sockets} of {total_sockets} sockets, {} acked sends, drain {} in {:.1} s; {}",
        options.spec,
        manifest.acks,
        if manifest.drain_complete {
            "complete"
        } else {
            "INCOMPLETE"
        },
        started.elapsed().as_secs_f64(),
        shard_dir.display()
    );
    Ok(shard_dir)
}
