//! Inline SVG charts for report.html, drawn with plotters' SVG backend.
//!
//! No font feature is needed: the SVG backend writes `<text>` elements and
//! lets the browser pick a `sans-serif` font; plotters only estimates label
//! sizes for layout, which works without font files.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::analysis::SecondStats;
use super::faults::FaultImpact;
use super::latency::LatencyRecorder;
use super::ReportError;
use crate::scenario::LatencyMetric;

const WIDTH_PX: u32 = 760;
const HEIGHT_PX: u32 = 320;
const MS_PER_US: f64 = 1e-3;
/// Colour-blind-safe palette (Okabe–Ito).
const BLUE: RGBColor = RGBColor(0, 114, 178);
const ORANGE: RGBColor = RGBColor(230, 159, 0);
/// Fault bands: Okabe–Ito vermillion, translucent so the lines show through.
pub(super) const FAULT_COLOR: RGBColor = RGBColor(213, 94, 0);
const FAULT_BAND_OPACITY: f64 = 0.15;
/// Instant faults (a reset) are drawn this wide and darker, so they show
/// as a visible line rather than vanishing.
const FAULT_MIN_WIDTH_PX: f64 = 3.0;
const FAULT_INSTANT_OPACITY: f64 = 0.45;
const FAULT_LABEL_PX: u32 = 12;
/// Labels of neighbouring faults cycle through this many rows so they
/// do not print over each other.
const FAULT_LABEL_ROWS: usize = 3;
/// Headroom above the data when faults are drawn, so their labels sit
/// above the lines instead of on them.
const FAULT_HEADROOM: f64 = 1.3;
const PLAIN_HEADROOM: f64 = 1.1;

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

/// A shaded x span of a time chart (a fault window), in chart x units.
struct Band {
    label: String,
    start_x: f64,
    end_x: f64,
}

impl Band {
    fn of_faults(faults: &[FaultImpact]) -> Vec<Band> {
        faults
            .iter()
            .map(|fault| Band {
                label: fault.kind.clone(),
                start_x: fault.start_s,
                end_x: fault.end_s,
            })
            .collect()
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
        &[],
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

/// A chart over the run's seconds, with every fault window shaded.
fn time_chart(
    name: &str,
    (series, faults): (&[SecondStats], &[FaultImpact]),
    y_desc: &str,
    lines: Vec<Line>,
) -> Result<String, ReportError> {
    let right_edge = (series.len() as f64).max(1.0);
    let top = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|(_, y)| *y))
        .fold(0.0_f64, f64::max);
    let headroom = if faults.is_empty() {
        PLAIN_HEADROOM
    } else {
        FAULT_HEADROOM
    };
    let top = if top > 0.0 { top * headroom } else { 1.0 };
    let seconds_label = |x: &f64| format!("{x:.0}");
    draw_lines(
        name,
        (0.0..right_edge, 10),
        0.0..top,
        ("seconds since start", y_desc),
        &seconds_label,
        lines,
        &Band::of_faults(faults),
    )
    .map_err(chart_error(name))
}

pub fn sockets_online_chart(
    series: &[SecondStats],
    faults: &[FaultImpact],
) -> Result<String, ReportError> {
    let points = series_points(series, |second| Some(second.sockets_online as f64));
    time_chart(
        "sockets online",
        (series, faults),
        "sockets",
        vec![Line::new("sockets online", BLUE, points)],
    )
}

pub fn throughput_chart(
    series: &[SecondStats],
    faults: &[FaultImpact],
) -> Result<String, ReportError> {
    let sends = series_points(series, |second| Some(second.sends as f64));
    let deliveries = series_points(series, |second| Some(second.deliveries as f64));
    time_chart(
        "sends and deliveries",
        (series, faults),
        "per second",
        vec![
            Line::new("sends", ORANGE, sends),
            Line::new("deliveries", BLUE, deliveries),
        ],
    )
}

pub fn live_p99_chart(
    series: &[SecondStats],
    faults: &[FaultImpact],
) -> Result<String, ReportError> {
    let points = series_points(series, |second| {
        second.live_delivery_p99_us.map(|us| us as f64 * MS_PER_US)
    });
    time_chart(
        "live delivery p99",
        (series, faults),
        "p99 (ms)",
        vec![Line::new("live delivery p99", BLUE, points)],
    )
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Shades each band over the full height, labelled at its top. Drawn
/// before the lines so the data stays on top.
fn draw_bands(
    chart: &mut Chart<'_, '_>,
    x_range: &std::ops::Range<f64>,
    y_range: &std::ops::Range<f64>,
    bands: &[Band],
) -> Result<(), String> {
    let (pixels_x, _) = chart.plotting_area().get_pixel_range();
    let plot_width_px = f64::from((pixels_x.end - pixels_x.start).max(1));
    let x_span = x_range.end - x_range.start;
    let min_width_x = x_span * FAULT_MIN_WIDTH_PX / plot_width_px;
    for (index, band) in bands.iter().enumerate() {
        // A fault outside the drawn series (after a truncated series) has
        // nothing to shade; the fault table still lists it.
        if band.start_x > x_range.end || !band.start_x.is_finite() {
            continue;
        }
        let instant = band.end_x - band.start_x < min_width_x;
        let start_x = band.start_x.max(x_range.start);
        let end_x = band.end_x.max(start_x + min_width_x).min(x_range.end);
        let opacity = if instant {
            FAULT_INSTANT_OPACITY
        } else {
            FAULT_BAND_OPACITY
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(start_x, y_range.start), (end_x, y_range.end)],
                FAULT_COLOR.mix(opacity).filled(),
            )))
            .map_err(|e| e.to_string())?;
        // Labels near the right edge end at the band's end instead, so
        // they stay inside the chart and still overlap their band.
        let near_right_edge = start_x > x_range.start + x_span * 0.75;
        let (anchor_x, h_pos, offset_x) = if near_right_edge {
            (end_x, HPos::Right, -3)
        } else {
            (start_x, HPos::Left, 3)
        };
        let row = (index % FAULT_LABEL_ROWS) as i32;
        let style = ("sans-serif", FAULT_LABEL_PX)
            .into_font()
            .color(&FAULT_COLOR)
            .pos(Pos::new(h_pos, VPos::Top));
        let label = EmptyElement::at((anchor_x, y_range.end))
            + Text::new(
                band.label.clone(),
                (offset_x, 2 + row * (FAULT_LABEL_PX as i32 + 2)),
                style,
            );
        chart
            .draw_series(std::iter::once(label))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Draws labelled lines (over shaded bands, if any) on one cartesian chart
/// and returns the SVG text. Errors come back as text because plotters'
/// error type is generic over the backend.
fn draw_lines(
    name: &str,
    (x_range, x_labels): (std::ops::Range<f64>, usize),
    y_range: std::ops::Range<f64>,
    (x_desc, y_desc): (&str, &str),
    x_label: &dyn Fn(&f64) -> String,
    lines: Vec<Line>,
    bands: &[Band],
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
            .build_cartesian_2d(x_range.clone(), y_range.clone())
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
        draw_bands(&mut chart, &x_range, &y_range, bands)?;
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
    use crate::history::FaultWindow;
    use crate::report::analysis::analyze;
    use crate::report::analysis::tests::handmade_history;
    use crate::report::faults::tests::fault_history;

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
        let throughput = throughput_chart(&analysis.series, &[]).unwrap();
        for label in ["sends", "deliveries", "seconds since start", "<polyline"] {
            assert!(throughput.contains(label), "missing {label}");
        }
        assert!(sockets_online_chart(&analysis.series, &[])
            .unwrap()
            .contains("sockets online"));
        assert!(live_p99_chart(&analysis.series, &[])
            .unwrap()
            .contains("p99 (ms)"));
    }

    type TimeChart = fn(&[SecondStats], &[FaultImpact]) -> Result<String, ReportError>;

    fn fault_rect_widths_px(svg: &str) -> Vec<u32> {
        let fill = format!(
            "fill=\"#{:02X}{:02X}{:02X}\"",
            FAULT_COLOR.0, FAULT_COLOR.1, FAULT_COLOR.2
        );
        svg.split("<rect")
            .skip(1)
            .map(|tag| &tag[..tag.find("/>").unwrap()])
            .filter(|tag| tag.contains(&fill))
            .map(|tag| {
                let width = &tag[tag.find("width=\"").unwrap() + 7..];
                width[..width.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn time_charts_shade_fault_windows_with_their_kind() {
        let mut history = fault_history();
        history.meta.faults.push(FaultWindow {
            kind: "reset".into(),
            target: "link clients".into(),
            start_us: 15_000_000,
            end_us: 15_000_000,
            error: None,
            sockets_dropped: None,
        });
        let analysis = analyze(&history);
        let charts: [TimeChart; 3] = [sockets_online_chart, throughput_chart, live_p99_chart];
        let mut drawn_lines = 0;
        for chart in charts {
            let shaded = chart(&analysis.series, &analysis.faults).unwrap();
            let plain = chart(&analysis.series, &[]).unwrap();
            for label in ["\nredis_restart\n</text>", "\nreset\n</text>"] {
                assert!(shaded.contains(label), "missing {label}: {shaded}");
                assert!(!plain.contains(label));
            }
            // One band per fault, nothing else added or lost.
            let widths = fault_rect_widths_px(&shaded);
            assert_eq!(widths.len(), 2, "{shaded}");
            assert_eq!(
                shaded.matches("<rect").count(),
                plain.matches("<rect").count() + 2
            );
            // The data lines (the grid may differ: bands add headroom).
            let data_lines = |svg: &str| svg.matches("stroke-width=\"2\"").count();
            assert_eq!(data_lines(&shaded), data_lines(&plain));
            drawn_lines += data_lines(&plain);
            // 2 s of an 18-second axis is far wider than the instant reset,
            // which still gets its minimum width.
            assert!(widths[0] > 40, "{widths:?}");
            assert!(widths[1] >= FAULT_MIN_WIDTH_PX as u32 - 1, "{widths:?}");
            assert!(widths[1] < 10, "{widths:?}");
        }
        // Sockets online; sends and deliveries, each with its legend
        // swatch; no p99 line (nothing was sent).
        assert_eq!(drawn_lines, 5);
    }

    #[test]
    fn no_faults_means_no_shading() {
        let analysis = analyze(&handmade_history());
        assert!(analysis.faults.is_empty());
        let chart = throughput_chart(&analysis.series, &analysis.faults).unwrap();
        assert!(fault_rect_widths_px(&chart).is_empty());
        assert_eq!(
            chart.matches("<text").count(),
            throughput_chart(&analysis.series, &[])
                .unwrap()
                .matches("<text")
                .count()
        );
    }

    #[test]
    fn empty_series_still_draw() {
        assert!(sockets_online_chart(&[], &[]).unwrap().contains("<svg"));
        let empty = LatencyRecorder::default();
        assert!(percentile_chart(LatencyMetric::Recovery, &empty)
            .unwrap()
            .contains("<svg"));
    }
}
