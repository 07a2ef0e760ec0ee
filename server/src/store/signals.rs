//! The appended-signals stream (`keys::APPENDED_SIGNALS`): one entry per
//! append, naming the conversation stream that grew. The live tailer
//! blocks on it and then reads only the streams it names.

use recovery_protocol::StreamId;
use redis::Value;
use uuid::Uuid;

use super::parse::EntryFields;
use super::{keys, StoreError, StreamEntry};

const OP: &str = "XREAD of the appended signals";

/// What one read of the signals gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Signals {
    /// The newest signal read: where the next read starts. `None` when
    /// nothing was read (a timeout, or a CLIENT UNBLOCK).
    pub last: Option<StreamId>,
    /// The conversations named, each once, in the order first named.
    pub conversations: Vec<Uuid>,
    /// Every signal naming a conversation, in stream order, with the
    /// entry it carries when it carries one (see `Inline`).
    pub hints: Vec<(Uuid, Option<Inline>)>,
}

/// The appended entry carried by its signal (written by the append script
/// when the body is small), so a tailer can dispatch it without reading
/// the conversation stream. `prev` is the stream's newest id just before
/// this append (`0-0` when it was empty): no entry with an id between
/// `prev` and `entry`'s exists or can ever be added (the script is one
/// atomic step, and stream ids only grow) while the stream lives. So a
/// tailer whose cursor for the conversation is exactly `prev`, and is an
/// entry it dispatched itself (not a subscriber's head read, which can be
/// `0-0` of a deleted stream), may dispatch `entry` next; any other
/// cursor must read the stream instead.
#[derive(Debug, PartialEq, Eq)]
pub struct Inline {
    pub prev: StreamId,
    pub entry: StreamEntry,
}

fn reply_err(detail: impl Into<String>) -> StoreError {
    StoreError::Reply {
        op: OP,
        detail: detail.into(),
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// An `XREAD ... STREAMS fanout:appended <id>` reply (RESP2 or RESP3).
/// A signal naming a key that is not a conversation stream is skipped: a
/// hint that cannot be used costs nothing, as the tailer's sweep reads
/// every stream anyway.
pub fn parse_signals(value: Value) -> Result<Signals, StoreError> {
    let mut signals = Signals::default();
    let streams: Vec<Value> = match value {
        Value::Nil => return Ok(signals),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut kv) if kv.len() == 2 => Ok(kv.pop().unwrap_or(Value::Nil)),
                _ => Err(reply_err("stream item is not [key, entries]")),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        _ => return Err(reply_err("reply is neither array nor map")),
    };
    for entries in streams {
        let Value::Array(entries) = entries else {
            return Err(reply_err("entries are not an array"));
        };
        for entry in entries {
            let Value::Array(parts) = entry else {
                return Err(reply_err("entry is not an array"));
            };
            let [id, fields] = parts.as_slice() else {
                return Err(reply_err(format!(
                    "entry has {} parts, expected 2",
                    parts.len()
                )));
            };
            let id: StreamId = text(id)
                .ok_or_else(|| reply_err("id is not text"))?
                .parse()
                .map_err(|e| reply_err(format!("bad id: {e}")))?;
            signals.last = Some(signals.last.map_or(id, |last| last.max(id)));
            let pairs: Vec<(&Value, &Value)> = match fields {
                Value::Array(items) => items
                    .chunks_exact(2)
                    .map(|pair| (&pair[0], &pair[1]))
                    .collect(),
                Value::Map(pairs) => pairs.iter().map(|(key, value)| (key, value)).collect(),
                _ => return Err(reply_err(format!("entry {id}: fields are not a list"))),
            };
            let named = pairs
                .iter()
                .find(|(key, _)| text(key) == Some("stream"))
                .and_then(|(_, value)| text(value));
            if let Some(conversation) = named.and_then(keys::conversation_of_stream) {
                if !signals.conversations.contains(&conversation) {
                    signals.conversations.push(conversation);
                }
                signals
                    .hints
                    .push((conversation, inline_entry(&pairs, conversation)));
            }
        }
    }
    Ok(signals)
}

/// An `XREVRANGE fanout:appended + - COUNT 1` reply: the newest signal's
/// id, `StreamId::ZERO` when there is none.
/// The entry a signal carries, if it carries a complete one. A partial
/// or unreadable one is treated as absent: the tailer then reads the
/// stream, which is always correct, only slower.
fn inline_entry(pairs: &[(&Value, &Value)], conversation_id: Uuid) -> Option<Inline> {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| text(key) == Some(name))
            .and_then(|(_, value)| text(value))
    };
    let prev: StreamId = field("prev")?.parse().ok()?;
    let id: StreamId = field("id")?.parse().ok()?;
    let fields = EntryFields {
        sender_id: field("sender_id").and_then(|t| Uuid::try_parse(t).ok()),
        client_msg_id: field("client_msg_id").and_then(|t| Uuid::try_parse(t).ok()),
        body: field("body").map(str::to_owned),
        sent_at_ms: field("sent_at_ms").and_then(|t| t.parse().ok()),
    };
    let entry = fields.into_entry(OP, id, conversation_id).ok()?;
    (prev < id).then_some(Inline { prev, entry })
}

pub fn parse_signals_head(value: Value) -> Result<StreamId, StoreError> {
    match value {
        Value::Nil => Ok(StreamId::ZERO),
        Value::Array(entries) => match entries.first() {
            None => Ok(StreamId::ZERO),
            Some(Value::Array(parts)) => parts
                .first()
                .and_then(text)
                .ok_or_else(|| reply_err("head id is not text"))?
                .parse()
                .map_err(|e| reply_err(format!("bad head id: {e}"))),
            Some(_) => Err(reply_err("head entry is not an array")),
        },
        _ => Err(reply_err("head reply is not an array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn signal(id: &str, conversation: Uuid) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![bulk("stream"), bulk(&keys::stream(conversation))]),
        ])
    }

    #[test]
    fn signals_name_each_conversation_once_and_end_at_the_newest_id() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(keys::APPENDED_SIGNALS),
            Value::Array(vec![
                signal("5-0", a),
                signal("5-1", b),
                signal("6-0", a),
                Value::Array(vec![
                    bulk("7-0"),
                    Value::Array(vec![bulk("stream"), bulk("not-a-stream")]),
                ]),
            ]),
        ])]);
        let signals = parse_signals(reply).expect("a well-formed reply");
        assert_eq!(signals.conversations, vec![a, b]);
        assert_eq!(signals.last, Some("7-0".parse().expect("id")));
    }

    #[test]
    fn a_signal_carrying_a_complete_entry_gives_it_with_its_prev() {
        let conversation = Uuid::from_u128(7);
        let (sender, cmid) = (Uuid::from_u128(8), Uuid::from_u128(9));
        let carrying = |fields: &[(&str, &str)]| {
            let mut items = vec![bulk("stream"), bulk(&keys::stream(conversation))];
            for (key, value) in fields {
                items.push(bulk(key));
                items.push(bulk(value));
            }
            Value::Array(vec![bulk("1-0"), Value::Array(items)])
        };
        let (sender_text, cmid_text) = (sender.to_string(), cmid.to_string());
        let complete = [
            ("prev", "4-0"),
            ("id", "5-0"),
            ("sender_id", sender_text.as_str()),
            ("client_msg_id", cmid_text.as_str()),
            ("body", "hi"),
            ("sent_at_ms", "12"),
        ];
        let reply = |signal: Value| {
            Value::Array(vec![Value::Array(vec![
                bulk(keys::APPENDED_SIGNALS),
                Value::Array(vec![signal]),
            ])])
        };
        let signals = parse_signals(reply(carrying(&complete))).expect("well-formed");
        let (named, inline) = &signals.hints[0];
        assert_eq!(*named, conversation);
        let inline = inline.as_ref().expect("a complete entry is carried");
        assert_eq!(inline.prev, "4-0".parse().expect("id"));
        assert_eq!(inline.entry.message.id, "5-0".parse().expect("id"));
        assert_eq!(inline.entry.message.body, "hi");
        assert_eq!(inline.entry.message.sender_id, sender);
        // Missing a field, or a prev not below the id: read the stream.
        let signals = parse_signals(reply(carrying(&complete[..5]))).expect("well-formed");
        assert_eq!(signals.hints[0].1, None);
        let mut backwards = complete;
        backwards[0] = ("prev", "5-0");
        let signals = parse_signals(reply(carrying(&backwards))).expect("well-formed");
        assert_eq!(signals.hints[0].1, None);
        let signals = parse_signals(reply(carrying(&[]))).expect("well-formed");
        assert_eq!(signals.hints, vec![(conversation, None)]);
    }

    #[test]
    fn a_timed_out_read_names_nothing() {
        assert_eq!(parse_signals(Value::Nil).expect("nil"), Signals::default());
    }

    #[test]
    fn a_malformed_signal_is_an_error_naming_it() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(keys::APPENDED_SIGNALS),
            Value::Array(vec![Value::Array(vec![bulk("x-y"), Value::Array(vec![])])]),
        ])]);
        let err = parse_signals(reply).expect_err("a bad id");
        assert!(err.to_string().contains("bad id"), "{err}");
    }

    #[test]
    fn the_head_of_an_empty_signals_stream_is_zero() {
        assert_eq!(
            parse_signals_head(Value::Array(vec![])).expect("empty"),
            StreamId::ZERO
        );
        assert_eq!(
            parse_signals_head(Value::Array(vec![signal("9-3", Uuid::from_u128(1))])).expect("one"),
            "9-3".parse().expect("id")
        );
    }
}
