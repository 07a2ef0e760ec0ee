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
#[path = "error_tests.rs"]
mod tests;
