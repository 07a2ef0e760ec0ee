//! The compact binary encoding of history events (`history.bin`).
//!
//! Every event is one record: a tag byte (kind in the low 4 bits, flags in
//! the high 4), then LEB128 varints. What makes it small (a delivery is
//! ~15-25 bytes against ~420 as JSON):
//! - times and positions are deltas (zigzag, wrapping) from the previous
//!   record's, since records arrive in roughly time order;
//! - UUIDs are interned in a window of the last [`UUID_WINDOW`] distinct
//!   ones (written in full once, then as a distance back); a message's
//!   body hash and length travel with its `client_msg_id`'s entry, so a
//!   receipt whose body matches its send costs one flag bit.
//!
//! Encoder and decoder keep the same bounded state (the window), so
//! neither grows with the run. Decoding never panics on bad input: every
//! inconsistency is a [`CodecError`] that the file reader turns into an
//! error naming the file and byte offset.

use std::collections::hash_map::Entry;

use fnv::FnvHashMap;
use uuid::Uuid;

use super::{
    CursorOrigin, DisconnectCause, ErrorCode, Event, EventKind, GapReason, Position, ResumeClaim,
    SendOutcome,
};

/// How many distinct UUIDs both sides remember. Large enough that a
/// message's receipts (within seconds of its send) find its id, small
/// enough to bound memory (~3 MB each side).
pub const UUID_WINDOW: u64 = 1 << 16;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("the record ends early (truncated file?)")]
    Truncated,
    #[error("unknown record tag {0:#04x}")]
    UnknownTag(u8),
    #[error("a varint is longer than 10 bytes")]
    VarintTooLong,
    #[error("{what} value {value} is out of range")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("a string is not valid UTF-8")]
    BadUtf8,
    #[error("a UUID reference {0} points outside the window of known UUIDs")]
    BadUuidRef(u64),
}

// Record kinds (low nibble of the tag).
const CONNECT: u8 = 0;
const CONNECT_FAILED: u8 = 1;
const CONNECTED: u8 = 2;
const GAP: u8 = 3;
const MESSAGE: u8 = 4;
const CAUGHT_UP: u8 = 5;
const SEND: u8 = 6;
const SEND_OUTCOME: u8 = 7;
const ERROR: u8 = 8;
const ACK_SENT: u8 = 9;
const DISCONNECT: u8 = 10;
/// Highest event kind; the file layer uses tags above it.
pub const LAST_EVENT_KIND: u8 = DISCONNECT;

// Flags (high nibble), meaning per kind.
const F1: u8 = 0x10;
const F2: u8 = 0x20;
const F3: u8 = 0x40;
const F4: u8 = 0x80;

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// What both sides remember about one interned UUID.
#[derive(Clone, Copy, Default)]
struct Interned {
    uuid: Uuid,
    /// Body hash and length of the last `Send`/receipt under this id.
    body: Option<(u64, u32)>,
}

/// State shared in shape by encoder and decoder: previous values for the
/// deltas and the UUID window (a ring indexed by sequence number).
#[derive(Default)]
struct Deltas {
    at_us: u64,
    major: u64,
    sent_at_ms: u64,
}

/// Turns events into records. One per file: records depend on the ones
/// before them.
pub struct Encoder {
    deltas: Deltas,
    ring: Vec<Interned>,
    /// UUID -> sequence number of its (latest) interning.
    seq_of: FnvHashMap<Uuid, u64>,
    next_seq: u64,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            deltas: Deltas::default(),
            ring: vec![Interned::default(); UUID_WINDOW as usize],
            seq_of: FnvHashMap::default(),
            next_seq: 0,
        }
    }

    fn position(&mut self, out: &mut Vec<u8>, position: Position) {
        let delta = position.major.wrapping_sub(self.deltas.major) as i64;
        self.deltas.major = position.major;
        put_varint(out, zigzag(delta));
        put_varint(out, position.minor);
    }

    fn opt_position(&mut self, out: &mut Vec<u8>, position: Option<Position>) {
        match position {
            Some(position) => {
                out.push(1);
                self.position(out, position);
            }
            None => out.push(0),
        }
    }

    /// Writes a UUID reference (0 = a new UUID follows) and returns the
    /// ring slot now holding it.
    fn uuid(&mut self, out: &mut Vec<u8>, uuid: Uuid) -> usize {
        if let Some(&seq) = self.seq_of.get(&uuid) {
            let distance = self.next_seq - seq;
            if distance <= UUID_WINDOW {
                put_varint(out, distance);
                return (seq % UUID_WINDOW) as usize;
            }
        }
        out.push(0);
        out.extend_from_slice(uuid.as_bytes());
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = (seq % UUID_WINDOW) as usize;
        let evicted = self.ring[slot].uuid;
        if seq >= UUID_WINDOW {
            if let Entry::Occupied(entry) = self.seq_of.entry(evicted) {
                if *entry.get() + UUID_WINDOW == seq {
                    entry.remove();
                }
            }
        }
        self.seq_of.insert(uuid, seq);
        self.ring[slot] = Interned { uuid, body: None };
        slot
    }

    /// A UUID with the body it carries: flag `F4` set when the body is the
    /// one remembered for it (then hash and length are left out).
    fn uuid_with_body(&mut self, out: &mut Vec<u8>, tag_at: usize, uuid: Uuid, body: (u64, u32)) {
        let slot = self.uuid(out, uuid);
        if self.ring[slot].body == Some(body) {
            out[tag_at] |= F4;
        } else {
            out.extend_from_slice(&body.0.to_le_bytes());
            put_varint(out, u64::from(body.1));
            self.ring[slot].body = Some(body);
        }
    }

    /// Appends one event's record to `out`.
    pub fn encode(&mut self, event: &Event, out: &mut Vec<u8>) {
        let tag_at = out.len();
        out.push(0);
        let at_delta = event.at_us.wrapping_sub(self.deltas.at_us) as i64;
        self.deltas.at_us = event.at_us;
        put_varint(out, zigzag(at_delta));
        put_varint(out, u64::from(event.device));
        put_varint(out, u64::from(event.conversation));
        put_varint(out, u64::from(event.socket));
        let tag = match &event.kind {
            EventKind::Connect {
                last_id,
                epoch,
                target,
            } => {
                self.opt_position(out, *last_id);
                opt_string(out, epoch.as_deref());
                string(out, target);
                CONNECT
            }
            EventKind::ConnectFailed { error } => {
                string(out, error);
                CONNECT_FAILED
            }
            EventKind::Connected {
                client_id,
                claim,
                epoch,
            } => {
                let mut flags = 0;
                if let Some(client_id) = client_id {
                    flags |= F1;
                    self.uuid(out, *client_id);
                }
                match claim {
                    ResumeClaim::Cursor { from, origin } => {
                        out.push(match origin {
                            CursorOrigin::Client => 0,
                            CursorOrigin::Stored => 1,
                            CursorOrigin::None => 2,
                        });
                        self.position(out, *from);
                    }
                    ResumeClaim::Recovered { recovered } => out.push(3 + u8::from(*recovered)),
                }
                opt_string(out, epoch.as_deref());
                CONNECTED | flags
            }
            EventKind::Gap {
                resume_from,
                first_available,
                reason,
            } => {
                self.opt_position(out, *resume_from);
                self.opt_position(out, *first_available);
                out.push(match reason {
                    GapReason::Trimmed => 0,
                    GapReason::EpochChanged => 1,
                    GapReason::RecoveryFailed => 2,
                });
                GAP
            }
            EventKind::Message {
                id,
                sender_id,
                client_msg_id,
                body_hash,
                body_len,
                sent_at_ms,
                replay,
            } => {
                self.position(out, *id);
                self.uuid(out, *sender_id);
                self.uuid_with_body(out, tag_at, *client_msg_id, (*body_hash, *body_len));
                let delta = sent_at_ms.wrapping_sub(self.deltas.sent_at_ms) as i64;
                self.deltas.sent_at_ms = *sent_at_ms;
                put_varint(out, zigzag(delta));
                MESSAGE | if *replay { F1 } else { 0 }
            }
            EventKind::CaughtUp { last_id, replayed } => {
                self.position(out, *last_id);
                put_varint(out, *replayed);
                CAUGHT_UP
            }
            EventKind::Send {
                client_msg_id,
                body_hash,
                body_len,
                due_us,
                attempt,
            } => {
                self.uuid_with_body(out, tag_at, *client_msg_id, (*body_hash, *body_len));
                put_varint(out, zigzag(event.at_us.wrapping_sub(*due_us) as i64));
                put_varint(out, u64::from(*attempt));
                SEND
            }
            EventKind::SendOutcome {
                client_msg_id,
                outcome,
            } => {
                self.uuid(out, *client_msg_id);
                match outcome {
                    SendOutcome::Acked { id, duplicate } => {
                        self.position(out, *id);
                        if *duplicate {
                            SEND_OUTCOME | F2
                        } else {
                            SEND_OUTCOME
                        }
                    }
                    SendOutcome::DefiniteFailure { code, message } => {
                        error_body(out, *code, message);
                        SEND_OUTCOME | F1
                    }
                    SendOutcome::Indeterminate { code, message } => {
                        error_body(out, *code, message);
                        SEND_OUTCOME | F1 | F2
                    }
                    SendOutcome::Rejected { code, message } => {
                        error_body(out, *code, message);
                        SEND_OUTCOME | F1 | F3
                    }
                }
            }
            EventKind::Error { code, message } => {
                error_body(out, *code, message);
                ERROR
            }
            EventKind::AckSent { id } => {
                self.position(out, *id);
                ACK_SENT
            }
            EventKind::Disconnect(cause) => match cause {
                DisconnectCause::ClientClose => DISCONNECT,
                DisconnectCause::ClientAbrupt => DISCONNECT | F1,
                DisconnectCause::ClientReset => DISCONNECT | F2,
                DisconnectCause::ServerClose { code } => {
                    match code {
                        Some(code) => {
                            out.push(1);
                            put_varint(out, u64::from(*code));
                        }
                        None => out.push(0),
                    }
                    DISCONNECT | F1 | F2
                }
                DisconnectCause::Error { message } => {
                    string(out, message);
                    DISCONNECT | F3
                }
                DisconnectCause::RunEnd => DISCONNECT | F1 | F3,
            },
        };
        out[tag_at] |= tag;
    }
}

fn string(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn opt_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            out.push(1);
            string(out, text);
        }
        None => out.push(0),
    }
}

fn error_body(out: &mut Vec<u8>, code: ErrorCode, message: &str) {
    out.push(error_code_byte(code));
    string(out, message);
}

fn error_code_byte(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::BadFrame => 0,
        ErrorCode::TooLarge => 1,
        ErrorCode::Unavailable => 2,
        ErrorCode::Indeterminate => 3,
        ErrorCode::Internal => 4,
        ErrorCode::RateLimited => 5,
        ErrorCode::Other => 6,
    }
}

/// A cursor over one record's bytes.
pub struct Bytes<'b> {
    pub data: &'b [u8],
    pub at: usize,
}

impl<'b> Bytes<'b> {
    pub fn new(data: &'b [u8]) -> Self {
        Bytes { data, at: 0 }
    }

    pub fn byte(&mut self) -> Result<u8, CodecError> {
        let byte = *self.data.get(self.at).ok_or(CodecError::Truncated)?;
        self.at += 1;
        Ok(byte)
    }

    pub fn take(&mut self, count: usize) -> Result<&'b [u8], CodecError> {
        let end = self.at.checked_add(count).ok_or(CodecError::Truncated)?;
        let bytes = self.data.get(self.at..end).ok_or(CodecError::Truncated)?;
        self.at = end;
        Ok(bytes)
    }

    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            if shift == 63 && byte > 1 {
                return Err(CodecError::VarintTooLong);
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::VarintTooLong)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| CodecError::OutOfRange { what, value })
    }

    fn string(&mut self) -> Result<String, CodecError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| CodecError::Truncated)?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::BadUtf8)
    }

    fn opt_string(&mut self) -> Result<Option<String>, CodecError> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            other => Err(CodecError::OutOfRange {
                what: "option marker",
                value: u64::from(other),
            }),
        }
    }

    fn error_code(&mut self) -> Result<ErrorCode, CodecError> {
        Ok(match self.byte()? {
            0 => ErrorCode::BadFrame,
            1 => ErrorCode::TooLarge,
            2 => ErrorCode::Unavailable,
            3 => ErrorCode::Indeterminate,
            4 => ErrorCode::Internal,
            5 => ErrorCode::RateLimited,
            6 => ErrorCode::Other,
            other => {
                return Err(CodecError::OutOfRange {
                    what: "error code",
                    value: u64::from(other),
                })
            }
        })
    }
}

/// Turns records back into events; the mirror of [`Encoder`].
pub struct Decoder {
    deltas: Deltas,
    ring: Vec<Interned>,
    next_seq: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            deltas: Deltas::default(),
            ring: vec![Interned::default(); UUID_WINDOW as usize],
            next_seq: 0,
        }
    }

    fn position(&mut self, bytes: &mut Bytes) -> Result<Position, CodecError> {
        let delta = unzigzag(bytes.varint()?);
        self.deltas.major = self.deltas.major.wrapping_add(delta as u64);
        Ok(Position::new(self.deltas.major, bytes.varint()?))
    }

    fn opt_position(&mut self, bytes: &mut Bytes) -> Result<Option<Position>, CodecError> {
        match bytes.byte()? {
            0 => Ok(None),
            1 => self.position(bytes).map(Some),
            other => Err(CodecError::OutOfRange {
                what: "option marker",
                value: u64::from(other),
            }),
        }
    }

    fn uuid(&mut self, bytes: &mut Bytes) -> Result<(Uuid, usize), CodecError> {
        let distance = bytes.varint()?;
        if distance == 0 {
            let raw: [u8; 16] = bytes
                .take(16)?
                .try_into()
                .map_err(|_| CodecError::Truncated)?;
            let uuid = Uuid::from_bytes(raw);
            let slot = (self.next_seq % UUID_WINDOW) as usize;
            self.next_seq += 1;
            self.ring[slot] = Interned { uuid, body: None };
            return Ok((uuid, slot));
        }
        if distance > UUID_WINDOW || distance > self.next_seq {
            return Err(CodecError::BadUuidRef(distance));
        }
        let slot = ((self.next_seq - distance) % UUID_WINDOW) as usize;
        Ok((self.ring[slot].uuid, slot))
    }

    fn uuid_with_body(
        &mut self,
        bytes: &mut Bytes,
        tag: u8,
    ) -> Result<(Uuid, (u64, u32)), CodecError> {
        let (uuid, slot) = self.uuid(bytes)?;
        if tag & F4 != 0 {
            let body = self.ring[slot].body.ok_or(CodecError::OutOfRange {
                what: "remembered body of a UUID without one",
                value: 0,
            })?;
            return Ok((uuid, body));
        }
        let hash: [u8; 8] = bytes
            .take(8)?
            .try_into()
            .map_err(|_| CodecError::Truncated)?;
        let body = (u64::from_le_bytes(hash), bytes.u32("body length")?);
        self.ring[slot].body = Some(body);
        Ok((uuid, body))
    }

    /// Decodes one record; `bytes` is left after it.
    pub fn decode(&mut self, bytes: &mut Bytes) -> Result<Event, CodecError> {
        let tag = bytes.byte()?;
        let kind = tag & 0x0f;
        if kind > LAST_EVENT_KIND {
            return Err(CodecError::UnknownTag(tag));
        }
        let at_delta = unzigzag(bytes.varint()?);
        self.deltas.at_us = self.deltas.at_us.wrapping_add(at_delta as u64);
        let at_us = self.deltas.at_us;
        let device = bytes.u32("device")?;
        let conversation = bytes.u32("conversation")?;
        let socket = bytes.u32("socket")?;
        let kind = match kind {
            CONNECT => EventKind::Connect {
                last_id: self.opt_position(bytes)?,
                epoch: bytes.opt_string()?,
                target: bytes.string()?,
            },
            CONNECT_FAILED => EventKind::ConnectFailed {
                error: bytes.string()?,
            },
            CONNECTED => {
                let client_id = if tag & F1 != 0 {
                    Some(self.uuid(bytes)?.0)
                } else {
                    None
                };
                let claim = match bytes.byte()? {
                    origin @ 0..=2 => ResumeClaim::Cursor {
                        origin: [
                            CursorOrigin::Client,
                            CursorOrigin::Stored,
                            CursorOrigin::None,
                        ][origin as usize],
                        from: self.position(bytes)?,
                    },
                    3 => ResumeClaim::Recovered { recovered: false },
                    4 => ResumeClaim::Recovered { recovered: true },
                    other => {
                        return Err(CodecError::OutOfRange {
                            what: "resume claim",
                            value: u64::from(other),
                        })
                    }
                };
                EventKind::Connected {
                    client_id,
                    claim,
                    epoch: bytes.opt_string()?,
                }
            }
            GAP => EventKind::Gap {
                resume_from: self.opt_position(bytes)?,
                first_available: self.opt_position(bytes)?,
                reason: match bytes.byte()? {
                    0 => GapReason::Trimmed,
                    1 => GapReason::EpochChanged,
                    2 => GapReason::RecoveryFailed,
                    other => {
                        return Err(CodecError::OutOfRange {
                            what: "gap reason",
                            value: u64::from(other),
                        })
                    }
                },
            },
            MESSAGE => {
                let id = self.position(bytes)?;
                let sender_id = self.uuid(bytes)?.0;
                let (client_msg_id, (body_hash, body_len)) = self.uuid_with_body(bytes, tag)?;
                let delta = unzigzag(bytes.varint()?);
                self.deltas.sent_at_ms = self.deltas.sent_at_ms.wrapping_add(delta as u64);
                EventKind::Message {
                    id,
                    sender_id,
                    client_msg_id,
                    body_hash,
                    body_len,
                    sent_at_ms: self.deltas.sent_at_ms,
                    replay: tag & F1 != 0,
                }
            }
            CAUGHT_UP => EventKind::CaughtUp {
                last_id: self.position(bytes)?,
                replayed: bytes.varint()?,
            },
            SEND => {
                let (client_msg_id, (body_hash, body_len)) = self.uuid_with_body(bytes, tag)?;
                let lead = unzigzag(bytes.varint()?);
                EventKind::Send {
                    client_msg_id,
                    body_hash,
                    body_len,
                    due_us: at_us.wrapping_sub(lead as u64),
                    attempt: bytes.u32("attempt")?,
                }
            }
            SEND_OUTCOME => {
                let client_msg_id = self.uuid(bytes)?.0;
                let outcome = if tag & F1 == 0 {
                    SendOutcome::Acked {
                        id: self.position(bytes)?,
                        duplicate: tag & F2 != 0,
                    }
                } else {
                    let code = bytes.error_code()?;
                    let message = bytes.string()?;
                    match tag & (F2 | F3) {
                        0 => SendOutcome::DefiniteFailure { code, message },
                        F2 => SendOutcome::Indeterminate { code, message },
                        F3 => SendOutcome::Rejected { code, message },
                        _ => return Err(CodecError::UnknownTag(tag)),
                    }
                };
                EventKind::SendOutcome {
                    client_msg_id,
                    outcome,
                }
            }
            ERROR => EventKind::Error {
                code: bytes.error_code()?,
                message: bytes.string()?,
            },
            ACK_SENT => EventKind::AckSent {
                id: self.position(bytes)?,
            },
            _ => EventKind::Disconnect(match tag & 0xf0 {
                0 => DisconnectCause::ClientClose,
                F1 => DisconnectCause::ClientAbrupt,
                F2 => DisconnectCause::ClientReset,
                0x30 => DisconnectCause::ServerClose {
                    code: match bytes.byte()? {
                        0 => None,
                        1 => {
                            let value = bytes.varint()?;
                            Some(u16::try_from(value).map_err(|_| CodecError::OutOfRange {
                                what: "close code",
                                value,
                            })?)
                        }
                        other => {
                            return Err(CodecError::OutOfRange {
                                what: "option marker",
                                value: u64::from(other),
                            })
                        }
                    },
                },
                F3 => DisconnectCause::Error {
                    message: bytes.string()?,
                },
                0x50 => DisconnectCause::RunEnd,
                _ => return Err(CodecError::UnknownTag(tag)),
            }),
        };
        Ok(Event {
            at_us,
            device,
            conversation,
            socket,
            kind,
        })
    }
}
