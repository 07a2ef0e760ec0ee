//! Values with units, written as text: durations (`"250ms"`, `"30d"`),
//! rates (`"200/s"`), sizes (`"64KiB"`), byte rates (`"64KiB/s"`) and
//! percentiles (`"p99.9"`). One grammar for the reference server's flags
//! (`--state-ttl 30d`) and the harness's scenario files, so a value that
//! one accepts the other accepts too.
//!
//! Units are mandatory so that a bare `30` can never silently mean seconds
//! in one place and milliseconds in another. Numbers are plain decimals
//! (`1`, `1.5`; no sign, no exponent). Durations and sizes are converted
//! with integer arithmetic so that `"0.1s"` is exactly 100 ms; a fraction
//! finer than the smallest unit is an error rather than a silent rounding.
//! Each `format_*` writes the canonical form that its parser reads back to
//! the identical value.

use std::time::Duration;

/// A value with a unit (`"30s"`, `"200/s"`, `"64B"`) that does not parse.
/// `Display` is the problem; [`UnitError::hint`] says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value")]
    Empty,
    #[error("{text:?} has no unit")]
    MissingUnit { text: String, example: String },
    #[error("{text:?} has unknown unit {unit:?}")]
    UnknownUnit {
        text: String,
        unit: String,
        expected: &'static str,
    },
    #[error("{text:?} uses the ambiguous unit {unit:?}")]
    AmbiguousSize { text: String, unit: String },
    #[error("{text:?} uses the ambiguous unit {unit:?}")]
    AmbiguousByteRate { text: String, unit: String },
    #[error("{text:?} must not be negative")]
    Negative { text: String },
    #[error("{text:?} does not start with a plain decimal number")]
    BadNumber {
        text: String,
        expected: &'static str,
    },
    #[error("{text:?} is finer than {finest}")]
    TooPrecise { text: String, finest: &'static str },
    #[error("{text:?} is too large (at most {max})")]
    TooLarge { text: String, max: &'static str },
}

impl UnitError {
    pub fn hint(&self) -> Option<String> {
        match self {
            UnitError::Empty => None,
            UnitError::MissingUnit { example, .. } => {
                Some(format!("units are mandatory, e.g. {example:?}"))
            }
            UnitError::UnknownUnit { expected, .. } => Some(format!("expected one of: {expected}")),
            UnitError::AmbiguousSize { .. } => Some(
                "sizes are binary: write KiB (1024 bytes) or MiB, or give bytes as \"1000B\""
                    .to_string(),
            ),
            UnitError::AmbiguousByteRate { .. } => Some(
                "byte rates are binary bytes per second: write KiB/s (1024 bytes/s) or MiB/s, \
                 or give bytes as \"1000B/s\""
                    .to_string(),
            ),
            UnitError::Negative { .. } => None,
            UnitError::BadNumber { expected, .. } => Some(format!("expected e.g. {expected}")),
            UnitError::TooPrecise { .. } | UnitError::TooLarge { .. } => None,
        }
    }
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Duration units, largest first: the formatter picks the first that
/// divides the value exactly.
const DURATION_UNITS: [(&str, u128); 7] = [
    ("d", 86_400 * NANOS_PER_SECOND),
    ("h", 3600 * NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("s", NANOS_PER_SECOND),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];
const DURATION_UNIT_NAMES: &str = "ns, us, ms, s, m (or min), h, d";

const SIZE_UNITS: [(&str, u128); 3] = [("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)];
const SIZE_UNIT_NAMES: &str = "B, KiB, MiB";
/// Lower-cased spellings whose meaning (1000 or 1024? bits or bytes?)
/// differs between tools; rejected instead of guessed.
const AMBIGUOUS_SIZE_UNITS: [&str; 8] = ["k", "kb", "m", "mb", "g", "gb", "kbit", "mbit"];

const RATE_UNIT_NAMES: &str = "/s, /m, /min, /h";

/// Byte-rate units (bytes per second), largest first. Wider than
/// `SIZE_UNITS`: a link may well be throttled to more than 4 GiB/s.
const BYTE_RATE_UNITS: [(&str, u128); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];
const BYTE_RATE_UNIT_NAMES: &str = "B/s, KiB/s, MiB/s, GiB/s";
/// Lower-cased network spellings (bits or bytes? 1000 or 1024?), rejected
/// like the ambiguous size units.
const AMBIGUOUS_BYTE_RATE_UNITS: [&str; 6] = ["bps", "kbps", "mbps", "gbps", "bit", "b"];
const BYTE_RATE_MAX: &str = "18446744073709551615B/s";

/// `"30s"`, `"250ms"`, `"2m"`, `"1h"`, `"30d"`, `"1.5s"`; units: ns, us,
/// ms, s, m/min, h, d. Bare numbers are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_number(text, "\"1.5s\"")?;
    let Some(unit) = unit else {
        return Err(UnitError::MissingUnit {
            text: text.trim().to_string(),
            example: format!("{}s", number.text),
        });
    };
    let unit_nanos = match unit {
        "min" => 60 * NANOS_PER_SECOND,
        "µs" => 1_000,
        _ => DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, nanos)| *nanos)
            .ok_or_else(|| UnitError::UnknownUnit {
                text: text.trim().to_string(),
                unit: unit.to_string(),
                expected: DURATION_UNIT_NAMES,
            })?,
    };
    let limits = Limits {
        text,
        finest: "1ns",
        max: DURATION_MAX,
    };
    let nanos = number.times_exact(unit_nanos, limits)?;
    let nanos = u64::try_from(nanos).map_err(|_| UnitError::TooLarge {
        text: text.trim().to_string(),
        max: DURATION_MAX,
    })?;
    Ok(Duration::from_nanos(nanos))
}

/// Canonical form: the largest unit that represents the value exactly.
// `is_multiple_of` needs Rust 1.87; the workspace declares rust-version 1.85.
#[allow(clippy::manual_is_multiple_of)]
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let (unit, unit_nanos) = DURATION_UNITS
        .iter()
        .find(|(_, unit_nanos)| nanos % unit_nanos == 0)
        .copied()
        .unwrap_or(("ns", 1));
    format!("{}{unit}", nanos / unit_nanos)
}

/// Events per second from `"200/s"`, `"1200/m"` (or `/min`), `"30/h"`,
/// `"0.5/s"`.
pub fn parse_rate(text: &str) -> Result<f64, UnitError> {
    let trimmed = text.trim();
    let Some((count, per)) = trimmed.split_once('/') else {
        let (number, unit) = split_number(trimmed, "\"200/s\"")?;
        return Err(match unit {
            None => UnitError::MissingUnit {
                text: trimmed.to_string(),
                example: format!("{}/s", number.text),
            },
            Some(unit) => UnitError::UnknownUnit {
                text: trimmed.to_string(),
                unit: unit.to_string(),
                expected: RATE_UNIT_NAMES,
            },
        });
    };
    let (number, unit) = split_number(count, "\"200/s\"").map_err(|err| match err {
        UnitError::Empty => UnitError::BadNumber {
            text: trimmed.to_string(),
            expected: "\"200/s\"",
        },
        other => other,
    })?;
    if unit.is_some() {
        return Err(UnitError::BadNumber {
            text: trimmed.to_string(),
            expected: "\"200/s\"",
        });
    }
    let seconds_per_unit = match per.trim() {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(UnitError::UnknownUnit {
                text: trimmed.to_string(),
                unit: format!("/{other}"),
                expected: RATE_UNIT_NAMES,
            })
        }
    };
    let count: f64 = number.text.parse().map_err(|_| UnitError::BadNumber {
        text: trimmed.to_string(),
        expected: "\"200/s\"",
    })?;
    let per_second = count / seconds_per_unit;
    if !per_second.is_finite() {
        return Err(UnitError::TooLarge {
            text: trimmed.to_string(),
            max: "a finite number",
        });
    }
    Ok(per_second)
}

/// Canonical form: per second, with the shortest decimal that reads back
/// to the same `f64` (Rust's `Display` for floats guarantees that).
pub fn format_rate(per_second: f64) -> String {
    format!("{per_second}/s")
}

/// Bytes from `"64B"`, `"1KiB"`, `"1.5KiB"`, `"2MiB"`. Decimal-looking
/// units (`KB`, `kb`, `K`, `MB`) are rejected as ambiguous.
pub fn parse_size(text: &str) -> Result<u32, UnitError> {
    let (number, unit) = split_number(text, "\"64B\"")?;
    let Some(unit) = unit else {
        return Err(UnitError::MissingUnit {
            text: text.trim().to_string(),
            example: format!("{}B", number.text),
        });
    };
    let Some(&(_, unit_bytes)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) else {
        let lower = unit.to_ascii_lowercase();
        if AMBIGUOUS_SIZE_UNITS.contains(&lower.as_str()) {
            return Err(UnitError::AmbiguousSize {
                text: text.trim().to_string(),
                unit: unit.to_string(),
            });
        }
        return Err(UnitError::UnknownUnit {
            text: text.trim().to_string(),
            unit: unit.to_string(),
            expected: SIZE_UNIT_NAMES,
        });
    };
    let limits = Limits {
        text,
        finest: "1B",
        max: SIZE_MAX,
    };
    let bytes = number.times_exact(unit_bytes, limits)?;
    u32::try_from(bytes).map_err(|_| UnitError::TooLarge {
        text: text.trim().to_string(),
        max: SIZE_MAX,
    })
}

/// Canonical form: the largest binary unit that represents it exactly.
pub fn format_size(bytes: u32) -> String {
    let bytes = u128::from(bytes);
    let (unit, unit_bytes) = SIZE_UNITS
        .iter()
        .find(|(_, unit_bytes)| bytes != 0 && bytes % unit_bytes == 0)
        .copied()
        .unwrap_or(("B", 1));
    format!("{}{unit}", bytes / unit_bytes)
}

/// Bytes per second from `"500B/s"`, `"64KiB/s"`, `"1.5MiB/s"`,
/// `"1GiB/s"`. Like sizes, only binary units: `"64KB/s"`, `"1Mbps"` are
/// rejected as ambiguous.
pub fn parse_byte_rate(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    let ambiguous = |unit: &str| UnitError::AmbiguousByteRate {
        text: trimmed.to_string(),
        unit: unit.to_string(),
    };
    let unknown = |unit: &str| UnitError::UnknownUnit {
        text: trimmed.to_string(),
        unit: unit.to_string(),
        expected: BYTE_RATE_UNIT_NAMES,
    };
    let Some((amount, per)) = trimmed.split_once('/') else {
        // No "/s": "64" misses the unit, "64KiB" misses the time,
        // "1Mbps" is a network spelling.
        let (number, unit) = split_number(trimmed, "\"64KiB/s\"")?;
        return Err(match unit {
            None => UnitError::MissingUnit {
                text: trimmed.to_string(),
                example: format!("{}B/s", number.text),
            },
            Some(unit) if is_ambiguous_byte_rate_unit(unit) => ambiguous(unit),
            Some(unit) => unknown(unit),
        });
    };
    let (number, unit) = split_number(amount, "\"64KiB/s\"").map_err(|err| match err {
        UnitError::Empty => UnitError::BadNumber {
            text: trimmed.to_string(),
            expected: "\"64KiB/s\"",
        },
        other => other,
    })?;
    let written_unit = format!("{}/{}", unit.unwrap_or(""), per.trim());
    let Some(unit) = unit else {
        return Err(unknown(&written_unit));
    };
    let unit_bytes = BYTE_RATE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, bytes)| *bytes);
    let unit_bytes = match unit_bytes {
        Some(bytes) if per.trim() == "s" => bytes,
        None if is_ambiguous_byte_rate_unit(unit) => return Err(ambiguous(&written_unit)),
        _ => return Err(unknown(&written_unit)),
    };
    let limits = Limits {
        text,
        finest: "1B/s",
        max: BYTE_RATE_MAX,
    };
    let bytes = number.times_exact(unit_bytes, limits)?;
    u64::try_from(bytes).map_err(|_| UnitError::TooLarge {
        text: trimmed.to_string(),
        max: BYTE_RATE_MAX,
    })
}

fn is_ambiguous_byte_rate_unit(unit: &str) -> bool {
    let lower = unit.to_ascii_lowercase();
    AMBIGUOUS_SIZE_UNITS.contains(&lower.as_str())
        || AMBIGUOUS_BYTE_RATE_UNITS.contains(&lower.as_str())
}

/// Canonical form: the largest binary unit per second that represents it
/// exactly.
pub fn format_byte_rate(bytes_per_s: u64) -> String {
    let bytes = u128::from(bytes_per_s);
    let (unit, unit_bytes) = BYTE_RATE_UNITS
        .iter()
        .find(|(_, unit_bytes)| bytes != 0 && bytes % unit_bytes == 0)
        .copied()
        .unwrap_or(("B", 1));
    format!("{}{unit}/s", bytes / unit_bytes)
}

/// A percentile from `"p50"`, `"p99.9"`, `"max"` (= 100). The range
/// (0, 100] is checked by the caller, which knows the key to blame.
pub fn parse_percentile(text: &str) -> Result<f64, UnitError> {
    const EXPECTED: &str = "\"p50\", \"p99\", \"p99.9\" or \"max\"";
    let trimmed = text.trim();
    if trimmed == "max" {
        return Ok(100.0);
    }
    let bad = || UnitError::BadNumber {
        text: trimmed.to_string(),
        expected: EXPECTED,
    };
    let digits = trimmed.strip_prefix('p').ok_or_else(bad)?;
    let (number, unit) = split_number(digits, EXPECTED).map_err(|_| bad())?;
    if unit.is_some() {
        return Err(bad());
    }
    number.text.parse().map_err(|_| bad())
}

/// Canonical form: `"max"` for 100, else `"p<shortest decimal>"`.
pub fn format_percentile(percentile: f64) -> String {
    if percentile == 100.0 {
        "max".to_string()
    } else {
        format!("p{percentile}")
    }
}

/// What a conversion may produce, for its error messages.
#[derive(Clone, Copy)]
struct Limits<'a> {
    text: &'a str,
    finest: &'static str,
    max: &'static str,
}

const DURATION_MAX: &str = "about 584 years";
const SIZE_MAX: &str = "4GiB - 1B";

/// A plain decimal `digits[.digits]` as written.
struct Decimal<'a> {
    text: &'a str,
    whole: &'a str,
    fraction: &'a str,
}

impl Decimal<'_> {
    /// `self * multiplier` when it is a whole number; errors when the
    /// fraction is finer than the unit allows or the result overflows.
    fn times_exact(&self, multiplier: u128, limits: Limits) -> Result<u128, UnitError> {
        let text = limits.text;
        let too_large = || UnitError::TooLarge {
            text: text.trim().to_string(),
            max: limits.max,
        };
        // 24 digits keep every product below u128::MAX (3.4e38) for the
        // multipliers used here (at most 3.6e12).
        if self.whole.len() > 24 {
            return Err(too_large());
        }
        let whole: u128 = self.whole.parse().map_err(|_| too_large())?;
        let whole = whole.checked_mul(multiplier).ok_or_else(too_large)?;
        let fraction = self.fraction.trim_end_matches('0');
        if fraction.is_empty() {
            return Ok(whole);
        }
        let too_precise = || UnitError::TooPrecise {
            text: text.trim().to_string(),
            finest: limits.finest,
        };
        if fraction.len() > 24 {
            return Err(too_precise());
        }
        let numerator: u128 = fraction.parse().map_err(|_| too_precise())?;
        let denominator = 10u128.pow(fraction.len() as u32);
        let scaled = numerator.checked_mul(multiplier).ok_or_else(too_precise)?;
        if scaled % denominator != 0 {
            return Err(too_precise());
        }
        whole
            .checked_add(scaled / denominator)
            .ok_or_else(too_large)
    }
}

/// Splits `"1.5ms"` into the decimal `1.5` and the unit `"ms"` (`None`
/// when there is none). Whitespace around and between is allowed.
fn split_number<'a>(
    text: &'a str,
    expected: &'static str,
) -> Result<(Decimal<'a>, Option<&'a str>), UnitError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(UnitError::Empty);
    }
    if trimmed.starts_with('-') {
        return Err(UnitError::Negative {
            text: trimmed.to_string(),
        });
    }
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, rest) = trimmed.split_at(number_end);
    let bad = || UnitError::BadNumber {
        text: trimmed.to_string(),
        expected,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (!number.contains('.') || !fraction.is_empty())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(bad());
    }
    let unit = rest.trim_start();
    let decimal = Decimal {
        text: number,
        whole,
        fraction,
    };
    Ok((decimal, (!unit.is_empty()).then_some(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("1.5d"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("9ns"), Ok(Duration::from_nanos(9)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.50s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bare_number_duration_is_rejected_with_a_hint() {
        let err = parse_duration("30").unwrap_err();
        assert!(matches!(err, UnitError::MissingUnit { .. }), "{err:?}");
        assert_eq!(err.to_string(), "\"30\" has no unit");
        assert_eq!(
            err.hint().as_deref(),
            Some("units are mandatory, e.g. \"30s\"")
        );
    }

    #[test]
    fn bad_durations_name_the_problem() {
        assert!(matches!(parse_duration(""), Err(UnitError::Empty)));
        assert!(matches!(
            parse_duration("-1s"),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!(
            parse_duration("3 sec"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_duration("1.s"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_duration(".5s"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_duration("1e3s"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("0.5ns"),
            Err(UnitError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_duration("9999999999999h"),
            Err(UnitError::TooLarge { .. })
        ));
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(format_duration(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_nanos(1001)), "1001ns");
    }

    #[test]
    fn rates_per_second_minute_and_hour() {
        assert_eq!(parse_rate("200/s"), Ok(200.0));
        assert_eq!(parse_rate("1200/m"), Ok(20.0));
        assert_eq!(parse_rate("1200/min"), Ok(20.0));
        assert_eq!(parse_rate("3600/h"), Ok(1.0));
        assert_eq!(parse_rate("0.5/s"), Ok(0.5));
        assert_eq!(parse_rate(" 10 / s "), Ok(10.0));
    }

    #[test]
    fn bad_rates_name_the_problem() {
        let bare = parse_rate("200").unwrap_err();
        assert!(matches!(bare, UnitError::MissingUnit { .. }), "{bare:?}");
        assert_eq!(
            bare.hint().as_deref(),
            Some("units are mandatory, e.g. \"200/s\"")
        );
        assert!(matches!(
            parse_rate("200/d"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_rate("200 per s"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_rate("-1/s"),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!(
            parse_rate("1x/s"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(parse_rate("/s"), Err(UnitError::BadNumber { .. })));
        assert!(matches!(parse_rate(""), Err(UnitError::Empty)));
        let huge = format!("{}/s", "9".repeat(400));
        assert!(matches!(parse_rate(&huge), Err(UnitError::TooLarge { .. })));
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(parse_size("64B"), Ok(64));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("0B"), Ok(0));
        assert_eq!(format_size(64), "64B");
        assert_eq!(format_size(1536), "1536B");
        assert_eq!(format_size(2048), "2KiB");
        assert_eq!(format_size(3 << 20), "3MiB");
        assert_eq!(format_size(0), "0B");
    }

    #[test]
    fn bad_sizes_name_the_problem() {
        for ambiguous in ["2KB", "2kb", "2kB", "2K", "2k", "1MB", "1mb", "1M"] {
            let err = parse_size(ambiguous).unwrap_err();
            assert!(
                matches!(err, UnitError::AmbiguousSize { .. }),
                "{ambiguous}: {err:?}"
            );
            assert!(err.hint().unwrap_or_default().contains("KiB"));
        }
        let bare = parse_size("64").unwrap_err();
        assert!(matches!(bare, UnitError::MissingUnit { .. }), "{bare:?}");
        assert!(matches!(
            parse_size("1GiB"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("1.3B"),
            Err(UnitError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_size("4096MiB"),
            Err(UnitError::TooLarge { .. })
        ));
        assert!(matches!(parse_size("-1B"), Err(UnitError::Negative { .. })));
    }

    #[test]
    fn byte_rates_are_binary_per_second() {
        assert_eq!(parse_byte_rate("500B/s"), Ok(500));
        assert_eq!(parse_byte_rate("64KiB/s"), Ok(64 * 1024));
        assert_eq!(parse_byte_rate("1.5KiB/s"), Ok(1536));
        assert_eq!(parse_byte_rate("1MiB/s"), Ok(1 << 20));
        assert_eq!(parse_byte_rate("2GiB/s"), Ok(2 << 30));
        assert_eq!(parse_byte_rate(" 8 KiB / s "), Ok(8192));
        assert_eq!(parse_byte_rate("0B/s"), Ok(0));
        assert_eq!(format_byte_rate(500), "500B/s");
        assert_eq!(format_byte_rate(1536), "1536B/s");
        assert_eq!(format_byte_rate(64 * 1024), "64KiB/s");
        assert_eq!(format_byte_rate(3 << 20), "3MiB/s");
        assert_eq!(format_byte_rate(5 << 30), "5GiB/s");
        assert_eq!(format_byte_rate(0), "0B/s");
    }

    #[test]
    fn ambiguous_byte_rates_are_rejected_with_a_hint() {
        for ambiguous in [
            "64KB/s", "64kb/s", "64K/s", "1MB/s", "1M/s", "1Mbps", "8kbps", "8bps", "8b/s",
        ] {
            let err = parse_byte_rate(ambiguous).unwrap_err();
            assert!(
                matches!(err, UnitError::AmbiguousByteRate { .. }),
                "{ambiguous}: {err:?}"
            );
            assert!(
                err.hint().unwrap_or_default().contains("KiB/s"),
                "{ambiguous}: {err:?}"
            );
        }
    }

    #[test]
    fn bad_byte_rates_name_the_problem() {
        let bare = parse_byte_rate("64").unwrap_err();
        assert!(matches!(bare, UnitError::MissingUnit { .. }), "{bare:?}");
        assert_eq!(
            bare.hint().as_deref(),
            Some("units are mandatory, e.g. \"64B/s\"")
        );
        let no_time = parse_byte_rate("64KiB").unwrap_err();
        assert_eq!(
            no_time.to_string(),
            "\"64KiB\" has unknown unit \"KiB\"",
            "{no_time:?}"
        );
        assert_eq!(
            no_time.hint().as_deref(),
            Some("expected one of: B/s, KiB/s, MiB/s, GiB/s")
        );
        assert_eq!(
            parse_byte_rate("17179869183GiB/s"),
            Ok(u64::MAX - (1 << 30) + 1)
        );
        for unknown in ["64KiB/m", "64B/m", "64/s", "64TiB/s", "64 bytes/s"] {
            assert!(
                matches!(parse_byte_rate(unknown), Err(UnitError::UnknownUnit { .. })),
                "{unknown}"
            );
        }
        assert!(matches!(
            parse_byte_rate("0.5B/s"),
            Err(UnitError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_byte_rate("17179869184GiB/s"),
            Err(UnitError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_byte_rate("-1KiB/s"),
            Err(UnitError::Negative { .. })
        ));
        assert!(matches!(
            parse_byte_rate("/s"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(parse_byte_rate(" "), Err(UnitError::Empty)));
    }

    #[test]
    fn percentiles() {
        assert_eq!(parse_percentile("p99"), Ok(99.0));
        assert_eq!(parse_percentile("p99.9"), Ok(99.9));
        assert_eq!(parse_percentile("max"), Ok(100.0));
        assert_eq!(parse_percentile("p0"), Ok(0.0));
        for bad in ["99", "P99", "p", "pmax", "p99ms", "p-1"] {
            assert!(
                matches!(parse_percentile(bad), Err(UnitError::BadNumber { .. })),
                "{bad}"
            );
        }
        assert_eq!(format_percentile(100.0), "max");
        assert_eq!(format_percentile(99.9), "p99.9");
        assert_eq!(format_percentile(50.0), "p50");
    }

    proptest! {
        #[test]
        fn duration_format_reads_back(nanos in 0u64..=u64::MAX) {
            let duration = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn rate_format_reads_back(per_second in 0.0f64..1e12) {
            prop_assert_eq!(parse_rate(&format_rate(per_second)), Ok(per_second));
        }

        #[test]
        fn size_format_reads_back(bytes in 0u32..=u32::MAX) {
            prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }

        #[test]
        fn byte_rate_format_reads_back(bytes_per_s in prop_oneof![
            0u64..=u64::MAX,
            (0u64..(1 << 34)).prop_map(|units| units << 10),
        ]) {
            prop_assert_eq!(parse_byte_rate(&format_byte_rate(bytes_per_s)), Ok(bytes_per_s));
        }

        #[test]
        fn percentile_format_reads_back(percentile in 0.0f64..=100.0) {
            prop_assert_eq!(parse_percentile(&format_percentile(percentile)), Ok(percentile));
        }
    }
}
