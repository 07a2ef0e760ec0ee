//! The per-process tailer, on its own connection with no response timeout
//! (redis-rs times responses out after 500 ms by default, which would cut
//! every BLOCK).
//!
//! It blocks on ONE key, the appended-signals stream, and then reads only
//! the conversation streams the signals name that this process tails.
//! Most signals carry their entry and the stream's previous id
//! (`store::Inline`): where that previous id is the conversation's cursor
//! the entry is dispatched from the signal, and the stream is not read
//! (one Redis round trip per live message instead of two; the second
//! read was ~0.4 ms of a ~3 ms median delivery in churn-1k). It
//! used to block on every tailed stream at once: Redis registers and
//! unregisters a blocked client on each key of an `XREAD BLOCK`, so with
//! N tailed streams every append cost Redis O(N) per server process
//! (~0.6 ms per call at 100 streams, the largest part of Redis's CPU in
//! churn-1k, and the busiest process at 2,500 streams in scale-50k).
//!
//! Why nothing is missed: the append script writes the entry and its
//! signal in one atomic step, and the tailer's reads are ordered on its
//! connection. An entry the tailer has not read yet either has its signal
//! after the tailer's signal cursor (read next), or was appended before a
//! conversation was tailed here (`Registry::newly_tailed`: read once from
//! its cursor), or its signal was trimmed or never written (an older
//! server on the same Redis): the sweep, every tailed stream read from its
//! cursor once a second, and on every (re)connection, covers those.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use recovery_protocol::StreamId;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::watch;
use uuid::Uuid;

use super::{lock, LiveMessage, Shared};
use crate::store::{
    keys, parse_signals, parse_signals_head, parse_xread, Inline, StoreError, StreamEntry,
};

/// How long one read of the signals blocks. Short enough that a
/// conversation added while a read is in flight (and whose CLIENT UNBLOCK
/// raced) waits little.
const BLOCK: Duration = Duration::from_millis(250);
/// Entries per stream per XREAD.
const READ_COUNT: usize = 512;
/// Signals per read.
const SIGNALS_COUNT: usize = 1024;
/// Every tailed stream is read at least this often, hints or not.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Where the tailer is; reset with its connection.
struct Position {
    /// The newest signal read; `None` until the first sweep on this
    /// connection has noted the signals' head.
    signals: Option<StreamId>,
    last_sweep: Instant,
    /// Streams whose last read filled a whole page: read again at once.
    more: HashSet<Uuid>,
}

pub(super) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_MIN;
    let mut connection: Option<MultiplexedConnection> = None;
    let mut position = Position {
        signals: None,
        last_sweep: Instant::now(),
        more: HashSet::new(),
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        if lock(&shared.registry).conversations.is_empty() {
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
                    position.signals = None;
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
        let round = tokio::select! {
            round = one_round(&shared, conn, &mut position) => round,
            _ = shutdown.changed() => return,
        };
        match round {
            Ok(()) => {}
            Err(StoreError::Redis { source, .. }) => {
                shared.metrics.redis_error("tailer_xread");
                tracing::warn!(err = %source, ?backoff, "tailer read failed; reconnecting");
                connection = None;
                shared.tailer_client_id.store(0, Ordering::Release);
                sleep_or_shutdown(backoff, &mut shutdown).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(err) => {
                shared.metrics.redis_error("tailer_parse");
                tracing::error!(%err, "unreadable tailer reply; sweeping again");
                position.signals = None;
                sleep_or_shutdown(backoff, &mut shutdown).await;
            }
        }
    }
}

/// One step: a sweep when one is due, else the streams that must be read
/// now, else one blocking read of the signals and the streams they name.
async fn one_round(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    position: &mut Position,
) -> Result<(), StoreError> {
    let Some(signals_cursor) = position.signals else {
        // The head first: every append after it has a signal after it,
        // and the sweep that follows reads everything up to it.
        let head = redis::cmd("XREVRANGE")
            .arg(keys::APPENDED_SIGNALS)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .map_err(StoreError::redis("XREVRANGE of the appended signals"))?;
        let head = parse_signals_head(head)?;
        sweep(shared, conn, position).await?;
        position.signals = Some(head);
        return Ok(());
    };
    if position.last_sweep.elapsed() >= SWEEP_INTERVAL {
        return sweep(shared, conn, position).await;
    }
    let due: Vec<Uuid> = {
        let mut registry = lock(&shared.registry);
        let mut due: Vec<Uuid> = std::mem::take(&mut registry.newly_tailed);
        due.extend(position.more.drain());
        due
    };
    if !due.is_empty() {
        return read_streams(shared, conn, due, &mut position.more).await;
    }
    let reply = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(SIGNALS_COUNT)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(keys::APPENDED_SIGNALS)
        .arg(signals_cursor.to_string())
        .query_async(conn)
        .await
        .map_err(StoreError::redis("XREAD of the appended signals"))?;
    let signals = parse_signals(reply)?;
    if let Some(last) = signals.last {
        position.signals = Some(last);
    }
    let to_read = dispatch_hints(shared, signals.hints);
    read_streams(shared, conn, to_read, &mut position.more).await
}

/// Reads every tailed stream from its cursor.
async fn sweep(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    position: &mut Position,
) -> Result<(), StoreError> {
    position.last_sweep = Instant::now();
    let all: Vec<Uuid> = lock(&shared.registry)
        .conversations
        .keys()
        .copied()
        .collect();
    read_streams(shared, conn, all, &mut position.more).await
}

/// One non-blocking XREAD of `conversations` (those still tailed) from
/// their cursors, dispatched; a stream that filled its page goes to `more`.
async fn read_streams(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    conversations: Vec<Uuid>,
    more: &mut HashSet<Uuid>,
) -> Result<(), StoreError> {
    let streams: Vec<(Uuid, StreamId)> = {
        let registry = lock(&shared.registry);
        let mut seen = HashSet::with_capacity(conversations.len());
        conversations
            .into_iter()
            .filter(|id| seen.insert(*id))
            .filter_map(|id| {
                registry
                    .conversations
                    .get(&id)
                    .map(|conversation| (id, conversation.cursor))
            })
            .collect()
    };
    if streams.is_empty() {
        return Ok(());
    }
    let mut command = redis::cmd("XREAD");
    command.arg("COUNT").arg(READ_COUNT).arg("STREAMS");
    for (conversation_id, _) in &streams {
        command.arg(keys::stream(*conversation_id));
    }
    for (_, cursor) in &streams {
        command.arg(cursor.to_string());
    }
    let reply = command
        .query_async(conn)
        .await
        .map_err(StoreError::redis("XREAD"))?;
    let batches = parse_xread(reply)?;
    for (conversation_id, entries) in &batches {
        if entries.len() >= READ_COUNT {
            more.insert(*conversation_id);
        }
    }
    dispatch(shared, batches);
    Ok(())
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
            deliver(shared, conversation, entry);
        }
    }
    drop(registry);
    shared.metrics.queued_bytes.set(shared.budget.used() as i64);
}

/// Dispatches the entries the signals carry where that keeps each
/// conversation gapless (its cursor is exactly the entry's `prev`: see
/// `store::Inline`), in signal order; returns the tailed conversations
/// that must be read from their streams instead (a signal without an
/// entry, or a cursor that is not the entry's `prev`). Saves the second
/// round trip (the named streams' XREAD) for almost every live message.
pub(super) fn dispatch_hints(shared: &Shared, hints: Vec<(Uuid, Option<Inline>)>) -> Vec<Uuid> {
    let mut to_read: Vec<Uuid> = Vec::new();
    let mut registry = lock(&shared.registry);
    for (conversation_id, inline) in hints {
        let Some(conversation) = registry.conversations.get_mut(&conversation_id) else {
            continue;
        };
        match inline {
            // Only after an entry this tailer dispatched: see
            // `Conversation::cursor_dispatched`.
            Some(inline)
                if conversation.cursor_dispatched && inline.prev == conversation.cursor =>
            {
                deliver(shared, conversation, inline.entry);
            }
            // Already dispatched (read from the stream earlier).
            Some(inline) if inline.entry.message.id <= conversation.cursor => {}
            _ => {
                if !to_read.contains(&conversation_id) {
                    to_read.push(conversation_id);
                }
            }
        }
    }
    drop(registry);
    shared.metrics.queued_bytes.set(shared.budget.used() as i64);
    to_read
}

/// Queues one entry for every socket of `conversation`, if it is past the
/// conversation's cursor (a conversation re-added with a newer cursor
/// while a read was in flight must not get older entries again).
fn deliver(shared: &Shared, conversation: &mut super::Conversation, entry: StreamEntry) {
    if entry.message.id <= conversation.cursor {
        return;
    }
    conversation.cursor = entry.message.id;
    conversation.cursor_dispatched = true;
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
