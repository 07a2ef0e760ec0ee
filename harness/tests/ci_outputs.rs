//! What a CI job gets from a run: progress lines in a pipe, exit code 2
//! for a missed threshold, a schema-valid junit.xml naming it, interval
//! histogram logs, sends_skipped in the summary, and a Prometheus
//! endpoint that answers during the run. Also: `ws://localhost` targets
//! work behind the fault proxies.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

/// Smoke-sized, 8 s of traffic, with a threshold no server can meet.
const STRICT: &str = r#"
name = "strict"
duration = "8s"
ramp_up = "1s"
drain_timeout = "30s"

[servers]
spawn = 1

[population]
users = 6
devices_per_user = 2
conversations = 3
members_per_conversation = 3

[traffic]
send_rate = "30/s"

[churn]
online = { dist = "uniform", min = "1s", max = "3s" }
offline = { dist = "fixed", value = "500ms" }
client_cursor_share = 0.8

[thresholds]
latency = [ { metric = "live_delivery", percentile = "p99", max = "1ms" } ]
"#;

/// `GET /metrics` with a plain socket: the body, or None on any failure.
fn scrape(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn interval_count(hlog: &Path) -> usize {
    let text = std::fs::read(hlog).expect("hlog readable");
    IntervalLogIterator::new(&text)
        .map(|entry| entry.expect("hlog parses as an interval log"))
        .filter(|entry| matches!(entry, LogEntry::Interval(_)))
        .count()
}

#[test]
fn piped_run_prints_progress_serves_metrics_and_writes_ci_files() {
    let seed = seed("ci_outputs");
    let out = tempfile::tempdir().unwrap();
    let scenario = write_scenario(out.path(), "strict", STRICT);
    let runs = out.path().join("runs");
    let mut child = Command::new(harness_bin())
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            runs.to_str().unwrap(),
        ])
        .args([
            "--seed",
            &seed.to_string(),
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .spawn()
        .expect("harness runs");
    let (lines_tx, lines_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            // The receiver may be gone after the scrape; lines still print.
            let _ = lines_tx.send(line);
        }
    });
    // The endpoint's address comes first; the devices a few seconds later.
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("harness prints its metrics address");
        if let Some(rest) = line.strip_prefix("metrics: http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    let scraped = loop {
        assert!(
            Instant::now() < deadline,
            "no metrics with devices within 60 s"
        );
        if let Some(body) = scrape(&addr) {
            if body.contains("\nharness_devices_started 1\n")
                && !body.contains("harness_ack_latency_seconds_count 0")
            {
                break body;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for metric in [
        "harness_sockets_online ",
        "harness_sends_total ",
        "harness_deliveries_total ",
        "harness_sends_skipped_total ",
        "harness_anomalies_seen_live_total ",
        "harness_faults_active ",
        "harness_ack_latency_seconds_bucket{le=\"+Inf\"} ",
        "harness_connect_to_hello_latency_seconds_count ",
    ] {
        assert!(scraped.contains(metric), "scrape has {metric}: {scraped}");
    }
    let status = child.wait().expect("harness ends");
    reader.join().unwrap();
    let stdout: Vec<String> = lines_rx.try_iter().collect();
    assert_eq!(status.code(), Some(2), "a missed threshold exits 2");

    // Progress came as plain lines while running, before the verdict.
    let first_progress = stdout.iter().position(|l| l.starts_with("progress "));
    let verdict = stdout.iter().position(|l| l.contains("threshold"));
    assert!(
        matches!((first_progress, verdict), (Some(p), Some(v)) if p < v),
        "progress lines before the verdict: {stdout:#?}"
    );
    let line = &stdout[first_progress.unwrap()];
    for part in [
        "online ",
        "sends ",
        "deliveries ",
        "ack p99 so far",
        "anomalies seen live",
        "faults active",
    ] {
        assert!(line.contains(part), "progress line shows {part:?}: {line}");
    }

    let dir = run_dir(&runs);
    let junit = assert_junit_valid(&dir);
    assert!(junit.contains("<failure type=\"threshold\""), "{junit}");
    assert!(junit.contains("name=\"invariant lost\""), "{junit}");
    for metric in [
        "live_delivery",
        "ack",
        "connect_to_hello",
        "recovery",
        "replay_staleness",
    ] {
        let path = dir.join(format!("{metric}.hlog"));
        assert!(path.exists(), "{metric}.hlog next to {metric}.hgrm");
    }
    let live_intervals = interval_count(&dir.join("live_delivery.hlog"));
    assert!(
        live_intervals >= 6,
        "about one interval per second of traffic: {live_intervals}"
    );
    let summary = summary(&dir);
    let skipped = &summary["sends_skipped"];
    assert!(skipped["scheduled"].as_u64().unwrap() > 100, "{skipped}");
    assert_eq!(
        skipped["skipped"].as_u64().unwrap(),
        skipped["no_socket_online"].as_u64().unwrap() + skipped["queue_full"].as_u64().unwrap()
    );
}

/// A clients-link fault puts a proxy in front of the target; the target
/// is named by host name, as users write it.
#[test]
fn localhost_target_works_behind_the_fault_proxy() {
    let seed = seed("localhost_proxy");
    let server = ExternalServer::start(&[]);
    let port = server
        .ws_url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let target = format!("ws://localhost:{port}/ws");
    let out = tempfile::tempdir().unwrap();
    let body = format!(
        "{SMALL_EXTERNAL}\n[[faults]]\nkind = \"latency\"\nlink = \"clients\"\nat = \"2s\"\nduration = \"2s\"\nlatency = \"20ms\"\n"
    );
    let scenario = write_scenario(out.path(), "localhost", &body);
    let runs = out.path().join("runs");
    let run = server.run(&scenario, &target, &runs, seed, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = summary(&run_dir(&runs));
    assert_eq!(summary["verdict"], "valid");
    assert_eq!(summary["faults"].as_array().unwrap().len(), 1);
    assert!(summary["totals"]["deliveries_live"].as_u64().unwrap() > 0);
}
