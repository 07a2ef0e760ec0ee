//! Steps 3 and 4, and the re-read of a lagging socket: write everything
//! after `last_sent` up to the stream head, page by page, then what the
//! live queue buffered meanwhile. Ids are filtered by `Session::accept`, so
//! the overlap between backlog and live queue is removed by id.

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;

use super::{Session, SessionError};
use crate::fanout::Subscription;

/// Re-read rounds before handing over to the live loop, which keeps
/// handling lag the same way; bounds the time to `caught_up` under load.
const MAX_CATCH_UP_ROUNDS: usize = 8;

impl Session {
    /// Sends the backlog and the buffered live messages. Returns how many
    /// messages were written.
    pub(super) async fn catch_up(
        &mut self,
        socket: &mut WebSocket,
        subscription: &mut Subscription,
    ) -> Result<u64, SessionError> {
        let mut written = self.replay_until_head(socket).await?;
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            written += self.drain_queue(socket, subscription).await?;
            // Clear the flag BEFORE re-reading: what the tailer skipped
            // before now is in Redis; what it queues after now is in the
            // queue; together nothing is missing.
            if !subscription.take_lagged() || self.app.flaws.has(crate::flaws::Flaw::DropOnLag) {
                break;
            }
            written += self.replay_until_head(socket).await?;
        }
        Ok(written)
    }

    /// Writes every stream entry after `last_sent` up to the head as it is
    /// now. Bounded by the head read at the start, so a fast publisher
    /// cannot keep it replaying forever (newer messages arrive live).
    pub(super) async fn replay_until_head(
        &mut self,
        socket: &mut WebSocket,
    ) -> Result<u64, SessionError> {
        let store = self.app.store.clone();
        let head = store.last_entry_id(self.conversation_id).await?;
        let page_size = self.app.config.backlog_page_size as usize;
        let mut written = 0u64;
        while self.last_sent < head {
            let page = store
                .read_after(self.conversation_id, self.last_sent, head, page_size)
                .await?;
            if page.is_empty() {
                break;
            }
            let full_page = page.len() == page_size;
            for entry in page {
                if self.accept(entry.message.id) {
                    let json = recovery_protocol::ServerFrame::Message(entry.message).to_json();
                    socket
                        .feed(Message::Text(json.into()))
                        .await
                        .map_err(SessionError::Socket)?;
                    written += 1;
                }
            }
            socket.flush().await.map_err(SessionError::Socket)?;
            if !full_page {
                break;
            }
        }
        self.app.metrics.messages_replayed.inc_by(written);
        Ok(written)
    }

    /// Writes what the live queue holds now, newer than `last_sent` only.
    pub(super) async fn drain_queue(
        &mut self,
        socket: &mut WebSocket,
        subscription: &mut Subscription,
    ) -> Result<u64, SessionError> {
        let mut written = 0u64;
        while let Ok(live) = subscription.queue.try_recv() {
            if self.accept(live.id) {
                socket
                    .feed(Message::Text(live.json.clone()))
                    .await
                    .map_err(SessionError::Socket)?;
                written += 1;
            }
        }
        if written > 0 {
            socket.flush().await.map_err(SessionError::Socket)?;
        }
        self.app.metrics.messages_delivered_live.inc_by(written);
        Ok(written)
    }
}
