//! Redis stream entry ids.
//!
//! Ids travel as strings (`"1700000000000-3"`) but must be compared as the
//! pair `(ms, seq)`: comparing strings puts `"5-10"` before `"5-9"`, which is
//! exactly the kind of bug that silently skips messages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stream entry id `<ms>-<seq>`. `0` and `0-0` both mean "before the first
/// message" and parse to [`StreamId::ZERO`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("stream id {0:?} is empty")]
    Empty(String),
    #[error("stream id {0:?} is not of the form <ms>-<seq> with unsigned 64-bit decimal parts")]
    Malformed(String),
}

impl StreamId {
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// The largest id strictly smaller than this one (`None` for `0-0`).
    pub fn predecessor(&self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    /// The smallest id strictly greater than this one, for building
    /// exclusive ranges on servers that lack `(` syntax.
    pub fn successor(&self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }
}

fn parse_part(part: &str, whole: &str) -> Result<u64, StreamIdError> {
    // u64::from_str accepts a leading '+', which is not a decimal id part.
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StreamIdError::Malformed(whole.to_string()));
    }
    part.parse::<u64>()
        .map_err(|_| StreamIdError::Malformed(whole.to_string()))
}

impl FromStr for StreamId {
    type Err = StreamIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(StreamIdError::Empty(text.to_string()));
        }
        match text.split_once('-') {
            Some((ms, seq)) => Ok(StreamId::new(parse_part(ms, text)?, parse_part(seq, text)?)),
            None => {
                // Redis accepts a bare ms part meaning `<ms>-0`; "0" is the
                // protocol's "before everything".
                Ok(StreamId::new(parse_part(text, text)?, 0))
            }
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compares_numerically_not_as_strings() {
        let nine: StreamId = "5-9".parse().unwrap();
        let ten: StreamId = "5-10".parse().unwrap();
        assert!(ten > nine);
        assert!("10-0".parse::<StreamId>().unwrap() > "9-99".parse().unwrap());
    }

    #[test]
    fn zero_forms_are_equal() {
        assert_eq!("0".parse::<StreamId>().unwrap(), StreamId::ZERO);
        assert_eq!("0-0".parse::<StreamId>().unwrap(), StreamId::ZERO);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "+1-2",
            "1-2-3",
            " 1-2",
            "18446744073709551616-0",
        ] {
            assert!(
                bad.parse::<StreamId>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn successor_carries() {
        assert_eq!(StreamId::new(1, 2).successor(), Some(StreamId::new(1, 3)));
        assert_eq!(
            StreamId::new(1, u64::MAX).successor(),
            Some(StreamId::new(2, 0))
        );
        assert_eq!(StreamId::MAX.successor(), None);
        assert_eq!(
            StreamId::new(2, 0).predecessor(),
            Some(StreamId::new(1, u64::MAX))
        );
        assert_eq!(StreamId::ZERO.predecessor(), None);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(ms in any::<u64>(), seq in any::<u64>()) {
            let id = StreamId::new(ms, seq);
            prop_assert_eq!(id.to_string().parse::<StreamId>().unwrap(), id);
        }

        #[test]
        fn order_matches_pair_order(a in any::<(u64, u64)>(), b in any::<(u64, u64)>()) {
            let (x, y) = (StreamId::new(a.0, a.1), StreamId::new(b.0, b.1));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }
}
