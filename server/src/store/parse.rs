//! Turning raw Redis replies (RESP2 or RESP3) into protocol types, with
//! errors that say what was wrong instead of panicking on odd data.

use recovery_protocol::{MessageFrame, StreamId};
use redis::Value;
use uuid::Uuid;

use super::{keys, StoreError, StreamShape};

/// One stream entry as a protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub message: MessageFrame,
}

fn reply_err(op: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Reply {
        op,
        detail: detail.into(),
    }
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_text(other).and_then(|t| t.parse().ok()),
    }
}

/// Flattens an array or map reply into a list of (key, value) pairs.
fn pairs(value: Value) -> Option<Vec<(Value, Value)>> {
    match value {
        Value::Map(pairs) => Some(pairs),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut iter = items.into_iter();
            while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                out.push((k, v));
            }
            Some(out)
        }
        _ => None,
    }
}

/// An entry's fields as (key, value): consecutive items of a flat array
/// (RESP2; an odd last item is ignored, as in `pairs`) or a map (RESP3).
enum Fields {
    Flat(std::vec::IntoIter<Value>),
    Map(std::vec::IntoIter<(Value, Value)>),
}

impl Iterator for Fields {
    type Item = (Value, Value);

    fn next(&mut self) -> Option<(Value, Value)> {
        match self {
            Fields::Flat(items) => Some((items.next()?, items.next()?)),
            Fields::Map(pairs) => pairs.next(),
        }
    }
}

/// The bytes of a text reply, borrowed (no copy).
fn text_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

/// A text reply taken by value: the body moves out of the reply instead of
/// being copied (replay and fan-out parse every entry they send).
fn into_text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::VerbatimString { text, .. } => Some(text),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_entry(value: Value, conversation_id: Uuid) -> Result<StreamEntry, StoreError> {
    const OP: &str = "stream entry";
    let Value::Array(mut parts) = value else {
        return Err(reply_err(OP, "entry is not an array"));
    };
    if parts.len() != 2 {
        return Err(reply_err(
            OP,
            format!("entry has {} parts, expected 2", parts.len()),
        ));
    }
    // The fields as a flat list (RESP2 array or RESP3 map), walked in
    // place: no intermediate list of pairs per entry.
    let fields = match parts.pop() {
        Some(Value::Array(items)) => Fields::Flat(items.into_iter()),
        Some(Value::Map(pairs)) => Fields::Map(pairs.into_iter()),
        _ => return Err(reply_err(OP, "fields are not a list")),
    };
    let id: StreamId = parts
        .pop()
        .as_ref()
        .and_then(text_bytes)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .ok_or_else(|| reply_err(OP, "id is not text"))?
        .parse()
        .map_err(|e| reply_err(OP, format!("bad id: {e}")))?;
    let uuid = |value: &Value| text_bytes(value).and_then(|b| Uuid::try_parse_ascii(b).ok());
    let mut read = EntryFields::default();
    for (key, value) in fields {
        match text_bytes(&key) {
            Some(b"sender_id") => read.sender_id = uuid(&value),
            Some(b"client_msg_id") => read.client_msg_id = uuid(&value),
            Some(b"body") => read.body = into_text(value),
            Some(b"sent_at_ms") => read.sent_at_ms = as_u64(&value),
            _ => {}
        }
    }
    read.into_entry(OP, id, conversation_id)
}

/// A stream entry's fields as read from a reply (`None`: absent or not
/// valid); shared by this module and the replay connection's decoder
/// (`resp.rs`), so both judge an entry the same way.
#[derive(Default)]
pub(super) struct EntryFields {
    pub sender_id: Option<Uuid>,
    pub client_msg_id: Option<Uuid>,
    pub body: Option<String>,
    pub sent_at_ms: Option<u64>,
}

impl EntryFields {
    /// The entry, or an error naming the entry and its first field missing.
    pub(super) fn into_entry(
        self,
        op: &'static str,
        id: StreamId,
        conversation_id: Uuid,
    ) -> Result<StreamEntry, StoreError> {
        let missing = |field: &str| reply_err(op, format!("entry {id} lacks a valid `{field}`"));
        Ok(StreamEntry {
            message: MessageFrame {
                id,
                conversation_id,
                sender_id: self.sender_id.ok_or_else(|| missing("sender_id"))?,
                client_msg_id: self.client_msg_id.ok_or_else(|| missing("client_msg_id"))?,
                body: self.body.ok_or_else(|| missing("body"))?,
                sent_at_ms: self.sent_at_ms.ok_or_else(|| missing("sent_at_ms"))?,
            },
        })
    }
}

/// An XRANGE / XREVRANGE reply.
pub fn parse_entries(value: Value, conversation_id: Uuid) -> Result<Vec<StreamEntry>, StoreError> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|item| parse_entry(item, conversation_id))
            .collect(),
        _ => Err(reply_err("XRANGE", "reply is not an array")),
    }
}

/// An XREAD reply: per conversation, its new entries. Nil (timeout or
/// CLIENT UNBLOCK) is an empty list.
pub fn parse_xread(value: Value) -> Result<Vec<(Uuid, Vec<StreamEntry>)>, StoreError> {
    if matches!(value, Value::Nil) {
        return Ok(Vec::new());
    }
    let streams: Vec<(Value, Value)> = match value {
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop().unwrap_or(Value::Nil);
                    let key = kv.pop().unwrap_or(Value::Nil);
                    Ok((key, entries))
                }
                _ => Err(reply_err("XREAD", "stream item is not [key, entries]")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(reply_err("XREAD", "reply is neither array nor map")),
    };
    let mut out = Vec::with_capacity(streams.len());
    for (key, entries) in streams {
        let key = as_text(&key).ok_or_else(|| reply_err("XREAD", "stream key is not text"))?;
        // A key we do not recognise cannot come from our own XREAD; skip it.
        let Some(conversation_id) = keys::conversation_of_stream(&key) else {
            continue;
        };
        out.push((conversation_id, parse_entries(entries, conversation_id)?));
    }
    Ok(out)
}

/// XINFO STREAM (Redis >= 7.0 for `entries-added`; older servers report 0,
/// which makes trim detection conservative: see `session::gap`).
pub fn parse_stream_shape(value: Value) -> Result<StreamShape, StoreError> {
    const OP: &str = "XINFO STREAM";
    let fields = pairs(value).ok_or_else(|| reply_err(OP, "reply is not a list of fields"))?;
    let mut shape = StreamShape {
        length: 0,
        entries_added: 0,
        first_id: None,
        last_generated_id: StreamId::ZERO,
    };
    for (key, value) in fields {
        match as_text(&key).as_deref() {
            Some("length") => shape.length = as_u64(&value).unwrap_or(0),
            Some("entries-added") => shape.entries_added = as_u64(&value).unwrap_or(0),
            Some("last-generated-id") => {
                shape.last_generated_id = as_text(&value)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(StreamId::ZERO)
            }
            // Conversation id is irrelevant here; only the id is used.
            Some("first-entry") if !matches!(value, Value::Nil) => {
                shape.first_id = Some(parse_entry(value, Uuid::nil())?.message.id);
            }
            _ => {}
        }
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry(id: &str) -> Value {
        let uuid = Uuid::nil().to_string();
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![
                bulk("sender_id"),
                bulk(&uuid),
                bulk("client_msg_id"),
                bulk(&uuid),
                bulk("body"),
                bulk("hello"),
                bulk("sent_at_ms"),
                bulk("17"),
            ]),
        ])
    }

    #[test]
    fn parses_xrange_reply() {
        let entries =
            parse_entries(Value::Array(vec![entry("1-0"), entry("1-1")]), Uuid::nil()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].message.id, StreamId::new(1, 1));
        assert_eq!(entries[0].message.body, "hello");
        assert_eq!(entries[0].message.sent_at_ms, 17);
    }

    #[test]
    fn rejects_entry_missing_fields() {
        let bad = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("body"), bulk("x")]),
        ]);
        let err = parse_entries(Value::Array(vec![bad]), Uuid::nil())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sender_id"), "{err}");
    }

    #[test]
    fn parses_xread_reply_and_nil() {
        assert!(parse_xread(Value::Nil).unwrap().is_empty());
        let conv = Uuid::new_v4();
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(&keys::stream(conv)),
            Value::Array(vec![entry("5-0")]),
        ])]);
        let parsed = parse_xread(reply).unwrap();
        assert_eq!(parsed[0].0, conv);
        assert_eq!(parsed[0].1[0].message.conversation_id, conv);
    }
}
