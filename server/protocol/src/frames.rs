//! JSON text frames, tagged by `type`. Unknown fields are ignored on both
//! sides (serde's default), so later versions can add fields freely.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::StreamId;

/// Where the `resume_from` of a `hello` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorSource {
    /// The client's own `last_id`.
    Client,
    /// The cursor the server stored from the device's acks.
    Stored,
    /// Neither: the device gets the whole retained history.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// Retention removed messages after `resume_from`.
    Trimmed,
    /// The stream was lost and recreated; the client's epoch is stale.
    EpochChanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    TooLarge,
    /// Definite failure: the send never reached storage, so it was NOT
    /// appended; retry with the same `client_msg_id`.
    Unavailable,
    /// Indeterminate failure: the append was sent to storage but no answer
    /// came back in time, so it MAY have been appended; retry with the same
    /// `client_msg_id` to learn which (`ack` with `duplicate: true` if it was).
    Indeterminate,
    /// The server failed in a way it did not expect; for a send, as
    /// indeterminate as `indeterminate`.
    Internal,
    /// Definite failure: the send exceeded the socket's or the user's send
    /// rate and was NOT appended; retry after `retry_after_ms` with the
    /// same `client_msg_id`.
    RateLimited,
    /// A code this version does not know (a newer server): recorded as it
    /// came, never mistaken for a known one.
    #[serde(other)]
    Unknown,
}

/// One chat message, replayed or live: the same shape either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFrame {
    pub id: StreamId,
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub client_msg_id: Uuid,
    pub body: String,
    pub sent_at_ms: u64,
}

impl MessageFrame {
    /// The `message` frame's JSON text, byte for byte what
    /// `ServerFrame::Message(self).to_json()` writes (same field order,
    /// same escaping: the body goes through serde_json's own string
    /// escaper), without the generic serializer. Replay and live fan-out
    /// encode every message they send; `serde_json` formats the UUIDs and
    /// ids through `collect_str` (`fmt` machinery, a temporary per field),
    /// which this skips. `tests/parse_props.rs` checks the equality on
    /// arbitrary frames.
    pub fn to_frame_json(&self) -> String {
        // Fixed part: 130 bytes of names and punctuation, 3 UUIDs, 3 u64s.
        let mut out = Vec::with_capacity(230 + self.body.len() + self.body.len() / 8);
        out.extend_from_slice(br#"{"type":"message","id":""#);
        push_stream_id(&mut out, self.id);
        out.extend_from_slice(br#"","conversation_id":""#);
        push_uuid(&mut out, &self.conversation_id);
        out.extend_from_slice(br#"","sender_id":""#);
        push_uuid(&mut out, &self.sender_id);
        out.extend_from_slice(br#"","client_msg_id":""#);
        push_uuid(&mut out, &self.client_msg_id);
        out.extend_from_slice(br#"","body":"#);
        // Writing a str into a Vec cannot fail; should it ever, fall back
        // to the generic path rather than send a broken frame.
        if serde_json::to_writer(&mut out, self.body.as_str()).is_err() {
            return ServerFrame::Message(self.clone()).to_json();
        }
        out.extend_from_slice(br#","sent_at_ms":"#);
        push_u64(&mut out, self.sent_at_ms);
        out.push(b'}');
        // Only ASCII was added around the body, which serde_json wrote as
        // valid UTF-8 (it came from a `str`).
        String::from_utf8(out).unwrap_or_else(|_| ServerFrame::Message(self.clone()).to_json())
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_stream_id(out: &mut Vec<u8>, id: StreamId) {
    push_u64(out, id.ms);
    out.push(b'-');
    push_u64(out, id.seq);
}

fn push_uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        client_id: Uuid,
        resume_from: StreamId,
        cursor: CursorSource,
        epoch: String,
    },
    /// Sent right after `hello` when messages after `resume_from` may be
    /// gone. Delivery then starts at `first_available` (inclusive).
    Gap {
        resume_from: StreamId,
        first_available: StreamId,
        reason: GapReason,
    },
    Message(MessageFrame),
    CaughtUp {
        last_id: StreamId,
        replayed: u64,
    },
    Ack {
        client_msg_id: Uuid,
        id: StreamId,
        duplicate: bool,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<Uuid>,
        /// With `rate_limited`: how long to wait before retrying.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Send {
        #[serde(deserialize_with = "hyphenated_uuid")]
        client_msg_id: Uuid,
        body: String,
    },
    /// Cumulative: the client has every message up to and including `id`.
    Ack { id: StreamId },
}

/// A client's UUID in the one accepted spelling (`parse_hyphenated_uuid`).
fn hyphenated_uuid<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    crate::parse_hyphenated_uuid(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected a hyphenated UUID (8-4-4-4-12 hex digits), got {text:?}"
        ))
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("frame has no string field `type`")]
    NoType,
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    #[error("bad `{frame_type}` frame: {source}")]
    BadFields {
        frame_type: String,
        source: serde_json::Error,
    },
}

/// Parses a JSON text into `T`, telling apart "not JSON", "no type",
/// "unknown type" and "bad fields" so errors sent back are precise.
fn parse_tagged<T: for<'de> Deserialize<'de>>(text: &str, known: &[&str]) -> Result<T, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(FrameError::NotJson)?;
    let frame_type = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or(FrameError::NoType)?
        .to_string();
    if !known.contains(&frame_type.as_str()) {
        return Err(FrameError::UnknownType(frame_type));
    }
    serde_json::from_value(value).map_err(|source| FrameError::BadFields { frame_type, source })
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        parse_tagged(text, &["send", "ack"])
    }

    /// The frame's JSON text, byte for byte serde's encoding
    /// (`tests/parse_props.rs` checks), written by hand like
    /// `MessageFrame::to_frame_json`: the harness writes an ack for most
    /// deliveries, and serde formats the id through `collect_str`.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(64);
        match self {
            ClientFrame::Ack { id } => {
                out.extend_from_slice(br#"{"type":"ack","id":""#);
                push_stream_id(&mut out, *id);
                out.extend_from_slice(br#""}"#);
            }
            ClientFrame::Send {
                client_msg_id,
                body,
            } => {
                out.reserve(body.len() + body.len() / 8);
                out.extend_from_slice(br#"{"type":"send","client_msg_id":""#);
                push_uuid(&mut out, client_msg_id);
                out.extend_from_slice(br#"","body":"#);
                // Writing a str into a Vec cannot fail; should it ever,
                // the generic path writes the frame instead.
                if serde_json::to_writer(&mut out, body.as_str()).is_err() {
                    return self.to_json_generic();
                }
                out.push(b'}');
            }
        }
        String::from_utf8(out).unwrap_or_else(|_| self.to_json_generic())
    }

    /// serde's encoding: the reference [`ClientFrame::to_json`] matches.
    pub fn to_json_generic(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ServerFrame {
    /// Parses a server frame. Frames that start with their `type` (every
    /// frame a serde or `to_frame_json` encoder writes) are deserialized
    /// straight into the variant's fields; anything else, and anything
    /// that fast path refuses, goes through [`ServerFrame::parse_generic`],
    /// so results and errors are exactly the generic path's
    /// (`tests/parse_props.rs` compares the two). Why: the harness parses
    /// every frame it receives, and building a `serde_json::Value` first
    /// (a map, a `String` per field) was 8% of its CPU at churn-1k.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        match fast::parse(text) {
            Some(frame) => Ok(frame),
            None => Self::parse_generic(text),
        }
    }

    /// The reference parse: JSON to `serde_json::Value`, then the tagged
    /// enum. Slower than [`ServerFrame::parse`], same answers.
    pub fn parse_generic(text: &str) -> Result<Self, FrameError> {
        parse_tagged(
            text,
            &["hello", "gap", "message", "caught_up", "ack", "error"],
        )
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `ServerFrame::parse`'s fast path: read the tag from the frame's first
/// key, then deserialize that variant's fields directly (borrowed ids, no
/// `Value`). `None` means "ask the generic path": another key order, an
/// escaped tag, a duplicate key, a bad field. Each wire struct declares
/// `type` as a field, so a second `type` key is a duplicate field (the
/// generic path would take the last one) and falls back too.
mod fast {
    use serde::de::IgnoredAny;
    use serde::{Deserialize, Deserializer};
    use uuid::Uuid;

    use super::{CursorSource, ErrorCode, GapReason, MessageFrame, ServerFrame};
    use crate::StreamId;

    /// A stream id read from a borrowed string when the JSON has no
    /// escapes (the usual case), parsed exactly like `StreamId`'s own
    /// `Deserialize`.
    fn stream_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<StreamId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    #[derive(Deserialize)]
    struct Hello {
        #[serde(rename = "type")]
        _type: IgnoredAny,
        client_id: Uuid,
        #[serde(deserialize_with = "stream_id")]
        resume_from: StreamId,
        cursor: CursorSource,
        epoch: String,
    }

    #[derive(Deserialize)]
    struct Gap {
        #[serde(rename = "type")]
        _type: IgnoredAny,
        #[serde(deserialize_with = "stream_id")]
        resume_from: StreamId,
        #[serde(deserialize_with = "stream_id")]
        first_available: StreamId,
        reason: GapReason,
    }

    #[derive(Deserialize)]
    struct Message {
        #[serde(rename = "type")]
        _type: IgnoredAny,
        #[serde(deserialize_with = "stream_id")]
        id: StreamId,
        conversation_id: Uuid,
        sender_id: Uuid,
        client_msg_id: Uuid,
        body: String,
        sent_at_ms: u64,
    }

    #[derive(Deserialize)]
    struct CaughtUp {
        #[serde(rename = "type")]
        _type: IgnoredAny,
        #[serde(deserialize_with = "stream_id")]
        last_id: StreamId,
        replayed: u64,
    }

    #[derive(Deserialize)]
    struct Ack {
        #[serde(rename = "type")]
        _type: IgnoredAny,
        client_msg_id: Uuid,
        #[serde(deserialize_with = "stream_id")]
        id: StreamId,
        duplicate: bool,
    }

    #[derive(Deserialize)]
    struct Error {
        #[serde(rename = "type")]
        _type: IgnoredAny,
        code: ErrorCode,
        message: String,
        #[serde(default)]
        client_msg_id: Option<Uuid>,
        #[serde(default)]
        retry_after_ms: Option<u64>,
    }

    /// The tag when the frame starts `{"type":"<tag>"` (no whitespace, no
    /// escapes: what the encoders write).
    fn leading_tag(text: &str) -> Option<&str> {
        let rest = text.strip_prefix(r#"{"type":""#)?;
        let end = rest.find('"')?;
        let tag = &rest[..end];
        (!tag.contains('\\')).then_some(tag)
    }

    /// A `message` frame laid out exactly as `MessageFrame::to_frame_json`
    /// writes it (keys in that order, no whitespace, a body without
    /// escapes), read field by field at known places: no JSON parser, and
    /// the body copied once. Every delivery the harness receives is one of
    /// these; the serde path took ~5,300 instructions a frame, a quarter
    /// of the harness's instructions per delivery, and this one ~2,600
    /// (callgrind: docs/performance.md, "Client CPU: instructions per
    /// delivery"). `None` for anything else
    /// (escapes, control characters, another key order or spacing, a
    /// number serde would refuse): the serde path then decides, so the
    /// answers stay the generic path's (`tests/server_frame_props.rs`).
    pub(super) fn exact_message(text: &str) -> Option<MessageFrame> {
        let rest = text.strip_prefix(r#"{"type":"message","id":""#)?;
        let (id, rest) = rest.split_once('"')?;
        // An escaped id fails here too: a stream id has no backslash.
        let id: StreamId = id.parse().ok()?;
        let rest = rest.strip_prefix(r#","conversation_id":""#)?;
        let (conversation_id, rest) = quoted_uuid(rest)?;
        let rest = rest.strip_prefix(r#","sender_id":""#)?;
        let (sender_id, rest) = quoted_uuid(rest)?;
        let rest = rest.strip_prefix(r#","client_msg_id":""#)?;
        let (client_msg_id, rest) = quoted_uuid(rest)?;
        let rest = rest.strip_prefix(r#","body":""#)?;
        let body_len = plain_string_len(rest.as_bytes())?;
        // The closing quote is ASCII, so `body_len` is a char boundary.
        let body = rest.get(..body_len)?.to_string();
        let rest = rest.get(body_len + 1..)?;
        let digits = rest.strip_prefix(r#","sent_at_ms":"#)?.strip_suffix('}')?;
        let sent_at_ms = json_u64(digits)?;
        Some(MessageFrame {
            id,
            conversation_id,
            sender_id,
            client_msg_id,
            body,
            sent_at_ms,
        })
    }

    /// A 36-character UUID and its closing quote (uuid's serde support
    /// parses the same text with `Uuid::try_parse`).
    fn quoted_uuid(text: &str) -> Option<(Uuid, &str)> {
        let id = Uuid::try_parse(text.get(..36)?).ok()?;
        Some((id, text.get(36..)?.strip_prefix('"')?))
    }

    /// An unsigned JSON integer as serde_json reads it into a `u64`:
    /// digits only, no leading zero, no overflow.
    fn json_u64(digits: &str) -> Option<u64> {
        let bytes = digits.as_bytes();
        if bytes.is_empty() || (bytes[0] == b'0' && bytes.len() > 1) {
            return None;
        }
        bytes.iter().try_fold(0u64, |n, &b| {
            if b.is_ascii_digit() {
                n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            } else {
                None
            }
        })
    }

    /// Where a JSON string's content ends (its closing quote) when it
    /// needs no unescaping; `None` at a backslash, a control character
    /// (invalid raw in JSON) or a missing quote. Eight bytes at a time:
    /// the body is most of a frame.
    fn plain_string_len(bytes: &[u8]) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        // Non-zero when some byte of `word` is below `n` (n <= 128).
        let any_below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
        let any_equal = |word: u64, b: u8| any_below(word ^ (ONES * u64::from(b)), 1);
        let mut at = 0;
        while let Some(chunk) = bytes.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            if any_equal(word, b'"') | any_equal(word, b'\\') | any_below(word, 0x20) != 0 {
                break;
            }
            at += 8;
        }
        for (offset, &b) in bytes.get(at..)?.iter().enumerate() {
            match b {
                b'"' => return Some(at + offset),
                b'\\' | 0x00..=0x1f => return None,
                _ => {}
            }
        }
        None
    }

    pub(super) fn parse(text: &str) -> Option<ServerFrame> {
        let frame = match leading_tag(text)? {
            "message" => {
                if let Some(message) = exact_message(text) {
                    return Some(ServerFrame::Message(message));
                }
                let m: Message = serde_json::from_str(text).ok()?;
                ServerFrame::Message(MessageFrame {
                    id: m.id,
                    conversation_id: m.conversation_id,
                    sender_id: m.sender_id,
                    client_msg_id: m.client_msg_id,
                    body: m.body,
                    sent_at_ms: m.sent_at_ms,
                })
            }
            "ack" => {
                let a: Ack = serde_json::from_str(text).ok()?;
                ServerFrame::Ack {
                    client_msg_id: a.client_msg_id,
                    id: a.id,
                    duplicate: a.duplicate,
                }
            }
            "hello" => {
                let h: Hello = serde_json::from_str(text).ok()?;
                ServerFrame::Hello {
                    client_id: h.client_id,
                    resume_from: h.resume_from,
                    cursor: h.cursor,
                    epoch: h.epoch,
                }
            }
            "caught_up" => {
                let c: CaughtUp = serde_json::from_str(text).ok()?;
                ServerFrame::CaughtUp {
                    last_id: c.last_id,
                    replayed: c.replayed,
                }
            }
            "gap" => {
                let g: Gap = serde_json::from_str(text).ok()?;
                ServerFrame::Gap {
                    resume_from: g.resume_from,
                    first_available: g.first_available,
                    reason: g.reason,
                }
            }
            "error" => {
                let e: Error = serde_json::from_str(text).ok()?;
                ServerFrame::Error {
                    code: e.code,
                    message: e.message,
                    client_msg_id: e.client_msg_id,
                    retry_after_ms: e.retry_after_ms,
                }
            }
            _ => return None,
        };
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_use_documented_field_names() {
        let uuid = Uuid::nil();
        let hello = ServerFrame::Hello {
            client_id: uuid,
            resume_from: StreamId::new(5, 1),
            cursor: CursorSource::Stored,
            epoch: "e1".into(),
        };
        let json: serde_json::Value = serde_json::from_str(&hello.to_json()).unwrap();
        assert_eq!(json["type"], "hello");
        assert_eq!(json["resume_from"], "5-1");
        assert_eq!(json["cursor"], "stored");
        let gap = ServerFrame::Gap {
            resume_from: StreamId::ZERO,
            first_available: StreamId::new(9, 0),
            reason: GapReason::EpochChanged,
        };
        let json: serde_json::Value = serde_json::from_str(&gap.to_json()).unwrap();
        assert_eq!(json["reason"], "epoch_changed");
        let message = ServerFrame::Message(MessageFrame {
            id: StreamId::new(7, 0),
            conversation_id: uuid,
            sender_id: uuid,
            client_msg_id: uuid,
            body: "hi".into(),
            sent_at_ms: 7,
        });
        let json: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["id"], "7-0");
        assert_eq!(json["body"], "hi");
        let error = ServerFrame::Error {
            code: ErrorCode::TooLarge,
            message: "x".into(),
            client_msg_id: None,
            retry_after_ms: None,
        };
        assert!(!error.to_json().contains("client_msg_id"));
        assert!(!error.to_json().contains("retry_after_ms"));
        assert!(error.to_json().contains("too_large"));
        let indeterminate = ServerFrame::Error {
            code: ErrorCode::Indeterminate,
            message: "x".into(),
            client_msg_id: Some(uuid),
            retry_after_ms: None,
        };
        assert!(indeterminate
            .to_json()
            .contains(r#""code":"indeterminate""#));
        let rate_limited = ServerFrame::Error {
            code: ErrorCode::RateLimited,
            message: "x".into(),
            client_msg_id: Some(uuid),
            retry_after_ms: Some(250),
        };
        let json: serde_json::Value = serde_json::from_str(&rate_limited.to_json()).unwrap();
        assert_eq!(json["code"], "rate_limited");
        assert_eq!(json["retry_after_ms"], 250);
        for frame in [hello, gap, message, error, indeterminate, rate_limited] {
            assert_eq!(ServerFrame::parse(&frame.to_json()).unwrap(), frame);
        }
    }

    #[test]
    fn an_unknown_error_code_is_kept_as_unknown() {
        let frame =
            ServerFrame::parse(r#"{"type":"error","code":"from_the_future","message":"m"}"#)
                .unwrap();
        assert!(matches!(
            frame,
            ServerFrame::Error {
                code: ErrorCode::Unknown,
                ..
            }
        ));
    }

    #[test]
    fn client_frames_parse_and_ignore_unknown_fields() {
        let frame = ClientFrame::parse(
            r#"{"type":"send","client_msg_id":"00000000-0000-0000-0000-000000000000","body":"x","extra":1}"#,
        )
        .unwrap();
        assert!(matches!(frame, ClientFrame::Send { .. }));
        let ack = ClientFrame::parse(r#"{"type":"ack","id":"10-2"}"#).unwrap();
        assert_eq!(
            ack,
            ClientFrame::Ack {
                id: StreamId::new(10, 2)
            }
        );
    }

    #[test]
    fn client_frame_errors_are_precise() {
        assert!(matches!(
            ClientFrame::parse("{nope"),
            Err(FrameError::NotJson(_))
        ));
        assert!(matches!(ClientFrame::parse("{}"), Err(FrameError::NoType)));
        assert!(
            matches!(ClientFrame::parse(r#"{"type":"hello"}"#), Err(FrameError::UnknownType(t)) if t == "hello")
        );
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"ack","id":"5-x"}"#),
            Err(FrameError::BadFields { .. })
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"send","client_msg_id":"nope","body":"x"}"#),
            Err(FrameError::BadFields { .. })
        ));
        let id = "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
        let send = |spelling: &str| {
            ClientFrame::parse(&format!(
                r#"{{"type":"send","client_msg_id":"{spelling}","body":"x"}}"#
            ))
        };
        assert!(send(id).is_ok());
        assert!(
            send(&id.to_uppercase()).is_ok(),
            "either case, as in the query"
        );
        for other in [
            format!("{{{id}}}"),
            format!("urn:uuid:{id}"),
            id.replace('-', ""),
        ] {
            let err = send(&other).unwrap_err();
            assert!(
                matches!(&err, FrameError::BadFields { .. })
                    && err.to_string().contains("hyphenated"),
                "{other}: {err}"
            );
        }
    }
}
