//! The protocol seam: everything the socket task needs to know about a
//! server's wire protocol, behind one small interface, so the rest of the
//! harness (socket task, history, checker, reports) is protocol-neutral.
//!
//! An adapter is a per-connection codec: built from the device's identity
//! and resume state, it names the URL to open, turns each incoming text
//! frame into a normalized [`Inbound`] (a history event, a protocol-level
//! reply such as a pong, or nothing), and encodes sends, cumulative acks
//! and the goodbye. It does no I/O; the socket task owns the WebSocket.
//! docs/adapters.md explains the contract and the event mapping.
//!
//! - [`v1`]: this project's protocol (docs/protocol.md).
//! - [`socketio`]: Socket.IO 5 / Engine.IO 4 over the WebSocket transport
//!   (connection state recovery: `recovered` is the server's claim).
//!
//! To add an adapter: a module here, a [`Protocol`] variant with its
//! scenario name, a [`Codec`] variant, and one arm in each `match` below.
//!
//! Dispatch is an enum, not `dyn`: the per-frame path is a `match` the
//! compiler can inline, with no boxing or allocation beyond what decoding
//! the frame itself needs.

pub mod socketio;
pub mod v1;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use url::Url;
use uuid::Uuid;

use crate::history::{EventKind, Position};

/// The protocols a scenario can name in `[servers] protocol`; the serde
/// names are the scenario names (an unknown one is a parse error listing
/// these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// docs/protocol.md (the reference server).
    #[default]
    V1,
    /// Socket.IO 4 with connection state recovery (peers/socketio).
    #[serde(rename = "socketio")]
    SocketIo,
}

impl Protocol {
    /// Every protocol, by its scenario name.
    pub const ALL: [(&'static str, Protocol); 2] =
        [("v1", Protocol::V1), ("socketio", Protocol::SocketIo)];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::SocketIo => "socketio",
        }
    }

    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, protocol)| *protocol)
    }

    /// How the servers' authoritative log sits in their Redis (the
    /// `LogSource` the runner reads it back with).
    pub fn store(self) -> StoreLayout {
        match self {
            Protocol::V1 => StoreLayout::V1Streams,
            Protocol::SocketIo => StoreLayout::SocketIoAdapterStream,
        }
    }
}

/// Where a protocol's servers keep their messages in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLayout {
    /// One stream per conversation (docs/protocol.md, "Storage layout").
    V1Streams,
    /// `@socket.io/redis-streams-adapter`'s single `socket.io` stream of
    /// broadcasts (peers/socketio/README.md, "The authoritative log").
    SocketIoAdapterStream,
}

/// Who is connecting, fixed for the device's life.
#[derive(Debug, Clone, Copy)]
pub struct DeviceIdentity {
    pub user_id: Uuid,
    pub client_id: Uuid,
    pub conversation_id: Uuid,
}

/// What the device carries from one connection to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeState {
    /// The device's own cursor (highest position received), if it resumes
    /// with one (client-cursor devices).
    pub last_position: Option<Position>,
    /// The session token the server gave it (v1: epoch; Socket.IO: the
    /// session id), sent back on reconnect.
    pub session: Option<String>,
    /// The position of the last message received, in arrival order (not
    /// the highest): where a Socket.IO client resumes from.
    pub last_received: Option<Position>,
}

/// One incoming frame, normalized.
#[derive(Debug)]
pub enum Inbound {
    /// Something the history records (`Connected`, `Gap`, `Message`,
    /// `CaughtUp`, `SendOutcome`, `Error`).
    Event(EventKind),
    /// A protocol-level frame to answer at once (Engine.IO ping/pong, a
    /// namespace connect after the transport opens); not recorded.
    Reply(Message),
    /// A frame with nothing in it for the harness (heartbeats, events of
    /// no interest).
    Nothing,
    /// Several of the above from one frame, in order (a Socket.IO CONNECT
    /// reply: the join to write, `connected`, the buffered missed events).
    Many(Vec<Inbound>),
}

/// A frame the adapter cannot accept: the connection is dropped and the
/// reason recorded (a server that breaks its protocol is a finding).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("protocol violation: {0}")]
    V1(#[from] recovery_protocol::FrameError),
    #[error("protocol violation: {0}")]
    SocketIo(#[from] socketio::WireError),
    /// For adapters whose parsers do not have their own error type.
    #[error("protocol violation: {0}")]
    Other(String),
}

/// A per-connection codec of some protocol (one variant per adapter).
#[derive(Debug)]
pub enum Codec {
    V1(v1::V1Codec),
    /// Boxed: a Socket.IO session is much larger than a v1 codec, and one
    /// allocation per connection is nothing next to its handshake.
    SocketIo(Box<socketio::SocketIoCodec>),
}

/// What every adapter implements; [`Codec`] forwards to it.
pub trait ProtocolCodec {
    /// The URL to open for `target` (query string, path).
    fn connect_url(&self, target: &Url) -> Url;
    /// The resume request the device makes, as recorded in the history
    /// (`EventKind::Connect` without the target).
    fn resume_request(&self) -> (Option<Position>, Option<String>);
    /// One incoming text frame.
    fn decode(&mut self, frame: &str) -> Result<Inbound, DecodeError>;
    /// Whether this event means the backlog is done and the device may
    /// start sending (v1: the first `caught_up`; a protocol without one:
    /// its `connected`).
    fn is_ready_signal(&self, event: &EventKind) -> bool;
    /// A send with the client message id the server deduplicates on.
    fn encode_send(&mut self, client_msg_id: Uuid, body: &str) -> Message;
    /// A cumulative ack up to and including `position`; `None` when the
    /// protocol has no client acks (nothing is sent or recorded then).
    fn encode_ack(&mut self, position: Position) -> Option<Message>;
    /// A goodbye to send before a planned close frame, if the protocol
    /// has one (Socket.IO's namespace disconnect).
    fn encode_goodbye(&mut self) -> Option<Message>;
}

impl Codec {
    pub fn new(protocol: Protocol, identity: &DeviceIdentity, resume: &ResumeState) -> Codec {
        match protocol {
            Protocol::V1 => Codec::V1(v1::V1Codec::new(identity, resume)),
            Protocol::SocketIo => {
                Codec::SocketIo(Box::new(socketio::SocketIoCodec::new(identity, resume)))
            }
        }
    }
}

impl ProtocolCodec for Codec {
    #[inline]
    fn connect_url(&self, target: &Url) -> Url {
        match self {
            Codec::V1(codec) => codec.connect_url(target),
            Codec::SocketIo(codec) => codec.connect_url(target),
        }
    }

    #[inline]
    fn resume_request(&self) -> (Option<Position>, Option<String>) {
        match self {
            Codec::V1(codec) => codec.resume_request(),
            Codec::SocketIo(codec) => codec.resume_request(),
        }
    }

    #[inline]
    fn decode(&mut self, frame: &str) -> Result<Inbound, DecodeError> {
        match self {
            Codec::V1(codec) => codec.decode(frame),
            Codec::SocketIo(codec) => codec.decode(frame),
        }
    }

    #[inline]
    fn is_ready_signal(&self, event: &EventKind) -> bool {
        match self {
            Codec::V1(codec) => codec.is_ready_signal(event),
            Codec::SocketIo(codec) => codec.is_ready_signal(event),
        }
    }

    #[inline]
    fn encode_send(&mut self, client_msg_id: Uuid, body: &str) -> Message {
        match self {
            Codec::V1(codec) => codec.encode_send(client_msg_id, body),
            Codec::SocketIo(codec) => codec.encode_send(client_msg_id, body),
        }
    }

    #[inline]
    fn encode_ack(&mut self, position: Position) -> Option<Message> {
        match self {
            Codec::V1(codec) => codec.encode_ack(position),
            Codec::SocketIo(codec) => codec.encode_ack(position),
        }
    }

    #[inline]
    fn encode_goodbye(&mut self) -> Option<Message> {
        match self {
            Codec::V1(codec) => codec.encode_goodbye(),
            Codec::SocketIo(codec) => codec.encode_goodbye(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip() {
        for (name, protocol) in Protocol::ALL {
            assert_eq!(Protocol::from_name(name), Some(protocol));
            assert_eq!(protocol.name(), name);
        }
        assert_eq!(Protocol::from_name("V1"), None);
        assert_eq!(Protocol::default(), Protocol::V1);
        for (name, protocol) in Protocol::ALL {
            assert_eq!(
                serde_json::to_string(&protocol).unwrap(),
                format!("{name:?}")
            );
        }
    }
}
