//! Typed, spanned access to one TOML table of a scenario file.
//!
//! The file is parsed into toml's spanned document tree (`DeTable`) rather
//! than straight into serde structs: that way every error, including an
//! unknown key or a wrong type, carries our own key path, wording and hint
//! instead of serde's message text, and no error has to be classified by
//! its string.

use std::ops::Range;
use std::time::Duration;

use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::error::{Origin, ScenarioError, UnitError};
use super::units::{parse_byte_rate, parse_duration, parse_percentile, parse_rate, parse_size};

pub(crate) type Span = Range<usize>;

/// A value read from the file, with where it was written and its key path
/// (so later checks, like `min <= max`, can blame the right place).
#[derive(Debug, Clone)]
pub(crate) struct Found<T> {
    pub value: T,
    pub span: Span,
    pub key: String,
}

impl<T> Found<T> {
    pub fn map<U>(self, convert: impl FnOnce(T) -> U) -> Found<U> {
        Found {
            value: convert(self.value),
            span: self.span,
            key: self.key,
        }
    }
}

/// One table (a `[header]` table, an inline table or an element of an
/// array of tables) and the path that leads to it.
#[derive(Clone)]
pub(crate) struct Table<'a, 'i> {
    pub origin: Origin<'a>,
    path: String,
    span: Span,
    entries: &'a DeTable<'i>,
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn root(origin: Origin<'a>, document: &'a Spanned<DeTable<'i>>) -> Self {
        Table {
            origin,
            path: String::new(),
            // The document's own span is empty; errors about the root
            // (a missing required key) point at the start of the file.
            span: 0..0,
            entries: document.get_ref(),
        }
    }

    /// This table's own key path (`faults[2]`; empty for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn fail<T>(
        &self,
        found: &Found<T>,
        problem: impl Into<String>,
        hint: Option<String>,
    ) -> ScenarioError {
        self.origin
            .error(found.span.clone(), &found.key, problem, hint)
    }

    /// An error about the table as a whole, at its header.
    pub fn fail_table(&self, problem: impl Into<String>, hint: Option<String>) -> ScenarioError {
        self.origin
            .error(self.span.clone(), &self.path, problem, hint)
    }

    /// Rejects the first key (in file order) not in `allowed`.
    pub fn reject_unknown_keys(&self, allowed: &[&str]) -> Result<(), ScenarioError> {
        let unknown = self
            .entries
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !allowed.contains(&key.get_ref().as_ref()))
            .min_by_key(|key| key.span().start);
        match unknown {
            None => Ok(()),
            Some(key) => Err(self.origin.error(
                key.span(),
                &self.path,
                format!("unknown key {:?}", key.get_ref()),
                Some(format!("expected one of: {}", allowed.join(", "))),
            )),
        }
    }

    /// Where `key` is written, if it is.
    pub fn key_span(&self, key: &str) -> Option<Span> {
        self.entries.get_key_value(key).map(|(key, _)| key.span())
    }

    /// The keys written in this table with where each is written, in file
    /// order.
    pub fn keys(&self) -> Vec<(&'a str, Span)> {
        let mut keys: Vec<(&'a str, Span)> = self
            .entries
            .iter()
            .map(|(key, _)| (key.get_ref().as_ref(), key.span()))
            .collect();
        keys.sort_by_key(|(_, span)| span.start);
        keys
    }

    fn raw(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.entries.get(key)
    }

    /// Reads `key` with `convert`, which returns `None` when the value has
    /// the wrong TOML type (then the error says `expected`).
    fn typed<T>(
        &self,
        key: &str,
        expected: &str,
        hint: Option<String>,
        convert: impl FnOnce(&'a DeValue<'i>) -> Option<T>,
    ) -> Result<Option<Found<T>>, ScenarioError> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        let key_path = self.key_path(key);
        match convert(raw.get_ref()) {
            Some(value) => Ok(Some(Found {
                value,
                span: raw.span(),
                key: key_path,
            })),
            None => Err(self.origin.error(
                raw.span(),
                &key_path,
                format!("expected {expected}, found {}", describe(raw.get_ref())),
                hint,
            )),
        }
    }

    /// Turns a missing optional value into the "required" error.
    pub fn require<T>(
        &self,
        key: &str,
        found: Option<Found<T>>,
    ) -> Result<Found<T>, ScenarioError> {
        found.ok_or_else(|| {
            self.origin.error(
                self.span.clone(),
                &self.key_path(key),
                "required key is missing",
                None,
            )
        })
    }

    pub fn string(&self, key: &str) -> Result<Option<Found<&'a str>>, ScenarioError> {
        self.typed(key, "a string", None, |value| value.as_str())
    }

    pub fn bool(&self, key: &str) -> Result<Option<Found<bool>>, ScenarioError> {
        self.typed(key, "true or false", None, |value| value.as_bool())
    }

    /// A non-negative integer up to `u64::MAX`.
    pub fn unsigned(&self, key: &str) -> Result<Option<Found<u64>>, ScenarioError> {
        let found = self.typed(key, "an integer", None, |value| value.as_integer())?;
        let Some(found) = found else {
            return Ok(None);
        };
        let text = found.value.as_str();
        match u64::from_str_radix(text, found.value.radix()) {
            Ok(value) => Ok(Some(found.map(|_| value))),
            Err(_) if text.starts_with('-') => Err(self.fail(&found, "must not be negative", None)),
            Err(_) => Err(self.fail(&found, "is too large (at most 18446744073709551615)", None)),
        }
    }

    /// A count: a non-negative integer that fits in `u32`.
    pub fn count(&self, key: &str) -> Result<Option<Found<u32>>, ScenarioError> {
        let Some(found) = self.unsigned(key)? else {
            return Ok(None);
        };
        match u32::try_from(found.value) {
            Ok(value) => Ok(Some(found.map(|_| value))),
            Err(_) => Err(self.fail(&found, format!("is too large (at most {})", u32::MAX), None)),
        }
    }

    /// A finite number, integer or float.
    pub fn number(&self, key: &str) -> Result<Option<Found<f64>>, ScenarioError> {
        let found = self.typed(key, "a number", None, |value| match value {
            DeValue::Integer(integer) => i64::from_str_radix(integer.as_str(), integer.radix())
                .ok()
                .map(|value| value as f64),
            DeValue::Float(float) => float.as_str().parse::<f64>().ok(),
            _ => None,
        })?;
        match found {
            Some(found) if !found.value.is_finite() => {
                Err(self.fail(&found, "must be a finite number", None))
            }
            other => Ok(other),
        }
    }

    pub fn duration(&self, key: &str) -> Result<Option<Found<Duration>>, ScenarioError> {
        self.with_unit(key, "s", parse_duration)
    }

    pub fn rate(&self, key: &str) -> Result<Option<Found<f64>>, ScenarioError> {
        self.with_unit(key, "/s", parse_rate)
    }

    pub fn size(&self, key: &str) -> Result<Option<Found<u32>>, ScenarioError> {
        self.with_unit(key, "B", parse_size)
    }

    pub fn byte_rate(&self, key: &str) -> Result<Option<Found<u64>>, ScenarioError> {
        self.with_unit(key, "B/s", parse_byte_rate)
    }

    pub fn percentile(&self, key: &str) -> Result<Option<Found<f64>>, ScenarioError> {
        self.with_unit(key, "", parse_percentile)
    }

    /// A string holding a number with a unit. A bare TOML number gets a
    /// hint showing the quoted form with `example_unit`.
    fn with_unit<T>(
        &self,
        key: &str,
        example_unit: &str,
        parse: fn(&str) -> Result<T, UnitError>,
    ) -> Result<Option<Found<T>>, ScenarioError> {
        let bare_number_hint = self.raw(key).and_then(|raw| match raw.get_ref() {
            DeValue::Integer(integer) => Some(integer.to_string()),
            DeValue::Float(float) => Some(float.to_string()),
            _ => None,
        });
        let hint = bare_number_hint.map(|number| {
            if example_unit.is_empty() {
                format!("write it as a string, e.g. \"p{number}\"")
            } else {
                format!("units are mandatory: write {key} = \"{number}{example_unit}\"")
            }
        });
        let Some(found) = self.typed(key, "a string", hint, |value| value.as_str())? else {
            return Ok(None);
        };
        match parse(found.value) {
            Ok(value) => Ok(Some(found.map(|_| value))),
            Err(err) => Err(self.fail(&found, err.to_string(), err.hint())),
        }
    }

    pub fn table(&self, key: &str) -> Result<Option<Table<'a, 'i>>, ScenarioError> {
        let found = self.typed(key, "a table", None, |value| match value {
            DeValue::Table(entries) => Some(entries),
            _ => None,
        })?;
        Ok(found.map(|found| Table {
            origin: self.origin,
            path: found.key,
            span: found.span,
            entries: found.value,
        }))
    }

    pub fn array(&self, key: &str) -> Result<Option<Found<&'a DeArray<'i>>>, ScenarioError> {
        self.array_with_hint(key, None)
    }

    /// An array whose elements are tables; a single `[key]` table gets a
    /// hint to write `[[key]]`.
    pub fn array_of_tables(
        &self,
        key: &str,
    ) -> Result<Option<Found<&'a DeArray<'i>>>, ScenarioError> {
        let hint = match self.raw(key).map(|raw| raw.get_ref()) {
            Some(DeValue::Table(_)) => Some(format!("write each entry as a [[{key}]] table")),
            _ => None,
        };
        self.array_with_hint(key, hint)
    }

    fn array_with_hint(
        &self,
        key: &str,
        hint: Option<String>,
    ) -> Result<Option<Found<&'a DeArray<'i>>>, ScenarioError> {
        self.typed(key, "an array", hint, |value| match value {
            DeValue::Array(items) => Some(items),
            _ => None,
        })
    }

    /// Element `index` of the array at `array`, which must be a table.
    pub fn element_table(
        &self,
        array: &Found<&'a DeArray<'i>>,
        index: usize,
    ) -> Result<Table<'a, 'i>, ScenarioError> {
        let item = &array.value[index];
        let path = format!("{}[{index}]", array.key);
        match item.get_ref() {
            DeValue::Table(entries) => Ok(Table {
                origin: self.origin,
                path,
                span: item.span(),
                entries,
            }),
            other => Err(self.origin.error(
                item.span(),
                &path,
                format!("expected a table, found {}", describe(other)),
                None,
            )),
        }
    }

    /// Element `index` of the array at `array`, which must be a string.
    pub fn element_string(
        &self,
        array: &Found<&'a DeArray<'i>>,
        index: usize,
    ) -> Result<Found<&'a str>, ScenarioError> {
        let item = &array.value[index];
        let key = format!("{}[{index}]", array.key);
        match item.get_ref() {
            DeValue::String(text) => Ok(Found {
                value: text.as_ref(),
                span: item.span(),
                key,
            }),
            other => Err(self.origin.error(
                item.span(),
                &key,
                format!("expected a string, found {}", describe(other)),
                None,
            )),
        }
    }
}

/// "an integer (30)": the type and, for scalars, the value as written.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(text) => format!("a string ({text:?})"),
        DeValue::Integer(integer) => format!("an integer ({integer})"),
        DeValue::Float(float) => format!("a float ({float})"),
        DeValue::Boolean(flag) => format!("a boolean ({flag})"),
        DeValue::Datetime(datetime) => format!("a datetime ({datetime})"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}
