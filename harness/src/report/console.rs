//! The short verdict table `harness run` prints when it is done.

use std::fmt::Write as _;

use super::markdown::verdict_headline;
use super::summary::Summary;
use super::units::{format_opt_us, format_us};
use crate::scenario::LatencyMetric;

/// Metrics a person looks at first; the rest are in the reports.
const HEADLINE_METRICS: [LatencyMetric; 3] = [
    LatencyMetric::LiveDelivery,
    LatencyMetric::Ack,
    LatencyMetric::Recovery,
];

/// Plain text, no colours (it may be piped into a log).
pub fn render_console_table(summary: &Summary) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the write results are ignored for that reason.
    let _ = writeln!(out, "{}", verdict_headline(summary));
    let _ = writeln!(
        out,
        "  scenario {}  seed {}  exit code {}",
        summary.scenario, summary.seed, summary.exit_code
    );
    if summary.anomalies.is_empty() {
        let _ = writeln!(out, "  anomalies    none");
    }
    for report in &summary.anomalies {
        let _ = writeln!(
            out,
            "  {:<16} {:>10}  {}",
            report.kind.name(),
            report.count,
            if report.violation {
                "VIOLATION"
            } else {
                "allowed"
            }
        );
    }
    for reason in &summary.unknown_reasons {
        let _ = writeln!(out, "  unknown: {reason}");
    }
    for result in &summary.thresholds {
        let _ = writeln!(
            out,
            "  {:<40} {:>12}  {}",
            result.description,
            result.observed,
            if result.passed { "met" } else { "MISSED" }
        );
    }
    let _ = writeln!(
        out,
        "  {:<16} {:>10} {:>10} {:>10} {:>10}",
        "latency", "count", "p50", "p99", "max"
    );
    for metric in HEADLINE_METRICS {
        let Some(stats) = summary.latency.get(&metric) else {
            continue;
        };
        let _ = writeln!(
            out,
            "  {:<16} {:>10} {:>10} {:>10} {:>10}",
            metric.name(),
            stats.count,
            format_opt_us(stats.p50_us),
            format_opt_us(stats.p99_us),
            format_opt_us(stats.max_us)
        );
    }
    let totals = &summary.totals;
    let _ = writeln!(
        out,
        "  {} sends, {} deliveries ({} replayed), {} reconnects, peak {} sockets",
        totals.sends,
        totals.deliveries(),
        totals.deliveries_replayed,
        totals.reconnects,
        totals.peak_sockets_online
    );
    let _ = writeln!(out, "  sends skipped: {}", summary.sends_skipped.describe());
    let _ = writeln!(out, "  cost: {}", cost_line(summary));
    for kind in summary
        .intruders
        .iter()
        .flat_map(|intruders| &intruders.kinds)
    {
        let _ = writeln!(
            out,
            "  intruders {}: {} of them, {} attempts, refused {}, admitted {} ({} frames, {} messages), victim cursors {}",
            kind.kind.name(),
            kind.intruders,
            kind.attempts,
            kind.refused_text(),
            kind.admitted,
            kind.frames,
            kind.messages,
            kind.cursors_text()
        );
    }
    for fault in &summary.faults {
        let catch_up = match (fault.catch_up_p50_ms, fault.catch_up_p99_ms) {
            (Some(p50), Some(p99)) => format!(
                ", catch-up p50 {} p99 {}",
                format_us((p50 * 1e3).round() as u64),
                format_us((p99 * 1e3).round() as u64)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  fault {} ({}) {:.1}-{:.1} s: {} reconnects caused{catch_up}, recovery {}",
            fault.kind,
            fault.target,
            fault.start_s,
            fault.end_s,
            fault.reconnects_caused,
            fault.recovery_s.map_or_else(
                || "NOT RECOVERED".to_string(),
                |seconds| format_us((seconds * 1e6).round() as u64)
            )
        );
    }
    out
}

/// CPU per delivery and memory per socket of the harness and, when it
/// spawned them, the servers: the figures every load result needs beside it.
fn cost_line(summary: &Summary) -> String {
    let per_delivery = |us: Option<f64>| us.map_or("–".to_string(), |us| format!("{us:.1} µs"));
    let per_socket = |bytes: Option<u64>| {
        bytes.map_or("–".to_string(), |b| format!("{:.1} KB", b as f64 / 1e3))
    };
    let harness = &summary.harness;
    let mut line = format!(
        "harness {} CPU/delivery, {} RSS/socket at traffic end",
        per_delivery(harness.cpu_us_per_delivery),
        per_socket(harness.rss_bytes_per_socket_at_traffic_end)
    );
    if let Some(servers) = &summary.servers {
        line.push_str(&format!(
            "; servers {} CPU/delivery, {} RSS/socket",
            per_delivery(servers.cpu_us_per_delivery),
            per_socket(servers.rss_bytes_per_socket_at_traffic_end)
        ));
    }
    if let Some(redis) = &summary.redis_cost {
        line.push_str(&format!(
            "; Redis {} CPU/delivery, {} RSS/socket",
            per_delivery(redis.cpu_us_per_delivery),
            per_socket(redis.rss_bytes_per_socket_at_traffic_end)
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;
    use crate::report::summary::tests::{fault_summary, sample_summary};

    #[test]
    fn table_shows_verdict_anomalies_thresholds_and_latency() {
        let text = render_console_table(&sample_summary(Verdict::Invalid, false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "INVALID: an invariant was violated");
        assert!(lines[1].contains("exit code 1"), "{text}");
        assert!(
            text.contains("  lost                      3  VIOLATION"),
            "{text}"
        );
        assert!(text.contains("MISSED"), "{text}");
        assert!(
            text.contains("  live_delivery             2     900 µs    1.80 ms    1.80 ms"),
            "{text}"
        );
        assert!(text.contains("3 sends, 4 deliveries (1 replayed), 1 reconnects, peak 2 sockets"));
        assert!(
            text.contains("  sends skipped: 12 of 600 scheduled (2.0%): 10 no socket online, 2 socket queue full"),
            "{text}"
        );
    }

    #[test]
    fn valid_run_has_no_anomaly_rows() {
        let text = render_console_table(&sample_summary(Verdict::Valid, true));
        assert!(text.starts_with("VALID: no invariant violated"));
        assert!(text.contains("anomalies    none"));
        assert!(!text.contains("MISSED"));
    }

    #[test]
    fn one_line_per_fault() {
        let text = render_console_table(&fault_summary());
        assert!(
            text.contains(
                "  fault redis_restart (redis) 10.0-12.0 s: 4 reconnects caused, recovery 3.00 s\n"
            ),
            "{text}"
        );
        let mut summary = fault_summary();
        summary.faults[0].recovery_s = None;
        assert!(render_console_table(&summary).contains("recovery NOT RECOVERED"));
        assert!(!render_console_table(&sample_summary(Verdict::Valid, true)).contains("fault "));
    }
}
