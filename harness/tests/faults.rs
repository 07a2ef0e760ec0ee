//! Faults in scenario files: Redis restarts and wipes, server crashes,
//! partitions and slow links. Each shipped fault scenario must reach the
//! verdict it promises, with its faults recorded and nothing acked lost
//! (except where the scenario destroys Redis data on purpose, and then
//! nothing is lost silently).

mod common;

use common::*;
use serde_json::Value;

fn run(scenario: &str) -> (i32, Value) {
    let seed = seed(scenario);
    let out = tempfile::tempdir().unwrap();
    let runs = out.path().join("runs");
    let finished = harness(&[
        "run",
        scenario,
        "--out",
        runs.to_str().unwrap(),
        "--seed",
        &seed.to_string(),
        "--quiet",
    ]);
    (finished.code, summary(&run_dir(&runs)))
}

fn count(summary: &Value, kind: &str) -> u64 {
    summary["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind)
        .map_or(0, |a| a["count"].as_u64().unwrap())
}

/// Every scheduled fault happened, without injection errors.
fn assert_faults_happened(summary: &Value, expected: usize) {
    let faults = summary["faults"].as_array().expect("a fault table");
    assert_eq!(faults.len(), expected, "{faults:?}");
    for fault in faults {
        assert!(fault["error"].is_null(), "fault injection failed: {fault}");
    }
}

#[test]
fn redis_restart_with_aof_loses_nothing_acked() {
    let (code, summary) = run("scenarios/redis-restart.toml");
    assert_faults_happened(&summary, 2);
    assert_eq!(count(&summary, "lost_ack"), 0);
    assert_eq!(summary["verdict"], "valid", "{}", summary["anomalies"]);
    assert_eq!(code, 0);
}

#[test]
fn redis_wipe_loses_nothing_silently() {
    let (code, summary) = run("scenarios/redis-wipe.toml");
    assert_faults_happened(&summary, 1);
    assert_eq!(count(&summary, "lost"), 0, "no silent loss");
    assert_eq!(count(&summary, "duplicate"), 0);
    assert_eq!(count(&summary, "phantom"), 0);
    assert_eq!(summary["verdict"], "valid", "{}", summary["anomalies"]);
    assert_eq!(code, 0);
}

#[test]
fn server_crash_and_graceful_restart_lose_nothing() {
    let (code, summary) = run("scenarios/server-crash.toml");
    assert_faults_happened(&summary, 2);
    assert_eq!(summary["verdict"], "valid", "{}", summary["anomalies"]);
    assert_eq!(code, 0);
}

#[test]
fn partitions_latency_and_resets_lose_nothing() {
    let (code, summary) = run("scenarios/partition.toml");
    assert_faults_happened(&summary, 5);
    assert_eq!(summary["verdict"], "valid", "{}", summary["anomalies"]);
    assert_eq!(code, 0);
}

#[test]
fn three_instances_deliver_across_processes() {
    let (code, summary) = run("scenarios/multi-instance.toml");
    assert_eq!(summary["verdict"], "valid", "{}", summary["anomalies"]);
    assert_eq!(code, 0);
    assert_eq!(summary["targets"].as_array().unwrap().len(), 3);
}
