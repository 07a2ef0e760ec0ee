//! Exit codes of the command line itself, as a CI job sees them: usage
//! errors are input errors (3), never "threshold missed" (2); help and
//! version are successes (0). Runs that end 0, 1 and 2 are checked where
//! the runs happen: `end_to_end.rs` (0, 2) and `flaws.rs` (1).

mod common;

use common::*;

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["run", "--help"],
        &["help"],
    ] {
        let out = harness(args);
        assert_eq!(out.code, 0, "harness {args:?}");
        assert!(!out.stdout.is_empty(), "harness {args:?} prints to stdout");
    }
}

#[test]
fn usage_errors_exit_3_with_clap_message() {
    let cases: [(&[&str], &str); 7] = [
        (&["--bogus"], "--bogus"),
        (&[], "Usage"),
        (&["run", "scenarios/smoke.toml", "--seed", "abc"], "abc"),
        (&["frobnicate"], "frobnicate"),
        (&["validate"], "<SCENARIO>"),
        (
            &[
                "run",
                "scenarios/smoke.toml",
                "--target",
                "http://127.0.0.1:1/ws",
            ],
            "ws://host:port/path",
        ),
        (
            &["run", "scenarios/smoke.toml", "--metrics-listen", "nowhere"],
            "nowhere",
        ),
    ];
    for (args, named) in cases {
        let out = harness(args);
        assert_eq!(out.code, 3, "harness {args:?} is a usage error");
        assert!(
            out.stderr.contains(named),
            "harness {args:?}: stderr names {named:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn missing_scenario_file_exits_3() {
    let out = harness(&["validate", "no/such/scenario.toml"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("no/such/scenario.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn busy_metrics_port_exits_3_before_any_load() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out_dir = tempfile::tempdir().unwrap();
    let out = harness(&[
        "run",
        "scenarios/smoke.toml",
        "--metrics-listen",
        &addr,
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains(&addr),
        "names the address: {}",
        out.stderr
    );
    assert!(
        std::fs::read_dir(out_dir.path()).unwrap().next().is_none(),
        "no run directory, no load"
    );
}

/// Ctrl-C or SIGTERM in the middle of a run: the harness exits 130 and the
/// servers (and a local redis-server) it spawned go with it, instead of
/// being left running as orphans.
#[test]
fn sigterm_mid_run_exits_130_and_stops_what_it_spawned() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let out_dir = tempfile::tempdir().unwrap();
    let mut run = std::process::Command::new(harness_bin())
        .args(["run", "scenarios/smoke.toml", "--seed", "130", "--out"])
        .arg(out_dir.path())
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("harness starts");
    let stdout = run.stdout.take().expect("piped stdout");
    // The `targets:` line comes once the servers listen.
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if line.starts_with("targets:") {
                let _unused = seen_tx.send(());
            }
        }
    });
    seen_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the run started its servers within 60 s");
    let spawned = children_of(run.id());
    assert!(
        !spawned.is_empty(),
        "the run has child processes (its servers)"
    );

    let pid = rustix::process::Pid::from_raw(run.id() as i32).expect("a live pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM sent");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.try_wait().expect("waitable") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the harness exits within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().expect("stdout reader ends with the process");
    assert_eq!(status.code(), Some(130), "SIGTERM exits 130");

    let deadline = Instant::now() + Duration::from_secs(10);
    while spawned.iter().any(|pid| is_running(*pid)) {
        assert!(
            Instant::now() < deadline,
            "children {spawned:?} still running 10 s after the harness exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids whose parent is `parent`, from `/proc/*/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc")
        .map_while(Result::ok)
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // gone meanwhile
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after ')'.
        let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let ppid = after_comm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// Alive and not a zombie.
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start())
                .unwrap_or("");
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}
