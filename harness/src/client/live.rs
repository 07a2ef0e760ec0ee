//! What the run looks like while it runs: latencies the sockets can
//! measure on their own, and anomalies visible inside one socket. Read by
//! the progress line and the Prometheus endpoint; the recorded history
//! and the checker remain the authority once the run is over.
//!
//! Only latencies a socket measures without asking anyone else are here:
//! `ack` (the sender holds the send's due time) and `connect_to_hello`.
//! Live delivery latency needs the sender's due time at the receiver,
//! which only the history joins (after the run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Two significant digits: the live view needs the shape, not 0.1%.
const LIVE_SIGFIG: u8 = 2;
/// One hour: a corrupt clock cannot grow a live histogram without bound.
const MAX_LIVE_US: u64 = 3_600_000_000;

/// One latency, recorded from many socket tasks (a short uncontended
/// lock per sample: far below a frame's parse cost).
#[derive(Debug)]
pub struct LiveLatency {
    inner: Mutex<Recorded>,
}

#[derive(Debug)]
struct Recorded {
    histogram: Histogram<u64>,
    sum_us: u128,
}

/// A consistent copy of a [`LiveLatency`] at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    pub count: u64,
    pub sum_us: u128,
    /// `None` before the first sample.
    pub p99_us: Option<u64>,
    /// `(upper bound µs, samples <= bound)` for each requested bound.
    pub cumulative: Vec<(u64, u64)>,
}

impl Default for LiveLatency {
    fn default() -> Self {
        LiveLatency {
            inner: Mutex::new(Recorded {
                histogram: Histogram::new(LIVE_SIGFIG)
                    .expect("hdrhistogram supports 0..=5 significant digits"),
                sum_us: 0,
            }),
        }
    }
}

impl LiveLatency {
    pub fn record(&self, value_us: u64) {
        let value_us = value_us.min(MAX_LIVE_US);
        // A poisoned lock still holds valid counts.
        let mut recorded = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.histogram.record(value_us).is_err() {
            // Only a resize beyond usize fails, which the bound rules out.
            recorded.histogram.saturating_record(value_us);
        }
        recorded.sum_us += u128::from(value_us);
    }

    /// Counts at each bound in `bounds_us` (ascending), for a Prometheus
    /// histogram; the p99 for the progress line.
    pub fn snapshot(&self, bounds_us: &[u64]) -> LatencySnapshot {
        let recorded = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let histogram = &recorded.histogram;
        let count = histogram.len();
        LatencySnapshot {
            count,
            sum_us: recorded.sum_us,
            p99_us: (count > 0).then(|| histogram.value_at_quantile(0.99)),
            cumulative: bounds_us
                .iter()
                .map(|bound| (*bound, histogram.count_between(0, *bound)))
                .collect(),
        }
    }
}

/// Live figures shared by the sockets, the fault schedule and the runner.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Send due time to its first ack, measured by the sending socket.
    pub ack: LiveLatency,
    /// Connection attempt to the server's `hello`.
    pub connect_to_hello: LiveLatency,
    /// Messages a socket received with an id not above one it already
    /// had on that same connection: a duplicate or a reorder, which no
    /// expectation allows. The checker names the exact kind afterwards.
    pub repeats_within_socket: AtomicU64,
    /// Faults in effect right now.
    pub faults_active: AtomicU64,
}

impl LiveStats {
    pub fn anomalies_seen(&self) -> u64 {
        self.repeats_within_socket.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_counts_cumulatively_and_gives_p99() {
        let live = LiveLatency::default();
        assert_eq!(live.snapshot(&[10]).p99_us, None);
        for value in 1..=100 {
            live.record(value * 1000);
        }
        let snapshot = live.snapshot(&[50_000, 100_000, 1_000_000]);
        assert_eq!(snapshot.count, 100);
        assert_eq!(snapshot.sum_us, 5_050_000);
        let p99 = snapshot.p99_us.unwrap();
        assert!((98_000..=100_000).contains(&p99), "{p99}");
        let counts: Vec<u64> = snapshot.cumulative.iter().map(|(_, c)| *c).collect();
        assert!((49..=51).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[1..], [100, 100]);
    }
}
