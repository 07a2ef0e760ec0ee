//! Scenario files: TOML text -> validated [`Scenario`], and back.
//!
//! The schema is serde derives, unknown keys denied (`model.rs`,
//! `file.rs`; `docs/scenario-format.md` is its human-facing copy), with the
//! unit grammar shared with the server's flags (`recovery-units`). The text
//! is parsed into toml's spanned tree, deserialized by toml's own serde
//! deserializer (`de.rs`: errors keep their span and key path), then
//! validated (`validate.rs`).
//!
//! The whole file is checked before anything starts, and the FIRST problem
//! is reported (syntax, then keys, types and values in file order, then the
//! rules across values), as `file:line:column: key.path: problem (hint)`:
//! a second error is often a consequence of the first.

mod de;
mod error;
mod file;
mod intruders;
mod model;
mod render;
mod validate;

use std::path::Path;

use toml::de::DeTable;

pub(crate) use de::variant_name;
use file::ScenarioFile;
use validate::Source;

pub use error::ScenarioError;
pub use intruders::{IntruderKind, Intruders};
pub use model::*;
pub use render::render_scenario;

/// Reads and validates a scenario file; errors name the path as given.
pub fn load_scenario(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        file: file.clone(),
        source,
    })?;
    parse_scenario(&text, &file)
}

/// Parses and validates scenario text; `origin` is the file name used in
/// error messages.
pub fn parse_scenario(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    let empty = DeTable::default();
    let mut source = Source {
        file: origin,
        text,
        document: &empty,
    };
    let document = DeTable::parse(text).map_err(|err| {
        let problem = format!("invalid TOML: {}", err.message());
        source.at(err.span().unwrap_or(0..0), "", problem, None)
    })?;
    source.document = document.get_ref();
    for key in ["faults", "stages", "thresholds.latency"] {
        if source.is_table(key) {
            let hint = format!("write each entry as a [[{key}]] table");
            let problem = "expected an array of tables, found a table";
            return Err(source.fail(key, problem, Some(hint)));
        }
    }
    let file: ScenarioFile = de::read(document.clone()).map_err(|err| {
        // toml places an error raised after a value was read (a checked
        // value) at the enclosing value: the path finds the value itself.
        let at_path = source.value_span(&err.path);
        let within = err.span.start <= at_path.start && at_path.end <= err.span.end;
        let span = if within && !at_path.is_empty() {
            at_path
        } else {
            err.span
        };
        source.at(span, &err.path, err.problem, None)
    })?;
    validate::scenario(&source, file)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
