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
use toml::de::DeTable;

use super::de::{path_of, DeError, Problem, ValueDe};
use super::error::{Origin, ScenarioError};
use super::file::ScenarioFile;
use super::model::Scenario;
use super::validate::{fault_keys_hint, scenario, Source};

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
    let root = toml::de::DeValue::Table(document.get_ref().clone());
    let root = toml::Spanned::new(0..0, root);
    let file = ScenarioFile::deserialize(ValueDe::new(&root))
        .map_err(|err| deserialize_error(&source, err))?;
    scenario(&source, &file)
}

/// Words a deserialization error: problem and hint from its kind, key
/// path from its span.
fn deserialize_error(source: &Source, err: DeError) -> ScenarioError {
    let span = err.span.unwrap_or(0..0);
    let path = path_of(source.document, &span);
    let (path, problem, hint) = match err.problem {
        Problem::UnknownKey {
            key,
            expected,
            table_kind,
        } => (
            path,
            format!("unknown key {key:?}"),
            table_kind
                .as_deref()
                .and_then(fault_keys_hint)
                .or_else(|| Some(format!("expected one of: {}", expected.join(", ")))),
        ),
        Problem::MissingKey(key) if path.is_empty() => {
            (key.to_string(), "required key is missing".into(), None)
        }
        Problem::MissingKey(key) => (
            format!("{path}.{key}"),
            "required key is missing".into(),
            None,
        ),
        Problem::UnknownValue { value, expected } => (
            path,
            format!("unknown value {value:?}"),
            Some(format!("expected one of: {}", expected.join(", "))),
        ),
        Problem::WrongType {
            expected,
            found,
            unit_of_bare_number,
            table_for_array,
        } => {
            let key = path.rsplit('.').next().unwrap_or_default();
            let hint = match unit_of_bare_number {
                Some(("p", number)) => Some(format!("write it as a string, e.g. \"p{number}\"")),
                Some((unit, number)) => Some(format!(
                    "units are mandatory: write {key} = \"{number}{unit}\""
                )),
                None if table_for_array => Some(format!("write each entry as a [[{path}]] table")),
                None => None,
            };
            (path, format!("expected {expected}, found {found}"), hint)
        }
        Problem::Unit(err) => (path, err.to_string(), err.hint()),
        Problem::Invalid(problem) => (path, problem, None),
    };
    source.error(span, &path, problem, hint)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
