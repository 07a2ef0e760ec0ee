//! report.md: the run at a glance for a pull request or a terminal pager.

use std::fmt::Write as _;

use super::fault_table::{fault_cells, fault_note, FAULT_COLUMNS, FAULT_NUMERIC_COLUMNS};
use super::summary::Summary;
use super::units::{format_bytes, format_opt_us, format_seconds};
use crate::checker::{AnomalyExample, Verdict};
use crate::history::LogOrigin;
use crate::scenario::LatencyMetric;

/// Examples per anomaly kind in the Markdown (summary.json keeps them all).
const EXAMPLES_SHOWN: usize = 3;

/// Keeps a value inside one table cell and out of the markup: a `|` would
/// end the cell, a line break the row, and `<` before a letter, `/`, `!`
/// or `?` would open inline HTML (a plain `<=` stays readable).
fn cell(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\\' | '|' => {
                escaped.push('\\');
                escaped.push(character);
            }
            '<' if characters.peek().is_some_and(|next| {
                next.is_ascii_alphabetic() || matches!(next, '/' | '!' | '?')
            }) =>
            {
                escaped.push_str("\\<");
            }
            '\r' | '\n' => escaped.push(' '),
            other => escaped.push(other),
        }
    }
    escaped
}

pub fn log_source_name(source: LogOrigin) -> &'static str {
    match source {
        LogOrigin::Redis => "redis (read back after the drain)",
        LogOrigin::Rebuilt => "rebuilt from acks and receipts (weaker)",
    }
}

pub fn verdict_headline(summary: &Summary) -> &'static str {
    match summary.verdict {
        Verdict::Valid if summary.exit_code == 0 => {
            "VALID: no invariant violated, every threshold met"
        }
        Verdict::Valid => "VALID, but a threshold was missed",
        Verdict::Invalid => "INVALID: an invariant was violated",
        Verdict::Unknown => "UNKNOWN: the run could not be fully checked",
    }
}

fn example_row(example: &AnomalyExample) -> String {
    let ids: Vec<String> = example.ids.iter().map(ToString::to_string).collect();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} |",
        example
            .device
            .map_or("–".into(), |device| device.to_string()),
        example.conversation,
        example
            .socket
            .map_or("–".into(), |socket| socket.to_string()),
        cell(&ids.join(", ")),
        example
            .client_msg_id
            .map_or("–".into(), |id| id.to_string()),
        example
            .at_us
            .map_or("–".into(), |at_us| format_seconds(at_us as f64 / 1e6)),
        cell(&example.detail)
    )
}

pub fn render_markdown(summary: &Summary) -> String {
    // Writing to a String cannot fail; the write results are ignored for that reason.
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", verdict_headline(summary));
    let _ = writeln!(
        out,
        "Scenario **{}**, seed {}, started {}, {} wall time; exit code {}.\n",
        cell(&summary.scenario),
        summary.seed,
        summary.started_at,
        format_seconds(summary.wall_duration_s),
        summary.exit_code
    );
    write_run(&mut out, summary);
    write_anomalies(&mut out, summary);
    write_thresholds(&mut out, summary);
    write_faults(&mut out, summary);
    write_intruders(&mut out, summary);
    write_latency(&mut out, summary);
    write_totals(&mut out, summary);
    out
}

/// `[[stages]]` as one clause: "; then 30 s to 400/s, 10 s to 50% online".
fn stages_text(stages: &[super::summary::StageShape]) -> String {
    let steps: Vec<String> = stages
        .iter()
        .map(|stage| {
            let mut targets = Vec::new();
            if let Some(rate) = stage.send_rate_per_s {
                targets.push(format!("{rate}/s"));
            }
            if let Some(share) = stage.online_share {
                targets.push(format!("{:.0}% online", share * 100.0));
            }
            match targets.is_empty() {
                true => format!("{} s hold", stage.duration_s),
                false => format!("{} s to {}", stage.duration_s, targets.join(" and ")),
            }
        })
        .collect();
    match steps.is_empty() {
        true => String::new(),
        false => format!("; then stages: {}", steps.join(", ")),
    }
}

/// The "What was run" rows, shared by report.md and report.html.
pub fn run_rows(summary: &Summary) -> Vec<(&'static str, String)> {
    let run = &summary.run;
    let mut rows = vec![
        (
            "duration",
            format!(
                "{} s (ramp-up {} s, drain up to {} s)",
                run.duration_s, run.ramp_up_s, run.drain_timeout_s
            ),
        ),
        (
            "traffic",
            format!(
                "{}/s sends of {} bytes{}",
                run.send_rate_per_s,
                run.body_bytes,
                stages_text(&run.stages)
            ),
        ),
        (
            "population",
            format!(
                "{} users × {} devices, {} conversations of {} members: {} sockets",
                run.users,
                run.devices_per_user,
                run.conversations,
                run.members_per_conversation,
                run.sockets_when_all_online
            ),
        ),
        (
            "churn",
            if run.churn_enabled {
                format!(
                    "on: {:.0}% abrupt ({:.0}% of those reset), {:.0}% client-cursor devices",
                    run.abrupt_share * 100.0,
                    run.reset_share * 100.0,
                    run.client_cursor_share * 100.0
                )
            } else {
                "off".to_string()
            },
        ),
        (
            "servers",
            format!("{} ({} spawned)", run.servers_mode, run.servers_spawned),
        ),
        ("targets", summary.targets.join(", ")),
        ("redis", summary.redis.clone()),
        (
            "log source",
            log_source_name(summary.log_source).to_string(),
        ),
        ("drain complete", summary.drain_complete.to_string()),
    ];
    if !summary.stragglers.is_empty() {
        rows.push(("stragglers", summary.stragglers.join(", ")));
    }
    rows
}

fn write_run(out: &mut String, summary: &Summary) {
    let _ = writeln!(out, "## What was run\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    for (name, value) in run_rows(summary) {
        let _ = writeln!(out, "| {name} | {} |", cell(&value));
    }
    let _ = writeln!(out);
}

fn write_anomalies(out: &mut String, summary: &Summary) {
    let _ = writeln!(out, "## Anomalies\n");
    if summary.anomalies.is_empty() {
        let _ = writeln!(out, "None.\n");
    } else {
        let _ = writeln!(out, "| kind | count | violation |\n|---|---:|---|");
        for report in &summary.anomalies {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                report.kind.name(),
                report.count,
                if report.violation {
                    "yes"
                } else {
                    "no (allowed)"
                }
            );
        }
        let _ = writeln!(out);
        for report in &summary.anomalies {
            let _ = writeln!(
                out,
                "### {}: first {} of {}\n",
                report.kind.name(),
                report.examples.len().min(EXAMPLES_SHOWN),
                report.count
            );
            let _ = writeln!(
                out,
                "| device | conversation | socket | ids | client_msg_id | at | detail |\n|---:|---:|---:|---|---|---|---|"
            );
            for example in report.examples.iter().take(EXAMPLES_SHOWN) {
                let _ = writeln!(out, "{}", example_row(example));
            }
            let _ = writeln!(out);
        }
    }
    if !summary.unknown_reasons.is_empty() {
        let _ = writeln!(out, "Why the verdict is unknown:\n");
        for reason in &summary.unknown_reasons {
            let _ = writeln!(out, "- {}", cell(reason));
        }
        let _ = writeln!(out);
    }
}

fn write_thresholds(out: &mut String, summary: &Summary) {
    let _ = writeln!(out, "## Thresholds\n");
    if summary.thresholds.is_empty() {
        let _ = writeln!(out, "None set.\n");
        return;
    }
    let _ = writeln!(out, "| threshold | observed | result |\n|---|---|---|");
    for result in &summary.thresholds {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            cell(&result.description),
            cell(&result.observed),
            if result.passed { "met" } else { "**missed**" }
        );
    }
    let _ = writeln!(out);
}

/// Only for runs that injected faults: the table would be empty otherwise.
fn write_faults(out: &mut String, summary: &Summary) {
    if summary.faults.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Faults\n");
    let _ = writeln!(out, "| {} |", FAULT_COLUMNS.join(" | "));
    let alignments: Vec<&str> = FAULT_NUMERIC_COLUMNS
        .iter()
        .map(|numeric| if *numeric { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "|{}|", alignments.join("|"));
    for fault in &summary.faults {
        let cells: Vec<String> = fault_cells(fault).iter().map(|text| cell(text)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(out, "\n{}\n", fault_note(summary));
}

/// Only for runs with `[intruders]`.
fn write_intruders(out: &mut String, summary: &Summary) {
    let Some(intruders) = &summary.intruders else {
        return;
    };
    let _ = writeln!(out, "## Intruders\n");
    let _ = writeln!(
        out,
        "| {} |",
        crate::intruders::INTRUDER_COLUMNS.join(" | ")
    );
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|---:|---|");
    for kind in &intruders.kinds {
        let cells: Vec<String> = kind.cells().iter().map(|text| cell(text)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(out, "\n{}\n", intruders.note());
}

fn write_latency(out: &mut String, summary: &Summary) {
    let _ = writeln!(out, "## Latency\n");
    let _ = writeln!(
        out,
        "| metric | count | p50 | p90 | p99 | p99.9 | max | mean |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for metric in LatencyMetric::ALL {
        let Some(stats) = summary.latency.get(&metric) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            metric.name(),
            stats.count,
            format_opt_us(stats.p50_us),
            format_opt_us(stats.p90_us),
            format_opt_us(stats.p99_us),
            format_opt_us(stats.p999_us),
            format_opt_us(stats.max_us),
            format_opt_us(stats.mean_us.map(|mean| mean.round() as u64)),
        );
    }
    let _ = writeln!(out);
}

/// Rows shared by the Markdown and HTML totals tables.
pub fn totals_rows(summary: &Summary) -> Vec<(&'static str, String)> {
    let totals = &summary.totals;
    let map = |counts: &std::collections::BTreeMap<String, u64>| -> String {
        if counts.is_empty() {
            return "none".to_string();
        }
        counts
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let harness = &summary.harness;
    let mut rows = vec![
        (
            "devices / conversations",
            format!("{} / {}", totals.devices, totals.conversations),
        ),
        (
            "connects",
            format!(
                "{} ({} reconnects, {} failed)",
                totals.connects, totals.reconnects, totals.connect_failures
            ),
        ),
        (
            "peak sockets online",
            totals.peak_sockets_online.to_string(),
        ),
        (
            "sends",
            format!(
                "{} frames, {} messages, {} retries",
                totals.sends, totals.messages_sent, totals.send_retries
            ),
        ),
        ("sends skipped", summary.sends_skipped.describe()),
        (
            "acks",
            format!("{} ({} duplicate)", totals.acks, totals.duplicate_acks),
        ),
        (
            "deliveries",
            format!(
                "{} live, {} replayed, {} without a recorded send",
                totals.deliveries_live, totals.deliveries_replayed, totals.deliveries_without_send
            ),
        ),
        (
            "delivery rate",
            format!("{:.1}/s", totals.delivery_rate_per_s),
        ),
        (
            "gaps",
            format!("{} ({})", totals.gaps, map(&totals.gaps_by_reason)),
        ),
        ("errors", map(&totals.errors_by_code)),
        ("disconnects", map(&totals.disconnects_by_cause)),
        (
            "harness CPU",
            format!(
                "{:.1} s ({:.0}% of one core){}",
                harness.cpu_seconds,
                harness.cpu_percent_of_one_core,
                per_delivery(harness.cpu_us_per_delivery)
            ),
        ),
        (
            "harness memory",
            format!(
                "{} peak RSS, {} per socket at {} sockets",
                format_bytes(harness.peak_rss_bytes),
                harness
                    .rss_bytes_per_socket
                    .map_or("–".into(), format_bytes),
                harness.peak_sockets
            ),
        ),
        (
            "harness memory at traffic end",
            match (
                harness.rss_at_traffic_end_bytes,
                harness.rss_bytes_per_socket_at_traffic_end,
            ) {
                (Some(rss), Some(per_socket)) => format!(
                    "{} RSS, {} per socket (sockets and history so far, before checking)",
                    format_bytes(rss),
                    format_bytes(per_socket)
                ),
                _ => "–".to_string(),
            },
        ),
    ];
    if let Some(servers) = &summary.servers {
        rows.push((
            "servers CPU",
            format!(
                "{:.1} s ({:.0}% of one core){}, {} processes",
                servers.cpu_seconds,
                servers.cpu_percent_of_one_core,
                per_delivery(servers.cpu_us_per_delivery),
                servers.processes
            ),
        ));
        rows.push((
            "servers memory",
            format!(
                "{} peak RSS (all servers){}",
                format_bytes(servers.peak_rss_bytes),
                match (
                    servers.rss_at_traffic_end_bytes,
                    servers.rss_bytes_per_socket_at_traffic_end
                ) {
                    (Some(rss), Some(per_socket)) => format!(
                        ", {} at traffic end, {} per socket",
                        format_bytes(rss),
                        format_bytes(per_socket)
                    ),
                    _ => String::new(),
                }
            ),
        ));
    }
    if let Some(redis) = &summary.redis_cost {
        rows.push((
            "Redis CPU",
            format!(
                "{:.1} s ({:.0}% of one core){}{}",
                redis.cpu_seconds,
                redis.cpu_percent_of_one_core,
                per_delivery(redis.cpu_us_per_delivery),
                match redis.restarts_seen {
                    0 => String::new(),
                    n => format!(", {n} restarts seen"),
                }
            ),
        ));
        rows.push((
            "Redis memory",
            format!(
                "{} peak RSS{}",
                format_bytes(redis.peak_rss_bytes),
                match (
                    redis.rss_at_traffic_end_bytes,
                    redis.rss_bytes_per_socket_at_traffic_end
                ) {
                    (Some(rss), Some(per_socket)) => format!(
                        ", {} at traffic end, {} per socket",
                        format_bytes(rss),
                        format_bytes(per_socket)
                    ),
                    _ => String::new(),
                }
            ),
        ));
    }
    rows
}

/// ", 12.3 µs per delivery", or nothing without deliveries.
fn per_delivery(cpu_us: Option<f64>) -> String {
    cpu_us.map_or(String::new(), |us| format!(", {us:.1} µs per delivery"))
}

fn write_totals(out: &mut String, summary: &Summary) {
    let _ = writeln!(out, "## Totals\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    for (name, value) in totals_rows(summary) {
        let _ = writeln!(out, "| {name} | {} |", cell(&value));
    }
    let _ = writeln!(
        out,
        "\nLatencies come from HDR histograms (3 significant digits; full distributions in \
         `<metric>.hgrm`). Live delivery and ack count from the intended send time, so a \
         stalled sender shows up as latency."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::tests::{fault_summary, sample_summary};

    #[test]
    fn headline_sections_and_first_examples() {
        let text = render_markdown(&sample_summary(Verdict::Invalid, false));
        assert!(
            text.starts_with("# INVALID: an invariant was violated\n"),
            "{text}"
        );
        for section in [
            "## What was run",
            "## Anomalies",
            "## Thresholds",
            "## Latency",
            "## Totals",
        ] {
            assert!(text.contains(section), "missing {section}");
        }
        assert!(text.contains("| lost | 3 | yes |"), "{text}");
        // Pipes in user text are escaped so the table keeps its columns.
        assert!(
            text.contains("lost #0: \\<script>alert(1)\\</script> \\| pipe"),
            "{text}"
        );
        assert!(text.contains("| live_delivery | 2 | 900 µs |"), "{text}");
        assert!(
            text.contains("| sends skipped | 12 of 600 scheduled (2.0%): 10 no socket online, 2 socket queue full |"),
            "{text}"
        );
        assert!(
            text.contains("| live_delivery p99 <= 250 ms | 12.0 ms | **missed** |"),
            "{text}"
        );
    }

    #[test]
    fn cells_cannot_break_the_table_or_open_html() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell("<b> <= </i> <!-- x"), "\\<b> <= \\</i> \\<!-- x");
        assert_eq!(cell("back\\slash"), "back\\\\slash");
    }

    #[test]
    fn examples_are_capped() {
        let mut summary = sample_summary(Verdict::Invalid, true);
        let example = summary.anomalies[0].examples[0].clone();
        summary.anomalies[0].examples = vec![example; 10];
        let text = render_markdown(&summary);
        assert_eq!(text.matches("lost #0").count(), EXAMPLES_SHOWN);
        assert!(text.contains("### lost: first 3 of 3"));
    }

    #[test]
    fn fault_table_rows_and_closing_note() {
        let text = render_markdown(&fault_summary());
        assert!(text.contains("## Faults\n"), "{text}");
        assert!(
            text.contains(
                "| redis_restart | redis | 10.0 s | 12.0 s | 2.00 s | 4 | – | 3.00 s | 2 | 1 | – |"
            ),
            "{text}"
        );
        assert!(
            text.contains("Whole run: 0 lost_ack, 0 lost, 0 duplicate; gaps declared: 0 trimmed, 0 epoch_changed."),
            "{text}"
        );
        // Counts in the note come from the anomalies and totals.
        let mut summary = sample_summary(Verdict::Invalid, true);
        summary.faults = fault_summary().faults;
        let text = render_markdown(&summary);
        assert!(
            text.contains("0 lost_ack, 3 lost, 0 duplicate; gaps declared: 1 trimmed"),
            "{text}"
        );
    }

    #[test]
    fn no_faults_no_fault_section() {
        let text = render_markdown(&sample_summary(Verdict::Valid, true));
        assert!(!text.contains("## Faults"), "{text}");
    }

    #[test]
    fn valid_run_says_so() {
        let text = render_markdown(&sample_summary(Verdict::Valid, true));
        assert!(text.starts_with("# VALID: no invariant violated, every threshold met"));
        assert!(text.contains("None.\n"));
    }
}
