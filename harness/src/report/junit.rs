//! `junit.xml`: the run as JUnit test results, for the CI systems that
//! import them (Jenkins, GitLab, Azure DevOps), as Gatling's assertions
//! file is used. One test case per invariant (every anomaly kind, present
//! or not) and one per threshold; a violated invariant or missed
//! threshold is a `<failure>` carrying the first examples. An `unknown`
//! verdict is an `<error>` on a "history fully checked" case: the run
//! could not be judged, which is neither a pass nor a server bug.
//!
//! The layout follows the widely used Ant/Surefire format; a test
//! validates it against the Jenkins JUnit schema.

use std::fmt::Write as _;

use super::summary::Summary;
use crate::checker::{AnomalyKind, Verdict};

pub const JUNIT_FILE: &str = "junit.xml";
/// Examples quoted in a failure's text (all are in summary.json).
const EXAMPLES_IN_FAILURE: usize = 3;

/// Escapes text for XML attribute values and character data, dropping
/// the control characters XML 1.0 cannot carry.
fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// One `<testcase>`: passed, failed (with text) or errored (with text).
struct Case {
    name: String,
    outcome: CaseOutcome,
    /// Extra context shown by CI tools next to the case.
    system_out: Option<String>,
}

enum CaseOutcome {
    Passed,
    Failed {
        kind: String,
        message: String,
        text: String,
    },
    Errored {
        kind: String,
        message: String,
        text: String,
    },
}

fn invariant_case(summary: &Summary, kind: AnomalyKind) -> Case {
    let name = format!("invariant {}", kind.name());
    let Some(report) = summary.anomalies.iter().find(|report| report.kind == kind) else {
        return Case {
            name,
            outcome: CaseOutcome::Passed,
            system_out: None,
        };
    };
    if !report.violation {
        return Case {
            name,
            outcome: CaseOutcome::Passed,
            system_out: Some(format!(
                "{} {} seen; allowed by the scenario's expectations",
                report.count,
                kind.name()
            )),
        };
    }
    let text = report
        .examples
        .iter()
        .take(EXAMPLES_IN_FAILURE)
        .map(|example| example.detail.clone())
        .collect::<Vec<_>>()
        .join("\n");
    Case {
        name,
        outcome: CaseOutcome::Failed {
            kind: kind.name().to_string(),
            message: format!(
                "{} {} anomalies (first {} below; all examples in summary.json)",
                report.count,
                kind.name(),
                report.examples.len().min(EXAMPLES_IN_FAILURE)
            ),
            text,
        },
        system_out: None,
    }
}

fn completeness_case(summary: &Summary) -> Case {
    let outcome = if summary.verdict == Verdict::Unknown {
        CaseOutcome::Errored {
            kind: "unknown".to_string(),
            message: "the run could not be fully checked; verdict unknown".to_string(),
            text: summary.unknown_reasons.join("\n"),
        }
    } else {
        CaseOutcome::Passed
    };
    Case {
        name: "history fully checked".to_string(),
        outcome,
        system_out: None,
    }
}

fn threshold_cases(summary: &Summary) -> Vec<Case> {
    summary
        .thresholds
        .iter()
        .map(|result| Case {
            name: format!("threshold {}", result.description),
            outcome: if result.passed {
                CaseOutcome::Passed
            } else {
                CaseOutcome::Failed {
                    kind: "threshold".to_string(),
                    message: format!(
                        "{}: observed {}, limit {}",
                        result.description, result.observed, result.limit
                    ),
                    text: String::new(),
                }
            },
            system_out: Some(format!("observed {}", result.observed)),
        })
        .collect()
}

fn write_suite(out: &mut String, summary: &Summary, suite: &str, cases: &[Case]) {
    let failures = cases
        .iter()
        .filter(|case| matches!(case.outcome, CaseOutcome::Failed { .. }))
        .count();
    let errors = cases
        .iter()
        .filter(|case| matches!(case.outcome, CaseOutcome::Errored { .. }))
        .count();
    let classname = escape_xml(&format!("harness.{}.{suite}", summary.scenario));
    // Writing to a String cannot fail; results are ignored for that reason.
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"0\" timestamp=\"{}\" hostname=\"localhost\">",
        escape_xml(&format!("{} {suite}", summary.scenario)),
        cases.len(),
        escape_xml(&junit_timestamp(summary.started_at_unix_ms)),
    );
    let _ = writeln!(out, "    <properties>");
    for (name, value) in [
        ("scenario", summary.scenario.clone()),
        ("seed", summary.seed.to_string()),
        ("verdict", format!("{:?}", summary.verdict).to_lowercase()),
        ("exit_code", summary.exit_code.to_string()),
        ("started_at", summary.started_at.clone()),
    ] {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            escape_xml(&value)
        );
    }
    let _ = writeln!(out, "    </properties>");
    for case in cases {
        let _ = write!(
            out,
            "    <testcase classname=\"{classname}\" name=\"{}\" time=\"0\"",
            escape_xml(&case.name)
        );
        let body = match &case.outcome {
            CaseOutcome::Passed => None,
            CaseOutcome::Failed {
                kind,
                message,
                text,
            } => Some(("failure", kind, message, text)),
            CaseOutcome::Errored {
                kind,
                message,
                text,
            } => Some(("error", kind, message, text)),
        };
        if body.is_none() && case.system_out.is_none() {
            let _ = writeln!(out, "/>");
            continue;
        }
        let _ = writeln!(out, ">");
        if let Some((element, kind, message, text)) = body {
            let _ = writeln!(
                out,
                "      <{element} type=\"{}\" message=\"{}\">{}</{element}>",
                escape_xml(kind),
                escape_xml(message),
                escape_xml(text)
            );
        }
        if let Some(system_out) = &case.system_out {
            let _ = writeln!(
                out,
                "      <system-out>{}</system-out>",
                escape_xml(system_out)
            );
        }
        let _ = writeln!(out, "    </testcase>");
    }
    let _ = writeln!(out, "  </testsuite>");
}

/// `2026-12-01T14:18:04`: JUnit timestamps are ISO 8601 without a zone
/// (UTC here, as in `started_at`).
fn junit_timestamp(unix_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(unix_ms).unwrap_or(i64::MAX))
        .map_or_else(String::new, |at| at.format("%Y-%m-%dT%H:%M:%S").to_string())
}

/// The whole `junit.xml`: an `invariants` suite (completeness plus one
/// case per anomaly kind) and a `thresholds` suite.
pub fn render_junit(summary: &Summary) -> String {
    let mut invariants = vec![completeness_case(summary)];
    invariants.extend(
        AnomalyKind::ALL
            .iter()
            .map(|kind| invariant_case(summary, *kind)),
    );
    let thresholds = threshold_cases(summary);
    let count = |cases: &[Case], wanted: fn(&CaseOutcome) -> bool| {
        cases.iter().filter(|case| wanted(&case.outcome)).count()
    };
    let failed = |outcome: &CaseOutcome| matches!(outcome, CaseOutcome::Failed { .. });
    let errored = |outcome: &CaseOutcome| matches!(outcome, CaseOutcome::Errored { .. });
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        escape_xml(&format!("harness {}", summary.scenario)),
        invariants.len() + thresholds.len(),
        count(&invariants, failed) + count(&thresholds, failed),
        count(&invariants, errored) + count(&thresholds, errored),
        summary.wall_duration_s.max(0.0),
    );
    write_suite(&mut out, summary, "invariants", &invariants);
    write_suite(&mut out, summary, "thresholds", &thresholds);
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::tests::sample_summary;

    #[test]
    fn one_case_per_kind_and_threshold_with_failures() {
        let summary = sample_summary(Verdict::Invalid, false);
        let xml = render_junit(&summary);
        for kind in AnomalyKind::ALL {
            assert!(
                xml.contains(&format!("name=\"invariant {}\"", kind.name())),
                "{xml}"
            );
        }
        assert_eq!(
            xml.matches("<testcase ").count(),
            1 + AnomalyKind::ALL.len() + summary.thresholds.len()
        );
        assert!(
            xml.contains("<failure type=\"lost\" message=\"3 lost anomalies"),
            "{xml}"
        );
        // The example text is escaped, never markup.
        assert!(
            xml.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{xml}"
        );
        assert!(!xml.contains("<script"), "{xml}");
        assert!(xml.contains("<failure type=\"threshold\""), "{xml}");
    }

    #[test]
    fn unknown_verdict_is_an_error_not_a_failure() {
        let summary = sample_summary(Verdict::Unknown, true);
        let xml = render_junit(&summary);
        assert!(xml.contains("<error type=\"unknown\""), "{xml}");
    }

    #[test]
    fn control_characters_are_dropped() {
        assert_eq!(
            escape_xml("a\u{1}b<&>\"'\n"),
            "a?b&lt;&amp;&gt;&quot;&apos;\n"
        );
    }
}
