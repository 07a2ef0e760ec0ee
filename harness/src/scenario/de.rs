//! A serde `Deserializer` over toml's spanned document tree (`DeTable`).
//!
//! The file schema is plain serde derives (`file.rs`); this deserializer
//! makes their errors precise. It knows the key path and span of every
//! value, and words each error from what serde reports structurally (an
//! unknown key with the keys expected, a missing key, an unknown enum
//! value) or from the type it was asked for, never from message text.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;
use toml::de::DeValue;
use toml::Spanned;

use super::file::{tagged_keys, Tagged};
use recovery_units::{parse_byte_rate, parse_duration, parse_percentile, parse_rate, parse_size};

pub(crate) type Span = Range<usize>;
pub(crate) type Hint = Option<String>;

/// A deserialization error; the innermost value that knows its span and
/// path fills them in.
#[derive(Debug)]
pub(crate) struct DeError {
    pub span: Option<Span>,
    pub path: Option<String>,
    pub problem: String,
    pub hint: Option<String>,
    detail: Detail,
}

/// What serde told about the error beyond its message.
#[derive(Debug, Clone, Copy)]
enum Detail {
    None,
    MissingKey(&'static str),
    /// An unknown enum value: every known one (see `variant_name`).
    UnknownVariant(&'static [&'static str]),
}

impl DeError {
    fn new(problem: impl Into<String>, hint: Option<String>) -> Self {
        let (problem, detail) = (problem.into(), Detail::None);
        DeError {
            problem,
            hint,
            detail,
            span: None,
            path: None,
        }
    }

    fn with(self, detail: Detail) -> Self {
        DeError { detail, ..self }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string(), None)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = format!("expected one of: {}", expected.join(", "));
        DeError::new(format!("unknown key {field:?}"), Some(hint))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new("required key is missing", None).with(Detail::MissingKey(field))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = format!("expected one of: {}", expected.join(", "));
        let problem = format!("unknown value {variant:?}");
        DeError::new(problem, Some(hint)).with(Detail::UnknownVariant(expected))
    }
}

/// Deserializes one value of the document, written at `span` under `path`.
#[derive(Clone)]
pub(crate) struct ValueDe<'a, 'i> {
    pub value: &'a DeValue<'i>,
    pub span: Span,
    pub path: String,
}

impl ValueDe<'_, '_> {
    /// Runs `visit` and gives errors without a place this value's place.
    fn located<T>(&self, visit: impl FnOnce() -> Result<T, DeError>) -> Result<T, DeError> {
        visit().map_err(|mut err| {
            if err.span.is_none() {
                err.span = Some(self.span.clone());
                err.path = Some(match err.detail {
                    Detail::MissingKey(key) => join(&self.path, key),
                    _ => self.path.clone(),
                });
            }
            err
        })
    }

    fn fail<T>(&self, problem: impl Into<String>, hint: Option<String>) -> Result<T, DeError> {
        self.located(|| Err(DeError::new(problem, hint)))
    }

    fn wrong_type<T>(&self, expected: &str, hint: Option<String>) -> Result<T, DeError> {
        self.fail(
            format!("expected {expected}, found {}", describe(self.value)),
            hint,
        )
    }

    fn unsigned(&self) -> Result<u64, DeError> {
        let DeValue::Integer(integer) = self.value else {
            return self.wrong_type("an integer", None);
        };
        match u64::from_str_radix(integer.as_str(), integer.radix()) {
            Ok(value) => Ok(value),
            Err(_) if integer.as_str().starts_with('-') => self.fail("must not be negative", None),
            Err(_) => self.fail(format!("is too large (at most {})", u64::MAX), None),
        }
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::String(_) => self.deserialize_str(visitor),
            DeValue::Integer(_) => self.deserialize_u64(visitor),
            DeValue::Float(_) => self.deserialize_f64(visitor),
            DeValue::Boolean(_) => self.deserialize_bool(visitor),
            DeValue::Array(_) => self.deserialize_seq(visitor),
            DeValue::Table(_) => self.deserialize_map(visitor),
            DeValue::Datetime(_) => {
                self.wrong_type("a string, number, boolean, array or table", None)
            }
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::Boolean(flag) => self.located(|| visitor.visit_bool(*flag)),
            _ => self.wrong_type("true or false", None),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = self.unsigned()?;
        self.located(|| visitor.visit_u64(value))
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match u32::try_from(self.unsigned()?) {
            Ok(value) => self.located(|| visitor.visit_u32(value)),
            Err(_) => self.fail(format!("is too large (at most {})", u32::MAX), None),
        }
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
            None => self.wrong_type("a number", None),
            Some(number) if !number.is_finite() => self.fail("must be a finite number", None),
            Some(number) => self.located(|| visitor.visit_f64(number)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::String(text) => self.located(|| visitor.visit_str(text)),
            _ => self.wrong_type("a string", None),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    /// `file.rs` names its values with units `$unit:<unit>`: their text is
    /// checked here, where the error can carry the unit grammar's hint,
    /// and a bare number gets the quoted form with the unit as a hint.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let Some(unit) = name.strip_prefix("$unit:") else {
            return visitor.visit_newtype_struct(self);
        };
        let key = self.path.rsplit('.').next().unwrap_or_default();
        let hint = |number: &dyn fmt::Display| match unit {
            "p" => format!("write it as a string, e.g. \"p{number}\""),
            _ => format!("units are mandatory: write {key} = \"{number}{unit}\""),
        };
        let checked = match self.value {
            DeValue::Integer(number) => return self.wrong_type("a string", Some(hint(number))),
            DeValue::Float(number) => return self.wrong_type("a string", Some(hint(number))),
            DeValue::String(text) => match unit {
                "s" => parse_duration(text).err(),
                "/s" => parse_rate(text).err(),
                "B" => parse_size(text).err(),
                "B/s" => parse_byte_rate(text).err(),
                _ => parse_percentile(text).err(),
            },
            _ => None,
        };
        match checked {
            Some(err) => self.fail(err.to_string(), err.hint()),
            None => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::Array(items) => {
                let items = items.iter().enumerate().map(|(index, item)| ValueDe {
                    value: item.get_ref(),
                    span: item.span(),
                    path: format!("{}[{index}]", self.path),
                });
                self.located(|| visitor.visit_seq(SeqDe(items)))
            }
            DeValue::Table(_) => {
                let hint = format!("write each entry as a [[{}]] table", self.path);
                self.wrong_type("an array", Some(hint))
            }
            _ => self.wrong_type("an array", None),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_struct("", &[], visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let DeValue::Table(table) = self.value else {
            return self.wrong_type("a table", None);
        };
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let value_of = |key: &str| table.get(key).and_then(|value| value.get_ref().as_str());
        let tagged = tagged_keys(name, value_of);
        let map = MapDe {
            entries,
            next: 0,
            path: &self.path,
            tagged,
        };
        self.located(|| visitor.visit_map(map))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            DeValue::String(text) => {
                self.located(|| visitor.visit_enum(text.as_ref().into_deserializer()))
            }
            _ => self.wrong_type("a string", None),
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

/// An array's elements. Errors raised while reading one, even by a
/// checked type in `file.rs` after its deserializer returned, get its place.
struct SeqDe<I>(I);

impl<'a, 'i: 'a, 'de, I: Iterator<Item = ValueDe<'a, 'i>>> de::SeqAccess<'de> for SeqDe<I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.0.next() else {
            return Ok(None);
        };
        item.located(|| seed.deserialize(item.clone())).map(Some)
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
    path: &'a str,
    tagged: Option<Tagged>,
}

impl<'de> de::MapAccess<'de> for MapDe<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let tagged = self.tagged.as_ref();
        let Some((key, _)) = self.entries.get(self.next) else {
            let written = |name: &&str| self.entries.iter().any(|(key, _)| key.get_ref() == name);
            return match tagged.and_then(|tagged| tagged.requires.iter().find(|k| !written(k))) {
                Some(absent) => Err(de::Error::missing_field(absent)),
                None => Ok(None),
            };
        };
        let (name, span) = (key.get_ref().as_ref(), key.span());
        let hint =
            tagged.map(|tagged| format!("{} takes: {}", tagged.name, tagged.takes.join(", ")));
        let read = seed.deserialize(name.into_deserializer());
        let read = read.map_err(|err: DeError| DeError {
            span: Some(span.clone()),
            path: Some(self.path.to_string()),
            hint: hint.clone().or(err.hint),
            ..err
        })?;
        match tagged {
            Some(tagged) if name != tagged.tag && !tagged.takes.contains(&name) => Err(DeError {
                span: Some(span),
                path: Some(join(self.path, name)),
                ..DeError::new(
                    format!("does not apply to {} = {:?}", tagged.tag, tagged.name),
                    hint,
                )
            }),
            _ => Ok(Some(read)),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, value) = self.entries[self.next];
        self.next += 1;
        let path = join(self.path, key.get_ref());
        let value = ValueDe {
            value: value.get_ref(),
            span: value.span(),
            path,
        };
        value.located(|| seed.deserialize(value.clone()))
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

/// The serde name of a fieldless enum's variant: serde's derive lists every
/// name when it meets an unknown one, and `value`'s is the one that reads
/// back as `value`. The `rename_all` on the enum is thus the one table of
/// names, for the file format, error hints and reports alike.
pub(crate) fn variant_name<T: PartialEq + for<'de> de::Deserialize<'de>>(value: T) -> &'static str {
    let read = |name: &str| T::deserialize(IntoDeserializer::<DeError>::into_deserializer(name));
    let names = match read("").map_err(|err| err.detail) {
        Err(Detail::UnknownVariant(names)) => names,
        _ => &[],
    };
    let name = names
        .iter()
        .find(|name| read(name).is_ok_and(|read| read == value));
    name.copied().unwrap_or("?")
}
