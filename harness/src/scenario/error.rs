//! Errors of scenario loading. A scenario error always names the file, the
//! 1-based line and column, the key path, the problem and (when there is
//! one) a hint, so a user can fix the file without reading harness code.

/// Why a scenario file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read scenario file: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// Bad TOML syntax, an unknown key, a wrong type or a bad value.
    #[error("{file}:{line}:{column}: {}", problem_text(key, problem, hint))]
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

/// `key: problem (hint)`, without stray separators when the key is empty
/// or there is no hint.
fn problem_text(key: &str, problem: &str, hint: &Option<String>) -> String {
    let key = if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    };
    let hint = hint.as_ref().map(|hint| format!(" ({hint})"));
    format!("{key}{problem}{}", hint.unwrap_or_default())
}

/// 1-based line and column of a byte offset (columns count characters, as
/// editors do); offsets past the end or inside a character clamp to the
/// nearest earlier character boundary.
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
