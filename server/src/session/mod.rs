//! One WebSocket session: the 7-step recovery flow, made correct.
//!
//! 1. identify the device and load its stored cursor (`resume`);
//! 2. subscribe to live messages BEFORE reading the backlog (`fanout`);
//! 3. read the backlog in pages with exclusive ranges (`replay`);
//! 4. send backlog, then buffered live messages newer than the last sent,
//!    then `caught_up`;
//! 5. live loop; a lagging socket re-reads from Redis (`live`);
//! 6. persist the highest client-acked id every sync interval;
//! 7. on disconnect persist the final cursor and unregister.

mod live;
pub mod merge;
mod replay;
pub mod resume;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use recovery_protocol::{ConnectParams, ErrorCode, ServerFrame, StreamId};
use uuid::Uuid;

use crate::app::AppState;
use crate::store::{StoreError, SyncState};

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("socket write failed: {0}")]
    Socket(axum::Error),
}

/// The device this socket belongs to and what it has been sent and acked.
pub(crate) struct Session {
    app: Arc<AppState>,
    user_id: Uuid,
    client_id: Uuid,
    conversation_id: Uuid,
    epoch: String,
    /// What was written to this socket (ids only ever go up).
    merge: merge::Merge,
    /// Highest id the client acked on this socket.
    acked: Option<StreamId>,
    /// Highest acked id known to be persisted.
    saved: Option<StreamId>,
    /// This socket's place in its user's socket count and send rates.
    admission: crate::limits::Admission,
    /// Testing aid: what injected flaws remember between merge calls
    /// (inert without `--inject-flaw`; docs/flaws.md).
    flaws: crate::flaws::io::SessionFlaws,
}

impl Session {
    fn sync_state(&self, acked: StreamId) -> SyncState {
        SyncState {
            client_id: self.client_id,
            user_id: self.user_id,
            conversation_id: self.conversation_id,
            last_message_id: acked,
            last_sync_at: chrono::Utc::now(),
            epoch: Some(self.epoch.clone()),
        }
    }

    /// Step 6/7: persist the acked cursor if it moved. Errors are counted
    /// and logged and the save is retried at the next tick (the seed
    /// ignored them with `let _ =`).
    async fn save_cursor(&mut self) {
        let Some(acked) = self.acked else { return };
        if self.saved.is_some_and(|saved| saved >= acked) {
            return;
        }
        match self
            .app
            .store
            .save_sync_state(&self.sync_state(acked))
            .await
        {
            Ok(_) => self.saved = Some(acked),
            Err(err) => {
                self.app.metrics.redis_error("save_cursor");
                tracing::warn!(%err, user_id = %self.user_id, client_id = %self.client_id,
                    conversation_id = %self.conversation_id, "saving the acked cursor failed; will retry");
            }
        }
    }
}

pub(crate) async fn send_frame(
    socket: &mut WebSocket,
    frame: &ServerFrame,
) -> Result<(), SessionError> {
    socket
        .send(Message::Text(Utf8Bytes::from(frame.to_json())))
        .await
        .map_err(SessionError::Socket)
}

pub(crate) async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    // The peer may already be gone; there is nothing left to tell it.
    if let Err(err) = socket.send(Message::Close(Some(frame))).await {
        tracing::debug!(%err, code, "close frame not delivered");
    }
}

/// After a failed write: if it failed because the peer stopped reading
/// (the write deadline), count it and try to say why with 1008. The close
/// frame usually cannot get through a full buffer either; it is bounded,
/// and the client resumes from its cursor whatever it saw.
pub(crate) async fn close_if_slow_reader(
    app: &AppState,
    socket: &mut WebSocket,
    err: &axum::Error,
) {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let slow = std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<WsError>())
        .is_some_and(
            |ws| matches!(ws, WsError::Io(io) if crate::limits::listener::is_slow_reader(io)),
        );
    if !slow {
        return;
    }
    app.metrics.limit_hit("write_deadline");
    tracing::debug!("peer stopped reading: closing with 1008; it resumes from its cursor");
    let closing = close(
        socket,
        close_code::POLICY,
        "too slow to read: reconnect and resume from your cursor",
    );
    // The deadline already failed one write; do not wait a second one out.
    if tokio::time::timeout(Duration::from_millis(200), closing)
        .await
        .is_err()
    {
        tracing::debug!("close frame not delivered to a slow reader");
    }
}

/// Keeps the open-sockets gauge right on every exit path.
struct OpenSocket<'a>(&'a AppState);

impl<'a> OpenSocket<'a> {
    fn new(app: &'a AppState) -> Self {
        app.metrics.sockets_open.inc();
        OpenSocket(app)
    }
}

impl Drop for OpenSocket<'_> {
    fn drop(&mut self) {
        self.0.metrics.sockets_open.dec();
    }
}

/// Runs a socket from upgrade to close.
pub async fn run(
    socket: WebSocket,
    params: ConnectParams,
    admission: crate::limits::Admission,
    app: Arc<AppState>,
) {
    use tracing::Instrument;
    let client_id = params.client_id.unwrap_or_else(Uuid::new_v4);
    let span = tracing::debug_span!("session", user_id = %params.user_id, %client_id,
        conversation_id = %params.conversation_id);
    run_session(socket, params, client_id, admission, app)
        .instrument(span)
        .await
}

async fn run_session(
    mut socket: WebSocket,
    params: ConnectParams,
    client_id: Uuid,
    admission: crate::limits::Admission,
    app: Arc<AppState>,
) {
    let _open = OpenSocket::new(&app);
    let accepted_at = Instant::now();
    let recovered = recover(
        &mut socket,
        &params,
        client_id,
        admission,
        app.clone(),
        accepted_at,
    )
    .await;
    match recovered {
        Ok((mut session, subscription)) => {
            session.live_loop(&mut socket, subscription).await;
            tracing::debug!("step 7: saving the final cursor and unregistering");
            let save = session.save_cursor();
            if tokio::time::timeout(Duration::from_secs(3), save)
                .await
                .is_err()
            {
                app.metrics.redis_error("save_cursor_timeout");
                tracing::warn!("final cursor save timed out");
            }
            // Answer a client's close (tungstenite queued the echo) only
            // now: a client that waits for the closing handshake before
            // reconnecting then finds its final cursor saved. Without this
            // the echo was never written and the client saw 1006.
            use futures_util::SinkExt;
            match tokio::time::timeout(Duration::from_secs(1), socket.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%err, "close reply not delivered"),
                Err(_) => tracing::debug!("close reply not delivered within 1 s"),
            }
        }
        Err(SessionError::Store(err)) => {
            app.metrics.redis_error("recovery");
            tracing::warn!(%err, "recovery failed: storage unavailable");
            let frame = ServerFrame::Error {
                code: ErrorCode::Unavailable,
                message: format!("storage unavailable during recovery: {err}"),
                client_msg_id: None,
                retry_after_ms: None,
            };
            if send_frame(&mut socket, &frame).await.is_ok() {
                close(&mut socket, close_code::AGAIN, "storage unavailable, retry").await;
            }
        }
        Err(SessionError::Socket(err)) => {
            close_if_slow_reader(&app, &mut socket, &err).await;
            tracing::debug!(%err, "peer left during recovery");
        }
    }
}

/// Steps 1 to 4. Returns the session ready for the live loop.
async fn recover(
    socket: &mut WebSocket,
    params: &ConnectParams,
    client_id: Uuid,
    admission: crate::limits::Admission,
    app: Arc<AppState>,
    accepted_at: Instant,
) -> Result<(Session, crate::fanout::Subscription), SessionError> {
    let conversation_id = params.conversation_id;
    tracing::debug!("step 1: identify device and load stored cursor");
    let stored = match params.last_id {
        Some(_) => None,
        None => {
            app.store
                .load_sync_state(params.user_id, client_id, conversation_id)
                .await?
        }
    };
    if let Some(state) = &stored {
        tracing::debug!(cursor = %state.last_message_id,
            saved_at = %state.last_sync_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "stored cursor found");
    }
    let epoch = app.store.ensure_epoch(conversation_id).await?;

    tracing::debug!("step 2: register for live messages before reading the backlog");
    let mut subscription = app.fanout.subscribe(conversation_id).await?;

    let (resume_from, cursor, cursor_epoch) =
        resume::choose_cursor(params.last_id, params.epoch.as_deref(), stored.as_ref());
    let plan = resume::plan(
        &app.store,
        conversation_id,
        resume_from,
        cursor,
        cursor_epoch.as_deref(),
        &epoch,
    )
    .await?;
    // Testing aid: a pass-through unless a flaw is injected (docs/flaws.md).
    let plan = app
        .flaws
        .disguise_loss(&app.store, conversation_id, plan)
        .await?;
    let mut session = Session {
        app: app.clone(),
        user_id: params.user_id,
        client_id,
        conversation_id,
        epoch: epoch.clone(),
        merge: merge::Merge::new(plan.deliver_after()),
        acked: None,
        // The stored cursor is already persisted: only a higher ack is news.
        // A cursor from another epoch is not: any ack in this one replaces it.
        saved: stored
            .filter(|state| state.epoch.as_deref() == Some(epoch.as_str()))
            .map(|state| state.last_message_id),
        admission,
        flaws: Default::default(),
    };
    send_frame(
        socket,
        &ServerFrame::Hello {
            client_id,
            resume_from: plan.resume_from,
            cursor: plan.cursor,
            epoch,
        },
    )
    .await?;
    if let Some(gap) = plan.gap {
        app.metrics.gaps_declared.inc();
        tracing::debug!(?gap, "declaring a gap");
        send_frame(
            socket,
            &ServerFrame::Gap {
                resume_from: plan.resume_from,
                first_available: gap.first_available,
                reason: gap.reason,
            },
        )
        .await?;
    }

    tracing::debug!(after = %session.merge.last_sent, "step 3/4: replay backlog, then buffered live messages");
    let replayed = session.catch_up(socket, &mut subscription).await?;
    send_frame(
        socket,
        &ServerFrame::CaughtUp {
            last_id: session.merge.last_sent,
            replayed,
        },
    )
    .await?;
    app.metrics
        .recovery_duration_seconds
        .observe(accepted_at.elapsed().as_secs_f64());
    Ok((session, subscription))
}
