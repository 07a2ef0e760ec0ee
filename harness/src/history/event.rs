//! The recorded history: what every simulated device did and saw.
//!
//! The harness records first and checks afterwards (the Jepsen/Maelstrom
//! way), so these types are the contract between the client simulation
//! (which writes them), the checker and the reports (which read them), and
//! `history.jsonl` on disk (one JSON object per line, `RunMeta` first).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Position;

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

/// Where the resume point of a `connected` claim came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorOrigin {
    /// The position the device sent with its connect.
    Client,
    /// A cursor the server kept for the device (from its acks).
    Stored,
    /// Neither: the device gets the whole retained history.
    None,
}

/// What the server claimed about resuming when the connection opened:
/// the promise the checker holds it to (docs/adapters.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResumeClaim {
    /// "Every message after `from` follows, exactly once (client cursor)
    /// or at least once (stored cursor), in order" (v1 `hello`).
    Cursor {
        from: Position,
        origin: CursorOrigin,
    },
    /// "I did (`true`) or did not (`false`) restore this session": the
    /// server names no position (Socket.IO `socket.recovered`). `true`
    /// promises every message after the device's own last one, exactly
    /// once, in order; `false` is a declared gap (see `GapReason`).
    Recovered { recovered: bool },
}

/// Why the server said messages may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// Retention removed messages after the resume point.
    Trimmed,
    /// The conversation's log was lost and recreated; the device's
    /// session/epoch is stale.
    EpochChanged,
    /// The server could not restore the session and says so
    /// (Socket.IO `recovered: false`).
    RecoveryFailed,
}

/// A server error, in the harness's words. Which of these a protocol's
/// codes map to is the adapter's business; the checker only ever reads the
/// classification in [`SendOutcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    TooLarge,
    /// Storage unreachable before the write: not appended.
    Unavailable,
    /// The write may or may not have happened.
    Indeterminate,
    Internal,
    RateLimited,
    /// A code this harness does not know (a newer server, another protocol).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The snake_case name used in history files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Indeterminate => "indeterminate",
            ErrorCode::Internal => "internal",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Other => "other",
        }
    }
}

/// How the server answered one send attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SendOutcome {
    /// Appended at `id`; `duplicate` when an earlier attempt had already
    /// appended it (the server deduplicated by client message id).
    Acked { id: Position, duplicate: bool },
    /// The server promises it was NOT appended (a retry may append it).
    DefiniteFailure { code: ErrorCode, message: String },
    /// It may or may not have been appended.
    Indeterminate { code: ErrorCode, message: String },
    /// Refused as invalid (too large, malformed, rate limited): never
    /// appended, and retrying the same frame will not help.
    Rejected { code: ErrorCode, message: String },
}

/// One thing a socket did or saw. Protocol-neutral: each adapter maps its
/// wire frames onto these (docs/adapters.md has the table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum EventKind {
    /// A connection attempt with the resume state the device sent: its
    /// own last position (`last_id`, client cursor devices only) and the
    /// session token it holds (`epoch`: v1's epoch, Socket.IO's session id).
    Connect {
        last_id: Option<Position>,
        epoch: Option<String>,
        /// The URL the device connected to (which server instance).
        target: String,
    },
    /// The attempt failed before `connected` (refused, HTTP error, timeout).
    ConnectFailed {
        error: String,
    },
    /// The server accepted the connection and made its resume claim.
    Connected {
        /// The device id the server echoed, where the protocol has one:
        /// a server that ignores it is caught.
        client_id: Option<Uuid>,
        claim: ResumeClaim,
        /// The session token to send on the next connect, if any.
        epoch: Option<String>,
    },
    /// A declared gap: what lies strictly between `resume_from` and
    /// `first_available` may be missing. Either bound may be unknown to
    /// the protocol (Socket.IO names neither).
    Gap {
        resume_from: Option<Position>,
        first_available: Option<Position>,
        reason: GapReason,
    },
    /// A message delivered on this socket; its conversation is the
    /// socket's. `replay` is true before this socket's `caught_up` (or,
    /// for protocols without one, as the adapter documents).
    Message {
        id: Position,
        sender_id: Uuid,
        client_msg_id: Uuid,
        /// `body_hash(body)`, so corrupt bodies are caught without storing them.
        body_hash: u64,
        body_len: u32,
        sent_at_ms: u64,
        replay: bool,
    },
    /// The server says the backlog is done (protocols that have it).
    CaughtUp {
        last_id: Position,
        replayed: u64,
    },
    /// A send written. `due_us` is when the open-model schedule wanted it
    /// sent (latency is measured from there); `attempt` is 0 for the first
    /// try, 1.. for retries with the same `client_msg_id`.
    Send {
        client_msg_id: Uuid,
        body_hash: u64,
        body_len: u32,
        due_us: u64,
        attempt: u32,
    },
    /// The server's answer to a send.
    SendOutcome {
        client_msg_id: Uuid,
        outcome: SendOutcome,
    },
    /// A server error not tied to any send.
    Error {
        code: ErrorCode,
        message: String,
    },
    /// A cumulative ack the device sent (everything up to `id`).
    AckSent {
        id: Position,
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
    pub id: Position,
    pub sender_id: Uuid,
    pub client_msg_id: Uuid,
    pub body_hash: u64,
}

/// Where the log came from (which `LogOrigin` read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogOrigin {
    /// Read from the server's own store after the drain (v1: XRANGE of
    /// every conversation stream in Redis).
    Redis,
    /// Rebuilt from acks and receipts (the target's Redis was unreachable):
    /// weaker, since a message nobody acked or received is invisible.
    Rebuilt,
}

/// The logs of all conversations, indexed by `ConversationIx`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageLog {
    pub source: LogOrigin,
    pub conversations: Vec<Vec<LogEntry>>,
}
