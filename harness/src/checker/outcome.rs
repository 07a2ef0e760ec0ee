//! What the checker concludes: a verdict and named anomalies, each with a
//! count and concrete examples a person can go and look at.

use std::collections::BTreeMap;

use recovery_protocol::StreamId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::history::{ConversationIx, DeviceIx, LogSource};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A message in the log that a member device never received, not
    /// covered by a declared gap.
    Lost,
    /// One id delivered twice to one client-cursor device.
    Duplicate,
    /// One id delivered twice to a stored-cursor device across a reconnect
    /// (allowed at-least-once; an anomaly only when the scenario forbids it),
    /// or to any device whose cursor a Redis wipe destroyed.
    Redelivered,
    /// Ids on one socket not strictly increasing.
    Reorder,
    /// A socket jumped over an id it owed (even if a later socket delivered it).
    Skip,
    /// Delivered, but never in the log or never attempted by any sender.
    Phantom,
    /// A send was acked but its id is absent from the log (no violation
    /// where the scenario destroys Redis data on purpose).
    LostAck,
    /// One client_msg_id appended at two ids.
    DuplicateAppend,
    /// Body or sender of a delivery differs from the log.
    Corrupt,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 9] = [
        AnomalyKind::Lost,
        AnomalyKind::Duplicate,
        AnomalyKind::Redelivered,
        AnomalyKind::Reorder,
        AnomalyKind::Skip,
        AnomalyKind::Phantom,
        AnomalyKind::LostAck,
        AnomalyKind::DuplicateAppend,
        AnomalyKind::Corrupt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Lost => "lost",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::Redelivered => "redelivered",
            AnomalyKind::Reorder => "reorder",
            AnomalyKind::Skip => "skip",
            AnomalyKind::Phantom => "phantom",
            AnomalyKind::LostAck => "lost_ack",
            AnomalyKind::DuplicateAppend => "duplicate_append",
            AnomalyKind::Corrupt => "corrupt",
        }
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
    pub ids: Vec<StreamId>,
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
    pub log_source: LogSource,
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
