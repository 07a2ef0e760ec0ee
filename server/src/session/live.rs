//! Step 5 (live loop), step 6 (periodic cursor save) and heartbeats.

use std::time::Instant;

use axum::extract::ws::{close_code, Message, WebSocket};
use recovery_protocol::{ClientFrame, ErrorCode, ServerFrame};
use tokio::time::{interval_at, MissedTickBehavior};
use uuid::Uuid;

use super::{close, send_frame, Session, SessionError};
use crate::fanout::Subscription;
use crate::store::StoreError;

/// Live messages written per flush; batching keeps a busy socket from
/// paying one syscall per message.
const LIVE_BATCH: usize = 64;

/// What the loop should do after handling one event.
enum Next {
    Continue,
    Stop,
}

impl Session {
    pub(super) async fn live_loop(
        &mut self,
        socket: &mut WebSocket,
        mut subscription: Subscription,
    ) {
        let heartbeat_every = self.app.config.heartbeat_interval;
        let sync_every = self.app.config.sync_interval;
        let mut heartbeat = interval_at(
            tokio::time::Instant::now() + heartbeat_every,
            heartbeat_every,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sync = interval_at(tokio::time::Instant::now() + sync_every, sync_every);
        sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut shutdown = self.app.shutdown.clone();
        let mut last_heard = Instant::now();
        let lag_signal = subscription.lag_signal();
        loop {
            let next = tokio::select! {
                _ = shutdown.changed() => {
                    tracing::debug!("server shutting down: closing with 1001");
                    close(socket, close_code::AWAY, "server shutting down").await;
                    Next::Stop
                }
                incoming = socket.recv() => {
                    last_heard = Instant::now();
                    self.on_incoming(socket, incoming).await
                }
                _ = lag_signal.notified() => self.on_lagged(socket, &mut subscription).await,
                live = subscription.recv() => match live {
                    Some(live) => self.on_live(socket, &mut subscription, live).await,
                    // The registry dropped our slot: cannot happen while we
                    // hold the subscription; stop rather than spin.
                    None => Next::Stop,
                },
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > heartbeat_every * 2 {
                        tracing::debug!("no pong for two heartbeat intervals: dropping the socket");
                        Next::Stop
                    } else if let Err(err) = socket.send(Message::Ping(Default::default())).await {
                        super::close_if_slow_reader(&self.app, socket, &err).await;
                        Next::Stop
                    } else {
                        Next::Continue
                    }
                }
                _ = sync.tick() => {
                    self.save_cursor().await;
                    Next::Continue
                }
            };
            if matches!(next, Next::Stop) {
                return;
            }
        }
    }

    async fn on_live(
        &mut self,
        socket: &mut WebSocket,
        subscription: &mut Subscription,
        first: std::sync::Arc<crate::fanout::LiveMessage>,
    ) -> Next {
        let drained = {
            let (merge, mut io) = self.io(socket, Some(subscription));
            merge.drain_queue(&mut io, Some(first), LIVE_BATCH).await
        };
        if let Err(err) = drained {
            return self.on_session_error(socket, err).await;
        }
        self.on_lagged(socket, subscription).await
    }

    /// The tailer skipped this socket because its queue was full: re-read
    /// from Redis after the last sent id, then what the queue holds. The
    /// flag is cleared BEFORE the re-read, so anything skipped after this
    /// point sets it (and the signal) again and is handled next round.
    async fn on_lagged(&mut self, socket: &mut WebSocket, subscription: &mut Subscription) -> Next {
        if subscription.is_lagged() {
            match self.trimmed_while_lagging().await {
                Ok(false) => {}
                Ok(true) => {
                    // Re-reading would skip the trimmed messages silently.
                    // A reconnect gets them declared as a `gap`.
                    self.app.metrics.limit_hit("trimmed_while_lagging");
                    close(
                        socket,
                        close_code::AGAIN,
                        "history trimmed while lagging; reconnect",
                    )
                    .await;
                    return Next::Stop;
                }
                Err(err) => return self.on_session_error(socket, err.into()).await,
            }
        }
        let page = self.page_size();
        let recovered = {
            let (merge, mut io) = self.io(socket, Some(subscription));
            merge.recover_from_lag(&mut io, page).await
        };
        match recovered {
            Ok(Some(written)) => {
                tracing::debug!(written, after = %self.merge.last_sent, "live queue had overflowed: re-read from redis");
                Next::Continue
            }
            Ok(None) => Next::Continue,
            Err(err) => self.on_session_error(socket, err).await,
        }
    }

    /// Whether messages after the last one written may have been trimmed
    /// (length cap or retention) while this socket lagged: the rule that
    /// declares a `gap` on reconnect, applied to `last_sent`.
    async fn trimmed_while_lagging(&self) -> Result<bool, StoreError> {
        let plan = super::resume::plan(
            &self.app.store,
            self.conversation_id,
            self.merge.last_sent,
            recovery_protocol::CursorSource::Client,
            Some(self.epoch.as_str()),
            &self.epoch,
        )
        .await?;
        Ok(plan.gap.is_some())
    }

    async fn on_session_error(&mut self, socket: &mut WebSocket, err: SessionError) -> Next {
        match err {
            SessionError::Socket(err) => {
                super::close_if_slow_reader(&self.app, socket, &err).await;
                Next::Stop
            }
            SessionError::Store(err) => {
                // We cannot prove this socket still gets everything: close it
                // so the client reconnects and resumes from its cursor.
                self.app.metrics.redis_error("live_reread");
                tracing::warn!(%err, "re-read after lag failed; closing so the client resumes");
                close(socket, close_code::AGAIN, "storage unavailable, reconnect").await;
                Next::Stop
            }
        }
    }

    async fn on_incoming(
        &mut self,
        socket: &mut WebSocket,
        incoming: Option<Result<Message, axum::Error>>,
    ) -> Next {
        match incoming {
            None => Next::Stop,
            Some(Err(err)) => {
                // Fail the connection with the close code RFC 6455 asks
                // for, so the client learns why (not a bare 1006).
                if let Some((code, reason)) = close_for_read_error(err) {
                    tracing::debug!(code, reason, "bad frame from the client: closing");
                    close(socket, code, reason).await;
                }
                Next::Stop
            }
            Some(Ok(Message::Text(text))) => self.on_client_frame(socket, text.as_str()).await,
            Some(Ok(Message::Binary(_))) => {
                self.reply_error(
                    socket,
                    ErrorCode::BadFrame,
                    "binary frames are not part of the protocol; send JSON text".into(),
                    None,
                )
                .await
            }
            // tungstenite queued the echo of the client's close; step 7
            // writes it out after the final cursor save (see `run_session`).
            Some(Ok(Message::Close(_))) => Next::Stop,
            // tungstenite answers pings itself; pongs only prove liveness.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Next::Continue,
        }
    }

    async fn on_client_frame(&mut self, socket: &mut WebSocket, text: &str) -> Next {
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(err) => {
                return self
                    .reply_error(socket, ErrorCode::BadFrame, err.to_string(), None)
                    .await
            }
        };
        match frame {
            ClientFrame::Send {
                client_msg_id,
                body,
            } => self.on_send(socket, client_msg_id, &body).await,
            ClientFrame::Ack { id } => {
                if id > self.merge.last_sent {
                    let message = format!(
                        "ack of {id} is beyond the last id delivered on this socket ({})",
                        self.merge.last_sent
                    );
                    return self
                        .reply_error(socket, ErrorCode::BadFrame, message, None)
                        .await;
                }
                if self.acked.is_none_or(|acked| id > acked) {
                    self.acked = Some(id);
                }
                Next::Continue
            }
        }
    }

    async fn on_send(&mut self, socket: &mut WebSocket, client_msg_id: Uuid, body: &str) -> Next {
        let max_body = self.app.config.max_body_bytes;
        if body.len() > max_body {
            let message = format!("body is {} bytes; the limit is {max_body}", body.len());
            return self
                .reply_error(socket, ErrorCode::TooLarge, message, Some(client_msg_id))
                .await;
        }
        if let Err(retry_after) = self.admission.try_send() {
            self.app.metrics.limit_hit("send_rate");
            let retry_after_ms = retry_after.as_millis().max(1) as u64;
            let frame = ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: format!("not appended: send rate limit; retry after {retry_after_ms} ms with the same client_msg_id"),
                client_msg_id: Some(client_msg_id),
                retry_after_ms: Some(retry_after_ms),
            };
            return match send_frame(socket, &frame).await {
                Ok(()) => Next::Continue,
                Err(_) => Next::Stop,
            };
        }
        let appended = self
            .app
            .store
            .append(self.conversation_id, self.user_id, client_msg_id, body)
            .await;
        // Testing aid: a pass-through unless a flaw is injected (docs/flaws.md).
        let sent = crate::flaws::SentMessage {
            conversation_id: self.conversation_id,
            sender_id: self.user_id,
            client_msg_id,
            body,
        };
        let appended = self
            .app
            .flaws
            .after_append(&self.app.fanout, sent, appended);
        match appended {
            Ok(appended) => {
                if appended.duplicate {
                    self.app.metrics.messages_deduplicated.inc();
                } else {
                    self.app.metrics.messages_appended.inc();
                }
                // Acked only now that Redis confirmed the append.
                let ack = ServerFrame::Ack {
                    client_msg_id,
                    id: appended.id,
                    duplicate: appended.duplicate,
                };
                match send_frame(socket, &ack).await {
                    Ok(()) => Next::Continue,
                    Err(_) => Next::Stop,
                }
            }
            Err(err) => {
                self.app.metrics.redis_error("append");
                // "Not appended" is a promise: only made when the script
                // certainly never ran. A timeout after the script was sent
                // (Redis stalled, then resumed) may well have appended it.
                let (code, message) = match err {
                    _ if err.certainly_not_applied() => {
                        (ErrorCode::Unavailable, format!("not appended: {err}"))
                    }
                    StoreError::Reply { .. } => (
                        ErrorCode::Internal,
                        format!("may have been appended; retry with the same client_msg_id: {err}"),
                    ),
                    StoreError::Redis { .. } | StoreError::Connect { .. } => (
                        ErrorCode::Indeterminate,
                        format!("may have been appended; retry with the same client_msg_id: {err}"),
                    ),
                };
                tracing::warn!(%err, %client_msg_id, ?code, "append failed");
                self.reply_error(socket, code, message, Some(client_msg_id))
                    .await
            }
        }
    }

    async fn reply_error(
        &mut self,
        socket: &mut WebSocket,
        code: ErrorCode,
        message: String,
        client_msg_id: Option<Uuid>,
    ) -> Next {
        let frame = ServerFrame::Error {
            code,
            message,
            client_msg_id,
            retry_after_ms: None,
        };
        match send_frame(socket, &frame).await {
            Ok(()) => Next::Continue,
            Err(_) => Next::Stop,
        }
    }
}

/// The close code and reason a failed read deserves (RFC 6455 section
/// 7.4.1), or `None` when the peer is simply gone.
fn close_for_read_error(err: axum::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
    match err.into_inner().downcast_ref::<WsError>()? {
        WsError::Capacity(_) => Some((close_code::SIZE, "frame too large")),
        WsError::Utf8(_) => Some((close_code::INVALID, "text frame is not valid UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(ProtocolError::NonZeroReservedBits) => Some((
            close_code::PROTOCOL,
            "reserved bits set without an extension",
        )),
        WsError::Protocol(
            ProtocolError::UnknownDataFrameType(_) | ProtocolError::UnknownControlFrameType(_),
        ) => Some((close_code::PROTOCOL, "unknown opcode")),
        WsError::Protocol(_) => Some((close_code::PROTOCOL, "protocol error")),
        _ => None,
    }
}
