//! Live fan-out that works across server processes.
//!
//! Design: each process runs ONE tailer task on a dedicated Redis
//! connection. It blocks on the appended-signals stream (one entry per
//! append, naming the conversation stream; `keys::APPENDED_SIGNALS`), then
//! reads the named streams its sockets are subscribed to, keeping a
//! per-conversation cursor; every tailed stream is also swept once a
//! second. Because it reads the streams themselves, a message appended
//! through any instance reaches sockets on every instance, in id order,
//! and nothing is lost while the tailer is slow or Redis briefly goes
//! away: the cursor just waits.
//!
//! Sockets subscribe BEFORE reading their backlog (recovery step 2). The
//! tailer pushes into a bounded queue per socket; when one is full the
//! socket is marked `lagged` instead of blocking the tailer, and the socket
//! re-reads from Redis (step 5). Nothing is ever silently dropped.
//!
//! Queues are bounded in messages AND in bytes, per socket and for the
//! whole process (`limits::ByteBudget`): a message that does not fit marks
//! the socket lagged exactly like a full queue, so the bounds cost a
//! re-read, never a message.

mod tailer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use recovery_protocol::StreamId;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use crate::limits::ByteBudget;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// A live message, serialized once for all sockets that receive it.
#[derive(Debug)]
pub struct LiveMessage {
    pub id: StreamId,
    pub json: axum::extract::ws::Utf8Bytes,
}

/// How much may wait in sockets' live queues.
pub struct QueueBounds {
    /// Messages per socket.
    pub messages: usize,
    /// Bytes per socket.
    pub bytes: usize,
    /// Bytes for all sockets of the process.
    pub budget: Arc<ByteBudget>,
}

impl LiveMessage {
    /// What this message counts against the queue bounds.
    fn queued_size(&self) -> usize {
        self.json.len()
    }
}

struct Slot {
    queue: mpsc::Sender<Arc<LiveMessage>>,
    /// Bytes in this socket's queue (its share of the budget).
    queued_bytes: Arc<AtomicUsize>,
    lagged: Arc<AtomicBool>,
    /// Wakes the socket when it becomes lagged: its queue may be empty by
    /// the time it looks, and the tailer sends it nothing more until it
    /// re-reads, so without a wake-up it would wait forever.
    lag_signal: Arc<Notify>,
}

struct Conversation {
    /// Newest id the tailer has dispatched (or the stream head when the
    /// conversation was first subscribed).
    cursor: StreamId,
    /// Whether `cursor` is an entry this tailer dispatched (read from the
    /// stream or carried by a signal), not the head a subscriber read.
    /// Only then may a signal's carried entry follow it (see
    /// `tailer::dispatch_hints`): a head can be `0-0` of a deleted or
    /// emptied stream, or the survivor of an `XDEL`, and signals written
    /// before that (read late by an idle tailer) would chain from it.
    cursor_dispatched: bool,
    slots: HashMap<u64, Slot>,
}

#[derive(Default)]
struct Registry {
    conversations: HashMap<Uuid, Conversation>,
    /// Conversations tailed since the tailer last looked: it reads each
    /// from its cursor once, since hints for what was appended between the
    /// subscriber's head read and now may have gone by already.
    newly_tailed: Vec<Uuid>,
    next_slot: u64,
}

struct Shared {
    registry: Mutex<Registry>,
    store: Store,
    metrics: Arc<Metrics>,
    queue_capacity: usize,
    queue_bytes: usize,
    budget: Arc<ByteBudget>,
    /// Wakes an idle tailer (no conversations to read).
    wake: Notify,
    /// Redis CLIENT ID of the tailer's connection, 0 when not connected;
    /// used to CLIENT UNBLOCK a blocked XREAD when a conversation is added.
    tailer_client_id: AtomicU64,
    tailer: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Handle to this process's fan-out. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    shared: Arc<Shared>,
}

/// One socket's registration. Dropping it unregisters.
pub struct Subscription {
    queue: mpsc::Receiver<Arc<LiveMessage>>,
    queued_bytes: Arc<AtomicUsize>,
    lagged: Arc<AtomicBool>,
    lag_signal: Arc<Notify>,
    conversation_id: Uuid,
    slot: u64,
    shared: Arc<Shared>,
}

impl Subscription {
    /// True (once) if the tailer had to skip this socket because its queue
    /// was full since the last call. The caller must then re-read from
    /// Redis after its last sent id; clearing the flag BEFORE that re-read
    /// is what makes the union of re-read and queue complete.
    pub fn take_lagged(&self) -> bool {
        self.lagged.swap(false, Ordering::AcqRel)
    }

    /// Notified when the tailer marked this socket lagged (a permit is
    /// kept if nobody waits, so no wake-up is lost); then `take_lagged`.
    pub fn lag_signal(&self) -> Arc<Notify> {
        self.lag_signal.clone()
    }

    /// Whether the tailer skipped this socket (without clearing the flag).
    pub fn is_lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    /// The next queued message, waiting for one.
    pub async fn recv(&mut self) -> Option<Arc<LiveMessage>> {
        let message = self.queue.recv().await;
        self.dequeued(message)
    }

    /// The next queued message, if one is there now.
    pub fn try_recv(&mut self) -> Option<Arc<LiveMessage>> {
        let message = self.queue.try_recv().ok();
        self.dequeued(message)
    }

    fn dequeued(&self, message: Option<Arc<LiveMessage>>) -> Option<Arc<LiveMessage>> {
        if let Some(message) = &message {
            let size = message.queued_size();
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.shared.budget.release(size);
            self.shared
                .metrics
                .queued_bytes
                .set(self.shared.budget.used() as i64);
        }
        message
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Give back the budget of whatever is still queued.
        self.queue.close();
        while self.try_recv().is_some() {}
        let mut registry = lock(&self.shared.registry);
        if let Some(conversation) = registry.conversations.get_mut(&self.conversation_id) {
            conversation.slots.remove(&self.slot);
            if conversation.slots.is_empty() {
                registry.conversations.remove(&self.conversation_id);
            }
        }
    }
}

fn lock_tailer(shared: &Shared) -> MutexGuard<'_, Option<tokio::task::AbortHandle>> {
    // Poisoning cannot leave an invalid handle; keep using it.
    shared
        .tailer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A poisoned registry only means another task panicked mid-update of a
/// map whose every state is valid; keep serving.
fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Fanout {
    /// Starts the tailer task. It stops when `shutdown` fires.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        bounds: QueueBounds,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Fanout {
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::default()),
            store,
            metrics,
            queue_capacity: bounds.messages.max(1),
            queue_bytes: bounds.bytes,
            budget: bounds.budget,
            wake: Notify::new(),
            tailer_client_id: AtomicU64::new(0),
            tailer: Mutex::new(None),
        });
        let tailer = tokio::spawn(tailer::run(shared.clone(), shutdown));
        *lock_tailer(&shared) = Some(tailer.abort_handle());
        Fanout { shared }
    }

    /// Registers a socket for live messages of a conversation. Every
    /// message appended after this returns is delivered to the queue (or
    /// flagged as lagged).
    pub async fn subscribe(&self, conversation_id: Uuid) -> Result<Subscription, StoreError> {
        // For a conversation not tailed yet, the tailer starts at the
        // current head: anything after it is read live, anything up to it
        // is the caller's backlog, which it reads after this returns. Read
        // the head unconditionally: checking "already tailed" first would
        // race with the last subscriber leaving.
        let head = self.shared.store.last_entry_id(conversation_id).await?;
        let (sender, queue) = mpsc::channel(self.shared.queue_capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let lag_signal = Arc::new(Notify::new());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let mut newly_tailed = false;
        let slot = {
            let mut registry = lock(&self.shared.registry);
            let slot = registry.next_slot;
            registry.next_slot += 1;
            registry
                .conversations
                .entry(conversation_id)
                .or_insert_with(|| {
                    newly_tailed = true;
                    Conversation {
                        cursor: head,
                        cursor_dispatched: false,
                        slots: HashMap::new(),
                    }
                })
                .slots
                .insert(
                    slot,
                    Slot {
                        queue: sender,
                        queued_bytes: queued_bytes.clone(),
                        lagged: lagged.clone(),
                        lag_signal: lag_signal.clone(),
                    },
                );
            if newly_tailed {
                registry.newly_tailed.push(conversation_id);
            }
            slot
        };
        let subscription = Subscription {
            queue,
            queued_bytes,
            lagged,
            lag_signal,
            conversation_id,
            slot,
            shared: self.shared.clone(),
        };
        // Only a conversation the tailer does not read yet needs its
        // blocked read cut short: hints for what was appended between our
        // head read and the registration may have gone by while nobody
        // here tailed it, so the tailer reads it from its cursor once. A
        // conversation already tailed needs nothing (its hints come), and
        // waking the tailer for it would cost a CLIENT UNBLOCK per
        // reconnect.
        if newly_tailed {
            self.wake_tailer().await;
        }
        Ok(subscription)
    }

    async fn wake_tailer(&self) {
        self.shared.wake.notify_one();
        let tailer_id = self.shared.tailer_client_id.load(Ordering::Acquire);
        if tailer_id != 0 {
            if let Err(err) = self.shared.store.unblock_client(tailer_id).await {
                // Only latency is at stake: the tailer's BLOCK times out soon.
                tracing::debug!(%err, "CLIENT UNBLOCK of the tailer failed");
            }
        }
    }

    /// Stops the tailer: nothing reaches the queues but what `dispatch`
    /// and `enqueue` hand over. Only injected flaws use this (docs/flaws.md).
    pub(crate) fn stop_tailer(&self) {
        if let Some(tailer) = lock_tailer(&self.shared).take() {
            tailer.abort();
        }
    }

    /// Hands a message to this process's sockets of its conversation, as
    /// the tailer does with what it reads. Only injected flaws use this.
    pub(crate) fn dispatch(&self, message: recovery_protocol::MessageFrame) {
        let conversation_id = message.conversation_id;
        tailer::dispatch(
            &self.shared,
            vec![(conversation_id, vec![crate::store::StreamEntry { message }])],
        );
    }

    /// Queues `message` for every socket of `conversation_id` on this
    /// process, whatever conversation it belongs to, without touching the
    /// tailer's cursor; a socket whose queue is full misses it. Only
    /// injected flaws use this.
    pub(crate) fn enqueue(&self, conversation_id: Uuid, message: recovery_protocol::MessageFrame) {
        let live = Arc::new(LiveMessage {
            id: message.id,
            json: axum::extract::ws::Utf8Bytes::from(
                recovery_protocol::ServerFrame::Message(message).to_json(),
            ),
        });
        let registry = lock(&self.shared.registry);
        if let Some(conversation) = registry.conversations.get(&conversation_id) {
            for slot in conversation.slots.values() {
                // A full or closed queue misses it; see the doc comment.
                let _ = tailer::enqueue(&self.shared, slot, &live);
            }
        }
    }

    /// The conversations this process tails now.
    pub fn conversations(&self) -> Vec<Uuid> {
        lock(&self.shared.registry)
            .conversations
            .keys()
            .copied()
            .collect()
    }

    /// Number of conversations currently tailed (for tests and metrics).
    pub fn tailed_conversations(&self) -> usize {
        lock(&self.shared.registry).conversations.len()
    }
}
