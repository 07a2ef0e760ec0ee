//! Sharded runs: the same scenario and seed played by one process and by
//! three `harness run --shard I/3` processes (then `harness merge`) give
//! the same verdict, the same violation kinds and the same send schedule;
//! a flaw injected into the server is caught by the sharded run too; and
//! the merge refuses an incomplete or mixed set of shards.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// One sharded test at a time: each starts three shard processes (plus a
/// single-process run), and two at once on a 2-core machine turn a test
/// of sharding into one of overload.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// Three shard processes at once against `server`, then the merge.
/// Returns the merge's exit code, the merged summary and the shard
/// directories.
fn sharded_run(
    server: &ExternalServer,
    scenario: &Path,
    seed: u64,
    out: &Path,
) -> (i32, Value, Vec<PathBuf>) {
    let shards_out = out.join("shards");
    let seed = seed.to_string();
    let children: Vec<_> = (0..3)
        .map(|index| {
            let shard = format!("{index}/3");
            let args = [
                "run",
                scenario.to_str().expect("a UTF-8 path"),
                "--shard",
                &shard,
                "--target",
                &server.ws_url,
                "--redis-url",
                server.redis.url(),
                "--jwt-secret",
                &server.secret,
                "--seed",
                &seed,
                "--out",
                shards_out.to_str().expect("a UTF-8 path"),
                "--quiet",
            ];
            println!("$ harness {}", args.join(" "));
            Command::new(harness_bin())
                .args(args)
                .current_dir(repo_root())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("harness run --shard starts")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("shard finishes");
        println!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "a shard writes its directory"
        );
    }
    let mut shard_dirs: Vec<PathBuf> = std::fs::read_dir(&shards_out)
        .expect("shard directories")
        .map(|entry| entry.expect("entry").path())
        .collect();
    shard_dirs.sort();
    assert_eq!(shard_dirs.len(), 3, "{shard_dirs:?}");
    let merged = out.join("merged");
    let mut args = vec!["merge"];
    args.extend(shard_dirs.iter().map(|d| d.to_str().expect("a UTF-8 path")));
    args.extend(["--out", merged.to_str().expect("a UTF-8 path")]);
    let finished = harness(&args);
    (finished.code, summary(&merged), shard_dirs)
}

fn single_run(server: &ExternalServer, scenario: &Path, seed: u64, out: &Path) -> (i32, Value) {
    let runs = out.join("single");
    let finished = server.run(scenario, &server.ws_url, &runs, seed, &[]);
    (finished.code, summary(&run_dir(&runs)))
}

/// The kinds of the violations found, sorted.
fn violation_kinds(summary: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = summary["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .filter(|a| a["violation"] == true)
        .map(|a| a["kind"].as_str().expect("kind").to_string())
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn three_shards_judge_like_one_process() {
    let _turn = one_at_a_time();
    let seed = seed("three_shards_judge_like_one_process");
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(dir.path(), "external", SMALL_EXTERNAL);
    // Each way on its own server and Redis: the same seed means the same
    // users, devices and conversations, which must start empty.
    let single_server = ExternalServer::start(&[]);
    let sharded_server = ExternalServer::start(&[]);
    let (sharded, single) = std::thread::scope(|scope| {
        let sharded = scope.spawn(|| sharded_run(&sharded_server, &scenario, seed, dir.path()));
        let single = single_run(&single_server, &scenario, seed, dir.path());
        (sharded.join().expect("sharded run"), single)
    });
    let (sharded_code, merged, shard_dirs) = sharded;
    let (single_code, single) = single;
    assert_eq!(single["verdict"], "valid", "one process (seed {seed})");
    assert_eq!(
        merged["verdict"], single["verdict"],
        "seed {seed}; merged anomalies: {:#}",
        merged["anomalies"]
    );
    assert_eq!(sharded_code, single_code);
    assert_eq!(violation_kinds(&merged), violation_kinds(&single));
    // One send schedule: the shards together scheduled exactly the sends
    // one process scheduled (same times, same ids).
    assert_eq!(
        merged["sends_skipped"]["scheduled"], single["sends_skipped"]["scheduled"],
        "scheduled sends, seed {seed}"
    );
    assert!(merged["totals"]["deliveries_live"].as_u64().unwrap_or(0) > 0);
    assert_eq!(merged["log_source"], "redis", "the merge read the log back");
    // Every device was played by exactly one shard.
    let mut devices_seen = std::collections::BTreeSet::new();
    for dir in &shard_dirs {
        let history = harness::history::read_history(&dir.join(harness::history::HISTORY_FILE))
            .expect("history");
        let devices: std::collections::BTreeSet<u32> =
            history.events.iter().map(|e| e.device).collect();
        assert!(!devices.is_empty(), "{} played devices", dir.display());
        assert!(devices_seen.is_disjoint(&devices), "a device in two shards");
        devices_seen.extend(devices);
    }
    let merged_history = harness::history::read_history(
        &dir.path()
            .join("merged")
            .join(harness::history::HISTORY_FILE),
    )
    .expect("history");
    let devices_in_conversations = merged_history
        .meta
        .devices
        .iter()
        .filter(|d| !d.conversations.is_empty())
        .count();
    assert_eq!(devices_seen.len(), devices_in_conversations);

    // The merge refuses incomplete, duplicated and foreign shard sets.
    let out = dir.path().join("refused");
    let out = out.to_str().expect("a UTF-8 path");
    let path = |i: usize| shard_dirs[i].to_str().expect("a UTF-8 path");
    let missing = harness(&["merge", path(0), path(2), "--out", out]);
    assert_eq!(missing.code, 3);
    assert!(
        missing.stderr.contains("shards missing: [1]"),
        "{}",
        missing.stderr
    );
    let twice = harness(&["merge", path(0), path(1), path(1), "--out", out]);
    assert_eq!(twice.code, 3);
    assert!(twice.stderr.contains("appears twice"), "{}", twice.stderr);
    let single_dir = run_dir(&dir.path().join("single"));
    let foreign = harness(&["merge", path(0), single_dir.to_str().unwrap(), "--out", out]);
    assert_eq!(foreign.code, 3);
    assert!(foreign.stderr.contains("shard.json"), "{}", foreign.stderr);
}

#[test]
fn a_flaw_is_caught_by_the_sharded_run() {
    let _turn = one_at_a_time();
    let seed = seed("a_flaw_is_caught_by_the_sharded_run");
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = repo_root().join("scenarios/flaws/multi-conversation.toml");
    let flawed = ExternalServer::start(&["--inject-flaw", "cursor-per-device"]);
    let (code, merged, _) = sharded_run(&flawed, &scenario, seed, dir.path());
    assert_eq!(
        merged["verdict"], "invalid",
        "cursor-per-device not caught by 3 shards (seed {seed})"
    );
    assert_eq!(code, 1, "the merge exits like `harness run` on a violation");
    let kinds = violation_kinds(&merged);
    assert!(
        kinds.iter().any(|k| k == "lost" || k == "skip"),
        "expected lost or skip, got {kinds:?}"
    );
}

/// `harness run --workers 3`: the run spawns its own servers (with the
/// flaw), plays as three local worker processes through the --shard path,
/// merges them, and catches the flaw like a single process would.
#[test]
fn local_workers_take_the_sharded_path_and_catch_a_flaw() {
    let _turn = one_at_a_time();
    let seed = seed("local_workers_take_the_sharded_path_and_catch_a_flaw");
    let dir = tempfile::tempdir().expect("temp dir");
    let runs = dir.path().join("runs");
    let seed_arg = seed.to_string();
    let finished = harness(&[
        "run",
        "scenarios/flaws/multi-conversation.toml",
        "--workers",
        "3",
        "--inject-flaw",
        "cursor-per-device",
        "--seed",
        &seed_arg,
        "--out",
        runs.to_str().expect("a UTF-8 path"),
        "--quiet",
    ]);
    let run = run_dir(&runs);
    let merged = summary(&run);
    assert_eq!(
        merged["verdict"], "invalid",
        "cursor-per-device not caught by 3 workers (seed {seed})"
    );
    assert_eq!(finished.code, 1);
    let kinds = violation_kinds(&merged);
    assert!(
        kinds.iter().any(|k| k == "lost" || k == "skip"),
        "expected lost or skip, got {kinds:?}"
    );
    let shards: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("shards.json")).expect("shards.json"),
    )
    .expect("JSON");
    assert_eq!(
        shards.as_array().map(Vec::len),
        Some(3),
        "three workers merged"
    );
    // The parent owned the servers and Redis while the workers played:
    // the merged run says what they cost, memory at traffic end included.
    for part in ["servers", "redis_cost"] {
        let cost = &merged[part];
        let cpu_us = cost["cpu_us_per_delivery"].as_f64();
        assert!(cpu_us.is_some_and(|us| us > 0.0), "{part}: {cost}");
        let rss = cost["rss_bytes_per_socket_at_traffic_end"].as_u64();
        assert!(rss.is_some_and(|bytes| bytes > 0), "{part}: {cost}");
    }
}
