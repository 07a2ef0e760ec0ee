//! Reports: latency histograms, time series, summary.json, report.md,
//! report.html with inline SVG charts, and junit.xml for CI.
//!
//! Data flow: [`analyze`] turns a history into numbers (the only place
//! that aggregates), [`evaluate_thresholds`] judges them, [`build_summary`]
//! adds the run's facts and the checker's verdict, and [`write_reports`]
//! renders everything into the run directory. The file formats are
//! documented in `docs/report-format.md`.

mod analysis;
mod charts;
mod console;
mod fault_table;
mod faults;
mod hgrm;
mod hlog;
mod html;
mod junit;
mod latency;
mod markdown;
mod summary;
mod thresholds;
mod units;

use std::path::{Path, PathBuf};

pub use analysis::{analyze, analyze_passes, Analysis, SecondStats, Totals, MAX_SERIES_SECONDS};
pub use console::render_console_table;
pub use faults::{FaultImpact, FAULT_ATTRIBUTION_TAIL_US, RECOVERED_ONLINE_PERCENT};
pub use hgrm::percentile_distribution;
pub use junit::{render_junit, JUNIT_FILE};
pub use latency::{LatencyRecorder, LatencyStats, LATENCY_SIGFIG, MAX_RECORDED_US};
pub use summary::{
    build_summary, exit_code, latency_table, HarnessResources, RedisResources, RedisResourcesInput,
    RunFacts, RunShape, SendsSkipped, ServerResources, ServerResourcesInput, Summary, EXIT_INVALID,
    EXIT_THRESHOLD_OR_UNKNOWN, EXIT_VALID, SUMMARY_SCHEMA,
};
pub use thresholds::{evaluate_thresholds, ThresholdResult};

use crate::history::HistoryError;
use crate::scenario::LatencyMetric;

pub const SUMMARY_FILE: &str = "summary.json";
pub const MARKDOWN_FILE: &str = "report.md";
pub const HTML_FILE: &str = "report.html";
pub use crate::history::HISTORY_FILE;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot create report directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write report file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode the summary as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot read summary {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid summary: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has schema {found:?}; this harness reads {expected:?}")]
    Schema {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("cannot re-analyze the run: {0}")]
    History(#[from] HistoryError),
    #[error("cannot draw the {chart} chart: {message}")]
    Chart { chart: String, message: String },
}

/// Paths of everything [`write_reports`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub summary_json: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub junit: PathBuf,
    /// One `<metric>.hgrm` per latency metric, in `LatencyMetric::ALL` order.
    pub hgrm: Vec<(LatencyMetric, PathBuf)>,
    /// One `<metric>.hlog` interval log per latency metric, same order.
    pub hlog: Vec<(LatencyMetric, PathBuf)>,
}

pub fn hgrm_file_name(metric: LatencyMetric) -> String {
    format!("{}.hgrm", metric.name())
}

pub fn hlog_file_name(metric: LatencyMetric) -> String {
    format!("{}.hlog", metric.name())
}

fn write_file(path: PathBuf, contents: &str) -> Result<PathBuf, ReportError> {
    std::fs::write(&path, contents).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Writes summary.json, report.md, report.html, junit.xml, and one .hgrm
/// and one .hlog per metric
/// into `dir` (created if missing). Renders everything before writing the
/// first file, so a chart error leaves no half-written report behind.
pub fn write_reports(
    dir: &Path,
    summary: &Summary,
    analysis: &Analysis,
) -> Result<ReportFiles, ReportError> {
    let json = serde_json::to_string_pretty(summary).map_err(ReportError::Encode)?;
    let markdown = markdown::render_markdown(summary);
    let html = html::render_html(summary, analysis)?;
    let junit = render_junit(summary);
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let summary_json = write_file(dir.join(SUMMARY_FILE), &(json + "\n"))?;
    let markdown = write_file(dir.join(MARKDOWN_FILE), &markdown)?;
    let html = write_file(dir.join(HTML_FILE), &html)?;
    let junit = write_file(dir.join(JUNIT_FILE), &junit)?;
    let hgrm = LatencyMetric::ALL
        .iter()
        .map(|metric| {
            let text = percentile_distribution(analysis.latency(*metric).histogram());
            write_file(dir.join(hgrm_file_name(*metric)), &text).map(|path| (*metric, path))
        })
        .collect::<Result<_, _>>()?;
    let hlog = LatencyMetric::ALL
        .iter()
        .map(|metric| {
            write_file(
                dir.join(hlog_file_name(*metric)),
                analysis.interval_log(*metric),
            )
            .map(|path| (*metric, path))
        })
        .collect::<Result<_, _>>()?;
    Ok(ReportFiles {
        summary_json,
        markdown,
        html,
        junit,
        hgrm,
        hlog,
    })
}

/// Reads `dir/summary.json`, refusing other schema versions by name.
pub fn load_summary(dir: &Path) -> Result<Summary, ReportError> {
    let path = dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Read {
        path: path.clone(),
        source,
    })?;
    // Check the schema first so a future version gets a clear message, not
    // a complaint about some field it renamed.
    #[derive(serde::Deserialize)]
    struct SchemaOnly {
        schema: String,
    }
    let schema = serde_json::from_str::<SchemaOnly>(&text)
        .map_err(|source| ReportError::Parse {
            path: path.clone(),
            source,
        })?
        .schema;
    if schema != SUMMARY_SCHEMA {
        return Err(ReportError::Schema {
            path,
            found: schema,
            expected: SUMMARY_SCHEMA,
        });
    }
    serde_json::from_str(&text).map_err(|source| ReportError::Parse { path, source })
}

/// `harness report RUN_DIR`: re-analyzes the history and re-renders
/// every report around the stored summary (verdict, thresholds and run
/// facts come from summary.json; latency, totals and fault impacts from
/// the history).
pub fn rerender_run_dir(dir: &Path) -> Result<(Summary, ReportFiles), ReportError> {
    let mut summary = load_summary(dir)?;
    // Streaming: a long run's history is never loaded.
    let history = crate::history::HistoryPasses::open(&crate::history::history_path(dir))?;
    let analysis = analyze_passes(&history)?;
    summary.latency = latency_table(&analysis);
    summary.totals = analysis.totals.clone();
    summary.faults = analysis.faults.clone();
    let files = write_reports(dir, &summary, &analysis)?;
    Ok((summary, files))
}

#[cfg(test)]
mod tests;
