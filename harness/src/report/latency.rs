//! One latency metric: an HDR histogram plus the exact sum, min and max.
//!
//! The histogram gives percentiles at 3 significant digits; the exact
//! extremes keep `max` honest (a histogram reports the top of the max's
//! bucket, which can exceed the largest value ever seen) and let the mean
//! be exact instead of bucket-midpoint based.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Precision of every latency histogram: values within 0.1%.
pub const LATENCY_SIGFIG: u8 = 3;
/// Values above one hour are recorded as one hour, so a corrupt timestamp
/// cannot make a histogram grow without bound; the exact max still shows
/// the real value.
pub const MAX_RECORDED_US: u64 = 3_600_000_000;

/// A histogram that grows on demand up to [`MAX_RECORDED_US`].
pub(crate) fn new_histogram<T: hdrhistogram::Counter>(sigfig: u8) -> Histogram<T> {
    Histogram::new(sigfig).expect("hdrhistogram supports 0..=5 significant digits")
}

/// Records a value into an auto-resizing histogram, clamped to one hour.
pub(crate) fn record_clamped<T: hdrhistogram::Counter>(
    histogram: &mut Histogram<T>,
    value_us: u64,
) {
    let value_us = value_us.min(MAX_RECORDED_US);
    if histogram.record(value_us).is_err() {
        // Only a resize that overflows usize fails here, which a one-hour
        // bound rules out; saturating keeps the count right regardless.
        histogram.saturating_record(value_us);
    }
}

#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
    sum_us: u128,
    min_us: u64,
    max_us: u64,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder {
            histogram: new_histogram(LATENCY_SIGFIG),
            sum_us: 0,
            min_us: u64::MAX,
            max_us: 0,
        }
    }
}

impl LatencyRecorder {
    pub fn record(&mut self, value_us: u64) {
        record_clamped(&mut self.histogram, value_us);
        self.sum_us += u128::from(value_us);
        self.min_us = self.min_us.min(value_us);
        self.max_us = self.max_us.max(value_us);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    pub fn max_us(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max_us)
    }

    pub fn min_us(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.min_us)
    }

    /// Exact arithmetic mean.
    pub fn mean_us(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_us as f64 / count as f64)
    }

    /// The value at `percentile` (0..=100); 100 is the exact max. `None`
    /// without samples. Never above the exact max: the histogram reports a
    /// bucket's upper edge, which no sample may have reached.
    pub fn value_at_percentile(&self, percentile: f64) -> Option<u64> {
        let max_us = self.max_us()?;
        if percentile >= 100.0 {
            return Some(max_us);
        }
        Some(self.histogram.value_at_percentile(percentile).min(max_us))
    }

    pub fn stats(&self) -> LatencyStats {
        LatencyStats {
            count: self.count(),
            min_us: self.min_us(),
            p50_us: self.value_at_percentile(50.0),
            p90_us: self.value_at_percentile(90.0),
            p99_us: self.value_at_percentile(99.0),
            p999_us: self.value_at_percentile(99.9),
            max_us: self.max_us(),
            mean_us: self.mean_us(),
        }
    }
}

/// Summary numbers of one latency metric, in microseconds; `None` (JSON
/// `null`) when the metric has no samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: u64,
    pub min_us: Option<u64>,
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub p999_us: Option<u64>,
    pub max_us: Option<u64>,
    pub mean_us: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_for_small_values() {
        let mut recorder = LatencyRecorder::default();
        for value in 1..=1000 {
            recorder.record(value);
        }
        let stats = recorder.stats();
        assert_eq!(stats.count, 1000);
        assert_eq!(stats.min_us, Some(1));
        assert_eq!(stats.p50_us, Some(500));
        assert_eq!(stats.p90_us, Some(900));
        assert_eq!(stats.p99_us, Some(990));
        // 0.999 * 1000 is a hair above 999 in floating point, so the
        // histogram's count target rounds up to the 1000th value.
        assert!(matches!(stats.p999_us, Some(999 | 1000)), "{stats:?}");
        assert_eq!(stats.max_us, Some(1000));
        assert_eq!(stats.mean_us, Some(500.5));
    }

    #[test]
    fn percentiles_never_exceed_the_exact_max() {
        let mut recorder = LatencyRecorder::default();
        recorder.record(123_456);
        // The histogram bucket of 123456 reaches above it at 3 digits.
        assert!(recorder.histogram().value_at_percentile(99.0) > 123_456);
        assert_eq!(recorder.value_at_percentile(99.0), Some(123_456));
        assert_eq!(recorder.value_at_percentile(100.0), Some(123_456));
    }

    #[test]
    fn huge_values_are_clamped_in_the_histogram_only() {
        let mut recorder = LatencyRecorder::default();
        recorder.record(u64::MAX / 4);
        assert_eq!(recorder.max_us(), Some(u64::MAX / 4));
        assert!(recorder.histogram().max() <= MAX_RECORDED_US + MAX_RECORDED_US / 1000);
    }

    #[test]
    fn empty_has_no_numbers() {
        let stats = LatencyRecorder::default().stats();
        assert_eq!(stats.count, 0);
        assert_eq!(stats.p99_us, None);
        assert_eq!(stats.mean_us, None);
    }
}
