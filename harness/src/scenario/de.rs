//! Reading the document into the schema (`file.rs`, `model.rs`) with the
//! `toml` crate's own serde deserializer: its errors carry the span of the
//! value or key they are about, and `serde_path_to_error` names the key
//! path. Values with units get a visitor that turns a bare number into a
//! hint with the unit.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use toml::de::DeTable;
use toml::Spanned;

use recovery_units::UnitError;

pub(crate) type Span = Range<usize>;
pub(crate) type Hint = Option<String>;

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A deserialization error: where (span, key path) and what.
pub(crate) struct DeError {
    pub span: Span,
    pub path: String,
    pub problem: String,
}

/// Reads the parsed document as `T`; the first problem in file order wins.
pub(crate) fn read<T: DeserializeOwned>(document: Spanned<DeTable<'_>>) -> Result<T, DeError> {
    let deserializer = toml::de::Deserializer::from(document);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = err.into_inner();
        DeError {
            span: inner.span().unwrap_or(0..0),
            path,
            problem: inner.message().to_string(),
        }
    })
}

/// Reads a value with a unit (`unit` as written after the number: `s`,
/// `/s`, `B`, `B/s`; `p` for a percentile, written before it) with
/// `parse`, the grammar shared with the server's flags.
pub(crate) fn with_unit<'de, D, T>(
    deserializer: D,
    unit: &'static str,
    parse: fn(&str) -> Result<T, UnitError>,
) -> Result<T, D::Error>
where
    D: de::Deserializer<'de>,
{
    deserializer.deserialize_str(UnitVisitor { unit, parse })
}

struct UnitVisitor<T> {
    unit: &'static str,
    parse: fn(&str) -> Result<T, UnitError>,
}

impl<T> UnitVisitor<T> {
    /// A bare number: the quoted form with the unit is the hint.
    fn bare<E: de::Error>(&self, number: &dyn fmt::Display) -> Result<T, E> {
        let write = match self.unit {
            "p" => format!("write it as a string, e.g. \"p{number}\""),
            unit => format!("units are mandatory: write \"{number}{unit}\""),
        };
        Err(E::custom(format!(
            "expected a string, found the number {number} ({write})"
        )))
    }
}

impl<T> Visitor<'_> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.unit {
            "p" => f.write_str("a percentile as a string, e.g. \"p99\""),
            unit => write!(f, "a string with its unit ({unit})"),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.parse)(text).map_err(|err| match err.hint() {
            Some(hint) => E::custom(format!("{err} ({hint})")),
            None => E::custom(err),
        })
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<T, E> {
        self.bare(&number)
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<T, E> {
        self.bare(&number)
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<T, E> {
        self.bare(&number)
    }
}

/// The serde name of a fieldless enum's variant: serde's derive lists every
/// name when it meets an unknown one, and `value`'s is the one that reads
/// back as `value`. The `rename_all` on the enum is thus the one table of
/// names, for the file format, error hints and reports alike.
pub(crate) fn variant_name<T: PartialEq + DeserializeOwned>(value: T) -> &'static str {
    let read = |name: &str| T::deserialize(IntoDeserializer::<Names>::into_deserializer(name));
    let names = match read("") {
        Err(Names(names)) => names,
        Ok(_) => &[],
    };
    let name = names
        .iter()
        .find(|name| read(name).is_ok_and(|read| read == value));
    name.copied().unwrap_or("?")
}

/// The error [`variant_name`] reads the names from (empty for any other).
#[derive(Debug)]
struct Names(&'static [&'static str]);

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "variants: {:?}", self.0)
    }
}

impl std::error::Error for Names {}

impl de::Error for Names {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Names(&[])
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Names(expected)
    }
}
