//! Short Socket.IO scenarios through the real runner and checker, against
//! the real peer (`peers/socketio`, spawned by `[servers] command`):
//!
//! - a run whose reconnects get both answers, `recovered: true` and
//!   `recovered: false`, and whose recorded history, changed one event at
//!   a time, shows the checker holds each claim: a message missing after a
//!   failed recovery's first delivery is lost, one repeated or missing
//!   under a claimed recovery is named;
//! - the peer with `SIO_FLAW=drop_recovered_first` (it drops the first
//!   missed message of every recovery and still says `recovered: true`):
//!   the run is invalid and the checker names the loss on a socket that
//!   claimed recovery.
//!
//! One instance: the scenario is about recovery claims, not about the
//! cross-instance ordering docs/peers.md reports. Needs
//! `peers/socketio/node_modules` (`.ci/run` installs it with npm ci).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{harness, repo_root, run_dir, seed, summary, write_scenario};
use harness::checker::{check, AnomalyKind, CheckOptions, CheckOutcome};
use harness::history::{read_history, EventKind, History, MessageLog, Position, ResumeClaim};
use harness::scenario::load_scenario;

/// A short churn against one peer instance. `env` goes in front of the
/// peer's command (`env NAME=VALUE node ...`), the way a user would set
/// the peer's options from a scenario.
fn scenario(env: &[&str]) -> String {
    let env: Vec<String> = env.iter().map(|pair| format!("{pair:?}, ")).collect();
    format!(
        r#"name = "socketio-short"
duration = "7s"
ramp_up = "1s"
drain_timeout = "20s"

[servers]
protocol = "socketio"
command = ["env", {env}"node", "peers/socketio/server.js", "--port", "{{port}}", "--redis", "{{redis_url}}"]
url = "ws://127.0.0.1:{{port}}/socket.io/?EIO=4&transport=websocket"
ready_http = "/healthz"
instances = 1

[population]
users = 6
devices_per_user = 1
conversations = 2
members_per_conversation = 3

[traffic]
send_rate = "25/s"

[churn]
online = {{ dist = "uniform", min = "800ms", max = "1500ms" }}
offline = {{ dist = "exponential", mean = "700ms" }}
abrupt_share = 1.0
client_cursor_share = 1.0
"#,
        env = env.concat()
    )
}

fn peer_installed() -> bool {
    let installed = repo_root()
        .join("peers/socketio/node_modules/socket.io")
        .is_dir();
    if !installed {
        eprintln!(
            "SKIPPED: no node_modules in peers/socketio; run `npm ci` there (bash .ci/run does)"
        );
    }
    installed
}

/// Runs the scenario; returns its run directory and the exit code.
fn run(test: &str, out: &Path, env: &[&str]) -> (PathBuf, i32) {
    let path = write_scenario(out, test, &scenario(env));
    let seed = seed(test).to_string();
    let runs = out.join("runs");
    let finished = harness(&[
        "run",
        path.to_str().expect("utf-8 temp path"),
        "--seed",
        &seed,
        "--out",
        runs.to_str().expect("utf-8 temp path"),
        "--quiet",
    ]);
    (run_dir(&runs), finished.code)
}

struct Recorded {
    history: History,
    log: MessageLog,
    expect: harness::scenario::Expectations,
}

impl Recorded {
    fn load(dir: &Path) -> Recorded {
        let log = std::fs::read_to_string(dir.join("log.json")).expect("log.json");
        Recorded {
            history: read_history(&dir.join("history.bin")).expect("history.bin"),
            log: serde_json::from_str(&log).expect("log.json parses"),
            expect: load_scenario(&dir.join("scenario.toml"))
                .expect("the run's scenario")
                .expect,
        }
    }

    fn check(&self, history: &History) -> CheckOutcome {
        check(history, &CheckOptions::new(&self.log, &self.expect))
    }
}

type SocketKey = (u32, u32, u32);

/// Every socket's recovery claim on a reconnect (socket >= 1).
fn claims(history: &History) -> HashMap<SocketKey, bool> {
    history
        .events
        .iter()
        .filter_map(|event| match event.kind {
            EventKind::Connected {
                claim: ResumeClaim::Recovered { recovered },
                ..
            } if event.socket >= 1 => {
                Some(((event.device, event.conversation, event.socket), recovered))
            }
            _ => None,
        })
        .collect()
}

/// Indexes of the message events of one socket, in order.
fn deliveries(history: &History, key: SocketKey) -> Vec<usize> {
    history
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            (e.device, e.conversation, e.socket) == key
                && matches!(e.kind, EventKind::Message { .. })
        })
        .map(|(ix, _)| ix)
        .collect()
}

fn message_id(history: &History, ix: usize) -> Position {
    match history.events[ix].kind {
        EventKind::Message { id, .. } => id,
        _ => unreachable!("a message event"),
    }
}

/// Whether the device receives `id` anywhere else in the history.
fn received_elsewhere(history: &History, skip: usize, id: Position) -> bool {
    let (device, conversation) = (
        history.events[skip].device,
        history.events[skip].conversation,
    );
    history.events.iter().enumerate().any(|(ix, e)| {
        ix != skip
            && e.device == device
            && e.conversation == conversation
            && matches!(e.kind, EventKind::Message { id: other, .. } if other == id)
    })
}

fn loss(outcome: &CheckOutcome) -> u64 {
    outcome.count(AnomalyKind::Lost) + outcome.count(AnomalyKind::Skip)
}

#[test]
fn recovery_claims_from_the_real_peer_are_held_by_the_checker() {
    if !peer_installed() {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    // Sessions expire after 600 ms: reconnects get both answers.
    let (dir, code) = run("claims", out.path(), &["SIO_MAX_DISCONNECTION_MS=600"]);
    assert!(code == 0 || code == 1, "the run completes (exit {code})");
    let recorded = Recorded::load(&dir);
    let history = &recorded.history;
    let claims = claims(history);
    let recovered: Vec<SocketKey> = claims
        .iter()
        .filter(|(_, r)| **r)
        .map(|(k, _)| *k)
        .collect();
    let declared: Vec<SocketKey> = claims
        .iter()
        .filter(|(_, r)| !**r)
        .map(|(k, _)| *k)
        .collect();
    println!(
        "{} reconnects claimed recovery, {} declared it failed",
        recovered.len(),
        declared.len()
    );
    let base = recorded.check(history);
    let stats = &summary(&dir)["check_stats"];
    let delivered = history
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Message { .. }))
        .count() as u64;
    assert_eq!(
        stats["deliveries_checked"].as_u64(),
        Some(delivered),
        "every delivery is checked"
    );

    // After a declared failed recovery, only what came before the first
    // delivery is excused: a later message missing is loss.
    let declared_case = declared.iter().find_map(|key| {
        deliveries(history, *key)
            .into_iter()
            .skip(1)
            .find(|ix| !received_elsewhere(history, *ix, message_id(history, *ix)))
    });
    let ix = declared_case.expect("a failed recovery with two deliveries (seeded run)");
    let mut mutated = history.clone();
    mutated.events.remove(ix);
    let after = recorded.check(&mutated);
    assert!(
        loss(&after) > loss(&base),
        "removing {} after a declared failed recovery is loss: {after:?}",
        message_id(history, ix)
    );

    // A claimed recovery owes every missed message exactly once: one
    // already delivered on the previous socket, repeated, is a duplicate;
    // its first delivery dropped, a loss.
    let (key, first, last_before) = recovered
        .iter()
        .find_map(|key| {
            let first = *deliveries(history, *key).first()?;
            let before = *deliveries(history, (key.0, key.1, key.2 - 1)).last()?;
            Some((*key, first, before))
        })
        .expect("a claimed recovery after a socket that delivered (seeded run)");
    let mut repeated = history.clone();
    let mut copy = history.events[last_before].clone();
    copy.socket = key.2;
    copy.at_us = history.events[first].at_us;
    repeated.events.insert(first, copy);
    let after = recorded.check(&repeated);
    assert!(
        after.count(AnomalyKind::Duplicate) > base.count(AnomalyKind::Duplicate),
        "a repeat under recovered: true is a duplicate: {after:?}"
    );
    if !received_elsewhere(history, first, message_id(history, first)) {
        let mut dropped = history.clone();
        dropped.events.remove(first);
        let after = recorded.check(&dropped);
        assert!(
            loss(&after) > loss(&base),
            "a missing message under recovered: true is loss: {after:?}"
        );
    }
}

#[test]
fn the_checker_names_the_peer_flaw_that_drops_a_recovered_message() {
    if !peer_installed() {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let (dir, code) = run("flaw", out.path(), &["SIO_FLAW=drop_recovered_first"]);
    let summary = summary(&dir);
    assert_eq!(code, 1, "the flawed peer's run is invalid: {summary}");
    let recorded = Recorded::load(&dir);
    let claims = claims(&recorded.history);
    // The skip is named on the socket whose recovery dropped it.
    let skips = summary["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .find(|a| a["kind"] == "skip")
        .unwrap_or_else(|| panic!("a skip is named: {summary}"));
    let under_claim = skips["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .filter(|example| {
            let key = (
                example["device"].as_u64().unwrap_or(u64::MAX) as u32,
                example["conversation"].as_u64().unwrap_or(u64::MAX) as u32,
                example["socket"].as_u64().unwrap_or(u64::MAX) as u32,
            );
            claims.get(&key) == Some(&true)
        })
        .count();
    assert!(
        under_claim > 0,
        "a skip on a socket that claimed recovered: true: {skips}"
    );
    let lost = recorded.check(&recorded.history).count(AnomalyKind::Lost);
    assert!(lost > 0, "the dropped messages are lost: {summary}");
}
