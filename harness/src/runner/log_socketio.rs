//! The Socket.IO peer's authoritative log: `@socket.io/redis-streams-adapter`
//! keeps every broadcast in one Redis stream (`socket.io`), and that stream
//! is what live delivery on other instances and connection state recovery
//! both read. peers/socketio/README.md, "The authoritative log", has the
//! entry layout; in short, a message is an entry with `type` "3"
//! (BROADCAST), `nsp` "/", and `data` JSON
//! `{"packet":{"data":["message",{conv,sender,client_msg_id,body}],..},"opts":{"rooms":[conv],..}}`.
//! Its entry id is the offset every receiver gets, so log order is stream
//! order and a position is the entry id itself.
//!
//! Housekeeping entries (heartbeats, joins, fetches: other types) and
//! broadcasts of other events are skipped; a `message` broadcast that does
//! not parse is an error naming the entry (the log must not be guessed).

use std::collections::HashMap;

use redis::Value;
use serde_json::Value as Json;
use uuid::Uuid;

use super::{connection, pairs, text_bytes, LogError, LogSource, PAGE};
use crate::history::{body_hash, LogEntry, LogOrigin, MessageLog, Position};

/// The adapter's default stream name (`streamName` option).
pub const STREAM: &str = "socket.io";

/// The `socket.io` stream at `url`.
pub struct SocketIoStream<'a> {
    pub url: &'a str,
}

/// One message of the stream: its conversation and entry.
#[derive(Debug, PartialEq)]
struct Broadcast {
    conversation: Uuid,
    entry: LogEntry,
}

/// One stream entry: a message broadcast, or `None` for anything else.
fn parse_entry(value: &Value) -> Result<Option<Broadcast>, String> {
    let Value::Array(parts) = value else {
        return Err("entry is not an array".into());
    };
    let [id, fields] = parts.as_slice() else {
        return Err(format!("entry has {} parts, expected 2", parts.len()));
    };
    let id_text = text_bytes(id)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .ok_or("id is not text")?;
    let id: Position = id_text.parse().map_err(|err| format!("bad id: {err}"))?;
    let fields = pairs(fields).ok_or("fields are not a list")?;
    let (mut kind, mut nsp, mut data) = (None, None, None);
    for (key, value) in fields {
        let text = text_bytes(value).and_then(|b| std::str::from_utf8(b).ok());
        match text_bytes(key) {
            Some(b"type") => kind = text,
            Some(b"nsp") => nsp = text,
            Some(b"data") => data = text,
            _ => {}
        }
    }
    if kind != Some("3") || nsp != Some("/") {
        return Ok(None);
    }
    let data = data.ok_or_else(|| format!("broadcast {id} has no `data`"))?;
    if !data.starts_with('{') {
        // msgpack (base64): the adapter's encoding for binary payloads,
        // which the peer never broadcasts.
        return Err(format!("broadcast {id} has a binary (msgpack) payload"));
    }
    let data: Json = serde_json::from_str(data)
        .map_err(|err| format!("broadcast {id}: data is not JSON: {err}"))?;
    let args = data
        .pointer("/packet/data")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("broadcast {id} has no packet.data array"))?;
    if args.first().and_then(Json::as_str) != Some("message") {
        return Ok(None);
    }
    let payload = args
        .get(1)
        .ok_or_else(|| format!("message {id} has no payload"))?;
    let uuid = |field: &str| {
        payload
            .get(field)
            .and_then(Json::as_str)
            .and_then(|text| Uuid::try_parse(text).ok())
            .ok_or_else(|| format!("message {id} lacks a uuid `{field}`"))
    };
    let conversation = uuid("conv")?;
    let in_room = data
        .pointer("/opts/rooms")
        .and_then(Json::as_array)
        .is_some_and(|rooms| {
            rooms
                .iter()
                .any(|room| room.as_str() == payload["conv"].as_str())
        });
    if !in_room {
        return Err(format!(
            "message {id} for {conversation} was not broadcast to that room"
        ));
    }
    let body = payload
        .get("body")
        .and_then(Json::as_str)
        .ok_or_else(|| format!("message {id} lacks a string `body`"))?;
    Ok(Some(Broadcast {
        conversation,
        entry: LogEntry {
            id,
            sender_id: uuid("sender")?,
            client_msg_id: uuid("client_msg_id")?,
            body_hash: body_hash(body),
        },
    }))
}

impl LogSource for SocketIoStream<'_> {
    async fn read_log(&self, conversations: &[Uuid]) -> Result<MessageLog, LogError> {
        let index: HashMap<Uuid, usize> = conversations
            .iter()
            .enumerate()
            .map(|(ix, id)| (*id, ix))
            .collect();
        let mut logs = vec![Vec::new(); conversations.len()];
        let mut conn = connection(self.url).await?;
        let mut after: Option<Position> = None;
        let entry_err = |detail: String| LogError::Entry {
            key: STREAM.to_string(),
            detail,
        };
        loop {
            let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
            let value: Value = redis::cmd("XRANGE")
                .arg(STREAM)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut conn)
                .await
                .map_err(|source| LogError::Read {
                    key: STREAM.to_string(),
                    source,
                })?;
            let items = match value {
                Value::Nil => Vec::new(),
                Value::Array(items) => items,
                _ => return Err(entry_err("XRANGE reply is not an array".into())),
            };
            for item in &items {
                let Value::Array(parts) = item else {
                    return Err(entry_err("entry is not an array".into()));
                };
                let id = parts
                    .first()
                    .and_then(text_bytes)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|text| text.parse::<Position>().ok())
                    .ok_or_else(|| entry_err("entry without a stream id".into()))?;
                after = Some(id);
                if let Some(broadcast) = parse_entry(item).map_err(entry_err)? {
                    // Another run's conversations (a reused Redis) are not ours.
                    if let Some(&ix) = index.get(&broadcast.conversation) {
                        logs[ix].push(broadcast.entry);
                    }
                }
            }
            if items.len() < PAGE {
                break;
            }
        }
        Ok(MessageLog {
            source: LogOrigin::Redis,
            conversations: logs,
        })
    }

    async fn read_heads(&self, conversations: &[Uuid]) -> Result<Vec<Position>, LogError> {
        // One stream for every conversation: the heads need the whole of it.
        let log = self.read_log(conversations).await?;
        Ok(log
            .conversations
            .iter()
            .map(|entries| entries.last().map_or(Position::ZERO, |entry| entry.id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry(id: &str, kind: &str, data: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![
                bulk("uid"),
                bulk("abc"),
                bulk("nsp"),
                bulk("/"),
                bulk("type"),
                bulk(kind),
                bulk("data"),
                bulk(data),
            ]),
        ])
    }

    #[test]
    fn message_broadcasts_are_log_entries() {
        let (conv, sender, msg) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let data = format!(
            r#"{{"packet":{{"type":2,"data":["message",{{"conv":"{conv}","sender":"{sender}","client_msg_id":"{msg}","body":"hi"}}],"nsp":"/"}},"opts":{{"rooms":["{conv}"],"except":[],"flags":{{}}}}}}"#
        );
        let parsed = parse_entry(&entry("17-2", "3", &data)).unwrap();
        assert_eq!(
            parsed,
            Some(Broadcast {
                conversation: conv,
                entry: LogEntry {
                    id: Position::new(17, 2),
                    sender_id: sender,
                    client_msg_id: msg,
                    body_hash: body_hash("hi"),
                },
            })
        );
        // Housekeeping and other events are not messages.
        assert_eq!(parse_entry(&entry("17-3", "13", "{}")).unwrap(), None);
        let other = r#"{"packet":{"type":2,"data":["typing",{}],"nsp":"/"},"opts":{"rooms":[]}}"#;
        assert_eq!(parse_entry(&entry("17-4", "3", other)).unwrap(), None);
    }

    #[test]
    fn malformed_message_broadcasts_are_named() {
        let conv = Uuid::from_u128(1);
        let no_sender = format!(
            r#"{{"packet":{{"data":["message",{{"conv":"{conv}","client_msg_id":"{conv}","body":"b"}}]}},"opts":{{"rooms":["{conv}"]}}}}"#
        );
        let err = parse_entry(&entry("5-0", "3", &no_sender)).unwrap_err();
        assert!(err.contains("5-0") && err.contains("sender"), "{err}");
        let binary = parse_entry(&entry("5-1", "3", "gqZwYWNrZXQ=")).unwrap_err();
        assert!(binary.contains("msgpack"), "{binary}");
        let wrong_room = format!(
            r#"{{"packet":{{"data":["message",{{"conv":"{conv}","sender":"{conv}","client_msg_id":"{conv}","body":"b"}}]}},"opts":{{"rooms":["elsewhere"]}}}}"#
        );
        let err = parse_entry(&entry("5-2", "3", &wrong_room)).unwrap_err();
        assert!(err.contains("room"), "{err}");
    }
}
