//! The recorded history: what every simulated device did and saw.
//!
//! The harness records first and checks afterwards (the Jepsen/Maelstrom
//! way), so these types are the contract between the client simulation
//! (which writes them), the checker and the reports (which read them), and
//! `history.jsonl` on disk (one JSON object per line, `RunMeta` first).

use recovery_protocol::{CursorSource, ErrorCode, GapReason, StreamId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Index of a simulated device (user_id, client_id) in `RunMeta::devices`.
pub type DeviceIx = u32;
/// Index of a conversation in `RunMeta::conversations`.
pub type ConversationIx = u32;

/// How a device resumes after a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeMode {
    /// Sends `last_id` (its own cursor) and `epoch`: exactly-once expected.
    ClientCursor,
    /// Sends only `client_id`: relies on the server's stored cursor, so
    /// redelivery of unacked messages is allowed, loss is not.
    StoredCursor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub user_id: Uuid,
    /// The device's stable id, chosen by the harness and sent on every
    /// connect (so a server that ignores it is caught).
    pub client_id: Uuid,
    pub resume_mode: ResumeMode,
    /// Conversations this device has a socket in (one socket each).
    pub conversations: Vec<ConversationIx>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInfo {
    pub conversation_id: Uuid,
}

/// First line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub scenario_name: String,
    pub seed: u64,
    /// Wall clock at the run's time origin (`at_us == 0`).
    pub started_at_unix_ms: u64,
    pub devices: Vec<DeviceInfo>,
    pub conversations: Vec<ConversationInfo>,
    /// Faults injected during the run, as they actually happened.
    #[serde(default)]
    pub faults: Vec<FaultWindow>,
}

/// A fault as it happened: recorded by the runner on the run clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// `redis_restart`, `server_kill`, `blackhole`, ...
    pub kind: String,
    /// What it hit: `redis`, `server 1`, `link clients`, ...
    pub target: String,
    pub start_us: u64,
    /// When it was lifted (== start for instant faults).
    pub end_us: u64,
    /// Anything that went wrong while injecting or lifting it.
    #[serde(default)]
    pub error: Option<String>,
    /// Sockets the harness dropped for it (`reconnect_storm`); its window
    /// ends when every one of them has caught up again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets_dropped: Option<u64>,
}

/// Why a socket ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum DisconnectCause {
    /// The harness closed it with a close frame (planned churn).
    ClientClose,
    /// The harness dropped the TCP connection without a close frame.
    ClientAbrupt,
    /// The harness reset the TCP connection (RST via SO_LINGER 0).
    ClientReset,
    /// The server sent a close frame.
    ServerClose { code: Option<u16> },
    /// The connection failed (read/write error, EOF without close).
    Error { message: String },
    /// The run ended with the socket still open (after the drain).
    RunEnd,
}

/// One thing a socket did or saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum EventKind {
    /// A connection attempt with the cursor and epoch the device sent.
    Connect {
        last_id: Option<StreamId>,
        epoch: Option<String>,
        /// The URL the device connected to (which server instance).
        target: String,
    },
    /// The attempt failed before `hello` (refused, HTTP error, timeout).
    ConnectFailed {
        error: String,
    },
    Hello {
        client_id: Uuid,
        resume_from: StreamId,
        cursor: CursorSource,
        epoch: String,
    },
    Gap {
        resume_from: StreamId,
        first_available: StreamId,
        reason: GapReason,
    },
    /// A `message` frame. `replay` is true before this socket's `caught_up`.
    Recv {
        id: StreamId,
        sender_id: Uuid,
        client_msg_id: Uuid,
        /// `body_hash(body)`, so corrupt bodies are caught without storing them.
        body_hash: u64,
        body_len: u32,
        sent_at_ms: u64,
        replay: bool,
    },
    CaughtUp {
        last_id: StreamId,
        replayed: u64,
    },
    /// A `send` frame written. `due_us` is when the open-model schedule
    /// wanted it sent (latency is measured from there); `attempt` is 0 for
    /// the first try, 1.. for retries with the same `client_msg_id`.
    Send {
        client_msg_id: Uuid,
        body_hash: u64,
        body_len: u32,
        due_us: u64,
        attempt: u32,
    },
    Ack {
        client_msg_id: Uuid,
        id: StreamId,
        duplicate: bool,
    },
    Error {
        code: ErrorCode,
        client_msg_id: Option<Uuid>,
        message: String,
    },
    /// A cumulative `ack` frame the device sent.
    AckSent {
        id: StreamId,
    },
    Disconnect(DisconnectCause),
}

/// One history line after the meta line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Microseconds since the run's time origin (monotonic clock).
    pub at_us: u64,
    pub device: DeviceIx,
    pub conversation: ConversationIx,
    /// Socket number of this (device, conversation), 0 for the first
    /// connection, +1 per reconnect.
    pub socket: u32,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Stable 64-bit FNV-1a of a message body; stable across Rust versions so
/// recorded histories can be re-checked later.
pub fn body_hash(body: &str) -> u64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(body.as_bytes());
    hasher.finish()
}

/// The authoritative message log of one conversation, oldest first: read
/// back from Redis after the run, or rebuilt from acks and receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: StreamId,
    pub sender_id: Uuid,
    pub client_msg_id: Uuid,
    pub body_hash: u64,
}

/// Where the log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// XRANGE of every conversation stream after the drain.
    Redis,
    /// Rebuilt from acks and receipts (the target's Redis was unreachable):
    /// weaker, since a message nobody acked or received is invisible.
    Rebuilt,
}

/// The logs of all conversations, indexed by `ConversationIx`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageLog {
    pub source: LogSource,
    pub conversations: Vec<Vec<LogEntry>>,
}
