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
