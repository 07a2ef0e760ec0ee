//! The authoritative message log, behind [`LogSource`]: where the checker
//! learns what the server really stored.
//!
//! - [`RedisStreams`]: protocol v1's layout (`recovery_protocol::keys`),
//!   every conversation stream read back with XRANGE in pages. Any server
//!   that stores its conversations the same way can be read like this,
//!   whatever its wire protocol.
//! - [`SocketIoStream`] (`log_socketio.rs`): the Socket.IO peer's
//!   adapter stream, where every instance appends its broadcasts.
//! - [`Store`]: whichever of these two the protocol's servers use.
//! - [`Rebuilt`]: no store to read (a peer whose storage the harness does
//!   not know, or an unreachable Redis): the log rebuilt from acks and
//!   receipts, and heads from the highest ack. Weaker: a message nobody
//!   acked or received is invisible.
//!
//! The harness reads Redis itself here: the reference server's store is
//! not linked for reading.

use std::time::Duration;

use recovery_protocol::keys;
use redis::Value;
use uuid::Uuid;

use crate::checker::rebuild_log_from_passes;
use crate::client::protocol::StoreLayout;
use crate::history::{body_hash, HistoryPasses, LogEntry, LogOrigin, MessageLog, Position};

#[path = "log_socketio.rs"]
mod socketio;
pub use socketio::SocketIoStream;

const PAGE: usize = 1000;
/// Tries per page read before a timeout fails the run.
const READ_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot reach the target's Redis at {url} to read the message log: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("reading stream {key} failed: {source}")]
    Read {
        key: String,
        source: redis::RedisError,
    },
    #[error("stream {key} holds an entry the protocol does not describe: {detail}")]
    Entry { key: String, detail: String },
    #[error("cannot rebuild the message log from the history: {0}")]
    History(#[from] crate::history::HistoryError),
}

/// Somewhere the authoritative log can be read from after a run.
#[allow(async_fn_in_trait)] // used with concrete types only, never boxed
pub trait LogSource {
    /// Each conversation's newest position (`Position::ZERO` when empty):
    /// what every member must reach during the drain.
    async fn read_heads(&self, conversations: &[Uuid]) -> Result<Vec<Position>, LogError>;
    /// Every conversation's log, oldest first.
    async fn read_log(&self, conversations: &[Uuid]) -> Result<MessageLog, LogError>;
}

/// The servers' own store, read as their protocol lays it out.
pub enum Store<'a> {
    V1(RedisStreams<'a>),
    SocketIo(SocketIoStream<'a>),
}

impl<'a> Store<'a> {
    pub fn new(layout: StoreLayout, url: &'a str) -> Store<'a> {
        match layout {
            StoreLayout::V1Streams => Store::V1(RedisStreams { url }),
            StoreLayout::SocketIoAdapterStream => Store::SocketIo(SocketIoStream { url }),
        }
    }

    /// Where the log is kept, for messages to the user.
    pub fn describe(&self) -> &'static str {
        match self {
            Store::V1(_) => "`stream:conversation:{id}` streams",
            Store::SocketIo(_) => "`socket.io` adapter stream message broadcasts",
        }
    }
}

impl LogSource for Store<'_> {
    async fn read_heads(&self, conversations: &[Uuid]) -> Result<Vec<Position>, LogError> {
        match self {
            Store::V1(store) => store.read_heads(conversations).await,
            Store::SocketIo(store) => store.read_heads(conversations).await,
        }
    }

    async fn read_log(&self, conversations: &[Uuid]) -> Result<MessageLog, LogError> {
        match self {
            Store::V1(store) => store.read_log(conversations).await,
            Store::SocketIo(store) => store.read_log(conversations).await,
        }
    }
}

/// Protocol v1's Redis streams at `url`.
pub struct RedisStreams<'a> {
    pub url: &'a str,
}

/// The log rebuilt from a finished history file (acks and receipts),
/// read streaming.
pub struct Rebuilt<'a> {
    pub history: &'a HistoryPasses,
    /// Per conversation: the highest acked position during the run.
    pub acked_heads: &'a [Position],
}

impl LogSource for Rebuilt<'_> {
    async fn read_heads(&self, conversations: &[Uuid]) -> Result<Vec<Position>, LogError> {
        let mut heads = self.acked_heads.to_vec();
        heads.resize(conversations.len(), Position::ZERO);
        Ok(heads)
    }

    async fn read_log(&self, _conversations: &[Uuid]) -> Result<MessageLog, LogError> {
        Ok(rebuild_log_from_passes(self.history)?)
    }
}

async fn connection(url: &str) -> Result<redis::aio::MultiplexedConnection, LogError> {
    let connect_err = |source| LogError::Connect {
        url: url.to_string(),
        source,
    };
    let client = redis::Client::open(url).map_err(connect_err)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(connect_err)
}

/// The bytes of a text reply.
fn text_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

/// Field/value pairs of an entry, from a flat array or a RESP3 map.
fn pairs(value: &Value) -> Option<Vec<(&Value, &Value)>> {
    match value {
        Value::Map(pairs) => Some(pairs.iter().map(|(k, v)| (k, v)).collect()),
        Value::Array(items) => Some(
            items
                .chunks_exact(2)
                .map(|pair| (&pair[0], &pair[1]))
                .collect(),
        ),
        _ => None,
    }
}

/// One stream entry (docs/protocol.md, "Storage layout") as a log entry.
fn parse_entry(value: &Value) -> Result<LogEntry, String> {
    let Value::Array(parts) = value else {
        return Err("entry is not an array".into());
    };
    let [id, fields] = parts.as_slice() else {
        return Err(format!("entry has {} parts, expected 2", parts.len()));
    };
    let id: Position = text_bytes(id)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .ok_or("id is not text")?
        .parse()
        .map_err(|err| format!("bad id: {err}"))?;
    let fields = pairs(fields).ok_or("fields are not a list")?;
    let uuid = |value: &Value| text_bytes(value).and_then(|b| Uuid::try_parse_ascii(b).ok());
    let (mut sender_id, mut client_msg_id, mut body) = (None, None, None);
    for (key, value) in fields {
        match text_bytes(key) {
            Some(b"sender_id") => sender_id = uuid(value),
            Some(b"client_msg_id") => client_msg_id = uuid(value),
            Some(b"body") => {
                body = text_bytes(value)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .map(body_hash)
            }
            _ => {}
        }
    }
    let missing = |field: &str| format!("entry {id} lacks a valid `{field}`");
    Ok(LogEntry {
        id,
        sender_id: sender_id.ok_or_else(|| missing("sender_id"))?,
        client_msg_id: client_msg_id.ok_or_else(|| missing("client_msg_id"))?,
        body_hash: body.ok_or_else(|| missing("body"))?,
    })
}

/// One XRANGE / XREVRANGE page, parsed.
async fn read_page(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    command: &str,
    start: &str,
    end: &str,
    count: usize,
) -> Result<Vec<LogEntry>, LogError> {
    let mut request = redis::cmd(command);
    request.arg(key).arg(start).arg(end).arg("COUNT").arg(count);
    // A read is idempotent: a timed-out one (a starved harness at the end
    // of a heavy run, a Redis busy with a snapshot) is asked again, a
    // bounded number of times, rather than failing a run minutes long.
    let mut attempt = 1;
    let value: Value = loop {
        match request.query_async(conn).await {
            Ok(value) => break value,
            Err(source) if source.is_timeout() && attempt < READ_ATTEMPTS => {
                tracing::warn!(
                    key,
                    attempt,
                    "reading the message log timed out; asking again"
                );
                attempt += 1;
            }
            Err(source) => {
                return Err(LogError::Read {
                    key: key.to_string(),
                    source,
                })
            }
        }
    };
    let entry_err = |detail: String| LogError::Entry {
        key: key.to_string(),
        detail,
    };
    match &value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| parse_entry(item).map_err(entry_err))
            .collect(),
        _ => Err(entry_err(format!("{command} reply is not an array"))),
    }
}

impl LogSource for RedisStreams<'_> {
    async fn read_log(&self, conversations: &[Uuid]) -> Result<MessageLog, LogError> {
        let mut conn = connection(self.url).await?;
        let mut logs = Vec::with_capacity(conversations.len());
        for conversation_id in conversations {
            let key = keys::stream(*conversation_id);
            let mut entries = Vec::new();
            let mut after: Option<Position> = None;
            loop {
                let start = match after {
                    Some(id) => format!("({id}"),
                    None => "-".to_string(),
                };
                let page = read_page(&mut conn, &key, "XRANGE", &start, "+", PAGE).await?;
                let full = page.len() == PAGE;
                after = page.last().map(|entry| entry.id).or(after);
                entries.extend(page);
                if !full {
                    break;
                }
            }
            logs.push(entries);
        }
        Ok(MessageLog {
            source: LogOrigin::Redis,
            conversations: logs,
        })
    }

    async fn read_heads(&self, conversations: &[Uuid]) -> Result<Vec<Position>, LogError> {
        let mut conn = connection(self.url).await?;
        let mut heads = Vec::with_capacity(conversations.len());
        for conversation_id in conversations {
            let key = keys::stream(*conversation_id);
            let page = read_page(&mut conn, &key, "XREVRANGE", "+", "-", 1).await?;
            heads.push(page.first().map_or(Position::ZERO, |entry| entry.id));
        }
        Ok(heads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn entries_parse_from_resp2_and_resp3() {
        let sender = Uuid::from_u128(1);
        let msg = Uuid::from_u128(2);
        let fields = vec![
            bulk("sender_id"),
            bulk(&sender.to_string()),
            bulk("client_msg_id"),
            bulk(&msg.to_string()),
            bulk("body"),
            bulk("hi"),
            bulk("sent_at_ms"),
            bulk("5"),
        ];
        let expected = LogEntry {
            id: Position::new(7, 1),
            sender_id: sender,
            client_msg_id: msg,
            body_hash: body_hash("hi"),
        };
        let resp2 = Value::Array(vec![bulk("7-1"), Value::Array(fields.clone())]);
        assert_eq!(parse_entry(&resp2), Ok(expected.clone()));
        let map = fields
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        let resp3 = Value::Array(vec![bulk("7-1"), Value::Map(map)]);
        assert_eq!(parse_entry(&resp3), Ok(expected));
    }

    #[test]
    fn bad_entries_are_named() {
        let no_body = Value::Array(vec![
            bulk("7-1"),
            Value::Array(vec![bulk("sender_id"), bulk(&Uuid::nil().to_string())]),
        ]);
        let err = parse_entry(&no_body).unwrap_err();
        assert!(err.contains("client_msg_id"), "{err}");
        let bad_id = Value::Array(vec![bulk("x"), Value::Array(vec![])]);
        assert!(parse_entry(&bad_id).unwrap_err().contains("bad id"));
    }
}
