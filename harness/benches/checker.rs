//! Checker and latency-aggregator throughput on large generated histories,
//! reported in events per second. Generation happens once, outside the
//! timed loop, so only judging and aggregating are measured.
//!
//! Two opt-in modes measure the checker's memory on a history file instead
//! (run the bench binary under `/usr/bin/time -v`):
//! - `CHECKER_BENCH_WRITE=DIR`: writes the largest configured history to
//!   `DIR/history.bin` and its log to `DIR/log.json`, then exits;
//! - `CHECKER_BENCH_CHECK_FILE=DIR`: checks `DIR/history.bin` streaming
//!   (`check_file`) and prints the verdict, rate and event count; with
//!   `CHECKER_BENCH_LOAD=1` it loads the whole history first (`read_history`
//!   then `check`), the way the checker read it before.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use harness::checker::testgen::{generate, GenConfig};
use harness::checker::{check, check_file, CheckOptions, Verdict};
use harness::history::{read_history, write_history, MessageLog};
use harness::report::analyze;
use harness::scenario::Expectations;

/// (label, measurement time, generator config): sized to give roughly
/// 100k and 1M events, and 10M with `CHECKER_BENCH_10M=1` (that one needs
/// a few GB and minutes, so it is opt-in).
fn sizes() -> Vec<(&'static str, Duration, GenConfig)> {
    let mut sizes = vec![
        (
            "100k",
            Duration::from_secs(5),
            GenConfig {
                devices: 50,
                conversations: 20,
                steps: 5_000,
                stored_cursor_percent: 50,
                seed: 11,
                ..GenConfig::default()
            },
        ),
        (
            "1M",
            Duration::from_secs(10),
            GenConfig {
                devices: 100,
                conversations: 40,
                steps: 25_000,
                stored_cursor_percent: 50,
                seed: 13,
                ..GenConfig::default()
            },
        ),
    ];
    if std::env::var_os("CHECKER_BENCH_10M").is_some_and(|value| value == "1") {
        sizes.push((
            "10M",
            Duration::from_secs(60),
            GenConfig {
                devices: 100,
                conversations: 40,
                steps: 250_000,
                stored_cursor_percent: 50,
                seed: 17,
                ..GenConfig::default()
            },
        ));
    }
    sizes
}

fn strict() -> Expectations {
    Expectations {
        no_loss: true,
        no_duplicates: true,
        order: true,
        allow_stored_cursor_redelivery: false,
        allow_lost_ack: false,
    }
}

fn bench_checker(c: &mut Criterion) {
    let expect = strict();
    for (label, measurement_time, config) in sizes() {
        let generated = generate(&config);
        let events = generated.history.events.len() as u64;
        eprintln!("history {label}: {events} events");
        // A bench of a checker that rejects its input would time the
        // wrong path; the generated history is valid by construction.
        let options = CheckOptions::new(&generated.log, &expect);
        assert_eq!(check(&generated.history, &options).verdict, Verdict::Valid);

        let mut group = c.benchmark_group("checker");
        group.sample_size(10);
        // Flat: equal iterations per sample, so 10 samples of a ~300 ms
        // check fit the measurement time (linear sampling needs 55 runs).
        group.sampling_mode(SamplingMode::Flat);
        group.measurement_time(measurement_time);
        group.throughput(Throughput::Elements(events));
        group.bench_with_input(BenchmarkId::new("check", label), &generated, |b, g| {
            b.iter(|| check(black_box(&g.history), black_box(&options)))
        });
        group.bench_with_input(BenchmarkId::new("analyze", label), &generated, |b, g| {
            b.iter(|| analyze(black_box(&g.history)))
        });
        group.finish();
    }
}

/// The file modes (see the top); `true` if one ran.
fn file_modes() -> bool {
    let expect = strict();
    if let Some(dir) = std::env::var_os("CHECKER_BENCH_WRITE") {
        let dir = std::path::PathBuf::from(dir);
        let Some((label, _, config)) = sizes().pop() else {
            return true;
        };
        let generated = generate(&config);
        std::fs::create_dir_all(&dir).expect("create the output directory");
        write_history(&dir.join("history.bin"), &generated.history).expect("write history.bin");
        let log = serde_json::to_vec(&generated.log).expect("serialize the log");
        std::fs::write(dir.join("log.json"), log).expect("write log.json");
        eprintln!(
            "wrote {label}: {} events to {}",
            generated.history.events.len(),
            dir.display()
        );
        return true;
    }
    let Some(dir) = std::env::var_os("CHECKER_BENCH_CHECK_FILE") else {
        return false;
    };
    let dir = std::path::PathBuf::from(dir);
    let path = dir.join("history.bin");
    let log: MessageLog =
        serde_json::from_slice(&std::fs::read(dir.join("log.json")).expect("read log.json"))
            .expect("parse log.json");
    let options = CheckOptions::new(&log, &expect);
    let started = std::time::Instant::now();
    let (outcome, how) = if std::env::var_os("CHECKER_BENCH_LOAD").is_some_and(|v| v == "1") {
        let history = read_history(&path).expect("read history.bin");
        (check(&history, &options), "loaded")
    } else {
        (
            check_file(&path, &options).expect("check history.bin"),
            "streamed",
        )
    };
    let elapsed = started.elapsed();
    let events = outcome.stats.deliveries_checked;
    eprintln!(
        "{how}: verdict {:?}, {events} deliveries checked in {:.2} s",
        outcome.verdict,
        elapsed.as_secs_f64()
    );
    true
}

fn benches() {
    if file_modes() {
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench_checker(&mut criterion);
    criterion.final_summary();
}

fn main() {
    benches();
}
