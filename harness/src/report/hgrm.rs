//! `.hgrm` files: HdrHistogram's percentile distribution text, as Java's
//! `outputPercentileDistribution(out, 5, 1000.0)` prints it, so the
//! standard HdrHistogram plotters read them. Values are microseconds
//! recorded, milliseconds printed (scaling ratio 1000).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Java's default: 5 ticks per half distance to 100%.
const TICKS_PER_HALF_DISTANCE: u32 = 5;
const SCALING_RATIO: f64 = 1000.0;

/// Sub-buckets per bucket for a histogram of `sigfig` digits with a lowest
/// discernible value of 1, as Java computes it (the crate keeps it private).
fn sub_bucket_count(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

pub fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    let decimals = usize::from(histogram.sigfig());
    let mut out = String::new();
    // Writing to a String cannot fail; the results below are ignored for that reason.
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total_count: u64 = 0;
    for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total_count += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / SCALING_RATIO;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(
                out,
                "{value:>12.decimals$} {quantile:>2.12} {total_count:>10} {:>14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(
                out,
                "{value:>12.decimals$} {quantile:>2.12} {total_count:>10}"
            );
        }
    }
    let mean = histogram.mean() / SCALING_RATIO;
    let std_deviation = histogram.stdev() / SCALING_RATIO;
    let max = histogram.max() as f64 / SCALING_RATIO;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.decimals$}, StdDeviation   = {std_deviation:>12.decimals$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.decimals$}, Total count    = {:>12}]",
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_bucket_count(histogram.sigfig())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::latency::{new_histogram, LATENCY_SIGFIG};

    fn histogram_of(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut histogram = new_histogram(LATENCY_SIGFIG);
        for value in values {
            histogram.record(value).unwrap();
        }
        histogram
    }

    #[test]
    fn header_rows_and_footer_match_the_java_layout() {
        let text = percentile_distribution(&histogram_of(1..=1000));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        // First row: the smallest value (1 µs = 0.001 ms) at percentile 0.
        assert_eq!(
            lines[2],
            "       0.001 0.000000000000          1           1.00"
        );
        // p50 row: 500 µs, 500 values at or below it, 1/(1-0.5) = 2.
        assert!(
            lines.contains(&"       0.500 0.500000000000        500           2.00"),
            "{text}"
        );
        let last_row = lines[lines.len() - 4];
        assert_eq!(last_row, "       1.000 1.000000000000       1000");
        let footer = &lines[lines.len() - 3..];
        assert_eq!(
            footer[0],
            "#[Mean    =        0.500, StdDeviation   =        0.289]"
        );
        assert_eq!(
            footer[1],
            "#[Max     =        1.000, Total count    =         1000]"
        );
        assert!(footer[2].starts_with("#[Buckets = "), "{}", footer[2]);
        assert!(
            footer[2].ends_with(", SubBuckets     =         2048]"),
            "{}",
            footer[2]
        );
    }

    #[test]
    fn rows_are_cumulative_and_monotonic() {
        let text = percentile_distribution(&histogram_of([10, 20, 20, 30_000]));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|line| !line.starts_with('#'))
            .map(|line| {
                line.split_whitespace()
                    .map(|field| field.parse().unwrap())
                    .collect()
            })
            .collect();
        assert!(rows.len() >= 3, "{text}");
        for pair in rows.windows(2) {
            assert!(
                pair[1][0] >= pair[0][0] && pair[1][1] >= pair[0][1] && pair[1][2] >= pair[0][2]
            );
        }
        assert_eq!(rows.last().unwrap()[2], 4.0);
    }

    #[test]
    fn empty_histogram_still_has_header_and_footer() {
        let text = percentile_distribution(&histogram_of([]));
        assert!(text.starts_with("       Value     Percentile"));
        assert!(text.contains("Total count    =            0]"), "{text}");
    }

    #[test]
    fn sub_buckets_follow_significant_digits() {
        assert_eq!(sub_bucket_count(3), 2048);
        assert_eq!(sub_bucket_count(2), 256);
    }
}
