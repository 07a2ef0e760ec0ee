//! The appended-signals stream (`keys::APPENDED_SIGNALS`): one entry per
//! append, naming the conversation stream that grew. The live tailer
//! blocks on it and then reads only the streams it names.

use recovery_protocol::StreamId;
use redis::Value;
use uuid::Uuid;

use super::{keys, StoreError};

const OP: &str = "XREAD of the appended signals";

/// What one read of the signals gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Signals {
    /// The newest signal read: where the next read starts. `None` when
    /// nothing was read (a timeout, or a CLIENT UNBLOCK).
    pub last: Option<StreamId>,
    /// The conversations named, each once, in the order first named.
    pub conversations: Vec<Uuid>,
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
            let named = match fields {
                Value::Array(items) => items
                    .chunks_exact(2)
                    .find(|pair| text(&pair[0]) == Some("stream"))
                    .and_then(|pair| text(&pair[1])),
                Value::Map(pairs) => pairs
                    .iter()
                    .find(|(key, _)| text(key) == Some("stream"))
                    .and_then(|(_, value)| text(value)),
                _ => return Err(reply_err(format!("entry {id}: fields are not a list"))),
            };
            if let Some(conversation) = named.and_then(keys::conversation_of_stream) {
                if !signals.conversations.contains(&conversation) {
                    signals.conversations.push(conversation);
                }
            }
        }
    }
    Ok(signals)
}

/// An `XREVRANGE fanout:appended + - COUNT 1` reply: the newest signal's
/// id, `StreamId::ZERO` when there is none.
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
