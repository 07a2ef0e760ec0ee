//! A serde `Deserializer` over toml's spanned document tree (`DeTable`).
//!
//! The file schema is plain serde derives (`file.rs`); this deserializer
//! is what makes their errors precise: every error carries the span of
//! the key or value it is about, and its kind is structured (an unknown
//! key with the keys serde expected, a missing key, an unknown enum value,
//! a value of the wrong TOML type), so `parse.rs` words it without ever
//! looking at message text. Key paths are found from the span afterwards
//! ([`path_of`]).

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use recovery_units::{
    parse_byte_rate, parse_duration, parse_percentile, parse_rate, parse_size, UnitError,
};

pub(crate) type Span = Range<usize>;

/// Names of the newtypes in `file.rs` that hold a value with a unit; the
/// unit (or `p`, a percentile's prefix) is shown when a bare number is
/// written instead of a string.
pub(crate) const UNIT_PREFIX: &str = "$unit:";

#[derive(Debug)]
pub(crate) enum Problem {
    UnknownKey {
        key: String,
        expected: &'static [&'static str],
        /// The `kind` written in the same table, if any (faults).
        table_kind: Option<String>,
    },
    MissingKey(&'static str),
    UnknownValue {
        value: String,
        expected: &'static [&'static str],
    },
    WrongType {
        expected: &'static str,
        found: String,
        /// A bare number where a value with this unit belongs.
        unit_of_bare_number: Option<(&'static str, String)>,
        /// A single table where an array (of tables) belongs.
        table_for_array: bool,
    },
    /// A value with a unit that does not parse.
    Unit(UnitError),
    Invalid(String),
}

/// A deserialization error and where (`None` until the innermost value
/// that knows its span passes it on).
#[derive(Debug)]
pub(crate) struct DeError {
    pub problem: Problem,
    pub span: Option<Span>,
}

impl DeError {
    fn at(problem: Problem, span: Span) -> Self {
        DeError {
            problem,
            span: Some(span),
        }
    }

    fn or_at(mut self, span: &Span) -> Self {
        self.span.get_or_insert_with(|| span.clone());
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.problem)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::from(Problem::Invalid(msg.to_string()))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::from(Problem::UnknownKey {
            key: field.to_string(),
            expected,
            table_kind: None,
        })
    }

    fn missing_field(field: &'static str) -> Self {
        Self::from(Problem::MissingKey(field))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::from(Problem::UnknownValue {
            value: variant.to_string(),
            expected,
        })
    }
}

impl From<Problem> for DeError {
    fn from(problem: Problem) -> Self {
        DeError {
            problem,
            span: None,
        }
    }
}

/// Deserializes one value of the document; `Table` for the root.
pub(crate) struct ValueDe<'a, 'i> {
    pub value: &'a DeValue<'i>,
    pub span: Span,
}

impl<'a, 'i> ValueDe<'a, 'i> {
    pub fn new(value: &'a Spanned<DeValue<'i>>) -> Self {
        ValueDe {
            value: value.get_ref(),
            span: value.span(),
        }
    }

    fn wrong_type(&self, expected: &'static str) -> DeError {
        DeError::at(
            Problem::WrongType {
                expected,
                found: describe(self.value),
                unit_of_bare_number: None,
                table_for_array: false,
            },
            self.span.clone(),
        )
    }

    fn invalid(&self, problem: impl Into<String>) -> DeError {
        DeError::at(Problem::Invalid(problem.into()), self.span.clone())
    }

    fn unsigned(&self) -> Result<u64, DeError> {
        let DeValue::Integer(integer) = self.value else {
            return Err(self.wrong_type("an integer"));
        };
        let text = integer.as_str();
        u64::from_str_radix(text, integer.radix()).map_err(|_| {
            if text.starts_with('-') {
                self.invalid("must not be negative")
            } else {
                self.invalid(format!("is too large (at most {})", u64::MAX))
            }
        })
    }
}

impl<'de> IntoDeserializer<'de, DeError> for ValueDe<'_, '_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// Runs `visit` and gives errors without a position this value's span.
fn located<T>(span: &Span, visit: impl FnOnce() -> Result<T, DeError>) -> Result<T, DeError> {
    visit().map_err(|err| err.or_at(span))
}

impl<'de> de::Deserializer<'de> for ValueDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::String(text) => located(&self.span, || visitor.visit_str(text)),
            DeValue::Integer(_) => {
                let value = self.unsigned()?;
                located(&self.span, || visitor.visit_u64(value))
            }
            DeValue::Float(_) => self.deserialize_f64(visitor),
            DeValue::Boolean(flag) => located(&self.span, || visitor.visit_bool(*flag)),
            DeValue::Array(_) => self.deserialize_seq(visitor),
            DeValue::Table(_) => self.deserialize_map(visitor),
            DeValue::Datetime(_) => Err(self.wrong_type("no datetime")),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::Boolean(flag) => located(&self.span, || visitor.visit_bool(*flag)),
            _ => Err(self.wrong_type("true or false")),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = self.unsigned()?;
        located(&self.span, || visitor.visit_u64(value))
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = u32::try_from(self.unsigned()?)
            .map_err(|_| self.invalid(format!("is too large (at most {})", u32::MAX)))?;
        located(&self.span, || visitor.visit_u32(value))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let number = match self.value {
            DeValue::Integer(integer) => i64::from_str_radix(integer.as_str(), integer.radix())
                .map(|value| value as f64)
                .ok(),
            DeValue::Float(float) => float.as_str().parse::<f64>().ok(),
            _ => None,
        };
        match number {
            None => Err(self.wrong_type("a number")),
            Some(number) if !number.is_finite() => Err(self.invalid("must be a finite number")),
            Some(number) => located(&self.span, || visitor.visit_f64(number)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::String(text) => located(&self.span, || visitor.visit_str(text)),
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let number = match self.value {
            DeValue::Integer(integer) => Some(integer.to_string()),
            DeValue::Float(float) => Some(float.to_string()),
            _ => None,
        };
        match (name.strip_prefix(UNIT_PREFIX), number) {
            (Some(unit), Some(number)) => {
                let mut err = self.wrong_type("a string");
                if let Problem::WrongType {
                    unit_of_bare_number,
                    ..
                } = &mut err.problem
                {
                    *unit_of_bare_number = Some((unit, number));
                }
                Err(err)
            }
            (Some(unit), None) => {
                if let DeValue::String(text) = self.value {
                    check_unit(unit, text)
                        .map_err(|err| DeError::at(Problem::Unit(err), self.span.clone()))?;
                }
                visitor.visit_newtype_struct(self)
            }
            (None, _) => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::Array(items) => {
                located(&self.span, || visitor.visit_seq(SeqDe { items, next: 0 }))
            }
            _ => {
                let mut err = self.wrong_type("an array");
                if let (
                    Problem::WrongType {
                        table_for_array, ..
                    },
                    DeValue::Table(_),
                ) = (&mut err.problem, self.value)
                {
                    *table_for_array = true;
                }
                Err(err)
            }
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let DeValue::Table(table) = self.value else {
            return Err(self.wrong_type("a table"));
        };
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let table_kind = table
            .get("kind")
            .and_then(|kind| kind.get_ref().as_str())
            .map(str::to_string);
        let map = MapDe {
            entries,
            next: 0,
            table_kind,
        };
        located(&self.span, || visitor.visit_map(map))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if serde_spanned::de::is_spanned(name) {
            let span = self.span.clone();
            return visitor.visit_map(serde_spanned::de::SpannedDeserializer::new(self, span));
        }
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::String(text) => {
                let text: &str = text;
                located(&self.span, || visitor.visit_enum(text.into_deserializer()))
            }
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u128 f32 char bytes byte_buf unit unit_struct
        tuple tuple_struct identifier
    }
}

struct SeqDe<'a, 'i> {
    items: &'a DeArray<'i>,
    next: usize,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let span = item.span();
        located(&span, || seed.deserialize(ValueDe::new(item))).map(Some)
    }
}

type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

struct MapDe<'a, 'i> {
    /// In file order, so the first bad key in the file is the one reported.
    entries: Vec<Entry<'a, 'i>>,
    next: usize,
    table_kind: Option<String>,
}

impl<'de> de::MapAccess<'de> for MapDe<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        let name: &str = key.get_ref();
        seed.deserialize(name.into_deserializer())
            .map(Some)
            .map_err(|mut err: DeError| {
                if let Problem::UnknownKey { table_kind, .. } = &mut err.problem {
                    table_kind.clone_from(&self.table_kind);
                }
                err.or_at(&key.span())
            })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (_, value) = self.entries[self.next];
        self.next += 1;
        located(&value.span(), || seed.deserialize(ValueDe::new(value)))
    }
}

/// Parses `text` as a value with `unit` (a name from `file.rs`).
fn check_unit(unit: &str, text: &str) -> Result<(), UnitError> {
    match unit {
        "s" => parse_duration(text).map(drop),
        "/s" => parse_rate(text).map(drop),
        "B" => parse_size(text).map(drop),
        "B/s" => parse_byte_rate(text).map(drop),
        _ => parse_percentile(text).map(drop),
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

/// The key path (`faults[2].link`) of the key or value written at `span`;
/// a key's span gives the path of its table. Empty when nothing in the
/// document is written there (the root).
pub(crate) fn path_of(table: &DeTable<'_>, span: &Span) -> String {
    // The deepest match wins: an array of tables is written where its
    // first `[[table]]` is.
    fn in_value(value: &Spanned<DeValue<'_>>, path: &str, span: &Span) -> Option<String> {
        let inner = match value.get_ref() {
            DeValue::Table(table) => in_table(table, path, span),
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(index, item)| in_value(item, &format!("{path}[{index}]"), span)),
            _ => None,
        };
        inner.or_else(|| (value.span() == *span).then(|| path.to_string()))
    }
    fn in_table(table: &DeTable<'_>, path: &str, span: &Span) -> Option<String> {
        table.iter().find_map(|(key, value)| {
            if key.span() == *span {
                return Some(path.to_string());
            }
            let key: &str = key.get_ref();
            let child = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            in_value(value, &child, span)
        })
    }
    in_table(table, "", span).unwrap_or_default()
}

/// Where `key` is written in the table written at `table_span`.
pub(crate) fn key_span(document: &DeTable<'_>, table_span: &Span, key: &str) -> Option<Span> {
    fn find<'a, 'i>(table: &'a DeTable<'i>, span: &Span) -> Option<&'a DeTable<'i>> {
        table.values().find_map(|value| match value.get_ref() {
            DeValue::Table(inner) if value.span() == *span => Some(inner),
            DeValue::Table(inner) => find(inner, span),
            DeValue::Array(items) => items.iter().find_map(|item| match item.get_ref() {
                DeValue::Table(inner) if item.span() == *span => Some(inner),
                DeValue::Table(inner) => find(inner, span),
                _ => None,
            }),
            _ => None,
        })
    }
    let table = if table_span.is_empty() && table_span.start == 0 {
        Some(document)
    } else {
        find(document, table_span)
    };
    table?.get_key_value(key).map(|(key, _)| key.span())
}
