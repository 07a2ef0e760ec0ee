//! The harness, end to end: real binary, real reference servers, real
//! Redis. These read as the scenarios a user runs.

mod common;

use common::*;

#[test]
fn smoke_scenario_is_valid_and_writes_a_complete_report() {
    let seed = seed("smoke");
    let out = tempfile::tempdir().unwrap();
    let run = harness(&[
        "run",
        "scenarios/smoke.toml",
        "--out",
        out.path().to_str().unwrap(),
        "--seed",
        &seed.to_string(),
        "--quiet",
    ]);
    assert_eq!(run.code, 0, "smoke must be valid with thresholds met");
    assert!(run.stdout.contains("VALID"), "console verdict table");
    let dir = run_dir(out.path());
    for file in [
        "summary.json",
        "report.md",
        "report.html",
        "history.bin",
        "log.json",
        "scenario.toml",
        "live_delivery.hgrm",
        "ack.hgrm",
        "recovery.hgrm",
        "connect_to_hello.hgrm",
        "replay_staleness.hgrm",
        "live_delivery.hlog",
        "ack.hlog",
        "recovery.hlog",
        "connect_to_hello.hlog",
        "replay_staleness.hlog",
        "junit.xml",
    ] {
        let path = dir.join(file);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{file} missing or empty");
    }
    let summary = summary(&dir);
    assert_eq!(summary["schema"], "recovery-harness/summary/v1");
    assert_eq!(summary["verdict"], "valid");
    assert_eq!(summary["seed"], seed);
    assert_eq!(summary["exit_code"], 0);
    assert!(summary["sends_skipped"]["scheduled"].as_u64().unwrap() > 100);
    // What the run cost: the spawned servers (from /proc) and Redis (from
    // its INFO), each with CPU and memory, measured, not zero.
    for (part, cost) in [
        ("servers", &summary["servers"]),
        ("redis_cost", &summary["redis_cost"]),
    ] {
        let cpu_us = cost["cpu_us_per_delivery"].as_f64();
        assert!(cpu_us.is_some_and(|us| us > 0.0), "{part}: {cost}");
        let rss = cost["rss_bytes_per_socket_at_traffic_end"].as_u64();
        assert!(rss.is_some_and(|bytes| bytes > 0), "{part}: {cost}");
    }
    let junit = assert_junit_valid(&dir);
    assert!(
        !junit.contains("<failure "),
        "a valid run fails no case: {junit}"
    );
    // Devices offline when the drain began come back spread over its first
    // second (`client::dist::drain_return_spread`), not as one herd that
    // inflates recovery latency. Smoke has ~10 offline at any moment.
    let run = &summary["run"];
    let drain_start_us =
        ((run["ramp_up_s"].as_f64().unwrap() + run["duration_s"].as_f64().unwrap()) * 1e6) as u64;
    let returns_us = drain_returns_us(&history_events(&dir), drain_start_us);
    println!("returns after the drain began (µs): {returns_us:?}");
    if let (Some(first), Some(last), true) =
        (returns_us.first(), returns_us.last(), returns_us.len() >= 6)
    {
        assert!(
            last - first >= 150_000,
            "{} devices returned within {} µs of each other: a herd, not a spread",
            returns_us.len(),
            last - first
        );
        assert!(
            *last <= 3_000_000,
            "a device stayed away {last} µs into the drain"
        );
    } else {
        println!("too few devices offline when the drain began to check the spread");
    }
    let live = &summary["latency"]["live_delivery"];
    assert!(
        live["count"].as_u64().unwrap() > 100,
        "live deliveries were measured: {live}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 3, "charts are inline SVG");
    // The recorded run re-checks and re-renders offline with the same verdict.
    let dir_arg = dir.to_str().unwrap();
    assert_eq!(harness(&["check", dir_arg]).code, 0);
    assert_eq!(harness(&["report", dir_arg]).code, 0);
    // The exact scenario and seed are kept and still parse.
    assert_eq!(
        harness(&["validate", dir.join("scenario.toml").to_str().unwrap()]).code,
        0
    );
}

#[test]
fn bad_scenario_is_rejected_before_any_load_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_scenario(
        dir.path(),
        "bad",
        "name = \"bad\"\nduration = \"10\"\n[population]\nusers = 1\nconversations = 1\nmembers_per_conversation = 1\n[traffic]\nsend_rate = \"1/s\"\n",
    );
    let validate = harness(&["validate", path.to_str().unwrap()]);
    assert_eq!(validate.code, 3);
    assert!(
        validate.stderr.contains("bad.toml:2"),
        "names file and line: {}",
        validate.stderr
    );
    assert!(
        validate.stderr.contains("duration"),
        "names the key: {}",
        validate.stderr
    );
    let run = harness(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 3);
    assert!(
        !dir.path()
            .read_dir()
            .unwrap()
            .any(|e| e.unwrap().path().is_dir()),
        "no run directory for a bad scenario"
    );
}

#[test]
fn external_target_checked_against_its_redis() {
    let seed = seed("external_with_redis");
    let server = ExternalServer::start(&[]);
    let out = tempfile::tempdir().unwrap();
    let scenario = write_scenario(out.path(), "external", SMALL_EXTERNAL);
    let runs = out.path().join("runs");
    let run = server.run(&scenario, &server.ws_url, &runs, seed, &[]);
    assert_eq!(run.code, 0);
    let summary = summary(&run_dir(&runs));
    assert_eq!(summary["verdict"], "valid");
    assert_eq!(summary["log_source"], "redis");
    assert_eq!(summary["targets"][0], server.ws_url.as_str());
}

#[test]
fn external_target_without_redis_is_checked_against_the_rebuilt_log() {
    let seed = seed("external_without_redis");
    let server = ExternalServer::start(&[]);
    let out = tempfile::tempdir().unwrap();
    let scenario = write_scenario(out.path(), "external", SMALL_EXTERNAL);
    let runs = out.path().join("runs");
    // Tokens from a command, as for a server whose key the harness must not hold.
    let token_command = format!("{} token --jwt-secret {}", harness_bin(), server.secret);
    let run = harness(&[
        "run",
        scenario.to_str().unwrap(),
        "--target",
        &server.ws_url,
        "--token-command",
        &token_command,
        "--out",
        runs.to_str().unwrap(),
        "--seed",
        &seed.to_string(),
        "--quiet",
    ]);
    assert_eq!(run.code, 0);
    let summary = summary(&run_dir(&runs));
    assert_eq!(summary["verdict"], "valid");
    assert_eq!(summary["log_source"], "rebuilt");
}
