//! The per-process tailer: one `XREAD BLOCK` loop over every subscribed
//! stream, on its own connection with no response timeout (redis-rs times
//! responses out after 500 ms by default, which would cut every BLOCK).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use recovery_protocol::StreamId;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::watch;
use uuid::Uuid;

use super::{lock, LiveMessage, Shared};
use crate::store::{keys, parse_xread, StreamEntry};

/// How long one XREAD blocks. Short enough that a conversation added while
/// a read is in flight (and whose CLIENT UNBLOCK raced) waits little.
const BLOCK: Duration = Duration::from_millis(250);
/// Entries per stream per XREAD.
const READ_COUNT: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

pub(super) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_MIN;
    let mut connection: Option<MultiplexedConnection> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let streams: Vec<(Uuid, StreamId)> = lock(&shared.registry)
            .conversations
            .iter()
            .map(|(id, conversation)| (*id, conversation.cursor))
            .collect();
        if streams.is_empty() {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match connect(&shared).await {
                Ok(conn) => {
                    backoff = BACKOFF_MIN;
                    connection.insert(conn)
                }
                Err(err) => {
                    shared.metrics.redis_error("tailer_connect");
                    tracing::warn!(%err, ?backoff, "tailer cannot connect to redis; retrying");
                    sleep_or_shutdown(backoff, &mut shutdown).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for (conversation_id, _) in &streams {
            command.arg(keys::stream(*conversation_id));
        }
        for (_, cursor) in &streams {
            command.arg(cursor.to_string());
        }
        let reply = tokio::select! {
            reply = command.query_async::<redis::Value>(conn) => reply,
            _ = shutdown.changed() => return,
        };
        match reply {
            Ok(value) => match parse_xread(value) {
                Ok(batches) => dispatch(&shared, batches),
                Err(err) => {
                    shared.metrics.redis_error("tailer_parse");
                    tracing::error!(%err, "unreadable XREAD reply; re-reading");
                    sleep_or_shutdown(backoff, &mut shutdown).await;
                }
            },
            Err(err) => {
                shared.metrics.redis_error("tailer_xread");
                tracing::warn!(%err, ?backoff, "tailer XREAD failed; reconnecting");
                connection = None;
                shared.tailer_client_id.store(0, Ordering::Release);
                sleep_or_shutdown(backoff, &mut shutdown).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = shutdown.changed() => {}
    }
}

async fn connect(shared: &Shared) -> Result<MultiplexedConnection, redis::RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(None);
    let mut conn = shared
        .store
        .client()
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let client_id: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await?;
    shared.tailer_client_id.store(client_id, Ordering::Release);
    Ok(conn)
}

/// Hands new entries to every subscribed socket's queue. Runs under the
/// registry lock, so a subscriber added concurrently either sees an entry
/// here or (having read the head before registering) in its own backlog.
pub(super) fn dispatch(shared: &Shared, batches: Vec<(Uuid, Vec<StreamEntry>)>) {
    let mut registry = lock(&shared.registry);
    for (conversation_id, entries) in batches {
        // Unsubscribed while the read was in flight: nothing to do.
        let Some(conversation) = registry.conversations.get_mut(&conversation_id) else {
            continue;
        };
        for entry in entries {
            // Only entries past the cursor: a conversation re-added with a
            // newer cursor while this read was in flight must not get
            // older entries again.
            if entry.message.id <= conversation.cursor {
                continue;
            }
            conversation.cursor = entry.message.id;
            let live = Arc::new(LiveMessage {
                id: entry.message.id,
                json: Utf8Bytes::from(entry.message.to_frame_json()),
            });
            for slot in conversation.slots.values() {
                if slot.lagged.load(Ordering::Acquire) {
                    continue;
                }
                if !enqueue(shared, slot, &live) {
                    slot.lagged.store(true, Ordering::Release);
                    slot.lag_signal.notify_one();
                    shared.metrics.lagged_sockets.inc();
                }
            }
        }
    }
    drop(registry);
    shared.metrics.queued_bytes.set(shared.budget.used() as i64);
}

/// Queues `live` for one socket if it fits its message and byte bounds and
/// the process's budget. `false`: the socket must re-read (lagged).
pub(super) fn enqueue(shared: &Shared, slot: &super::Slot, live: &Arc<LiveMessage>) -> bool {
    let size = live.queued_size();
    // An empty queue always takes one message, however large: otherwise a
    // message bigger than the per-socket bound would make every socket lag.
    let queued = slot.queued_bytes.load(Ordering::Acquire);
    if queued > 0 && queued + size > shared.queue_bytes {
        shared.metrics.limit_hit("socket_queue_bytes");
        return false;
    }
    if !shared.budget.try_reserve(size) {
        shared.metrics.limit_hit("queue_budget_bytes");
        return false;
    }
    // Counted before sending: the socket may take it out at once.
    slot.queued_bytes.fetch_add(size, Ordering::AcqRel);
    match slot.queue.try_send(live.clone()) {
        Ok(()) => true,
        Err(err) => {
            slot.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            shared.budget.release(size);
            // Closed: the socket is going away; its Drop removes the slot.
            matches!(err, TrySendError::Closed(_))
        }
    }
}
