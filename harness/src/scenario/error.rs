//! Errors of scenario loading. A scenario error always names the file, the
//! 1-based line and column, the key path, the problem and (when there is
//! one) a hint, so a user can fix the file without reading harness code.

use std::fmt;
use std::ops::Range;

/// Why a scenario file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read scenario file: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// Bad TOML syntax, an unknown key, a wrong type or a bad value.
    #[error("{file}:{line}:{column}: {}", Problem { key, problem, hint })]
    Invalid {
        /// The origin given to the parser (normally the path as typed).
        file: String,
        line: usize,
        column: usize,
        /// Dotted key path, e.g. `churn.online.max` or
        /// `thresholds.latency[0].percentile`; empty for the document root.
        key: String,
        problem: String,
        hint: Option<String>,
    },
}

impl ScenarioError {
    /// The dotted key path of an `Invalid` error (`None` for read errors).
    pub fn key(&self) -> Option<&str> {
        match self {
            ScenarioError::Read { .. } => None,
            ScenarioError::Invalid { key, .. } => Some(key),
        }
    }

    /// `(line, column)`, both 1-based, of an `Invalid` error.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ScenarioError::Read { .. } => None,
            ScenarioError::Invalid { line, column, .. } => Some((*line, *column)),
        }
    }
}

/// The part after `file:line:col: `; kept apart so the optional key and
/// hint do not leave stray separators.
struct Problem<'a> {
    key: &'a str,
    problem: &'a str,
    hint: &'a Option<String>,
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(self.problem)?;
        if let Some(hint) = self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

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

/// Turns byte spans of the source text into 1-based line and column
/// (columns count characters, as editors do) and builds errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub file: &'a str,
    pub source: &'a str,
}

impl Origin<'_> {
    pub fn error(
        &self,
        span: Range<usize>,
        key: &str,
        problem: impl Into<String>,
        hint: Option<String>,
    ) -> ScenarioError {
        let (line, column) = line_column(self.source, span.start);
        ScenarioError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            key: key.to_string(),
            problem: problem.into(),
            hint,
        }
    }
}

/// 1-based line and column of a byte offset; offsets past the end or
/// inside a character clamp to the nearest earlier character boundary.
pub(crate) fn line_column(source: &str, byte_offset: usize) -> (usize, usize) {
    let mut offset = byte_offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_lines_and_characters_from_one() {
        let text = "ab\ncдe\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 3), (2, 1));
        // 'д' is two bytes: the 'e' after it is the third character.
        assert_eq!(line_column(text, 6), (2, 3));
        // Inside 'д' clamps to its start.
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn display_names_file_position_key_problem_and_hint() {
        let origin = Origin {
            file: "scenarios/x.toml",
            source: "a\nb\n  mx = 1\n",
        };
        let err = origin.error(
            6..8,
            "churn.online",
            "unknown key \"mx\"",
            Some("expected one of: dist, value".to_string()),
        );
        assert_eq!(
            err.to_string(),
            "scenarios/x.toml:3:3: churn.online: unknown key \"mx\" (expected one of: dist, value)"
        );
        let root = origin.error(0..1, "", "broken", None);
        assert_eq!(root.to_string(), "scenarios/x.toml:1:1: broken");
        assert_eq!(root.position(), Some((1, 1)));
        assert_eq!(err.key(), Some("churn.online"));
    }
}
