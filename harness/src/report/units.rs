//! Human units for the Markdown, HTML and console reports. summary.json
//! keeps raw numbers (microseconds, bytes); these are only for people.

use std::time::Duration;

/// Three significant digits reads well in tables without hiding the order
/// of magnitude.
fn three_significant(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// A latency in the unit that keeps it short: `850 µs`, `12.3 ms`, `4.56 s`.
pub fn format_us(latency_us: u64) -> String {
    if latency_us < 1_000 {
        format!("{latency_us} µs")
    } else if latency_us < 1_000_000 {
        format!("{} ms", three_significant(latency_us as f64 / 1e3))
    } else {
        format!("{} s", three_significant(latency_us as f64 / 1e6))
    }
}

/// Like [`format_us`], with a dash for "no samples".
pub fn format_opt_us(latency_us: Option<u64>) -> String {
    latency_us.map_or_else(|| "–".to_string(), format_us)
}

pub fn format_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if value < KIB {
        format!("{bytes} B")
    } else if value < KIB * KIB {
        format!("{} KiB", three_significant(value / KIB))
    } else if value < KIB * KIB * KIB {
        format!("{} MiB", three_significant(value / (KIB * KIB)))
    } else {
        format!("{} GiB", three_significant(value / (KIB * KIB * KIB)))
    }
}

pub fn format_seconds(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{} s", three_significant(seconds))
    } else {
        let whole = Duration::from_secs(seconds.round() as u64);
        humantime::format_duration(whole).to_string()
    }
}

/// `99.9` -> `p99.9`, `100` -> `max` (a percentile of 100 means the maximum).
pub fn percentile_label(percentile: f64) -> String {
    if percentile >= 100.0 {
        "max".to_string()
    } else {
        format!("p{percentile}")
    }
}

/// RFC 3339 with milliseconds, UTC (`2026-12-01T14:29:59.265Z`).
pub fn format_unix_ms(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || format!("{unix_ms} ms after the Unix epoch"),
            |at| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_pick_a_readable_unit() {
        assert_eq!(format_us(0), "0 µs");
        assert_eq!(format_us(999), "999 µs");
        assert_eq!(format_us(1_500), "1.50 ms");
        assert_eq!(format_us(12_345), "12.3 ms");
        assert_eq!(format_us(250_000), "250 ms");
        assert_eq!(format_us(4_560_000), "4.56 s");
        assert_eq!(format_opt_us(None), "–");
    }

    #[test]
    fn bytes_and_percentiles() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.00 MiB");
        assert_eq!(percentile_label(99.0), "p99");
        assert_eq!(percentile_label(99.9), "p99.9");
        assert_eq!(percentile_label(100.0), "max");
        assert_eq!(format_unix_ms(1_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(format_seconds(90.0), "1m 30s");
    }
}
