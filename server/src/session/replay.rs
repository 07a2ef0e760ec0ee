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

    async fn try_queued(&mut self) -> Option<Arc<LiveMessage>> {
        self.subscription.as_deref_mut().and_then(|s| s.try_recv())
    }

    fn take_lagged(&mut self) -> bool {
        self.subscription
            .as_deref()
            .is_some_and(|s| s.take_lagged())
    }

    async fn write_backlog(&mut self, entry: StreamEntry) -> Result<(), SessionError> {
        let json = ServerFrame::Message(entry.message).to_json();
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
