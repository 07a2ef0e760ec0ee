//! One simulated socket (a device in one conversation), from ramp-up to
//! the end of the drain: connect, recover, receive, send, ack, drop, come
//! back. Everything it does or sees becomes an `Event` in its own history.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::Rng;
use recovery_protocol::{ClientFrame, ConnectParams, ErrorCode, ServerFrame, StreamId};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::connection::{connect, drop_connection, DropKind, Ws};
use super::dist::sample_duration;
use super::{ClientContext, Phase, SendOrder, SocketSpec};
use crate::history::{body_hash, DisconnectCause, Event, EventKind, ResumeMode};

/// Cumulative acks go out after this many new messages, or on the tick.
const ACK_EVERY_MESSAGES: usize = 16;
const ACK_TICK: Duration = Duration::from_millis(100);
/// Retry delay after `error unavailable` and after a failed connect.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// Send attempts per client_msg_id before the harness gives up on it.
const MAX_SEND_ATTEMPTS: u32 = 50;
/// Consecutive failed connects before a socket gives up for good.
const MAX_CONNECT_FAILURES: u32 = 200;

/// A send written but not acked yet.
#[derive(Debug, Clone)]
struct Pending {
    body: String,
    due_us: u64,
    attempt: u32,
}

/// How one connection ended.
enum Ended {
    /// Planned churn: go offline for a while.
    Churned,
    /// The server or network ended it: reconnect soon.
    Lost,
    /// The run is over.
    RunOver,
}

pub struct SocketTask {
    spec: SocketSpec,
    ctx: Arc<ClientContext>,
    rng: StdRng,
    orders: mpsc::Receiver<SendOrder>,
    events: Vec<Event>,
    socket_no: u32,
    connected_once: bool,
    /// Highest id received on any socket (the device's own cursor).
    last_id: Option<StreamId>,
    /// Highest id received on the current socket: what it may ack (a
    /// server may reject acks beyond what that socket delivered).
    socket_last: Option<StreamId>,
    epoch: Option<String>,
    pending: HashMap<Uuid, Pending>,
    /// Retry order of pending sends: oldest first.
    pending_order: VecDeque<Uuid>,
    drained: bool,
    /// When the latest connection attempt started (run clock).
    connect_at_us: u64,
}

impl SocketTask {
    pub fn new(
        spec: SocketSpec,
        ctx: Arc<ClientContext>,
        rng: StdRng,
        orders: mpsc::Receiver<SendOrder>,
    ) -> Self {
        SocketTask {
            spec,
            ctx,
            rng,
            orders,
            events: Vec::new(),
            socket_no: 0,
            connected_once: false,
            last_id: None,
            socket_last: None,
            epoch: None,
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            drained: false,
            connect_at_us: 0,
        }
    }

    fn record(&mut self, kind: EventKind) {
        self.events.push(Event {
            at_us: self.ctx.clock.now_us(),
            device: self.spec.device,
            conversation: self.spec.conversation,
            socket: self.socket_no,
            kind,
        });
    }

    fn phase(&self) -> Phase {
        *self.ctx.phase.borrow()
    }

    /// Runs until the run is over; returns this socket's history.
    pub async fn run(mut self, start_at: Instant) -> Vec<Event> {
        let mut phase = self.ctx.phase.clone();
        tokio::select! {
            _ = sleep_until(start_at) => {}
            _ = phase.wait_for(|p| *p != Phase::Running) => {}
        }
        let mut failures = 0u32;
        while self.phase() != Phase::Done {
            match self.connect_once().await {
                Some(ws) => {
                    failures = 0;
                    let ended = self.session(ws).await;
                    self.socket_no += 1;
                    match ended {
                        Ended::RunOver => break,
                        Ended::Lost => self.wait(RETRY_DELAY).await,
                        Ended::Churned => {
                            let offline = sample_duration(&self.ctx.churn.offline, &mut self.rng);
                            self.wait(offline).await;
                        }
                    }
                }
                None => {
                    self.socket_no += 1;
                    failures += 1;
                    if failures >= MAX_CONNECT_FAILURES {
                        tracing::warn!(
                            socket = self.spec.index,
                            "giving up after {failures} failed connects"
                        );
                        break;
                    }
                    self.wait(RETRY_DELAY).await;
                }
            }
        }
        self.events
    }

    /// Sleeps, cut short when the drain starts (devices come back at once)
    /// or the run ends.
    async fn wait(&mut self, duration: Duration) {
        let mut phase = self.ctx.phase.clone();
        let running = *phase.borrow() == Phase::Running;
        if !running {
            // During the drain, retry quickly but not in a hot loop.
            tokio::select! {
                _ = tokio::time::sleep(duration.min(RETRY_DELAY)) => {}
                _ = phase.wait_for(|p| *p == Phase::Done) => {}
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = phase.wait_for(|p| *p != Phase::Running) => {}
        }
    }

    fn connect_params(&self) -> ConnectParams {
        let own_cursor = self.spec.resume_mode == ResumeMode::ClientCursor;
        ConnectParams {
            user_id: self.spec.user_id,
            conversation_id: self.spec.conversation_id,
            client_id: Some(self.spec.client_id),
            last_id: if own_cursor { self.last_id } else { None },
            epoch: if own_cursor { self.epoch.clone() } else { None },
        }
    }

    async fn connect_once(&mut self) -> Option<Ws> {
        // Spread reconnects over the instances: a device comes back to a
        // different one than before when there are several.
        let target = self.ctx.targets
            [(self.spec.index + self.socket_no as usize) % self.ctx.targets.len()]
        .clone();
        let params = self.connect_params();
        self.record(EventKind::Connect {
            last_id: params.last_id,
            epoch: params.epoch.clone(),
            target: target.to_string(),
        });
        self.ctx.counters.connects.fetch_add(1, Ordering::Relaxed);
        self.connect_at_us = self.ctx.clock.now_us();
        match connect(&target, &params, self.ctx.connect_timeout).await {
            Ok(ws) => Some(ws),
            Err(err) => {
                self.ctx
                    .counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.record(EventKind::ConnectFailed {
                    error: err.to_string(),
                });
                None
            }
        }
    }

    /// One connection's life. Returns why it ended.
    async fn session(&mut self, mut ws: Ws) -> Ended {
        self.connected_once = true;
        self.ctx.counters.socket_up();
        let ended = self.drive(&mut ws).await;
        self.ctx.online[self.spec.index].store(false, Ordering::Relaxed);
        self.ctx.counters.socket_down();
        self.ctx
            .counters
            .disconnects
            .fetch_add(1, Ordering::Relaxed);
        match ended {
            Drive::Planned(kind) => {
                self.record(EventKind::Disconnect(match kind {
                    DropKind::Close => DisconnectCause::ClientClose,
                    DropKind::Abrupt => DisconnectCause::ClientAbrupt,
                    DropKind::Reset => DisconnectCause::ClientReset,
                }));
                drop_connection(ws, kind).await;
                Ended::Churned
            }
            Drive::RunOver => {
                self.record(EventKind::Disconnect(DisconnectCause::RunEnd));
                drop_connection(ws, DropKind::Close).await;
                Ended::RunOver
            }
            Drive::Lost(cause) => {
                self.record(EventKind::Disconnect(cause));
                Ended::Lost
            }
        }
    }

    fn choose_drop(&mut self) -> DropKind {
        let churn = &self.ctx.churn;
        if self.rng.random_bool(churn.abrupt_share.clamp(0.0, 1.0)) {
            if self.rng.random_bool(churn.reset_share.clamp(0.0, 1.0)) {
                DropKind::Reset
            } else {
                DropKind::Abrupt
            }
        } else {
            DropKind::Close
        }
    }

    async fn drive(&mut self, ws: &mut Ws) -> Drive {
        let mut phase = self.ctx.phase.clone();
        let online_for = if self.ctx.churn.enabled {
            Some(sample_duration(&self.ctx.churn.online, &mut self.rng))
        } else {
            None
        };
        let drop_at = online_for.map(|d| Instant::now() + d);
        self.socket_last = None;
        let mut caught_up = false;
        let mut unacked_messages = 0usize;
        let mut acked_sent: Option<StreamId> = None;
        let mut ack_tick = tokio::time::interval(ACK_TICK);
        ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_at: Option<Instant> = None;
        loop {
            let churn_due = async {
                match drop_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let retry_due = async {
                match retry_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let current_phase = *phase.borrow();
            tokio::select! {
                frame = ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(close))) => {
                            return Drive::Lost(DisconnectCause::ServerClose { code: close.map(|c| u16::from(c.code)) });
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(err)) => return Drive::Lost(DisconnectCause::Error { message: err.to_string() }),
                        None => return Drive::Lost(DisconnectCause::Error { message: "connection closed without a close frame".into() }),
                    };
                    let frame = match ServerFrame::parse(text.as_str()) {
                        Ok(frame) => frame,
                        Err(err) => {
                            return Drive::Lost(DisconnectCause::Error { message: format!("protocol violation: {err}") });
                        }
                    };
                    match self.on_frame(frame, &mut caught_up, &mut unacked_messages) {
                        FrameOutcome::Continue => {}
                        FrameOutcome::CaughtUp => {
                            self.ctx.online[self.spec.index].store(true, Ordering::Relaxed);
                            if let Err(cause) = self.resend_pending(ws).await {
                                return Drive::Lost(cause);
                            }
                        }
                        FrameOutcome::RetrySoon => retry_at = Some(Instant::now() + RETRY_DELAY),
                    }
                    if unacked_messages >= ACK_EVERY_MESSAGES {
                        if let Err(cause) = self.send_ack(ws, &mut acked_sent).await {
                            return Drive::Lost(cause);
                        }
                        unacked_messages = 0;
                    }
                    self.check_drained();
                }
                order = self.orders.recv(), if caught_up => {
                    let Some(order) = order else { continue };
                    if let Err(cause) = self.send_new(ws, order).await {
                        return Drive::Lost(cause);
                    }
                }
                _ = ack_tick.tick() => {
                    if let Err(cause) = self.send_ack(ws, &mut acked_sent).await {
                        return Drive::Lost(cause);
                    }
                    unacked_messages = 0;
                    self.check_drained();
                }
                _ = retry_due => {
                    retry_at = None;
                    if let Err(cause) = self.resend_pending(ws).await {
                        return Drive::Lost(cause);
                    }
                }
                _ = churn_due, if current_phase == Phase::Running => {
                    // Ack what we have before going away, like a real app
                    // would try to; an abrupt drop may lose even that.
                    let kind = self.choose_drop();
                    if kind == DropKind::Close {
                        if let Err(cause) = self.send_ack(ws, &mut acked_sent).await {
                            return Drive::Lost(cause);
                        }
                    }
                    return Drive::Planned(kind);
                }
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() == Phase::Done {
                        // Final ack so stored cursors end where the device is.
                        // The run is over either way.
                        let _ = self.send_ack(ws, &mut acked_sent).await; // failure only loses a cursor update at run end
                        return Drive::RunOver;
                    }
                }
            }
        }
    }

    fn check_drained(&mut self) {
        if self.drained {
            return;
        }
        let Some(heads) = self.ctx.drain_heads.get() else {
            return;
        };
        let head = heads
            .get(self.spec.conversation as usize)
            .copied()
            .unwrap_or(StreamId::ZERO);
        if head.is_zero() || self.last_id.is_some_and(|last| last >= head) {
            self.drained = true;
            self.ctx.drained[self.spec.index].store(true, Ordering::Relaxed);
            self.ctx.counters.drained.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_frame(
        &mut self,
        frame: ServerFrame,
        caught_up: &mut bool,
        unacked: &mut usize,
    ) -> FrameOutcome {
        match frame {
            ServerFrame::Hello {
                client_id,
                resume_from,
                cursor,
                epoch,
            } => {
                self.epoch = Some(epoch.clone());
                self.ctx
                    .live
                    .connect_to_hello
                    .record(self.ctx.clock.now_us().saturating_sub(self.connect_at_us));
                self.record(EventKind::Hello {
                    client_id,
                    resume_from,
                    cursor,
                    epoch,
                });
            }
            ServerFrame::Gap {
                resume_from,
                first_available,
                reason,
            } => self.record(EventKind::Gap {
                resume_from,
                first_available,
                reason,
            }),
            ServerFrame::Message(message) => {
                self.ctx.counters.deliveries.fetch_add(1, Ordering::Relaxed);
                if self.last_id.is_none_or(|last| message.id > last) {
                    self.last_id = Some(message.id);
                }
                if self.socket_last.is_none_or(|last| message.id > last) {
                    self.socket_last = Some(message.id);
                } else {
                    self.ctx
                        .live
                        .repeats_within_socket
                        .fetch_add(1, Ordering::Relaxed);
                }
                *unacked += 1;
                self.record(EventKind::Recv {
                    id: message.id,
                    sender_id: message.sender_id,
                    client_msg_id: message.client_msg_id,
                    body_hash: body_hash(&message.body),
                    body_len: message.body.len() as u32,
                    sent_at_ms: message.sent_at_ms,
                    replay: !*caught_up,
                });
            }
            ServerFrame::CaughtUp { last_id, replayed } => {
                self.record(EventKind::CaughtUp { last_id, replayed });
                if !*caught_up {
                    *caught_up = true;
                    return FrameOutcome::CaughtUp;
                }
            }
            ServerFrame::Ack {
                client_msg_id,
                id,
                duplicate,
            } => {
                self.record(EventKind::Ack {
                    client_msg_id,
                    id,
                    duplicate,
                });
                if let Some(acked) = self.pending.remove(&client_msg_id) {
                    self.ctx
                        .live
                        .ack
                        .record(self.ctx.clock.now_us().saturating_sub(acked.due_us));
                    self.pending_order
                        .retain(|pending| *pending != client_msg_id);
                    self.ctx
                        .counters
                        .outstanding_sends
                        .fetch_sub(1, Ordering::Relaxed);
                    self.ctx.counters.acks.fetch_add(1, Ordering::Relaxed);
                    self.ctx.note_acked(self.spec.conversation, id);
                }
            }
            ServerFrame::Error {
                code,
                message,
                client_msg_id,
                ..
            } => {
                self.record(EventKind::Error {
                    code,
                    client_msg_id,
                    message,
                });
                // Definite (`unavailable`, `rate_limited`) or not
                // (`indeterminate`, `internal`), the answer is the same: retry with the same
                // client_msg_id, which the server deduplicates. The history
                // keeps the code, and the checker holds a definite one to
                // the log.
                let retryable = matches!(
                    code,
                    ErrorCode::Unavailable
                        | ErrorCode::Indeterminate
                        | ErrorCode::Internal
                        | ErrorCode::RateLimited
                );
                if retryable && client_msg_id.is_some() {
                    return FrameOutcome::RetrySoon;
                }
            }
        }
        FrameOutcome::Continue
    }

    async fn write(&mut self, ws: &mut Ws, frame: ClientFrame) -> Result<(), DisconnectCause> {
        ws.send(Message::Text(frame.to_json().into()))
            .await
            .map_err(|err| DisconnectCause::Error {
                message: err.to_string(),
            })
    }

    async fn send_new(&mut self, ws: &mut Ws, order: SendOrder) -> Result<(), DisconnectCause> {
        self.ctx.counters.sends.fetch_add(1, Ordering::Relaxed);
        self.ctx
            .counters
            .outstanding_sends
            .fetch_add(1, Ordering::Relaxed);
        self.pending.insert(
            order.client_msg_id,
            Pending {
                body: order.body,
                due_us: order.due_us,
                attempt: 0,
            },
        );
        self.pending_order.push_back(order.client_msg_id);
        self.write_send(ws, order.client_msg_id).await
    }

    async fn write_send(
        &mut self,
        ws: &mut Ws,
        client_msg_id: Uuid,
    ) -> Result<(), DisconnectCause> {
        let Some(pending) = self.pending.get(&client_msg_id).cloned() else {
            return Ok(());
        };
        self.record(EventKind::Send {
            client_msg_id,
            body_hash: body_hash(&pending.body),
            body_len: pending.body.len() as u32,
            due_us: pending.due_us,
            attempt: pending.attempt,
        });
        self.write(
            ws,
            ClientFrame::Send {
                client_msg_id,
                body: pending.body,
            },
        )
        .await
    }

    /// Re-sends every unacked send with the same client_msg_id (the server
    /// must not append it twice).
    async fn resend_pending(&mut self, ws: &mut Ws) -> Result<(), DisconnectCause> {
        let ids: Vec<Uuid> = self.pending_order.iter().copied().collect();
        for client_msg_id in ids {
            let give_up = match self.pending.get_mut(&client_msg_id) {
                Some(pending) if pending.attempt + 1 >= MAX_SEND_ATTEMPTS => true,
                Some(pending) => {
                    pending.attempt += 1;
                    false
                }
                None => continue,
            };
            if give_up {
                self.pending.remove(&client_msg_id);
                self.pending_order.retain(|id| *id != client_msg_id);
                self.ctx
                    .counters
                    .outstanding_sends
                    .fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            self.write_send(ws, client_msg_id).await?;
        }
        Ok(())
    }

    async fn send_ack(
        &mut self,
        ws: &mut Ws,
        acked_sent: &mut Option<StreamId>,
    ) -> Result<(), DisconnectCause> {
        let Some(last) = self.socket_last else {
            return Ok(());
        };
        if acked_sent.is_some_and(|sent| sent >= last) {
            return Ok(());
        }
        *acked_sent = Some(last);
        self.record(EventKind::AckSent { id: last });
        self.write(ws, ClientFrame::Ack { id: last }).await
    }
}

enum Drive {
    Planned(DropKind),
    Lost(DisconnectCause),
    RunOver,
}

enum FrameOutcome {
    Continue,
    CaughtUp,
    RetrySoon,
}
