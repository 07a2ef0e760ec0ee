//! Scenario files: TOML text -> validated [`Scenario`].
//!
//! The schema is `file.rs` (serde derives, unknown keys rejected
//! everywhere); `docs/scenario-format.md` documents it. The text is parsed
//! into toml's spanned tree, deserialized into the file structs with
//! `de.rs` (which keeps every error's span and kind), then validated.
//!
//! Error reporting: the whole file is checked before anything is started,
//! and the FIRST problem found is reported (syntax errors first, then
//! unknown keys and wrong types in file order, then the rules section by
//! section), as `file:line:column: key.path: problem (hint)`. Fixing
//! errors one at a time keeps each message precise; a second error is
//! often a consequence of the first.

use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::de::ValueDe;
use super::error::{Origin, ScenarioError};
use super::file::ScenarioFile;
use super::model::Scenario;
use super::validate::{scenario, Source};

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
    let origin = Origin {
        file: origin,
        source: text,
    };
    let document = DeTable::parse(text).map_err(|err| {
        origin.error(
            err.span().unwrap_or(0..0),
            "",
            format!("invalid TOML: {}", err.message()),
            None,
        )
    })?;
    let source = Source {
        origin,
        document: document.get_ref(),
    };
    let root = DeValue::Table(document.get_ref().clone());
    let root = ValueDe {
        value: &root,
        span: 0..0,
        path: String::new(),
    };
    let file = ScenarioFile::deserialize(root).map_err(|err| {
        let span = err.span.unwrap_or(0..0);
        source.error(span, &err.path.unwrap_or_default(), err.problem, err.hint)
    })?;
    scenario(&source, &file)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
