//! Names of fieldless enums, read from their serde derive: the
//! `rename_all` on the enum is the one table of names, used by the file
//! format, error hints and reports alike.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::forward_to_deserialize_any;

/// The serde name of a fieldless enum's variant.
///
/// serde's derive passes the (renamed) variant names, in declaration
/// order, to `deserialize_enum`; a fieldless enum's discriminant is its
/// position in that order.
pub(crate) fn variant_name<T>(value: &T) -> &'static str
where
    T: Copy + for<'de> Deserialize<'de> + Into<usize>,
{
    let names = match T::deserialize(NamesOnly) {
        Err(Names(names)) => names,
        Ok(_) => &[],
    };
    names.get((*value).into()).copied().unwrap_or("?")
}

/// A deserializer that produces nothing but the variant names.
struct NamesOnly;

#[derive(Debug)]
struct Names(&'static [&'static str]);

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "variant names {:?}", self.0)
    }
}

impl std::error::Error for Names {}

impl de::Error for Names {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Names(&[])
    }
}

impl<'de> Deserializer<'de> for NamesOnly {
    type Error = Names;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Names> {
        Err(Names(&[]))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Names> {
        Err(Names(variants))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}

/// `impl From<Enum> for usize` (the discriminant), for [`variant_name`].
macro_rules! discriminant_into_usize {
    ($($name:ty),*) => {$(
        impl From<$name> for usize {
            fn from(value: $name) -> usize {
                value as usize
            }
        }
    )*};
}
pub(crate) use discriminant_into_usize;
