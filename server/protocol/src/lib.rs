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
//! - [`keys`]: the Redis storage layout (docs/protocol.md, "Storage
//!   layout"), shared by the server and the harness's log reader.
//! - [`parse_hyphenated_uuid`]: the one UUID spelling clients may use, in
//!   the query string and in frames alike.

mod frames;
pub mod keys;
mod query;
mod stream_id;

pub use frames::{
    ClientFrame, CursorSource, ErrorCode, FrameError, GapReason, MessageFrame, ServerFrame,
};
pub use query::{decode_query, ConnectParams, QueryError};
pub use stream_id::{StreamId, StreamIdError};

/// Version of the protocol described in `docs/protocol.md`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";

/// Parses a UUID in the one spelling the protocol accepts from clients:
/// hyphenated `8-4-4-4-12` hex digits, either case (Swift's `uuidString`
/// is uppercase). `Uuid::parse_str` also takes the simple, braced and URN
/// forms; accepting those in frames but not in the query string would give
/// one id several spellings, so both places use this.
pub fn parse_hyphenated_uuid(text: &str) -> Option<uuid::Uuid> {
    let is_hyphenated = text.len() == 36
        && text
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    if !is_hyphenated {
        return None;
    }
    uuid::Uuid::parse_str(text).ok()
}
