//! Reports: latency histograms, time series, summary.json, report.md and
//! report.html with inline SVG charts.
