//! Scenario thresholds judged against an analysis: pass/fail with the
//! limit and the observed value in words a person can compare.

use serde::{Deserialize, Serialize};

use super::analysis::Analysis;
use super::units::{format_us, percentile_label};
use crate::scenario::{LatencyThreshold, Thresholds};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// What was required, e.g. `live_delivery p99 <= 250 ms`.
    pub description: String,
    pub limit: String,
    pub observed: String,
    pub passed: bool,
}

/// Judges every threshold. `run_seconds` is the time the delivery rate is
/// averaged over (callers pass the traffic phase, or
/// `analysis.totals.history_duration_s`).
///
/// A latency threshold on a metric with no samples fails: a limit nobody
/// could measure is not a limit that was met.
pub fn evaluate_thresholds(
    thresholds: &Thresholds,
    analysis: &Analysis,
    run_seconds: f64,
) -> Vec<ThresholdResult> {
    let mut results: Vec<ThresholdResult> = thresholds
        .latency
        .iter()
        .map(|threshold| evaluate_latency(threshold, analysis))
        .collect();
    if let Some(min_rate_per_s) = thresholds.min_delivery_rate_per_s {
        results.push(evaluate_delivery_rate(
            min_rate_per_s,
            analysis,
            run_seconds,
        ));
    }
    results
}

fn evaluate_latency(threshold: &LatencyThreshold, analysis: &Analysis) -> ThresholdResult {
    let limit_us = u64::try_from(threshold.max.as_micros()).unwrap_or(u64::MAX);
    let limit = format_us(limit_us);
    let description = format!(
        "{} {} <= {limit}",
        threshold.metric.name(),
        percentile_label(threshold.percentile.0)
    );
    let observed_us = analysis
        .latency(threshold.metric)
        .value_at_percentile(threshold.percentile.0);
    match observed_us {
        Some(observed_us) => ThresholdResult {
            description,
            limit,
            observed: format_us(observed_us),
            passed: observed_us <= limit_us,
        },
        None => ThresholdResult {
            description,
            limit,
            observed: "no samples".to_string(),
            passed: false,
        },
    }
}

fn evaluate_delivery_rate(
    min_rate_per_s: f64,
    analysis: &Analysis,
    run_seconds: f64,
) -> ThresholdResult {
    let description = format!("delivery rate >= {min_rate_per_s}/s");
    let limit = format!("{min_rate_per_s}/s");
    if run_seconds <= 0.0 || !run_seconds.is_finite() {
        return ThresholdResult {
            description,
            limit,
            observed: format!("no run time ({run_seconds} s)"),
            passed: false,
        };
    }
    let rate_per_s = analysis.totals.deliveries() as f64 / run_seconds;
    ThresholdResult {
        description,
        limit,
        observed: format!("{rate_per_s:.1}/s"),
        passed: rate_per_s >= min_rate_per_s,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::analysis::analyze;
    use crate::report::analysis::tests::handmade_history;
    use crate::scenario::{LatencyMetric, Percentile};

    fn latency(metric: LatencyMetric, percentile: f64, max: Duration) -> LatencyThreshold {
        LatencyThreshold {
            metric,
            percentile: Percentile(percentile),
            max,
        }
    }

    #[test]
    fn latency_limits_pass_at_and_fail_above() {
        let analysis = analyze(&handmade_history());
        // Live delivery is 900 and 1800 µs.
        let thresholds = Thresholds {
            latency: vec![
                latency(
                    LatencyMetric::LiveDelivery,
                    99.0,
                    Duration::from_micros(1_800),
                ),
                latency(
                    LatencyMetric::LiveDelivery,
                    100.0,
                    Duration::from_micros(1_799),
                ),
                latency(
                    LatencyMetric::LiveDelivery,
                    50.0,
                    Duration::from_micros(900),
                ),
            ],
            min_delivery_rate_per_s: None,
        };
        let results = evaluate_thresholds(&thresholds, &analysis, 1.0);
        let passed: Vec<bool> = results.iter().map(|r| r.passed).collect();
        assert_eq!(passed, vec![true, false, true]);
        assert_eq!(results[0].description, "live_delivery p99 <= 1.80 ms");
        assert_eq!(results[1].description, "live_delivery max <= 1.80 ms");
        assert_eq!(results[1].observed, "1.80 ms");
    }

    #[test]
    fn unmeasurable_latency_fails() {
        let mut history = handmade_history();
        history.events.clear();
        let thresholds = Thresholds {
            latency: vec![latency(
                LatencyMetric::Recovery,
                99.0,
                Duration::from_secs(5),
            )],
            min_delivery_rate_per_s: None,
        };
        let results = evaluate_thresholds(&thresholds, &analyze(&history), 1.0);
        assert!(!results[0].passed);
        assert_eq!(results[0].observed, "no samples");
    }

    #[test]
    fn delivery_rate_uses_the_given_run_time() {
        // Four deliveries in the handmade history.
        let analysis = analyze(&handmade_history());
        let thresholds = Thresholds {
            latency: vec![],
            min_delivery_rate_per_s: Some(2.0),
        };
        assert!(evaluate_thresholds(&thresholds, &analysis, 2.0)[0].passed);
        let missed = &evaluate_thresholds(&thresholds, &analysis, 2.5)[0];
        assert!(!missed.passed);
        assert_eq!(missed.observed, "1.6/s");
        assert!(!evaluate_thresholds(&thresholds, &analysis, 0.0)[0].passed);
    }
}
