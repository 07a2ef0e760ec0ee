//! Mutation testing of the checker: each known recovery bug, injected into
//! the reference server with `--inject-flaw`, must be caught and named with
//! a concrete example; the correct server must pass the same scenario with
//! the same seed. A checker that never catches anything proves nothing.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn run_scenario(scenario: &str, seed: u64, flaw: Option<&str>, out: &Path) -> (i32, Value) {
    let runs = out.join(flaw.unwrap_or("correct"));
    let seed_arg = seed.to_string();
    let mut args = vec![
        "run",
        scenario,
        "--out",
        runs.to_str().unwrap(),
        "--seed",
        &seed_arg,
        "--quiet",
    ];
    if let Some(flaw) = flaw {
        args.extend(["--inject-flaw", flaw]);
    }
    let finished = harness(&args);
    let dir = run_dir(&runs);
    let junit = assert_junit_valid(&dir);
    if finished.code == 1 {
        assert!(
            junit.contains("<failure "),
            "a violation fails a JUnit case: {junit}"
        );
    }
    (finished.code, summary(&dir))
}

/// Asserts the correct server passes, then that each flaw is caught as
/// one of its expected anomaly kinds, with an example naming a device,
/// a conversation and ids. Returns the anomaly found for each flaw.
fn assert_caught(scenario: &str, flaws: &[(&str, &[&str])]) -> Vec<Value> {
    let mut caught = Vec::new();
    let seed = seed(scenario);
    let out = tempfile::tempdir().unwrap();
    let (code, correct) = run_scenario(scenario, seed, None, out.path());
    assert_eq!(
        correct["verdict"], "valid",
        "the correct server must pass {scenario} (seed {seed})"
    );
    assert_eq!(code, 0);
    for (flaw, expected) in flaws {
        let (code, summary) = run_scenario(scenario, seed, Some(flaw), out.path());
        assert_eq!(
            summary["verdict"], "invalid",
            "flaw {flaw} not caught by {scenario} (seed {seed})"
        );
        assert_eq!(code, 1);
        let anomalies = summary["anomalies"].as_array().unwrap();
        let found = anomalies.iter().find(|a| {
            a["violation"] == true && expected.contains(&a["kind"].as_str().unwrap_or_default())
        });
        let Some(found) = found else {
            panic!("flaw {flaw}: expected one of {expected:?}, got {anomalies:?}");
        };
        let example = &found["examples"][0];
        assert!(
            example["conversation_id"].is_string(),
            "{flaw}: example names a conversation: {example}"
        );
        assert!(
            !example["ids"].as_array().unwrap().is_empty(),
            "{flaw}: example names ids: {example}"
        );
        assert!(
            example["detail"].as_str().unwrap().len() > 20,
            "{flaw}: example explains: {example}"
        );
        println!(
            "{flaw}: caught as {} x{} (first at {} us): {}",
            found["kind"], found["count"], example["at_us"], example["detail"]
        );
        caught.push(found.clone());
    }
    caught
}

#[test]
fn reconnect_race_catches_flow_bugs() {
    assert_caught(
        "scenarios/flaws/reconnect-race.toml",
        &[
            ("new-client-id", &["duplicate"]),
            ("backlog-before-subscribe", &["lost", "skip"]),
            ("no-overlap-dedup", &["duplicate"]),
            ("inclusive-resume", &["duplicate"]),
            ("cursor-on-send", &["lost", "skip"]),
        ],
    );
}

#[test]
fn multi_conversation_catches_cursor_per_device() {
    assert_caught(
        "scenarios/flaws/multi-conversation.toml",
        &[("cursor-per-device", &["lost", "skip"])],
    );
}

#[test]
fn lagging_socket_catches_drop_on_lag() {
    assert_caught(
        "scenarios/flaws/lagging-socket.toml",
        &[("drop-on-lag", &["lost", "skip"])],
    );
}

#[test]
fn two_instances_catch_local_fanout() {
    assert_caught(
        "scenarios/flaws/two-instances.toml",
        &[("local-fanout", &["lost", "skip"])],
    );
}

#[test]
fn false_gap_is_caught_not_forgiven() {
    let caught = assert_caught(
        "scenarios/flaws/false-gap.toml",
        &[("false-gap", &["false_gap"])],
    );
    let detail = caught[0]["examples"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("`trimmed` gap") && detail.contains("still holds"),
        "the example says which gap was false and why: {detail}"
    );
}

#[test]
fn crosstalk_is_caught_as_leak() {
    let caught = assert_caught(
        "scenarios/flaws/crosstalk.toml",
        &[("crosstalk", &["leak"])],
    );
    let example = &caught[0]["examples"][0];
    let detail = example["detail"].as_str().unwrap();
    let here = example["conversation_id"].as_str().unwrap();
    // The receiving conversation and the one the message belongs to.
    let named = detail.matches("conversation ").count();
    assert!(
        detail.contains(here) && named >= 2,
        "the example names both conversations: {detail}"
    );
}

/// A Redis stall longer than the server's Redis timeout: the correct
/// server tells the sends it caught `indeterminate`, never "not appended"
/// (the server before issue 10 said `unavailable` and the retries came
/// back `duplicate: true`: `false_failure`). A server that says
/// `unavailable` after appending is caught, with the retry's ack as proof.
#[test]
fn redis_stall_catches_unavailable_after_append() {
    let caught = assert_caught(
        "scenarios/flaws/redis-stall.toml",
        &[("unavailable-after-append", &["false_failure"])],
    );
    let detail = caught[0]["examples"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("`unavailable`") && detail.contains("duplicate: true"),
        "the example says which promise was false and why: {detail}"
    );
}
