//! Checker and latency-aggregator throughput on large generated histories,
//! reported in events per second. Generation happens once, outside the
//! timed loop, so only judging and aggregating are measured.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use harness::checker::testgen::{generate, GenConfig, Generated};
use harness::checker::{check, CheckInput, Verdict};
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

fn input<'a>(generated: &'a Generated, expect: &'a Expectations) -> CheckInput<'a> {
    CheckInput {
        history: &generated.history,
        log: &generated.log,
        expect,
        drain_complete: true,
        unknown_reasons: Vec::new(),
        retention: None,
        intruders: &[],
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
        assert_eq!(check(&input(&generated, &expect)).verdict, Verdict::Valid);

        let mut group = c.benchmark_group("checker");
        group.sample_size(10);
        // Flat: equal iterations per sample, so 10 samples of a ~300 ms
        // check fit the measurement time (linear sampling needs 55 runs).
        group.sampling_mode(SamplingMode::Flat);
        group.measurement_time(measurement_time);
        group.throughput(Throughput::Elements(events));
        group.bench_with_input(BenchmarkId::new("check", label), &generated, |b, g| {
            b.iter(|| check(black_box(&input(g, &expect))))
        });
        group.bench_with_input(BenchmarkId::new("analyze", label), &generated, |b, g| {
            b.iter(|| analyze(black_box(&g.history)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_checker);
criterion_main!(benches);
