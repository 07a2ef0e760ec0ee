//! Inline SVG charts for report.html, drawn with plotters' SVG backend.
//!
//! No font feature is needed: the SVG backend writes `<text>` elements and
//! lets the browser pick a `sans-serif` font; plotters only estimates label
//! sizes for layout, which works without font files.

use plotters::prelude::*;

use super::analysis::SecondStats;
use super::latency::LatencyRecorder;
use super::ReportError;
use crate::scenario::LatencyMetric;

const WIDTH_PX: u32 = 760;
const HEIGHT_PX: u32 = 320;
const MS_PER_US: f64 = 1e-3;
/// Colour-blind-safe palette (Okabe–Ito).
const BLUE: RGBColor = RGBColor(0, 114, 178);
const ORANGE: RGBColor = RGBColor(230, 159, 0);

/// One labelled line of a chart.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

impl Line {
    fn new(label: &str, color: RGBColor, points: Vec<(f64, f64)>) -> Line {
        Line {
            label: label.to_string(),
            color,
            points,
        }
    }
}

fn chart_error(chart: &str) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError::Chart {
        chart: chart.to_string(),
        message,
    }
}

/// x position of quantile `q` on the "nines" axis: 0 -> 0, 0.9 -> 1,
/// 0.99 -> 2, ...; the max (q = 1) is drawn at the right edge.
fn nines(quantile: f64, right_edge: f64) -> f64 {
    if quantile >= 1.0 {
        right_edge
    } else {
        (-(1.0 - quantile).log10()).min(right_edge)
    }
}

/// `0%`, `90%`, `99%`, `99.9%`, ... for whole numbers of nines (the
/// labels drawn); the plain percentile otherwise.
fn nines_label(x: &f64) -> String {
    if (x - x.round()).abs() > 1e-9 || *x < 0.0 {
        return format!("{:.2}%", 100.0 * (1.0 - 10f64.powf(-x)));
    }
    let nines = x.round() as usize;
    match nines {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        _ => {
            let fraction = "9".repeat(nines - 2);
            if fraction.is_empty() {
                "99%".to_string()
            } else {
                format!("99.{fraction}%")
            }
        }
    }
}

/// Percentile curve of one metric: x = percentile on a nines axis, y = ms.
pub fn percentile_chart(
    metric: LatencyMetric,
    recorder: &LatencyRecorder,
) -> Result<String, ReportError> {
    let name = metric.name();
    let to_error = chart_error(name);
    let histogram = recorder.histogram();
    let max_us = recorder.max_us().unwrap_or(0);
    // Enough nines to show the last sample's own percentile, at least p99.
    let right_edge = (histogram.len().max(1) as f64)
        .log10()
        .ceil()
        .clamp(2.0, 6.0);
    let points: Vec<(f64, f64)> = histogram
        .iter_quantiles(5)
        .map(|step| {
            let value_us = step.value_iterated_to().min(max_us);
            (
                nines(step.quantile_iterated_to(), right_edge),
                value_us as f64 * MS_PER_US,
            )
        })
        .collect();
    let top_ms = (max_us as f64 * MS_PER_US * 1.05).max(0.01);
    // One label per whole nine: plotters picks the coarsest round step that
    // fits this many labels, which for 0..n is exactly 1.
    let x_labels = right_edge as usize + 1;
    draw_lines(
        name,
        (0.0..right_edge, x_labels),
        0.0..top_ms,
        ("percentile", "latency (ms)"),
        &nines_label,
        vec![Line::new(name, BLUE, points)],
    )
    .map_err(to_error)
}

fn series_points(
    series: &[SecondStats],
    value: impl Fn(&SecondStats) -> Option<f64>,
) -> Vec<(f64, f64)> {
    series
        .iter()
        .filter_map(|second| value(second).map(|y| (second.second as f64, y)))
        .collect()
}

fn time_chart(
    name: &str,
    series: &[SecondStats],
    y_desc: &str,
    lines: Vec<Line>,
) -> Result<String, ReportError> {
    let right_edge = (series.len() as f64).max(1.0);
    let top = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|(_, y)| *y))
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let seconds_label = |x: &f64| format!("{x:.0}");
    draw_lines(
        name,
        (0.0..right_edge, 10),
        0.0..top,
        ("seconds since start", y_desc),
        &seconds_label,
        lines,
    )
    .map_err(chart_error(name))
}

pub fn sockets_online_chart(series: &[SecondStats]) -> Result<String, ReportError> {
    let points = series_points(series, |second| Some(second.sockets_online as f64));
    time_chart(
        "sockets online",
        series,
        "sockets",
        vec![Line::new("sockets online", BLUE, points)],
    )
}

pub fn throughput_chart(series: &[SecondStats]) -> Result<String, ReportError> {
    let sends = series_points(series, |second| Some(second.sends as f64));
    let deliveries = series_points(series, |second| Some(second.deliveries as f64));
    time_chart(
        "sends and deliveries",
        series,
        "per second",
        vec![
            Line::new("sends", ORANGE, sends),
            Line::new("deliveries", BLUE, deliveries),
        ],
    )
}

pub fn live_p99_chart(series: &[SecondStats]) -> Result<String, ReportError> {
    let points = series_points(series, |second| {
        second.live_delivery_p99_us.map(|us| us as f64 * MS_PER_US)
    });
    time_chart(
        "live delivery p99",
        series,
        "p99 (ms)",
        vec![Line::new("live delivery p99", BLUE, points)],
    )
}

/// Draws labelled lines on one cartesian chart and returns the SVG text.
/// Errors come back as text because plotters' error type is generic over
/// the backend.
fn draw_lines(
    name: &str,
    (x_range, x_labels): (std::ops::Range<f64>, usize),
    y_range: std::ops::Range<f64>,
    (x_desc, y_desc): (&str, &str),
    x_label: &dyn Fn(&f64) -> String,
    lines: Vec<Line>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(name, ("sans-serif", 20))
            .margin(12)
            // Room for the last x label, which is centred on the right edge.
            .margin_right(40)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(x_labels)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(x_label)
            .y_label_formatter(&|y| format!("{y}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        let labelled = lines.len() > 1;
        for Line {
            label,
            color,
            points,
        } in lines
        {
            let drawn = chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            if labelled {
                drawn.label(label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
        if labelled {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::analysis::analyze;
    use crate::report::analysis::tests::handmade_history;

    #[test]
    fn nines_axis_positions_and_labels() {
        assert_eq!(nines(0.0, 3.0), 0.0);
        assert!((nines(0.99, 3.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0, 3.0), 3.0);
        assert_eq!(nines(0.999_999, 3.0), 3.0);
        let labels: Vec<String> = [0.0, 1.0, 2.0, 3.0, 4.0].iter().map(nines_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn charts_are_svg_with_axis_labels() {
        let analysis = analyze(&handmade_history());
        let percentiles =
            percentile_chart(LatencyMetric::Ack, analysis.latency(LatencyMetric::Ack)).unwrap();
        assert!(percentiles.starts_with("<svg"), "{percentiles}");
        for label in [
            "\n0%\n",
            "\n90%\n",
            "\n99%\n",
            "percentile",
            "latency (ms)",
            "\nack\n",
        ] {
            assert!(percentiles.contains(label), "missing {label}");
        }
        let throughput = throughput_chart(&analysis.series).unwrap();
        for label in ["sends", "deliveries", "seconds since start", "<polyline"] {
            assert!(throughput.contains(label), "missing {label}");
        }
        assert!(sockets_online_chart(&analysis.series)
            .unwrap()
            .contains("sockets online"));
        assert!(live_p99_chart(&analysis.series)
            .unwrap()
            .contains("p99 (ms)"));
    }

    #[test]
    fn empty_series_still_draw() {
        assert!(sockets_online_chart(&[]).unwrap().contains("<svg"));
        let empty = LatencyRecorder::default();
        assert!(percentile_chart(LatencyMetric::Recovery, &empty)
            .unwrap()
            .contains("<svg"));
    }
}
