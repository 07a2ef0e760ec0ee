//! Everything the server keeps in Redis: conversation streams, their epoch,
//! per-device sync state and send dedup keys.
//!
//! The store speaks in protocol types (`StreamId`, `MessageFrame`) so the
//! session code never touches raw Redis replies.

pub mod keys;
mod parse;
mod replay_conn;
mod resp;
mod scripts;
mod signals;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use recovery_protocol::StreamId;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use parse::{parse_entries, parse_xread, StreamEntry};
/// Bodies up to this size travel in their append's signal too, so other
/// processes' tailers dispatch them without a second read (see
/// `scripts::APPEND`); the signals stream is capped at
/// `keys::APPENDED_SIGNALS_CAP` entries, so this bounds what it holds.
pub const SIGNAL_BODY_MAX_BYTES: usize = 1024;

pub use signals::{parse_signals, parse_signals_head, Inline, Signals};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis {op} failed: {source}")]
    Redis {
        op: &'static str,
        source: redis::RedisError,
    },
    #[error("redis {op} returned an unexpected reply: {detail}")]
    Reply { op: &'static str, detail: String },
    #[error("cannot connect to redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
}

impl StoreError {
    /// Whether the failed command certainly never ran in Redis, so a write
    /// it carried was NOT applied: the connection could not be made (the
    /// command was never written), or Redis answered that it refused to run
    /// anything (still loading, read-only replica, cluster down). Anything
    /// else may have run: a response timeout (Redis stalled after reading
    /// the command, then carried on), a connection dropped after the write,
    /// a reply we could not read. Only a definite failure may be reported
    /// to a client as "not appended".
    pub fn certainly_not_applied(&self) -> bool {
        use redis::{ErrorKind, ServerErrorKind};
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Redis { source, .. } => {
                source.is_connection_refusal()
                    || matches!(
                        source.kind(),
                        ErrorKind::Server(
                            ServerErrorKind::BusyLoading
                                | ServerErrorKind::ReadOnly
                                | ServerErrorKind::TryAgain
                                | ServerErrorKind::ClusterDown
                                | ServerErrorKind::MasterDown
                        )
                    )
            }
            StoreError::Reply { .. } => false,
        }
    }

    pub(crate) fn redis(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
        move |source| StoreError::Redis { op, source }
    }
}

/// The per-device, per-conversation sync state (the stored cursor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub client_id: Uuid,
    pub user_id: Uuid,
    pub conversation_id: Uuid,
    pub last_message_id: StreamId,
    /// When the cursor was saved (for people reading it: logs, operators;
    /// recovery never uses it). Stored as milliseconds since the Unix
    /// epoch, the format it always had, so state written by earlier
    /// versions reads back unchanged and no migration is needed.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub last_sync_at: DateTime<Utc>,
    /// The stream epoch the cursor belongs to; a cursor from another epoch
    /// points into a stream that no longer exists.
    #[serde(default)]
    pub epoch: Option<String>,
}

/// Result of an idempotent append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: StreamId,
    pub duplicate: bool,
    /// The `sent_at_ms` stored with a new entry (our clock at append).
    pub sent_at_ms: u64,
}

/// What the stream looks like for gap detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamShape {
    pub length: u64,
    pub entries_added: u64,
    pub first_id: Option<StreamId>,
    pub last_generated_id: StreamId,
}

/// See [`Store::replay_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayHead {
    pub head: StreamId,
    pub widest_body: Option<usize>,
}

/// Bytes of a stream entry besides its body, as `RANGE_BOUNDED` counts
/// them (id and every field name and value): the widest id
/// (`u64-u64`, 41), the field names (36), two UUIDs (72) and `sent_at_ms`
/// (at most 20 digits).
pub const ENTRY_BYTES_BESIDES_BODY: usize = 41 + 36 + 72 + 20;

/// Entries per page such that `count` entries of at most `widest_body`
/// bytes of body stay within `page_bytes`; at least one, at most `limit`.
pub fn entries_within(page_bytes: usize, widest_body: usize, limit: usize) -> usize {
    (page_bytes / (widest_body + ENTRY_BYTES_BESIDES_BODY)).clamp(1, limit.max(1))
}

/// Retention, TTLs and page sizes the store applies.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub retention: Duration,
    pub state_ttl: Duration,
    pub dedup_ttl: Duration,
    /// Bytes per backlog page (at least one entry per page).
    pub page_bytes: usize,
    /// Entries kept per stream besides retention (XTRIM MAXLEN ~); 0: none.
    pub max_messages: u64,
}

#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    client: redis::Client,
    /// Replay pages' own connections (see `replay_conn`).
    replay: std::sync::Arc<replay_conn::ReplayConnections>,
    settings: StoreSettings,
    /// Flaw `cursor-per-device`: one sync key per device for all its
    /// conversations, epochs ignored (the seed's bug 5).
    shared_cursor_flaw: bool,
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn new_epoch() -> String {
    Uuid::new_v4().simple().to_string()
}

impl Store {
    /// Connects with a ConnectionManager, which reconnects by itself: while
    /// Redis is down every call fails fast and the caller reports
    /// `unavailable`; when it returns, calls succeed again.
    pub async fn connect(url: &str, settings: StoreSettings) -> Result<Store, StoreError> {
        let connect_err = |source| StoreError::Connect {
            url: url.to_string(),
            source,
        };
        // redis-rs leaves Nagle on (TcpSettings defaults to nodelay false).
        // Commands are small and multiplexed on one connection: with Nagle a
        // command written while an earlier one is unacknowledged waits for
        // Redis to ACK it, adding that wait to every pipelined append, read
        // and cursor save. Redis sets TCP_NODELAY on its side; do the same.
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(connect_err)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let replay = std::sync::Arc::new(replay_conn::ReplayConnections::new(&info));
        let client = redis::Client::open(info).map_err(connect_err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let redis = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(connect_err)?;
        Ok(Store {
            redis,
            client,
            replay,
            settings,
            shared_cursor_flaw: false,
        })
    }

    /// Replay connections open now (see `replay_conn`; for tests and
    /// diagnostics).
    pub fn replay_connections_open(&self) -> usize {
        self.replay.open_count()
    }

    /// Testing aid: re-creates the seed's bug 5 (see `flaws`).
    pub fn flaw_share_cursor_across_conversations(&mut self) {
        self.shared_cursor_flaw = true;
    }

    fn sync_key(&self, user_id: Uuid, client_id: Uuid, conversation_id: Uuid) -> String {
        if self.shared_cursor_flaw {
            format!("client:sync:{user_id}:{client_id}")
        } else {
            keys::sync_state(user_id, client_id, conversation_id)
        }
    }

    /// The client to open dedicated connections from (blocking readers must
    /// not share the multiplexed connection: a BLOCK stalls every command
    /// queued behind it).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut redis)
            .await
            .map(|_| ())
            .map_err(StoreError::redis("PING"))
    }

    /// Wakes a connection blocked in XREAD (the fan-out tailer) so it picks
    /// up a newly subscribed stream at once.
    pub async fn unblock_client(&self, client_id: u64) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(client_id)
            .query_async::<i64>(&mut redis)
            .await
            .map(|_| ())
            .map_err(StoreError::redis("CLIENT UNBLOCK"))
    }

    pub async fn ensure_epoch(&self, conversation_id: Uuid) -> Result<String, StoreError> {
        let mut redis = self.redis.clone();
        scripts::ENSURE_EPOCH
            .key(keys::stream(conversation_id))
            .key(keys::meta(conversation_id))
            .arg(new_epoch())
            .arg(self.meta_ttl_s())
            .invoke_async(&mut redis)
            .await
            .map_err(StoreError::redis("ensure_epoch script"))
    }

    fn meta_ttl_s(&self) -> u64 {
        // The epoch must outlive the data it describes, or a client could
        // not tell "trimmed" from "recreated".
        (self.settings.retention.as_secs() * 2)
            .max(self.settings.state_ttl.as_secs())
            .max(60)
    }

    pub async fn append(
        &self,
        conversation_id: Uuid,
        sender_id: Uuid,
        client_msg_id: Uuid,
        body: &str,
    ) -> Result<Appended, StoreError> {
        let mut redis = self.redis.clone();
        let now_ms = now_unix_ms();
        let min_id = now_ms.saturating_sub(self.settings.retention.as_millis() as u64);
        let (id, duplicate, _epoch): (String, i64, String) = scripts::APPEND
            .key(keys::stream(conversation_id))
            .key(keys::meta(conversation_id))
            .key(keys::dedup(conversation_id, sender_id, client_msg_id))
            .key(keys::APPENDED_SIGNALS)
            .arg(sender_id.to_string())
            .arg(client_msg_id.to_string())
            .arg(body)
            .arg(now_ms)
            .arg(min_id)
            .arg(self.settings.dedup_ttl.as_secs().max(1))
            .arg(new_epoch())
            .arg(self.meta_ttl_s())
            .arg(self.settings.max_messages)
            .arg(keys::APPENDED_SIGNALS_CAP)
            .arg(SIGNAL_BODY_MAX_BYTES)
            .invoke_async(&mut redis)
            .await
            .map_err(StoreError::redis("append script"))?;
        let id = id.parse().map_err(|e| StoreError::Reply {
            op: "append script",
            detail: format!("{e}"),
        })?;
        Ok(Appended {
            id,
            duplicate: duplicate == 1,
            sent_at_ms: now_ms,
        })
    }

    /// Entries with id > `after` (exclusive) up to `until` (inclusive), at
    /// most `count`, and at most `page_bytes` of them (at least one).
    /// Exclusive start is what keeps the last message seen from being
    /// delivered again on every reconnect (the seed's bug 3).
    ///
    /// `widest_body` (from [`Store::replay_head`], read with or after
    /// `until`) lets the byte bound be kept by the entry count alone: a
    /// plain XRANGE. Without it the bound is applied entry by entry in a
    /// Lua script, which costs Redis about ten times as much per entry.
    pub async fn read_after(
        &self,
        conversation_id: Uuid,
        after: StreamId,
        until: StreamId,
        count: usize,
        widest_body: Option<usize>,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let start = format!("({after}");
        match widest_body {
            Some(widest) => {
                let count = entries_within(self.settings.page_bytes, widest, count);
                let key = keys::stream(conversation_id);
                let end = until.to_string();
                if let Some(page) = self
                    .replay
                    .xrange(&key, &start, &end, count, conversation_id)
                    .await
                {
                    return page;
                }
                self.plain_range(conversation_id, start, until, count, "XRANGE page")
                    .await
            }
            None => self.range(conversation_id, start, until, count).await,
        }
    }

    /// What a replay needs before its first page, in one round trip: the
    /// newest id (`0-0` when the stream is empty or absent), and the widest
    /// body any entry up to it can have (`None` for a stream created
    /// before the server recorded it; see `scripts::APPEND`). The width is
    /// read after the head, so it covers every entry up to the head.
    pub async fn replay_head(&self, conversation_id: Uuid) -> Result<ReplayHead, StoreError> {
        let mut redis = self.redis.clone();
        let (newest, widest): (redis::Value, Option<String>) = redis::pipe()
            .cmd("XREVRANGE")
            .arg(keys::stream(conversation_id))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .cmd("HGET")
            .arg(keys::meta(conversation_id))
            .arg("widest_body")
            .query_async(&mut redis)
            .await
            .map_err(StoreError::redis("XREVRANGE + HGET widest_body"))?;
        let head = parse_entries(newest, conversation_id)?
            .first()
            .map_or(StreamId::ZERO, |entry| entry.message.id);
        // Anything unreadable means "unknown": the Lua-bounded pages.
        let widest_body = widest.and_then(|text| text.parse().ok());
        Ok(ReplayHead { head, widest_body })
    }

    /// Entries with id >= `from`, up to `until`, at most `count`.
    pub async fn read_from(
        &self,
        conversation_id: Uuid,
        from: StreamId,
        until: StreamId,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        self.range(conversation_id, from.to_string(), until, count)
            .await
    }

    async fn range(
        &self,
        conversation_id: Uuid,
        start: String,
        until: StreamId,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        if count <= 1 {
            // One entry is within any page bound (a page always holds at
            // least one): plain XRANGE, no script (cursor checks, heads).
            return self
                .plain_range(conversation_id, start, until, 1, "XRANGE")
                .await;
        }
        let mut redis = self.redis.clone();
        // XRANGE bounded in bytes as well as entries: a page of 500
        // 64 KiB messages would otherwise be 32 MiB held per socket.
        let value: redis::Value = scripts::RANGE_BOUNDED
            .key(keys::stream(conversation_id))
            .arg(start)
            .arg(until.to_string())
            .arg(count.max(1))
            .arg(self.settings.page_bytes.max(1))
            .invoke_async(&mut redis)
            .await
            .map_err(StoreError::redis("bounded XRANGE script"))?;
        parse_entries(value, conversation_id)
    }

    async fn plain_range(
        &self,
        conversation_id: Uuid,
        start: String,
        until: StreamId,
        count: usize,
        op: &'static str,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let mut redis = self.redis.clone();
        let value: redis::Value = redis::cmd("XRANGE")
            .arg(keys::stream(conversation_id))
            .arg(start)
            .arg(until.to_string())
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut redis)
            .await
            .map_err(StoreError::redis(op))?;
        parse_entries(value, conversation_id)
    }

    /// Id of the newest entry, or `0-0` when the stream is empty or absent.
    pub async fn last_entry_id(&self, conversation_id: Uuid) -> Result<StreamId, StoreError> {
        let mut redis = self.redis.clone();
        let value: redis::Value = redis::cmd("XREVRANGE")
            .arg(keys::stream(conversation_id))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut redis)
            .await
            .map_err(StoreError::redis("XREVRANGE"))?;
        Ok(parse_entries(value, conversation_id)?
            .first()
            .map_or(StreamId::ZERO, |entry| entry.message.id))
    }

    pub async fn entry_exists(
        &self,
        conversation_id: Uuid,
        id: StreamId,
    ) -> Result<bool, StoreError> {
        Ok(!self.read_from(conversation_id, id, id, 1).await?.is_empty())
    }

    /// XINFO STREAM, or `None` when the stream does not exist.
    pub async fn stream_shape(
        &self,
        conversation_id: Uuid,
    ) -> Result<Option<StreamShape>, StoreError> {
        let mut redis = self.redis.clone();
        let exists: bool = redis::cmd("EXISTS")
            .arg(keys::stream(conversation_id))
            .query_async(&mut redis)
            .await
            .map_err(StoreError::redis("EXISTS"))?;
        if !exists {
            return Ok(None);
        }
        let value: redis::Value = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(keys::stream(conversation_id))
            .query_async(&mut redis)
            .await
            .map_err(StoreError::redis("XINFO STREAM"))?;
        parse::parse_stream_shape(value).map(Some)
    }

    pub async fn load_sync_state(
        &self,
        user_id: Uuid,
        client_id: Uuid,
        conversation_id: Uuid,
    ) -> Result<Option<SyncState>, StoreError> {
        let mut redis = self.redis.clone();
        let key = self.sync_key(user_id, client_id, conversation_id);
        let raw: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .map_err(StoreError::redis("GET sync state"))?;
        match raw {
            None => Ok(None),
            // A state we cannot read is treated as absent (replay from the
            // start: duplicates, never loss) but is reported.
            Some(text) => match serde_json::from_str::<SyncState>(&text) {
                // The flaw uses whatever conversation's cursor is there as
                // if it were this one's, epoch and all.
                Ok(state) if self.shared_cursor_flaw => Ok(Some(SyncState {
                    conversation_id,
                    epoch: None,
                    ..state
                })),
                Ok(state) => Ok(Some(state)),
                Err(err) => {
                    tracing::warn!(%key, %err, "unreadable sync state ignored");
                    Ok(None)
                }
            },
        }
    }

    /// Writes the state unless the stored cursor is already at or past it
    /// in the same epoch. Returns whether it was written.
    pub async fn save_sync_state(&self, state: &SyncState) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let json = serde_json::to_string(state).map_err(|e| StoreError::Reply {
            op: "encode sync state",
            detail: e.to_string(),
        })?;
        let written: i64 = scripts::SAVE_CURSOR
            .key(self.sync_key(state.user_id, state.client_id, state.conversation_id))
            .arg(json)
            .arg(state.last_message_id.ms)
            .arg(state.last_message_id.seq)
            .arg(state.epoch.clone().unwrap_or_default())
            .arg(self.settings.state_ttl.as_secs().max(1))
            .invoke_async(&mut redis)
            .await
            .map_err(StoreError::redis("save sync state script"))?;
        Ok(written == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_sized_from_the_widest_body_stay_within_their_bytes() {
        // 1 MiB pages of 64-byte bodies: the entry limit binds.
        assert_eq!(entries_within(1 << 20, 64, 500), 500);
        // Wide bodies: as many as fit, whole entries counted.
        let count = entries_within(1 << 20, 64 * 1024, 500);
        assert_eq!(count, 15);
        assert!(count * (64 * 1024 + ENTRY_BYTES_BESIDES_BODY) <= 1 << 20);
        // A body wider than a page: still one entry per page.
        assert_eq!(entries_within(1024, 4096, 500), 1);
        assert_eq!(entries_within(1 << 20, 0, 0), 1);
    }

    /// Sync state saved before `last_sync_at` became a `DateTime` (and the
    /// example in docs/protocol.md) reads back, and is written back in the
    /// same integer-milliseconds form.
    #[test]
    fn sync_state_keeps_its_stored_format() {
        let stored = r#"{"client_id":"2c9e4f10-7d3b-4e8a-9f61-3b5d7a1c0e22","user_id":"6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f","conversation_id":"0b1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f","last_message_id":"1700000000100-1","last_sync_at":1700000005000,"epoch":"5d41402abc4b2a76b9719d911017c592"}"#;
        let state: SyncState = serde_json::from_str(stored).unwrap();
        assert_eq!(state.last_sync_at.to_rfc3339(), "2023-11-14T22:13:25+00:00");
        assert_eq!(state.last_message_id, StreamId::new(1_700_000_000_100, 1));
        assert_eq!(serde_json::to_string(&state).unwrap(), stored);
    }
}
