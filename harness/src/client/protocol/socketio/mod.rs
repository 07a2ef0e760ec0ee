//! Socket.IO v5 over Engine.IO v4, WebSocket transport only (no HTTP
//! long-polling): what the harness needs to play devices against a
//! Socket.IO server with connection state recovery.
//!
//! - [`engine`]: Engine.IO packets (open, ping/pong, message, close).
//! - [`packet`]: Socket.IO packets (CONNECT, EVENT with ack ids, ACK, ...).
//! - [`session`]: one client socket as an I/O-free state machine: frames
//!   in, connected{recovered}/event/ack/pong out.
//! - [`client`]: that session driven over tokio-tungstenite (probe, tests).
//! - [`codec`]: the session behind the protocol seam: the adapter the
//!   runner uses (`[servers] protocol = "socketio"`).
//!
//! `peers/socketio/README.md` explains the server side these mirror.

pub mod client;
pub mod codec;
pub mod engine;
pub mod packet;
pub mod session;

pub use client::{ClientError, SocketIoClient};
pub use codec::SocketIoCodec;
pub use session::{Event, Output, Resume, Session};

/// A frame or packet this client cannot accept, with the text at fault.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty Engine.IO frame")]
    EmptyFrame,
    #[error("unknown Engine.IO packet type {kind:?} in frame {frame:?}")]
    UnknownEngineType { kind: char, frame: String },
    #[error("bad Engine.IO open packet {frame:?}: {source}")]
    BadOpen {
        frame: String,
        source: serde_json::Error,
    },
    #[error("bad Socket.IO packet {packet:?}: {problem}")]
    BadPacket { problem: String, packet: String },
    #[error("Socket.IO message before the Engine.IO open packet")]
    BeforeOpen,
    #[error("Socket.IO CONNECT reply without a sid")]
    ConnectWithoutSid,
    #[error("Socket.IO ACK without an ack id")]
    AckWithoutId,
    #[error("unexpected Socket.IO {0:?} packet from a server")]
    Unexpected(packet::PacketType),
    #[error("cannot emit before the namespace is connected")]
    NotConnected,
}
