//! The session's side of the merge: `SocketIo` connects `merge::Merge` to
//! Redis (backlog pages, head), the fan-out queue and the WebSocket.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use recovery_protocol::StreamId;
use uuid::Uuid;

use super::merge::{HasId, MergeIo};
use super::{Session, SessionError};
use crate::fanout::{LiveMessage, Subscription};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StreamEntry};

impl HasId for StreamEntry {
    fn id(&self) -> StreamId {
        self.message.id
    }
}

impl HasId for Arc<LiveMessage> {
    fn id(&self) -> StreamId {
        self.id
    }
}

pub(super) struct SocketIo<'a> {
    pub store: &'a Store,
    pub conversation_id: Uuid,
    pub socket: &'a mut WebSocket,
    pub subscription: Option<&'a mut Subscription>,
    pub metrics: &'a Metrics,
    /// The last head read and the widest body of any entry up to it;
    /// `None`: not known (pages are then bounded in bytes entry by entry,
    /// in Redis).
    pub widest_body: Option<(StreamId, usize)>,
    pub prefetch: Option<Prefetch>,
}

impl MergeIo for SocketIo<'_> {
    type Backlog = StreamEntry;
    type Live = Arc<LiveMessage>;
    type Error = SessionError;

    async fn head(&mut self) -> Result<StreamId, SessionError> {
        let head = self.store.replay_head(self.conversation_id).await?;
        // Pages up to this head are sized from it (see `Store::read_after`).
        self.widest_body = head.widest_body.map(|widest| (head.head, widest));
        Ok(head.head)
    }

    async fn page_after(
        &mut self,
        after: StreamId,
        until: StreamId,
        count: usize,
    ) -> Result<Vec<StreamEntry>, SessionError> {
        // Not a method: a `&self` held across an await would make the
        // session's future need `SocketIo: Sync`, which the socket is not.
        let (store, conversation_id) = (self.store, self.conversation_id);
        let widest_body = self.widest_up_to(until);
        let read_page = || store.read_after(conversation_id, after, until, count, widest_body);
        let page = match self.prefetch.take() {
            Some(mut next) if next.is_for(after, until, count) => match (&mut next.read).await {
                Ok(read) => read?,
                // The read task cannot panic short of a bug; read again.
                Err(_) => read_page().await?,
            },
            // A prefetch for other bounds (or none) is dropped: aborted.
            _ => read_page().await?,
        };
        // Read the next page while this one is written: Redis and the
        // reply parsing then overlap the socket writes instead of
        // alternating with them. Only while the head is not reached.
        if let Some(last) = page.last().map(|entry| entry.message.id) {
            if last < until {
                let store = store.clone();
                let read = spawn_started(async move {
                    store
                        .read_after(conversation_id, last, until, count, widest_body)
                        .await
                })
                .await;
                self.prefetch = Some(Prefetch {
                    after: last,
                    until,
                    count,
                    read,
                });
            }
        }
        Ok(page)
    }

    async fn try_queued(&mut self) -> Option<Arc<LiveMessage>> {
        self.subscription.as_deref_mut().and_then(|s| s.try_recv())
    }

    fn take_lagged(&mut self) -> bool {
        self.subscription
            .as_deref()
            .is_some_and(|s| s.take_lagged())
    }

    async fn write_backlog(&mut self, entry: StreamEntry) -> Result<(), SessionError> {
        let json = entry.message.to_frame_json();
        self.socket
            .feed(Message::Text(json.into()))
            .await
            .map_err(SessionError::Socket)?;
        self.metrics.messages_replayed.inc();
        Ok(())
    }

    async fn write_live(&mut self, message: Arc<LiveMessage>) -> Result<(), SessionError> {
        self.socket
            .feed(Message::Text(message.json.clone()))
            .await
            .map_err(SessionError::Socket)?;
        self.metrics.messages_delivered_live.inc();
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        self.socket.flush().await.map_err(SessionError::Socket)
    }
}

impl SocketIo<'_> {
    /// The widest body known for entries up to `until`: only the one read
    /// with a head at or past it covers them.
    fn widest_up_to(&self, until: StreamId) -> Option<usize> {
        self.widest_body
            .filter(|(head, _)| until <= *head)
            .map(|(_, widest)| widest)
    }
}

/// Spawns `task` and lets it run up to its first wait before returning.
///
/// Why: a task spawned from a runtime worker goes to that worker's LIFO
/// slot, which the other workers may not steal, so it only starts when the
/// spawning task next waits. Replay writes a whole page without waiting
/// (the socket buffer takes it), so the prefetched read only started after
/// the page was written and overlapped nothing (timing split in
/// docs/performance.md, "Replay, seventh pass"). Yielding once runs the
/// read until it waits for Redis (its request is sent); Redis's reply then
/// wakes it on whichever worker is free, while this page is written.
async fn spawn_started<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = tokio::spawn(task);
    // Dropping a JoinHandle detaches its task: were this future dropped
    // during the yield (the session went away), the read would run on
    // unowned. The guard aborts it then, as dropping a `Prefetch` does.
    let mut guard = AbortOnDrop {
        task: handle.abort_handle(),
        armed: true,
    };
    tokio::task::yield_now().await;
    guard.armed = false;
    handle
}

/// Aborts a task when dropped while armed.
struct AbortOnDrop {
    task: tokio::task::AbortHandle,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.task.abort();
        }
    }
}

/// The next backlog page, being read while the current one is written.
/// A replaying socket so holds at most two pages. Dropping it (the socket
/// went away, or the merge asked for other bounds) aborts the read.
pub(super) struct Prefetch {
    after: StreamId,
    until: StreamId,
    count: usize,
    read: tokio::task::JoinHandle<Result<Vec<StreamEntry>, StoreError>>,
}

impl Prefetch {
    fn is_for(&self, after: StreamId, until: StreamId, count: usize) -> bool {
        (self.after, self.until, self.count) == (after, until, count)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.read.abort();
    }
}

/// What the session's merge calls run against.
pub(super) type SessionIo<'a> = crate::flaws::io::FlawedIo<'a, SocketIo<'a>>;

impl Session {
    pub(super) fn io<'a>(
        &'a mut self,
        socket: &'a mut WebSocket,
        subscription: Option<&'a mut Subscription>,
    ) -> (&'a mut super::merge::Merge, SessionIo<'a>) {
        let io = SocketIo {
            store: &self.app.store,
            conversation_id: self.conversation_id,
            socket,
            subscription,
            metrics: &self.app.metrics,
            widest_body: None,
            prefetch: None,
        };
        // Testing aid: a pass-through unless a flaw is injected (docs/flaws.md).
        let io = self
            .flaws
            .wrap(&self.app.flaws, io, self.merge.last_sent, &mut self.acked);
        (&mut self.merge, io)
    }

    pub(super) fn page_size(&self) -> usize {
        self.app.config.backlog_page_size as usize
    }

    /// Steps 3-4 with a subscription taken before the backlog.
    pub(super) async fn catch_up(
        &mut self,
        socket: &mut WebSocket,
        subscription: &mut Subscription,
    ) -> Result<u64, SessionError> {
        let page = self.page_size();
        let (merge, mut io) = self.io(socket, Some(subscription));
        merge.catch_up(&mut io, page).await
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// When the start returns, the read has run up to its first wait (in
    /// the server: its request is sent to Redis), so Redis works on it
    /// while the session writes a page without waiting. Without the yield
    /// the read would sit in the worker's LIFO slot until the session's
    /// next wait. Checked on a one-thread runtime, where the order is
    /// deterministic: a multi-thread check of "finished while busy" also
    /// needed the other worker to be parked on the timer driver, which it
    /// may not be (it failed once in CI that way).
    #[tokio::test(flavor = "current_thread")]
    async fn a_started_task_has_run_to_its_first_wait_when_the_start_returns() {
        let sent = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        // Stands for Redis's reply: released by the test, not by a timer,
        // so a slow machine cannot let the read finish early.
        let (reply, reply_arrives) = tokio::sync::oneshot::channel::<()>();
        let start = super::spawn_started({
            let (sent, done) = (sent.clone(), done.clone());
            async move {
                sent.store(true, Ordering::SeqCst);
                // An error only if the test went away first.
                let _ = reply_arrives.await;
                done.store(true, Ordering::SeqCst);
            }
        });
        // Bounded: a start that waited for the whole read would wait here
        // for a reply that only comes after it returns.
        let read = tokio::time::timeout(Duration::from_secs(5), start)
            .await
            .expect("the start waited for the whole read instead of its first step");
        // No await between the start and these checks: nothing else ran.
        assert!(
            sent.load(Ordering::SeqCst),
            "the spawned read had not started when the start returned"
        );
        assert!(!done.load(Ordering::SeqCst));
        reply.send(()).expect("the read is waiting for its reply");
        read.await.expect("read task");
        assert!(done.load(Ordering::SeqCst));
    }

    /// A session dropped while it yields (it went away) takes its
    /// just-spawned read with it, as a dropped `Prefetch` does.
    #[tokio::test(flavor = "current_thread")]
    async fn a_start_dropped_during_its_yield_aborts_the_task() {
        let ran = Arc::new(AtomicBool::new(false));
        let mut start = Box::pin(super::spawn_started({
            let ran = ran.clone();
            async move { ran.store(true, Ordering::SeqCst) }
        }));
        let first_poll =
            std::future::poll_fn(|cx| std::task::Poll::Ready(start.as_mut().poll(cx))).await;
        assert!(first_poll.is_pending(), "the start yields once");
        drop(start);
        // Bounded: a few turns of the one-thread runtime run any task left.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !ran.load(Ordering::SeqCst),
            "the read ran on after its start was dropped"
        );
    }
}
