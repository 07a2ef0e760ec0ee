//! Wire types of the offline-recovery WebSocket protocol, version 1.
//!
//! This crate is the single place where the contract of `docs/protocol.md`
//! becomes Rust types, so the reference server and the harness can never
//! drift apart on a field name.
//!
//! Layout:
//! - [`StreamId`]: a Redis stream entry id, compared as `(ms, seq)`.
//! - [`ConnectParams`]: the `/ws` query string, validated.
//! - [`ServerFrame`] / [`ClientFrame`]: JSON text frames, tagged by `type`.

mod frames;
mod query;
mod stream_id;

pub use frames::{
    ClientFrame, CursorSource, ErrorCode, FrameError, GapReason, MessageFrame, ServerFrame,
};
pub use query::{ConnectParams, QueryError};
pub use stream_id::{StreamId, StreamIdError};

/// Version of the protocol described in `docs/protocol.md`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";
