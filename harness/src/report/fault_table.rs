//! The fault table shared by report.md and report.html: one row per
//! injected fault, then a closing note with the anomalies faults tend to
//! cause. Cells are plain text; each renderer escapes them its own way.

use super::faults::{FaultImpact, FAULT_ATTRIBUTION_TAIL_US, RECOVERED_ONLINE_PERCENT};
use super::summary::Summary;
use super::units::format_us;
use crate::checker::AnomalyKind;

pub const FAULT_COLUMNS: [&str; 11] = [
    "kind",
    "target",
    "start",
    "end",
    "duration",
    "reconnects caused",
    "catch-up p50 / p99",
    "recovery",
    "acked during",
    "unavailable sends",
    "error",
];

/// Which columns hold numbers (right-aligned).
pub const FAULT_NUMERIC_COLUMNS: [bool; 11] = [
    false, false, true, true, true, true, true, true, true, true, false,
];

fn format_s(seconds: f64) -> String {
    format_us((seconds * 1e6).round() as u64)
}

fn format_ms(ms: f64) -> String {
    format_us((ms * 1e3).round() as u64)
}

pub fn fault_cells(fault: &FaultImpact) -> [String; 11] {
    [
        fault.kind.clone(),
        fault.target.clone(),
        format!("{:.1} s", fault.start_s),
        format!("{:.1} s", fault.end_s),
        if fault.duration_s > 0.0 {
            format_s(fault.duration_s)
        } else {
            "instant".to_string()
        },
        fault.reconnects_caused.to_string(),
        match (fault.catch_up_p50_ms, fault.catch_up_p99_ms) {
            (Some(p50), Some(p99)) => format!(
                "{} / {} ({})",
                format_ms(p50),
                format_ms(p99),
                fault.catch_ups
            ),
            _ => "–".to_string(),
        },
        fault
            .recovery_s
            .map_or_else(|| "not recovered".to_string(), format_s),
        fault.messages_acked.to_string(),
        fault.unavailable_send_errors.to_string(),
        fault.error.clone().unwrap_or_else(|| "–".to_string()),
    ]
}

fn anomaly_count(summary: &Summary, kind: AnomalyKind) -> u64 {
    summary
        .anomalies
        .iter()
        .find(|report| report.kind == kind)
        .map_or(0, |report| report.count)
}

/// How the columns are measured, and the run-wide counts a fault is most
/// likely to move (acked-but-lost, lost, duplicated messages, declared gaps).
pub fn fault_note(summary: &Summary) -> String {
    let gaps = |reason: &str| {
        summary
            .totals
            .gaps_by_reason
            .get(reason)
            .copied()
            .unwrap_or(0)
    };
    format!(
        "Reconnects caused: server-closed or failed sockets and failed connects from the start \
         until {} after the end (a reconnect_storm adds the sockets it dropped; its window ends \
         when every one of them has caught up). Catch-up: connect to caught_up of the \
         connections opened between start and end (their count in parentheses). Recovery: from the end until {}% of the sockets online before \
         the start are online again and a live message has arrived. Acked during and \
         unavailable sends count from start to end. Whole run: {} lost_ack, {} lost, {} \
         duplicate; gaps declared: {} trimmed, {} epoch_changed.",
        format_us(FAULT_ATTRIBUTION_TAIL_US),
        RECOVERED_ONLINE_PERCENT,
        anomaly_count(summary, AnomalyKind::LostAck),
        anomaly_count(summary, AnomalyKind::Lost),
        anomaly_count(summary, AnomalyKind::Duplicate),
        gaps("trimmed"),
        gaps("epoch_changed"),
    )
}
