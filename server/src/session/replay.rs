//! The session's side of the merge: `SocketIo` connects `merge::Merge` to
//! Redis (backlog pages, head), the fan-out queue and the WebSocket.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use recovery_protocol::{ServerFrame, StreamId};
use uuid::Uuid;

use super::merge::{HasId, MergeIo};
use super::{Session, SessionError};
use crate::fanout::{LiveMessage, Subscription};
use crate::flaws::Flaw;
use crate::metrics::Metrics;
use crate::store::{Store, StreamEntry};

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
    /// Flaw `cursor-on-send`: the "acked" cursor follows what was sent.
    pub acked_on_send: Option<&'a mut Option<StreamId>>,
}

impl SocketIo<'_> {
    fn sent(&mut self, id: StreamId) {
        if let Some(acked) = self.acked_on_send.as_deref_mut() {
            *acked = Some(id);
        }
    }
}

impl MergeIo for SocketIo<'_> {
    type Backlog = StreamEntry;
    type Live = Arc<LiveMessage>;
    type Error = SessionError;

    async fn head(&mut self) -> Result<StreamId, SessionError> {
        Ok(self.store.last_entry_id(self.conversation_id).await?)
    }

    async fn page_after(
        &mut self,
        after: StreamId,
        until: StreamId,
        count: usize,
    ) -> Result<Vec<StreamEntry>, SessionError> {
        Ok(self
            .store
            .read_after(self.conversation_id, after, until, count)
            .await?)
    }

    fn try_queued(&mut self) -> Option<Arc<LiveMessage>> {
        self.subscription.as_deref_mut().and_then(|s| s.try_recv())
    }

    fn take_lagged(&mut self) -> bool {
        self.subscription
            .as_deref()
            .is_some_and(|s| s.take_lagged())
    }

    async fn write_backlog(&mut self, entry: StreamEntry) -> Result<(), SessionError> {
        let id = entry.message.id;
        let json = ServerFrame::Message(entry.message).to_json();
        self.socket
            .feed(Message::Text(json.into()))
            .await
            .map_err(SessionError::Socket)?;
        self.metrics.messages_replayed.inc();
        self.sent(id);
        Ok(())
    }

    async fn write_live(&mut self, message: Arc<LiveMessage>) -> Result<(), SessionError> {
        self.socket
            .feed(Message::Text(message.json.clone()))
            .await
            .map_err(SessionError::Socket)?;
        self.metrics.messages_delivered_live.inc();
        self.sent(message.id);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        self.socket.flush().await.map_err(SessionError::Socket)
    }
}

impl Session {
    pub(super) fn io<'a>(
        &'a mut self,
        socket: &'a mut WebSocket,
        subscription: Option<&'a mut Subscription>,
    ) -> (&'a mut super::merge::Merge, SocketIo<'a>) {
        let cursor_on_send = self.app.flaws.has(Flaw::CursorOnSend);
        let io = SocketIo {
            store: &self.app.store,
            conversation_id: self.conversation_id,
            socket,
            subscription,
            metrics: &self.app.metrics,
            acked_on_send: if cursor_on_send {
                Some(&mut self.acked)
            } else {
                None
            },
        };
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
        let drop_on_lag = self.app.flaws.has(Flaw::DropOnLag);
        let (merge, mut io) = self.io(socket, Some(subscription));
        if drop_on_lag {
            // Flaw: never re-read; what the tailer skipped is gone.
            let written = merge.replay_until_head(&mut io, page).await?;
            return Ok(written + merge.drain_queue(&mut io, None, usize::MAX).await?);
        }
        merge.catch_up(&mut io, page).await
    }

    /// Backlog only (flaw `backlog-before-subscribe` reads it before
    /// registering for live messages).
    pub(super) async fn replay_without_subscription(
        &mut self,
        socket: &mut WebSocket,
    ) -> Result<u64, SessionError> {
        let page = self.page_size();
        let (merge, mut io) = self.io(socket, None);
        merge.replay_until_head(&mut io, page).await
    }

    pub(super) async fn drain_subscription(
        &mut self,
        socket: &mut WebSocket,
        subscription: &mut Subscription,
    ) -> Result<u64, SessionError> {
        let (merge, mut io) = self.io(socket, Some(subscription));
        merge.drain_queue(&mut io, None, usize::MAX).await
    }
}
