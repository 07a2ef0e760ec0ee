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

/// One XRANGE / XREVRANGE page, parsed.
async fn read_page(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    conversation_id: Uuid,
    command: &str,
    start: &str,
    end: &str,
    count: usize,
) -> Result<Vec<server::store::StreamEntry>, LogError> {
    let value: redis::Value = redis::cmd(command)
        .arg(key)
        .arg(start)
        .arg(end)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
        .map_err(|source| LogError::Read {
            key: key.to_string(),
            source,
        })?;
    server::store::parse_entries(value, conversation_id).map_err(|err| LogError::Entry {
        key: key.to_string(),
        detail: err.to_string(),
    })
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
            let page = read_page(
                &mut conn,
                &key,
                *conversation_id,
                "XRANGE",
                &start,
                "+",
                PAGE,
            )
            .await?;
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
        let page = read_page(&mut conn, &key, *conversation_id, "XREVRANGE", "+", "-", 1).await?;
        heads.push(
            page.first()
                .map_or(StreamId::ZERO, |entry| entry.message.id),
        );
    }
    Ok(heads)
}
