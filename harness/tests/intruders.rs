//! `scenarios/intruders.toml` (issue 10's done-when): on the reference
//! server every intruder is refused before the upgrade and no victim's
//! stored cursor moves (valid); the same scenario and seed against servers
//! started with `--insecure-no-auth` (the seed's behaviour) lets them in,
//! and the checker calls it `leak` (invalid). The second half is what
//! makes the first one mean something.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const SCENARIO: &str = "scenarios/intruders.toml";

/// Runs `scenario` with `seed` into `out`; the exit code, the summary and
/// the run directory.
fn run(scenario: &Path, seed: u64, out: &Path) -> (i32, Value, std::path::PathBuf) {
    let seed = seed.to_string();
    let finished = harness(&[
        "run",
        scenario.to_str().expect("a UTF-8 path"),
        "--out",
        out.to_str().expect("a UTF-8 path"),
        "--seed",
        &seed,
        "--quiet",
    ]);
    let dir = run_dir(out);
    (finished.code, summary(&dir), dir)
}

fn kind<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["intruders"]["kinds"]
        .as_array()
        .expect("an intruder section")
        .iter()
        .find(|kind| kind["kind"] == name)
        .unwrap_or_else(|| panic!("no intruders of kind {name}: {summary}"))
}

#[test]
fn intruders_are_refused_by_the_server_and_a_leak_without_authentication() {
    let seed = seed("intruders");
    let tmp = tempfile::tempdir().unwrap();
    let secured = repo_root().join(SCENARIO);
    // The same scenario with the servers' authentication switched off.
    let text = std::fs::read_to_string(&secured).unwrap();
    assert!(
        text.contains("\nspawn = 1\n"),
        "the scenario spawns one server"
    );
    let insecure = tmp.path().join("intruders-insecure.toml");
    std::fs::write(
        &insecure,
        text.replace(
            "\nspawn = 1\n",
            "\nspawn = 1\nextra_args = [\"--insecure-no-auth\"]\n",
        ),
    )
    .unwrap();
    let (secured_out, insecure_out) = (tmp.path().join("secured"), tmp.path().join("insecure"));
    let ((code, summary, dir), (bad_code, bad_summary, bad_dir)) = std::thread::scope(|scope| {
        let secured_run = scope.spawn(|| run(&secured, seed, &secured_out));
        let insecure_run = scope.spawn(|| run(&insecure, seed, &insecure_out));
        (
            secured_run.join().expect("secured run"),
            insecure_run.join().expect("insecure run"),
        )
    });

    // With authentication: valid, every kind refused with its status.
    assert_eq!(summary["verdict"], "valid", "seed {seed}: {summary}");
    assert_eq!(code, 0);
    for (name, refusal) in [
        ("no_token", "401 missing_token"),
        ("expired_token", "401 expired"),
        ("bad_signature", "401 bad_signature"),
        ("not_member", "403 not_member"),
        ("client_id", "403 user_mismatch"),
    ] {
        let kind = kind(&summary, name);
        assert!(
            kind["attempts"].as_u64().unwrap() >= 2,
            "{name} tried: {kind}"
        );
        assert!(
            kind["refused"][refusal].as_u64().unwrap_or(0) >= 1,
            "{name} refused with {refusal}: {kind}"
        );
        if name != "client_id" {
            assert_eq!(kind["admitted"], 0, "{name} never let in: {kind}");
            assert_eq!(kind["frames"], 0, "{name} got no frame: {kind}");
        }
    }
    // A member presenting a victim's client_id under its own identity is
    // let in (it is a member) but gets its own cursor: the victim's stays.
    let hijack = kind(&summary, "client_id");
    assert!(hijack["admitted"].as_u64().unwrap() >= 1, "{hijack}");
    assert!(hijack["cursors_checked"].as_u64().unwrap() >= 1, "{hijack}");
    assert_eq!(hijack["cursors_moved"], 0, "{hijack}");
    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(markdown.contains("## Intruders"), "{markdown}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<h2>Intruders</h2>"));

    // Without authentication: the same intruders get in, and it is a leak.
    assert_eq!(
        bad_summary["verdict"], "invalid",
        "seed {seed}: {bad_summary}"
    );
    assert_eq!(bad_code, 1);
    let leak = bad_summary["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|anomaly| anomaly["kind"] == "leak")
        .unwrap_or_else(|| panic!("a leak: {bad_summary}"));
    assert_eq!(leak["violation"], true);
    let detail = leak["examples"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("intruder") && detail.contains("was let into conversation"),
        "the example names the intruder and the conversation: {detail}"
    );
    for name in ["no_token", "expired_token", "bad_signature", "not_member"] {
        let kind = kind(&bad_summary, name);
        assert!(kind["admitted"].as_u64().unwrap() >= 1, "{name}: {kind}");
    }
    assert!(
        kind(&bad_summary, "client_id")["cursors_moved"]
            .as_u64()
            .unwrap()
            >= 1,
        "the hijacker moved the victim's cursor: {bad_summary}"
    );
    // The verdict is rebuilt from the run directory alone (intruders.json).
    let recheck = harness(&["check", bad_dir.to_str().unwrap()]);
    assert_eq!(recheck.code, 1, "{}", recheck.stdout);
    assert!(recheck.stdout.contains("leak"), "{}", recheck.stdout);
}
