//! Where a message sits in its conversation: the checker's only notion of
//! order, owned by the history so no wire type leaks into the checker.
//!
//! A position is a pair `(major, minor)` compared lexicographically, and
//! written `"<major>-<minor>"` (a bare `"<major>"` reads as `<major>-0`).
//! That is exactly a Redis stream entry id, so:
//! - protocol v1 maps its `Position` (`ms-seq`) 1:1;
//! - Socket.IO's `@socket.io/redis-streams-adapter` hands out Redis stream
//!   ids as offsets, which map 1:1 too;
//! - an adapter whose server has no ordered ids numbers a conversation's
//!   messages itself, `0-<n>` in the order of the authoritative log (see
//!   docs/adapters.md, "Servers without ordered ids").
//!
//! Positions are compared as numbers, never as strings: `"5-10"` sorts
//! before `"5-9"` as text, the kind of bug that silently skips messages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A message's place in its conversation's total order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Most significant part (v1 and Redis streams: milliseconds).
    pub major: u64,
    /// Least significant part (v1 and Redis streams: sequence in the ms).
    pub minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("position {0:?} is empty")]
    Empty(String),
    #[error(
        "position {0:?} is not of the form <major>-<minor> with unsigned 64-bit decimal parts"
    )]
    Malformed(String),
}

impl Position {
    /// Before the first message.
    pub const ZERO: Position = Position::new(0, 0);
    pub const MAX: Position = Position::new(u64::MAX, u64::MAX);

    pub const fn new(major: u64, minor: u64) -> Self {
        Position { major, minor }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// The largest position strictly smaller than this one (`None` for zero).
    pub fn predecessor(&self) -> Option<Position> {
        if self.minor > 0 {
            Some(Position::new(self.major, self.minor - 1))
        } else if self.major > 0 {
            Some(Position::new(self.major - 1, u64::MAX))
        } else {
            None
        }
    }

    /// The smallest position strictly greater than this one.
    pub fn successor(&self) -> Option<Position> {
        if self.minor < u64::MAX {
            Some(Position::new(self.major, self.minor + 1))
        } else if self.major < u64::MAX {
            Some(Position::new(self.major + 1, 0))
        } else {
            None
        }
    }
}

fn parse_part(part: &str, whole: &str) -> Result<u64, PositionError> {
    // u64::from_str accepts a leading '+', which is not a decimal part.
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PositionError::Malformed(whole.to_string()));
    }
    part.parse::<u64>()
        .map_err(|_| PositionError::Malformed(whole.to_string()))
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(PositionError::Empty(text.to_string()));
        }
        match text.split_once('-') {
            Some((major, minor)) => Ok(Position::new(
                parse_part(major, text)?,
                parse_part(minor, text)?,
            )),
            None => Ok(Position::new(parse_part(text, text)?, 0)),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn position() -> impl Strategy<Value = Position> {
        // Small parts collide often (equal majors, carries); large ones
        // exercise the digit-count cases a string comparison gets wrong.
        let part = prop_oneof![0u64..4, 0u64..20, any::<u64>()];
        (part.clone(), part).prop_map(|(major, minor)| Position::new(major, minor))
    }

    #[test]
    fn text_forms() {
        assert_eq!("0".parse::<Position>(), Ok(Position::ZERO));
        assert_eq!("5-9".parse::<Position>(), Ok(Position::new(5, 9)));
        assert!("5-".parse::<Position>().is_err());
        assert!("+5-1".parse::<Position>().is_err());
        assert!("".parse::<Position>().is_err());
        assert!(Position::new(5, 9) < Position::new(5, 10));
    }

    proptest! {
        #[test]
        fn order_is_numeric_not_textual(a in position(), b in position()) {
            prop_assert_eq!(a.cmp(&b), (a.major, a.minor).cmp(&(b.major, b.minor)));
        }

        #[test]
        fn text_round_trip_keeps_order(a in position(), b in position()) {
            let a2: Position = a.to_string().parse().unwrap();
            let b2: Position = b.to_string().parse().unwrap();
            prop_assert_eq!(a2, a);
            prop_assert_eq!(a2.cmp(&b2), a.cmp(&b));
            let json = serde_json::to_string(&a).unwrap();
            prop_assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), a);
        }

        #[test]
        fn neighbours_are_adjacent(a in position(), b in position()) {
            if let Some(next) = a.successor() {
                prop_assert!(next > a);
                prop_assert_eq!(next.predecessor(), Some(a));
                // Nothing lies strictly between a position and its successor.
                prop_assert!(!(b > a && b < next));
            }
            if let Some(previous) = a.predecessor() {
                prop_assert!(previous < a);
                prop_assert_eq!(previous.successor(), Some(a));
            }
        }

        #[test]
        fn sorting_matches_pair_order(mut list in proptest::collection::vec(position(), 0..40)) {
            let mut pairs: Vec<(u64, u64)> = list.iter().map(|p| (p.major, p.minor)).collect();
            list.sort();
            pairs.sort();
            let sorted: Vec<(u64, u64)> = list.iter().map(|p| (p.major, p.minor)).collect();
            prop_assert_eq!(sorted, pairs);
        }
    }
}
