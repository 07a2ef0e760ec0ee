//! The authoritative message log: every conversation stream read back from
//! Redis after the drain (XRANGE in pages), in the shape the checker wants.

use std::time::Duration;

use recovery_protocol::StreamId;
use uuid::Uuid;

use crate::history::{body_hash, LogEntry, LogSource, MessageLog};

const PAGE: usize = 1000;

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

/// Reads every conversation's stream, oldest first.
pub async fn read_log(url: &str, conversations: &[Uuid]) -> Result<MessageLog, LogError> {
    let mut conn = connection(url).await?;
    let mut logs = Vec::with_capacity(conversations.len());
    for conversation_id in conversations {
        let key = server::store::keys::stream(*conversation_id);
        let mut entries = Vec::new();
        let mut after: Option<StreamId> = None;
        loop {
            let start = match after {
                Some(id) => format!("({id}"),
                None => "-".to_string(),
            };
            let value: redis::Value = redis::cmd("XRANGE")
                .arg(&key)
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut conn)
                .await
                .map_err(|source| LogError::Read {
                    key: key.clone(),
                    source,
                })?;
            let page = server::store::parse_entries(value, *conversation_id).map_err(|err| {
                LogError::Entry {
                    key: key.clone(),
                    detail: err.to_string(),
                }
            })?;
            let full = page.len() == PAGE;
            for entry in page {
                let message = entry.message;
                after = Some(message.id);
                entries.push(LogEntry {
                    id: message.id,
                    sender_id: message.sender_id,
                    client_msg_id: message.client_msg_id,
                    body_hash: body_hash(&message.body),
                });
            }
            if !full {
                break;
            }
        }
        logs.push(entries);
    }
    Ok(MessageLog {
        source: LogSource::Redis,
        conversations: logs,
    })
}

/// The newest id of each conversation's stream (`0-0` when empty): what
/// every member must reach during the drain.
pub async fn read_heads(url: &str, conversations: &[Uuid]) -> Result<Vec<StreamId>, LogError> {
    let mut conn = connection(url).await?;
    let mut heads = Vec::with_capacity(conversations.len());
    for conversation_id in conversations {
        let key = server::store::keys::stream(*conversation_id);
        let value: redis::Value = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|source| LogError::Read {
                key: key.clone(),
                source,
            })?;
        let page = server::store::parse_entries(value, *conversation_id).map_err(|err| {
            LogError::Entry {
                key: key.clone(),
                detail: err.to_string(),
            }
        })?;
        heads.push(
            page.first()
                .map_or(StreamId::ZERO, |entry| entry.message.id),
        );
    }
    Ok(heads)
}
