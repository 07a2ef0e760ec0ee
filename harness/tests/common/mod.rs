//! Shared fixture for the harness's end-to-end tests: runs the real
//! `harness` binary (which spawns real reference servers on real Redis).

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};

use serde_json::Value;

pub fn harness_bin() -> &'static str {
    env!("CARGO_BIN_EXE_harness")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A seed for the run, printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::random::<u64>() >> 1);
    println!("{test}: seed {seed} (replay with TEST_SEED={seed})");
    seed
}

pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// How many `harness` runs one test binary lets go at once. Each run is a
/// harness, its spawned servers and a Redis container; the flaw tests start
/// a dozen of them, and on a 2-core machine running them all at once pushes
/// latencies to seconds, which turns a scenario about ordering into one
/// about overload (the checker then judges a different run than the one
/// the scenario describes). Two at a time keep both cores busy.
const CONCURRENT_RUNS: usize = 2;

static RUNNING: Mutex<usize> = Mutex::new(0);
static RUN_FINISHED: Condvar = Condvar::new();

/// A place among the `CONCURRENT_RUNS` running harness processes, given
/// back on drop (also when the test panics).
struct RunSlot;

impl RunSlot {
    fn take() -> RunSlot {
        let mut running = RUNNING.lock().unwrap_or_else(|poison| poison.into_inner());
        while *running >= CONCURRENT_RUNS {
            running = RUN_FINISHED
                .wait(running)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        *running += 1;
        RunSlot
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|poison| poison.into_inner());
        *running -= 1;
        RUN_FINISHED.notify_one();
    }
}

pub fn harness(args: &[&str]) -> Finished {
    let _slot = RunSlot::take();
    let output = Command::new(harness_bin())
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("harness binary runs");
    let finished = Finished {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    println!(
        "$ harness {}\n{}\n{}",
        args.join(" "),
        finished.stdout,
        finished.stderr
    );
    finished
}

/// The single run directory a `run --out DIR` created.
pub fn run_dir(out: &Path) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(out)
        .expect("out dir exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "exactly one run directory in {}: {dirs:?}",
        out.display()
    );
    dirs[0].clone()
}

pub fn summary(run_dir: &Path) -> Value {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// Writes a small scenario file for external-target tests.
/// Events of the run's history, as their JSON export.
pub fn history_events(run_dir: &Path) -> Vec<Value> {
    let history =
        harness::history::read_history(&run_dir.join("history.bin")).expect("history.bin");
    history
        .events
        .iter()
        .map(|event| serde_json::to_value(event).expect("an event as JSON"))
        .collect()
}

/// For each socket (device, conversation) offline when the drain began
/// (its last connect-or-disconnect before then was a disconnect), how long
/// after the drain began it tried to connect again, in µs, sorted.
pub fn drain_returns_us(events: &[Value], drain_start_us: u64) -> Vec<u64> {
    use std::collections::HashMap;
    let mut offline_at_drain: HashMap<(u64, u64), bool> = HashMap::new();
    let mut returns: HashMap<(u64, u64), u64> = HashMap::new();
    for event in events {
        let kind = event["ev"].as_str().unwrap_or("");
        if kind != "connect" && kind != "disconnect" {
            continue;
        }
        let key = (
            event["device"].as_u64().expect("device"),
            event["conversation"].as_u64().expect("conversation"),
        );
        let at_us = event["at_us"].as_u64().expect("at_us");
        if at_us <= drain_start_us {
            offline_at_drain.insert(key, kind == "disconnect");
        } else if kind == "connect" && offline_at_drain.get(&key) == Some(&true) {
            returns.entry(key).or_insert(at_us - drain_start_us);
        }
    }
    let mut returns: Vec<u64> = returns.into_values().collect();
    returns.sort_unstable();
    returns
}

pub fn write_scenario(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).expect("scenario written");
    path
}

/// A reference server started as `harness serve` on its own Redis: an
/// "external" target from the harness's point of view. It verifies tokens
/// with `secret` (give the harness `--jwt-secret`).
pub struct ExternalServer {
    pub redis: redis_provider::RedisHandle,
    pub secret: String,
    pub child: std::process::Child,
    pub ws_url: String,
    _runtime: tokio::runtime::Runtime,
}

const EXTERNAL_SECRET: &str = "external-server-test-secret-0123456789abcdef";

impl ExternalServer {
    /// `harness run SCENARIO --target TARGET` against this server: its
    /// Redis for the log, its secret for the tokens, `--quiet`, seeded, the
    /// run directory under `runs`; `extra` flags go last.
    pub fn run(
        &self,
        scenario: &Path,
        target: &str,
        runs: &Path,
        seed: u64,
        extra: &[&str],
    ) -> Finished {
        let seed = seed.to_string();
        let mut args = vec![
            "run",
            scenario.to_str().expect("a UTF-8 path"),
            "--target",
            target,
            "--redis-url",
            self.redis.url(),
            "--jwt-secret",
            &self.secret,
            "--out",
            runs.to_str().expect("a UTF-8 path"),
            "--seed",
            &seed,
            "--quiet",
        ];
        args.extend_from_slice(extra);
        harness(&args)
    }

    pub fn start(extra_args: &[&str]) -> ExternalServer {
        use std::io::BufRead;
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let redis = runtime
            .block_on(redis_provider::start_redis(
                &redis_provider::ProviderOptions::default(),
            ))
            .expect("a Redis for the external server");
        let mut child = Command::new(harness_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--redis-url",
                redis.url(),
                "--sync-interval",
                "200ms",
            ])
            .args(extra_args)
            .env("SERVER_JWT_SECRET", EXTERNAL_SECRET)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("harness serve starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let ws_url = loop {
            let line = lines
                .next()
                .expect("server prints its address")
                .expect("readable stdout");
            if let Some(url) = line.strip_prefix("LISTENING ") {
                break url.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        ExternalServer {
            redis,
            secret: EXTERNAL_SECRET.to_string(),
            child,
            ws_url,
            _runtime: runtime,
        }
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        // Best effort: the test is over either way.
        let _ = self.child.kill(); // already exited is fine
        let _ = self.child.wait(); // reap
    }
}

pub const SMALL_EXTERNAL: &str = r#"
# A small run against an external target.
name = "external"
duration = "6s"
ramp_up = "1s"
drain_timeout = "20s"

[population]
users = 6
devices_per_user = 2
conversations = 3
members_per_conversation = 3

[traffic]
send_rate = "30/s"

[churn]
online = { dist = "uniform", min = "1s", max = "2s" }
offline = { dist = "fixed", value = "300ms" }
abrupt_share = 0.5
reset_share = 0.5
client_cursor_share = 0.7
"#;

/// Validates `RUN_DIR/junit.xml` against the JUnit schema with xmllint
/// (Debian's libxml2-utils, installed by .ci/run). Never skips: a missing
/// xmllint fails the test.
pub fn assert_junit_valid(run_dir: &Path) -> String {
    let junit = run_dir.join("junit.xml");
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/junit/junit.xsd");
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(&junit)
        .output()
        .expect("xmllint runs (apt-get install libxml2-utils; .ci/run installs it)");
    assert!(
        output.status.success(),
        "{} is not valid JUnit XML: {}",
        junit.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&junit).expect("junit.xml readable");
    // What the schema cannot say: the counts match the cases.
    let cases = text.matches("<testcase ").count();
    let failures = text.matches("<failure ").count();
    let errors = text.matches("<error ").count();
    assert!(
        text.contains(&format!(
            "tests=\"{cases}\" failures=\"{failures}\" errors=\"{errors}\""
        )),
        "testsuites counts match the cases: {text}"
    );
    text
}
