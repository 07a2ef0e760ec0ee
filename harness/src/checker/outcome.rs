//! What the checker concludes: a verdict and named anomalies, each with a
//! count and concrete examples a person can go and look at.

use std::collections::BTreeMap;

use crate::history::Position;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::history::{ConversationIx, DeviceIx, LogOrigin};

/// Most examples kept per anomaly kind.
pub const MAX_EXAMPLES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check passed.
    Valid,
    /// At least one invariant was violated (see the anomalies).
    Invalid,
    /// Nothing was violated, but the run could not be fully checked (drain
    /// timed out, log unavailable): see `unknown_reasons`.
    Unknown,
}

/// Declares `AnomalyKind` from ONE list of (variant, name): the enum,
/// `ALL` (declaration order, which is also the order of reports and the
/// index `kind as usize`), `name()`, parsing, and serde all come from it,
/// so a new kind cannot be left out of any of them, and an unknown name is
/// an error rather than a silent fallback.
macro_rules! anomaly_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum AnomalyKind {
            $( $(#[$doc])* $variant, )+
        }

        impl AnomalyKind {
            /// Every kind, in declaration order (`ALL[kind as usize] == kind`).
            pub const ALL: &'static [AnomalyKind] = &[$(AnomalyKind::$variant),+];

            /// The name used in summary.json, reports and docs.
            pub fn name(self) -> &'static str {
                match self {
                    $( AnomalyKind::$variant => $name, )+
                }
            }

            /// The kind with this name, if there is one.
            pub fn from_name(name: &str) -> Option<AnomalyKind> {
                match name {
                    $( $name => Some(AnomalyKind::$variant), )+
                    _ => None,
                }
            }
        }
    };
}

anomaly_kinds! {
    /// A message in the log that a member device never received, not
    /// covered by a declared gap.
    Lost => "lost",
    /// One id delivered twice to one client-cursor device.
    Duplicate => "duplicate",
    /// One id delivered twice to a stored-cursor device across a reconnect
    /// (allowed at-least-once; an anomaly only when the scenario forbids it),
    /// or to any device whose cursor a Redis wipe destroyed.
    Redelivered => "redelivered",
    /// Ids on one socket not strictly increasing.
    Reorder => "reorder",
    /// A socket jumped over an id it owed (even if a later socket delivered it).
    Skip => "skip",
    /// Delivered, but never in the log or never attempted by any sender.
    Phantom => "phantom",
    /// A send was acked but its id is absent from the log (no violation
    /// where the scenario destroys Redis data on purpose).
    LostAck => "lost_ack",
    /// One client_msg_id appended at two ids.
    DuplicateAppend => "duplicate_append",
    /// Body or sender of a delivery differs from the log.
    Corrupt => "corrupt",
    /// A message the device never received because a `gap` declared it
    /// lost although the log still held it (`trimmed`), or the epoch had
    /// not changed (`epoch_changed`): loss disguised as a declared gap.
    FalseGap => "false_gap",
    /// A message of one conversation delivered on a socket of another:
    /// one conversation's messages reached another's members.
    Leak => "leak",
    /// A `caught_up` whose `replayed` or `last_id` contradicts what its
    /// socket wrote before it, or whose head lies below a message acked
    /// before the socket connected (the backlog was not done).
    FalseCaughtUp => "false_caught_up",
    /// A send answered `unavailable` ("not appended", a definite failure)
    /// that was appended anyway: its retry was acked `duplicate: true`, or
    /// the log holds it, and no attempt without that answer can have done it.
    FalseFailure => "false_failure",
}

/// An anomaly name that is not one of `AnomalyKind::ALL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown anomaly kind {0:?}")]
pub struct UnknownAnomalyKind(pub String);

impl std::str::FromStr for AnomalyKind {
    type Err = UnknownAnomalyKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        AnomalyKind::from_name(name).ok_or_else(|| UnknownAnomalyKind(name.to_string()))
    }
}

impl std::fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for AnomalyKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for AnomalyKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// One concrete instance of an anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyExample {
    pub device: Option<DeviceIx>,
    pub user_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub conversation: ConversationIx,
    pub conversation_id: Uuid,
    /// Socket number of the (device, conversation) where it was seen.
    pub socket: Option<u32>,
    /// The ids involved (e.g. the lost id; the two ids of a reorder).
    pub ids: Vec<Position>,
    pub client_msg_id: Option<Uuid>,
    /// When it was seen (history time, microseconds since start).
    pub at_us: Option<u64>,
    /// One human sentence: what was expected and what happened.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyReport {
    pub kind: AnomalyKind,
    /// Whether this kind makes the verdict invalid under the scenario's
    /// expectations (`redelivered` may be allowed).
    pub violation: bool,
    pub count: u64,
    /// Up to `MAX_EXAMPLES`, earliest first.
    pub examples: Vec<AnomalyExample>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStats {
    pub messages_in_log: u64,
    pub deliveries_checked: u64,
    pub devices_checked: u64,
    pub sockets_checked: u64,
    pub sends_acked: u64,
    pub declared_gaps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub verdict: Verdict,
    pub log_source: LogOrigin,
    /// Every kind that occurred at least once, in `AnomalyKind` order.
    pub anomalies: BTreeMap<AnomalyKind, AnomalyReport>,
    /// Why the verdict is `unknown` (empty otherwise).
    pub unknown_reasons: Vec<String>,
    pub stats: CheckStats,
}

impl CheckOutcome {
    pub fn count(&self, kind: AnomalyKind) -> u64 {
        self.anomalies.get(&kind).map_or(0, |report| report.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_name_and_index() {
        let mut names = std::collections::BTreeSet::new();
        for (index, kind) in AnomalyKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, index, "{kind} is at its own index");
            assert!(names.insert(kind.name()), "{kind} has a name of its own");
            assert_eq!(kind.name().parse::<AnomalyKind>(), Ok(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<AnomalyKind>(&json).unwrap(), *kind);
        }
    }

    #[test]
    fn unknown_kind_is_an_error_not_a_fallback() {
        let err = "stolen".parse::<AnomalyKind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown anomaly kind \"stolen\"");
        assert!(serde_json::from_str::<AnomalyKind>("\"stolen\"").is_err());
        let map: BTreeMap<AnomalyKind, u64> = [(AnomalyKind::FalseGap, 1)].into();
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, r#"{"false_gap":1}"#);
        assert_eq!(
            serde_json::from_str::<BTreeMap<AnomalyKind, u64>>(&json).unwrap(),
            map
        );
    }
}
