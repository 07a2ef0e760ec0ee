//! report.html: one self-contained page (inline CSS and SVG, no scripts,
//! no fonts, nothing fetched), so it opens offline and can be attached to
//! a bug report as a single file.

use std::fmt::Write as _;

use super::analysis::Analysis;
use super::charts;
use super::fault_table::{fault_cells, fault_note, FAULT_COLUMNS, FAULT_NUMERIC_COLUMNS};
use super::markdown::{totals_rows, verdict_headline};
use super::summary::Summary;
use super::units::{format_opt_us, format_seconds};
use super::ReportError;
use crate::checker::{AnomalyExample, Verdict};
use crate::scenario::LatencyMetric;

pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { padding: .4em .6em; border-radius: 6px; color: #fff; }
h1.valid { background: #1b7f3b; } h1.invalid { background: #b3261e; } h1.unknown, h1.missed { background: #9a6700; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.pass { color: #1b7f3b; } .fail { color: #b3261e; font-weight: bold; }
figure { margin: 1em 0; } svg { max-width: 100%; height: auto; }
code { font-size: .95em; }
.scroll { overflow-x: auto; }
table.examples { font-size: .85em; }
table.examples td { white-space: nowrap; }
table.examples td:first-child { white-space: normal; min-width: 22em; }
";

fn headline_class(summary: &Summary) -> &'static str {
    match summary.verdict {
        Verdict::Valid if summary.exit_code == 0 => "valid",
        Verdict::Valid => "missed",
        Verdict::Invalid => "invalid",
        Verdict::Unknown => "unknown",
    }
}

/// A table row of already-escaped cells.
fn row(out: &mut String, cells: &[String], header: bool) {
    let tag = if header { "th" } else { "td" };
    out.push_str("<tr>");
    for cell in cells {
        // Writing to a String cannot fail.
        let _ = write!(out, "<{tag}>{cell}</{tag}>");
    }
    out.push_str("</tr>\n");
}

fn key_value_table(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table>\n");
    for (name, value) in rows {
        row(out, &[escape_html(name), escape_html(value)], false);
    }
    out.push_str("</table>\n");
}

pub fn render_html(summary: &Summary, analysis: &Analysis) -> Result<String, ReportError> {
    let mut out = String::new();
    let title = format!("{} – {}", summary.scenario, verdict_headline(summary));
    // Writing to a String cannot fail; the write results are ignored for that reason.
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape_html(&title)
    );
    let _ = writeln!(
        out,
        "<h1 class=\"{}\">{}</h1>",
        headline_class(summary),
        escape_html(verdict_headline(summary))
    );
    let _ = writeln!(
        out,
        "<p>Scenario <b>{}</b>, seed {}, started {}, {} wall time; exit code {}.</p>",
        escape_html(&summary.scenario),
        summary.seed,
        escape_html(&summary.started_at),
        escape_html(&format_seconds(summary.wall_duration_s)),
        summary.exit_code
    );
    write_run(&mut out, summary);
    write_anomalies(&mut out, summary);
    write_thresholds(&mut out, summary);
    write_faults(&mut out, summary);
    write_intruders(&mut out, summary);
    write_latency(&mut out, summary);
    write_charts(&mut out, analysis)?;
    out.push_str("<h2>Totals</h2>\n");
    key_value_table(&mut out, &totals_rows(summary));
    out.push_str(
        "<p>Files beside this page: <a href=\"summary.json\">summary.json</a>, <a href=\"report.md\">report.md</a>, \
         <code>&lt;metric&gt;.hgrm</code> percentile distributions, <code>history.bin</code> (<code>harness export --jsonl</code> for JSON lines).</p>\n</body>\n</html>\n",
    );
    Ok(out)
}

fn write_run(out: &mut String, summary: &Summary) {
    out.push_str("<h2>What was run</h2>\n");
    key_value_table(out, &super::markdown::run_rows(summary));
}

/// Detail first: it is the sentence a person reads; the ids after it are
/// for looking things up.
const EXAMPLE_COLUMNS: [&str; 9] = [
    "detail",
    "device",
    "socket",
    "ids",
    "at",
    "client_msg_id",
    "conversation",
    "user",
    "client",
];

fn example_cells(example: &AnomalyExample) -> Vec<String> {
    let ids: Vec<String> = example.ids.iter().map(ToString::to_string).collect();
    let dash = || "–".to_string();
    [
        example.detail.clone(),
        example
            .device
            .map_or_else(dash, |device| device.to_string()),
        example
            .socket
            .map_or_else(dash, |socket| socket.to_string()),
        ids.join(", "),
        example
            .at_us
            .map_or_else(dash, |at_us| format_seconds(at_us as f64 / 1e6)),
        example.client_msg_id.map_or_else(dash, |id| id.to_string()),
        format!("{} ({})", example.conversation, example.conversation_id),
        example.user_id.map_or_else(dash, |id| id.to_string()),
        example.client_id.map_or_else(dash, |id| id.to_string()),
    ]
    .iter()
    .map(|cell| escape_html(cell))
    .collect()
}

fn write_anomalies(out: &mut String, summary: &Summary) {
    out.push_str("<h2>Anomalies</h2>\n");
    if summary.anomalies.is_empty() {
        out.push_str("<p>None.</p>\n");
    }
    for report in &summary.anomalies {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "<h3>{}: {} ({})</h3>",
            escape_html(report.kind.name()),
            report.count,
            if report.violation {
                "violation"
            } else {
                "allowed"
            }
        );
        out.push_str("<div class=\"scroll\"><table class=\"examples\">\n");
        row(out, &EXAMPLE_COLUMNS.map(String::from), true);
        for example in &report.examples {
            row(out, &example_cells(example), false);
        }
        out.push_str("</table></div>\n");
        if (report.examples.len() as u64) < report.count {
            let _ = writeln!(
                out,
                "<p>First {} of {} shown.</p>",
                report.examples.len(),
                report.count
            );
        }
    }
    if !summary.unknown_reasons.is_empty() {
        out.push_str("<p>Why the verdict is unknown:</p>\n<ul>\n");
        for reason in &summary.unknown_reasons {
            let _ = writeln!(out, "<li>{}</li>", escape_html(reason));
        }
        out.push_str("</ul>\n");
    }
}

fn write_thresholds(out: &mut String, summary: &Summary) {
    out.push_str("<h2>Thresholds</h2>\n");
    if summary.thresholds.is_empty() {
        out.push_str("<p>None set.</p>\n");
        return;
    }
    out.push_str("<table>\n");
    row(
        out,
        &["threshold", "limit", "observed", "result"].map(String::from),
        true,
    );
    for result in &summary.thresholds {
        let verdict = if result.passed {
            "<span class=\"pass\">met</span>"
        } else {
            "<span class=\"fail\">missed</span>"
        };
        row(
            out,
            &[
                escape_html(&result.description),
                escape_html(&result.limit),
                escape_html(&result.observed),
                verdict.to_string(),
            ],
            false,
        );
    }
    out.push_str("</table>\n");
}

/// Only for runs that injected faults: the table would be empty otherwise.
fn write_faults(out: &mut String, summary: &Summary) {
    if summary.faults.is_empty() {
        return;
    }
    out.push_str("<h2>Faults</h2>\n<div class=\"scroll\"><table>\n");
    row(out, &FAULT_COLUMNS.map(String::from), true);
    for fault in &summary.faults {
        out.push_str("<tr>");
        for (text, numeric) in fault_cells(fault).iter().zip(FAULT_NUMERIC_COLUMNS) {
            let class = if numeric { " class=\"num\"" } else { "" };
            // Writing to a String cannot fail.
            let _ = write!(out, "<td{class}>{}</td>", escape_html(text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
    let _ = writeln!(out, "<p>{}</p>", escape_html(&fault_note(summary)));
}

/// Only for runs with `[intruders]`.
fn write_intruders(out: &mut String, summary: &Summary) {
    let Some(intruders) = &summary.intruders else {
        return;
    };
    out.push_str("<h2>Intruders</h2>\n<div class=\"scroll\"><table>\n");
    row(
        out,
        &crate::intruders::INTRUDER_COLUMNS.map(String::from),
        true,
    );
    for kind in &intruders.kinds {
        row(out, &kind.cells().map(|text| escape_html(&text)), false);
    }
    out.push_str("</table></div>\n");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "<p>{}</p>", escape_html(&intruders.note()));
}

fn write_latency(out: &mut String, summary: &Summary) {
    out.push_str("<h2>Latency</h2>\n<table>\n");
    row(
        out,
        &[
            "metric", "count", "p50", "p90", "p99", "p99.9", "max", "mean",
        ]
        .map(String::from),
        true,
    );
    for metric in LatencyMetric::ALL {
        let Some(stats) = summary.latency.get(&metric) else {
            continue;
        };
        out.push_str("<tr>");
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "<td>{}</td><td class=\"num\">{}</td>",
            metric.name(),
            stats.count
        );
        for value in [
            stats.p50_us,
            stats.p90_us,
            stats.p99_us,
            stats.p999_us,
            stats.max_us,
            stats.mean_us.map(|mean| mean.round() as u64),
        ] {
            let _ = write!(
                out,
                "<td class=\"num\">{}</td>",
                escape_html(&format_opt_us(value))
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn figure(out: &mut String, caption: &str, svg: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "<figure>\n{svg}\n<figcaption>{}</figcaption>\n</figure>",
        escape_html(caption)
    );
}

fn write_charts(out: &mut String, analysis: &Analysis) -> Result<(), ReportError> {
    out.push_str("<h2>Latency distributions</h2>\n");
    let mut any = false;
    for metric in LatencyMetric::ALL {
        let recorder = analysis.latency(metric);
        if recorder.count() == 0 {
            continue;
        }
        any = true;
        let caption = format!(
            "{}: latency by percentile ({} samples); the right edge is the max.",
            metric.name(),
            recorder.count()
        );
        figure(out, &caption, &charts::percentile_chart(metric, recorder)?);
    }
    if !any {
        out.push_str("<p>No latency samples.</p>\n");
    }
    out.push_str("<h2>Over time</h2>\n");
    if analysis.series.is_empty() {
        out.push_str("<p>No events.</p>\n");
        return Ok(());
    }
    if analysis.series_truncated {
        out.push_str(
            "<p>The series stops after one day; later events are in the totals only.</p>\n",
        );
    }
    let (series, faults) = (&analysis.series, &analysis.faults);
    // Said once per figure so each caption stands alone.
    let shading = if faults.is_empty() {
        ""
    } else {
        " Shaded: fault windows, labelled with the fault kind."
    };
    figure(
        out,
        &format!("Sockets online (most at once in each second).{shading}"),
        &charts::sockets_online_chart(series, faults)?,
    );
    figure(
        out,
        &format!("Sends and deliveries per second.{shading}"),
        &charts::throughput_chart(series, faults)?,
    );
    figure(
        out,
        &format!("Live delivery latency p99 per second (1% precision).{shading}"),
        &charts::live_p99_chart(series, faults)?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::analysis::analyze;
    use crate::report::analysis::tests::handmade_history;
    use crate::report::faults::tests::fault_history;
    use crate::report::summary::tests::{fault_summary, sample_summary};

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn page_is_escaped_and_has_every_section() {
        let summary = sample_summary(Verdict::Invalid, false);
        let page = render_html(&summary, &analyze(&handmade_history())).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<h1 class=\"invalid\">"));
        assert!(!page.contains("<script"), "user text must be escaped");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("smoke &lt;&amp;&gt; &quot;quoted&quot;"));
        for section in [
            "What was run",
            "Anomalies",
            "Thresholds",
            "Latency",
            "Over time",
            "Totals",
        ] {
            assert!(
                page.contains(&format!("<h2>{section}")),
                "missing {section}"
            );
        }
        // Every metric has samples in the handmade history: one chart each, plus three over time.
        assert_eq!(page.matches("<svg").count(), LatencyMetric::ALL.len() + 3);
        assert!(page.contains("<span class=\"fail\">missed</span>"));
        assert!(page.contains("12 of 600 scheduled (2.0%): 10 no socket online"));
    }

    #[test]
    fn fault_table_and_shaded_charts() {
        let page = render_html(&fault_summary(), &analyze(&fault_history())).unwrap();
        assert!(page.contains("<h2>Faults</h2>"), "{page}");
        assert!(page.contains(
            "<td>redis_restart</td><td>redis</td><td class=\"num\">10.0 s</td><td class=\"num\">12.0 s</td>\
             <td class=\"num\">2.00 s</td><td class=\"num\">4</td><td class=\"num\">–</td><td class=\"num\">3.00 s</td>"
        ));
        assert!(page.contains("0 lost_ack, 0 lost, 0 duplicate"));
        // Each of the three time charts is shaded and says so.
        assert_eq!(page.matches("\nredis_restart\n</text>").count(), 3);
        assert_eq!(page.matches("Shaded: fault windows").count(), 3);
    }

    #[test]
    fn no_faults_no_fault_table_or_shading() {
        let summary = sample_summary(Verdict::Valid, true);
        let page = render_html(&summary, &analyze(&handmade_history())).unwrap();
        assert!(!page.contains("<h2>Faults"));
        assert!(!page.contains("Shaded"));
    }
}
