//! `.hlog` files: HdrHistogram interval logs, one histogram per second of
//! the run per latency metric, written with the hdrhistogram crate's
//! interval-log writer (V2 compressed histograms, base64), the format
//! Java's `HistogramLogWriter` produces and HistogramLogAnalyzer /
//! `HistogramLogProcessor` read. Values are microseconds.
//!
//! Samples arrive in history order, so each metric keeps only a few
//! seconds open and serializes the rest as it goes: memory stays flat for
//! hour-long runs.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use super::latency::{new_histogram, record_clamped, LATENCY_SIGFIG};

const US_PER_SECOND: u64 = 1_000_000;
/// Seconds kept open behind the newest sample before they are written.
const OPEN_SECONDS: u64 = 2;
/// The column legend Java's writer prints; readers skip it.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// One metric's interval log, built as samples arrive.
#[derive(Debug, Clone, Default)]
pub struct IntervalLog {
    open: BTreeMap<u64, Histogram<u64>>,
    /// Interval lines written so far.
    body: Vec<u8>,
    intervals: u64,
    /// Samples older than every open second (a history out of time
    /// order): counted into the oldest open second.
    late_samples: u64,
    error: Option<String>,
}

impl IntervalLog {
    pub fn record(&mut self, at_us: u64, value_us: u64) {
        let mut second = at_us / US_PER_SECOND;
        if let Some(oldest) = self.open.keys().next().copied() {
            if second < oldest && self.intervals > 0 {
                self.late_samples += 1;
                second = oldest;
            }
        }
        record_clamped(
            self.open
                .entry(second)
                .or_insert_with(|| new_histogram(LATENCY_SIGFIG)),
            value_us,
        );
        let newest = self.open.keys().next_back().copied().unwrap_or(second);
        while let Some(oldest) = self.open.keys().next().copied() {
            if oldest + OPEN_SECONDS >= newest {
                break;
            }
            self.flush_oldest();
        }
    }

    fn flush_oldest(&mut self) {
        let Some((second, histogram)) = self.open.pop_first() else {
            return;
        };
        let mut serializer = V2DeflateSerializer::new();
        let written = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.body, &mut serializer)
            .map_err(|err| err.to_string())
            .and_then(|mut writer| {
                writer
                    .write_histogram(
                        &histogram,
                        Duration::from_secs(second),
                        Duration::from_secs(1),
                        None,
                    )
                    .map_err(|err| format!("{err:?}"))
            });
        match written {
            Ok(()) => self.intervals += 1,
            Err(err) => {
                self.error.get_or_insert(err);
            }
        }
    }

    /// The complete log: header (start time of the run, units), legend,
    /// then one line per second that had samples, in time order.
    pub fn finish(mut self, metric: &str, started_at_unix_ms: u64) -> String {
        while !self.open.is_empty() {
            self.flush_oldest();
        }
        let start = UNIX_EPOCH + Duration::from_millis(started_at_unix_ms);
        let mut header = Vec::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(&format!(
                "harness interval log: {metric} latency in microseconds, 1 s intervals (timestamps are seconds since BaseTime, the run's time origin)"
            ))
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(start)
            .with_base_time(start);
        if self.late_samples > 0 {
            builder.add_comment(&format!(
                "{} samples arrived out of time order and were counted in a later interval",
                self.late_samples
            ));
        }
        if let Some(error) = &self.error {
            builder.add_comment(&format!("some intervals could not be written: {error}"));
        }
        let mut serializer = V2DeflateSerializer::new();
        if let Err(err) = builder.begin_log_with(&mut header, &mut serializer) {
            // Writing into a Vec cannot fail; keep the body regardless.
            tracing::warn!(%err, "interval log header not written");
        }
        let mut text = String::from_utf8_lossy(&header).into_owned();
        text.push_str(LEGEND);
        text.push_str(&String::from_utf8_lossy(&self.body));
        text
    }
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    use super::*;

    fn parse(text: &str) -> Vec<(f64, Histogram<u64>)> {
        IntervalLogIterator::new(text.as_bytes())
            .filter_map(|entry| match entry.expect("parses") {
                LogEntry::Interval(interval) => {
                    let bytes = base64_decode(interval.encoded_histogram());
                    let histogram: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut bytes.as_slice())
                        .expect("a V2 histogram");
                    Some((interval.start_timestamp().as_secs_f64(), histogram))
                }
                _ => None,
            })
            .collect()
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        // Standard alphabet with padding, as the writer uses.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for byte in text.bytes().filter(|b| *b != b'=') {
            let value = ALPHABET.iter().position(|a| *a == byte).expect("base64") as u32;
            bits = (bits << 6) | value;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
                bits &= (1 << count) - 1;
            }
        }
        out
    }

    #[test]
    fn one_interval_per_second_with_that_seconds_samples() {
        let mut log = IntervalLog::default();
        for second in 0..10u64 {
            for value in 0..=second {
                log.record(second * US_PER_SECOND + value, 1000 * (value + 1));
            }
        }
        let text = log.finish("ack", 1_700_000_000_000);
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        assert!(text.contains("#[BaseTime: 1700000000.000"), "{text}");
        assert!(
            text.contains("\"StartTimestamp\",\"Interval_Length\""),
            "{text}"
        );
        let intervals = parse(&text);
        assert_eq!(intervals.len(), 10);
        for (second, (start, histogram)) in intervals.iter().enumerate() {
            assert_eq!(*start, second as f64);
            assert_eq!(histogram.len(), second as u64 + 1);
            assert!(histogram.equivalent(histogram.max(), 1000 * (second as u64 + 1)));
        }
    }

    #[test]
    fn late_samples_are_kept_and_noted() {
        let mut log = IntervalLog::default();
        log.record(10 * US_PER_SECOND, 5);
        log.record(20 * US_PER_SECOND, 5);
        log.record(US_PER_SECOND, 7);
        let text = log.finish("ack", 0);
        assert!(
            text.contains("1 samples arrived out of time order"),
            "{text}"
        );
        let total: u64 = parse(&text).iter().map(|(_, h)| h.len()).sum();
        assert_eq!(total, 3);
    }
}
