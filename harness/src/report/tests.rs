use super::*;
use crate::checker::Verdict;
use crate::history::write_history;
use crate::report::analysis::tests::handmade_history;
use crate::report::summary::tests::sample_summary;

fn written_run() -> (tempfile::TempDir, Summary, ReportFiles) {
    let dir = tempfile::tempdir().unwrap();
    let summary = sample_summary(Verdict::Invalid, false);
    let analysis = analyze(&handmade_history());
    let files = write_reports(dir.path(), &summary, &analysis).unwrap();
    (dir, summary, files)
}

#[test]
fn writes_every_file() {
    let (dir, _, files) = written_run();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ack.hgrm",
            "ack.hlog",
            "connect_to_hello.hgrm",
            "connect_to_hello.hlog",
            "junit.xml",
            "live_delivery.hgrm",
            "live_delivery.hlog",
            "recovery.hgrm",
            "recovery.hlog",
            "replay_staleness.hgrm",
            "replay_staleness.hlog",
            "report.html",
            "report.md",
            "summary.json"
        ]
    );
    assert_eq!(files.html, dir.path().join(HTML_FILE));
    assert_eq!(files.hgrm.len(), LatencyMetric::ALL.len());
    let hgrm = std::fs::read_to_string(dir.path().join("live_delivery.hgrm")).unwrap();
    assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert!(
        hgrm.contains("#[Max     =        1.800, Total count    =            2]"),
        "{hgrm}"
    );
}

#[test]
fn html_is_self_contained() {
    let (_dir, _, files) = written_run();
    let page = std::fs::read_to_string(files.html).unwrap();
    assert!(page.contains("<svg"));
    // The SVG namespace is an identifier, not a fetch; nothing else may point off the page.
    let without_namespace = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in ["http://", "https://", "<script", "<link", "@import", "url("] {
        assert!(!without_namespace.contains(external), "found {external}");
    }
}

#[test]
fn summary_round_trips_through_the_run_directory() {
    let (dir, summary, files) = written_run();
    let json = std::fs::read_to_string(files.summary_json).unwrap();
    assert!(json.contains("\"schema\": \"recovery-harness/summary/v1\""));
    assert_eq!(load_summary(dir.path()).unwrap(), summary);
}

#[test]
fn load_summary_names_a_foreign_schema_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = load_summary(dir.path()).unwrap_err().to_string();
    assert!(missing.contains("summary.json"), "{missing}");
    std::fs::write(
        dir.path().join(SUMMARY_FILE),
        r#"{"schema":"recovery-harness/summary/v9"}"#,
    )
    .unwrap();
    let err = load_summary(dir.path()).unwrap_err();
    assert!(
        matches!(err, ReportError::Schema { ref found, .. } if found == "recovery-harness/summary/v9")
    );
    assert!(
        err.to_string().contains("recovery-harness/summary/v1"),
        "{err}"
    );
}

#[test]
fn rerender_recomputes_latency_from_the_history_alone() {
    let (dir, mut summary, _) = written_run();
    let expected_latency = summary.latency.clone();
    // Spoil the stored numbers: the re-render must take them from history.jsonl.
    summary.latency.clear();
    summary.totals.sends = 0;
    std::fs::write(
        dir.path().join(SUMMARY_FILE),
        serde_json::to_string(&summary).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join(HTML_FILE)).unwrap();
    write_history(&dir.path().join(HISTORY_FILE), &handmade_history()).unwrap();

    let (rerendered, files) = rerender_run_dir(dir.path()).unwrap();
    assert_eq!(rerendered.latency, expected_latency);
    assert_eq!(rerendered.totals.sends, 3);
    assert_eq!(rerendered.verdict, Verdict::Invalid);
    assert!(files.html.exists());
}

#[test]
fn rerender_recomputes_fault_impacts_from_the_history() {
    let (dir, mut summary, _) = written_run();
    let history = crate::report::faults::tests::fault_history();
    let expected = analyze(&history).faults;
    assert_eq!(expected.len(), 1);
    summary.faults.clear();
    std::fs::write(
        dir.path().join(SUMMARY_FILE),
        serde_json::to_string(&summary).unwrap(),
    )
    .unwrap();
    write_history(&dir.path().join(HISTORY_FILE), &history).unwrap();
    let (rerendered, files) = rerender_run_dir(dir.path()).unwrap();
    assert_eq!(rerendered.faults, expected);
    assert_eq!(load_summary(dir.path()).unwrap().faults, expected);
    assert!(std::fs::read_to_string(files.markdown)
        .unwrap()
        .contains("## Faults"));
}
