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
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::ack::{AckBatch, AckDue};
use super::connection::{connect, drop_connection, DropKind, Ws};
use super::dist::{drain_return_delay, sample_duration};
use super::orders::OrderReceiver;
use super::protocol::{Codec, DeviceIdentity, Inbound, ProtocolCodec, ResumeState};
use super::{ClientContext, Phase, SendOrder, SocketSpec};
use crate::history::{
    body_hash, DisconnectCause, Event, EventKind, Position, ResumeClaim, ResumeMode, SendOutcome,
};

/// Deadline of a timer that is not armed (never polled until it is).
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Retry delay after `error unavailable` and after a failed connect.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// Send attempts per client_msg_id before the harness gives up on it.
const MAX_SEND_ATTEMPTS: u32 = 50;
/// Consecutive failed connects before a socket gives up for good.
const MAX_CONNECT_FAILURES: u32 = 200;
/// How often a connected socket compares the online share with a stage's
/// target, and (jittered up to twice this) how often an offline one waits
/// for room.
const ONLINE_CHECK: Duration = Duration::from_millis(500);

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
    /// Dropped by a reconnect storm or a stage's online target: offline
    /// for exactly this long (then wait for room under the target).
    Offline(Duration),
    /// The server or network ended it: reconnect soon.
    Lost,
    /// The run is over.
    RunOver,
}

pub struct SocketTask {
    spec: SocketSpec,
    ctx: Arc<ClientContext>,
    rng: StdRng,
    orders: OrderReceiver,
    socket_no: u32,
    connected_once: bool,
    /// Highest position received on any socket (the device's own cursor).
    last_id: Option<Position>,
    /// The current connection declared a failed recovery (Socket.IO
    /// `recovered: false`) and has delivered nothing since: what came
    /// before is gone for good, so the drain has nothing to wait for.
    recovery_failed_quiet: bool,
    /// The last id received, in arrival order (Socket.IO resumes there).
    last_received: Option<Position>,
    /// Highest id received on the current socket: what it may ack (a
    /// server may reject acks beyond what that socket delivered).
    socket_last: Option<Position>,
    epoch: Option<String>,
    pending: HashMap<Uuid, Pending>,
    /// Retry order of pending sends: oldest first.
    pending_order: VecDeque<Uuid>,
    drained: bool,
    /// When the latest connection attempt started (run clock).
    connect_at_us: u64,
    /// Dropped by a reconnect storm and not caught up since.
    storm_hit: bool,
}

impl SocketTask {
    pub fn new(
        spec: SocketSpec,
        ctx: Arc<ClientContext>,
        rng: StdRng,
        orders: OrderReceiver,
    ) -> Self {
        SocketTask {
            spec,
            ctx,
            rng,
            orders,
            socket_no: 0,
            connected_once: false,
            last_id: None,
            last_received: None,
            recovery_failed_quiet: false,
            socket_last: None,
            epoch: None,
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            drained: false,
            connect_at_us: 0,
            storm_hit: false,
        }
    }

    /// Streams one event to the history writer: nothing is kept here, so
    /// a socket's memory does not grow with the run.
    fn record(&mut self, kind: EventKind) {
        self.ctx.history.record(Event {
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

    /// Runs until the run is over (its events went to `ctx.history`).
    pub async fn run(mut self, start_at: Instant) {
        let mut phase = self.ctx.phase.clone();
        tokio::select! {
            _ = sleep_until(start_at) => {}
            _ = phase.wait_for(|p| *p != Phase::Running) => {}
        }
        let mut failures = 0u32;
        while self.phase() != Phase::Done {
            self.wait_for_room().await;
            match self.connect_once().await {
                Some((ws, codec)) => {
                    failures = 0;
                    let ended = self.session(ws, codec).await;
                    self.socket_no += 1;
                    match ended {
                        Ended::RunOver => break,
                        Ended::Lost => self.wait(RETRY_DELAY).await,
                        Ended::Offline(offline) => self.wait(offline).await,
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
                        self.storm_back();
                        break;
                    }
                    self.wait(RETRY_DELAY).await;
                }
            }
        }
        self.storm_back();
    }

    /// While traffic runs under a stage's online target, stay offline
    /// until the share of connected sockets is below it. Bounded by the
    /// run: the drain brings everyone back.
    async fn wait_for_room(&mut self) {
        loop {
            if self.phase() != Phase::Running || !self.over_online_target() {
                return;
            }
            let jitter = self.rng.random_range(0.0..1.0);
            self.wait(ONLINE_CHECK.mul_f64(1.0 + jitter)).await;
        }
    }

    /// Whether the online share is at or above the current stage's
    /// target (false when no stage sets one).
    fn over_online_target(&self) -> bool {
        let Some(target) = self.ctx.shape.online_target_at(self.ctx.clock.now_us()) else {
            return false;
        };
        let total = self.ctx.online.len().max(1) as f64;
        let online = self.ctx.counters.sockets_online.load(Ordering::Relaxed) as f64;
        online / total >= target
    }

    /// Drop now with the probability that removes the excess over the
    /// online target on average, every socket deciding for itself.
    fn should_leave_for_target(&mut self) -> bool {
        let Some(target) = self.ctx.shape.online_target_at(self.ctx.clock.now_us()) else {
            return false;
        };
        let total = self.ctx.online.len().max(1) as f64;
        let share = self.ctx.counters.sockets_online.load(Ordering::Relaxed) as f64 / total;
        share > target
            && self
                .rng
                .random_bool(((share - target) / share).clamp(0.0, 1.0))
    }

    /// This socket no longer holds a storm open.
    fn storm_back(&mut self) {
        if std::mem::take(&mut self.storm_hit) {
            self.ctx.storms.note_back();
        }
    }

    /// Sleeps, cut short when the drain starts (devices come back within
    /// `ClientContext::drain_return_spread`) or the run ends.
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
        let started = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(duration) => return,
            _ = phase.wait_for(|p| *p != Phase::Running) => {}
        }
        let left = duration.saturating_sub(started.elapsed());
        let back_in = drain_return_delay(left, self.ctx.drain_return_spread, &mut self.rng);
        tokio::select! {
            _ = tokio::time::sleep(back_in) => {}
            _ = phase.wait_for(|p| *p == Phase::Done) => {}
        }
    }

    fn codec(&self) -> Codec {
        let own_cursor = self.spec.resume_mode == ResumeMode::ClientCursor;
        let identity = DeviceIdentity {
            user_id: self.spec.user_id,
            client_id: self.spec.client_id,
            conversation_id: self.spec.conversation_id,
        };
        let resume = ResumeState {
            last_position: if own_cursor { self.last_id } else { None },
            session: if own_cursor { self.epoch.clone() } else { None },
            last_received: if own_cursor { self.last_received } else { None },
        };
        Codec::new(self.ctx.protocol, &identity, &resume)
    }

    async fn connect_once(&mut self) -> Option<(Ws, Codec)> {
        // Spread reconnects over the instances: a device comes back to a
        // different one than before when there are several.
        let target = self.ctx.targets
            [(self.spec.index + self.socket_no as usize) % self.ctx.targets.len()]
        .clone();
        let codec = self.codec();
        let (last_id, epoch) = codec.resume_request();
        self.record(EventKind::Connect {
            last_id,
            epoch,
            target: target.to_string(),
        });
        self.ctx.counters.connects.fetch_add(1, Ordering::Relaxed);
        self.connect_at_us = self.ctx.clock.now_us();
        let bearer = self.spec.bearer.as_ref().map(crate::auth::Bearer::as_str);
        let url = codec.connect_url(&target);
        // Boxed: the handshake's state machine (~10 KB) is alive only while
        // connecting; inline, every socket task carried it for the whole
        // run (the task future was 13 KB). Boxed where it is made: a
        // named unboxed future would keep its slot in this future even
        // after being moved into the box.
        let connecting = Box::pin(connect(
            &url,
            bearer,
            self.ctx.tls.as_ref(),
            self.ctx.connect_timeout,
        ));
        log_future_size("connect", &*connecting);
        match connecting.await {
            Ok(ws) => Some((ws, codec)),
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
    async fn session(&mut self, mut ws: Ws, mut codec: Codec) -> Ended {
        self.connected_once = true;
        self.ctx.counters.socket_up();
        let driving = self.drive(&mut ws, &mut codec);
        log_future_size("drive", &driving);
        let ended = driving.await;
        self.ctx.online[self.spec.index].store(false, Ordering::Relaxed);
        self.ctx.counters.socket_down();
        self.ctx
            .counters
            .disconnects
            .fetch_add(1, Ordering::Relaxed);
        match ended {
            Drive::Planned(kind) | Drive::Dropped { kind, .. } => {
                self.record(EventKind::Disconnect(match kind {
                    DropKind::Close => DisconnectCause::ClientClose,
                    DropKind::Abrupt => DisconnectCause::ClientAbrupt,
                    DropKind::Reset => DisconnectCause::ClientReset,
                }));
                if kind == DropKind::Close {
                    self.goodbye(&mut ws, &mut codec).await;
                }
                Box::pin(drop_connection(ws, kind)).await;
                match ended {
                    Drive::Dropped { offline, .. } => Ended::Offline(offline),
                    _ => Ended::Churned,
                }
            }
            Drive::RunOver => {
                self.record(EventKind::Disconnect(DisconnectCause::RunEnd));
                self.goodbye(&mut ws, &mut codec).await;
                Box::pin(drop_connection(ws, DropKind::Close)).await;
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

    /// The protocol's goodbye before a planned close, if it has one.
    async fn goodbye(&mut self, ws: &mut Ws, codec: &mut Codec) {
        if let Some(frame) = codec.encode_goodbye() {
            if let Err(err) = ws.send(frame).await {
                // The close that follows ends the connection either way.
                tracing::debug!(%err, "goodbye frame not written");
            }
        }
    }

    async fn drive(&mut self, ws: &mut Ws, codec: &mut Codec) -> Drive {
        let online_for = if self.ctx.churn.enabled {
            Some(sample_duration(&self.ctx.churn.online, &mut self.rng))
        } else {
            None
        };
        let now = Instant::now();
        // Every timer and watch future of the loop is made once and
        // re-armed in place. Made anew on each pass (as before), each
        // frame registered and deregistered a timer-wheel entry per armed
        // timer and a waiter in each watch channel's `Notify` (shared by
        // every socket): perf put tokio's timer wheel and `Notify` among
        // the top symbols of the harness.
        let unarmed = now + FAR_FUTURE;
        let churn_due = sleep_until(online_for.map_or(unarmed, |d| now + d));
        let churn_armed = online_for.is_some();
        let ack_due = sleep_until(unarmed);
        let retry_due = sleep_until(unarmed);
        // A server that opens the WebSocket but never says hello (v1
        // `hello`, Socket.IO's CONNECT reply) would hold the device
        // forever, the drain included: give up like a connect timeout.
        let hello_due = sleep_until(now + self.ctx.connect_timeout);
        let phase_changed = next_change(self.ctx.phase.clone());
        let storm_changed = next_change(self.ctx.storms.subscribe());
        tokio::pin!(
            churn_due,
            ack_due,
            retry_due,
            hello_due,
            phase_changed,
            storm_changed
        );
        let mut storms_open = true;
        self.socket_last = None;
        let mut caught_up = false;
        let mut unacked_messages = 0usize;
        let mut acked_sent: Option<Position> = None;
        // Coalesced acks (`client::ack`): the timer is armed by the first
        // message not acked yet; none runs while there is nothing to ack.
        let mut ack_batch = AckBatch::default();
        let mut ack_armed = false;
        let mut retry_armed = false;
        let mut online_check = tokio::time::interval(ONLINE_CHECK);
        online_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let limits_online = self.ctx.shape.online_target_at(0).is_some();
        let mut hello_seen = false;
        loop {
            let current_phase = self.phase();
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
                    let (single, batch) = match codec.decode(text.as_str()) {
                        Ok(Inbound::Many(items)) => (None, items),
                        Ok(one) => (Some(one), Vec::new()),
                        Err(err) => {
                            return Drive::Lost(DisconnectCause::Error { message: err.to_string() });
                        }
                    };
                    for inbound in single.into_iter().chain(batch) {
                        let event = match inbound {
                            Inbound::Event(event) => event,
                            Inbound::Reply(reply) => {
                                if let Err(err) = ws.send(reply).await {
                                    return Drive::Lost(DisconnectCause::Error { message: err.to_string() });
                                }
                                continue;
                            }
                            // A codec never nests batches.
                            Inbound::Nothing | Inbound::Many(_) => continue,
                        };
                        hello_seen |= matches!(event, EventKind::Connected { .. });
                        match self.on_event(codec, event, &mut caught_up, &mut unacked_messages) {
                            FrameOutcome::Continue => {}
                            FrameOutcome::CaughtUp => {
                                self.ctx.online[self.spec.index].store(true, Ordering::Relaxed);
                                self.storm_back();
                                if let Err(cause) = self.resend_pending(ws, codec).await {
                                    return Drive::Lost(cause);
                                }
                            }
                            FrameOutcome::RetrySoon => {
                                retry_due.as_mut().reset(Instant::now() + RETRY_DELAY);
                                retry_armed = true;
                            }
                        }
                    }
                    if unacked_messages > 0 {
                        let received = u32::try_from(unacked_messages).unwrap_or(u32::MAX);
                        unacked_messages = 0;
                        match ack_batch.received(received, Instant::now()) {
                            AckDue::Now => {
                                if let Err(cause) = self.send_ack(ws, codec, &mut acked_sent).await {
                                    return Drive::Lost(cause);
                                }
                                ack_batch.sent();
                                ack_armed = false;
                            }
                            AckDue::At(at) if !ack_armed => {
                                ack_due.as_mut().reset(at);
                                ack_armed = true;
                            }
                            AckDue::At(_) | AckDue::Idle => {}
                        }
                    }
                    self.check_drained();
                }
                _ = &mut hello_due, if !hello_seen => {
                    return Drive::Lost(DisconnectCause::Error {
                        message: format!("no hello within {:?} of the WebSocket opening", self.ctx.connect_timeout),
                    });
                }
                order = self.orders.recv(), if caught_up && !self.orders.is_finished() => {
                    // None: the scheduler is done and dropped its sender.
                    // The guard above keeps a closed, empty channel out of the
                    // select; without it every socket spun on `None` for
                    // the whole drain (perf: memset of the read buffer on
                    // each empty poll), starving the drain's own reads.
                    let Some(order) = order else { continue };
                    if let Err(cause) = self.send_new(ws, codec, order).await {
                        return Drive::Lost(cause);
                    }
                }
                _ = &mut ack_due, if ack_armed => {
                    ack_armed = false;
                    match ack_batch.timer_fired(Instant::now()) {
                        AckDue::Now => {
                            if let Err(cause) = self.send_ack(ws, codec, &mut acked_sent).await {
                                return Drive::Lost(cause);
                            }
                            ack_batch.sent();
                        }
                        // Fired early (cannot with tokio's timer): wait on.
                        AckDue::At(at) => {
                            ack_due.as_mut().reset(at);
                            ack_armed = true;
                        }
                        AckDue::Idle => {}
                    }
                }
                _ = &mut retry_due, if retry_armed => {
                    retry_armed = false;
                    if let Err(cause) = self.resend_pending(ws, codec).await {
                        return Drive::Lost(cause);
                    }
                }
                _ = &mut churn_due, if churn_armed && current_phase == Phase::Running => {
                    if let Err(cause) = self.send_queued(ws, codec, caught_up).await {
                        return Drive::Lost(cause);
                    }
                    // Ack what we have before going away, like a real app
                    // would try to; an abrupt drop may lose even that.
                    let kind = self.choose_drop();
                    if kind == DropKind::Close {
                        if let Err(cause) = self.send_ack(ws, codec, &mut acked_sent).await {
                            return Drive::Lost(cause);
                        }
                    }
                    return Drive::Planned(kind);
                }
                (mut storms, open) = &mut storm_changed, if storms_open && current_phase == Phase::Running => {
                    // The control is gone only when the run is being torn down.
                    let order = if open { *storms.borrow_and_update() } else { None };
                    storms_open = open;
                    storm_changed.set(next_change(storms));
                    let Some(order) = order else { continue };
                    if !self.rng.random_bool(order.share.clamp(0.0, 1.0)) {
                        continue;
                    }
                    if let Err(cause) = self.send_queued(ws, codec, caught_up).await {
                        return Drive::Lost(cause);
                    }
                    let kind = order.drop_kind();
                    if kind == DropKind::Close {
                        if let Err(cause) = self.send_ack(ws, codec, &mut acked_sent).await {
                            return Drive::Lost(cause);
                        }
                    }
                    self.storm_back();
                    self.storm_hit = true;
                    self.ctx.storms.note_dropped();
                    let window_us = order.return_within.as_micros() as u64;
                    let offline_us = if window_us == 0 { 0 } else { self.rng.random_range(0..=window_us) };
                    return Drive::Dropped { kind, offline: Duration::from_micros(offline_us) };
                }
                _ = online_check.tick(), if limits_online && current_phase == Phase::Running => {
                    if self.should_leave_for_target() {
                        if let Err(cause) = self.send_queued(ws, codec, caught_up).await {
                            return Drive::Lost(cause);
                        }
                        let kind = self.choose_drop();
                        if kind == DropKind::Close {
                            if let Err(cause) = self.send_ack(ws, codec, &mut acked_sent).await {
                                return Drive::Lost(cause);
                            }
                        }
                        return Drive::Dropped { kind, offline: ONLINE_CHECK };
                    }
                }
                (phase, open) = &mut phase_changed => {
                    let done = !open || *phase.borrow() == Phase::Done;
                    phase_changed.set(next_change(phase));
                    if done {
                        // Final ack so stored cursors end where the device is.
                        // The run is over either way.
                        let _ = self.send_ack(ws, codec, &mut acked_sent).await; // failure only loses a cursor update at run end
                        return Drive::RunOver;
                    }
                    self.check_drained();
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
            .unwrap_or(Position::ZERO);
        if head.is_zero()
            || self.recovery_failed_quiet
            || self.last_id.is_some_and(|last| last >= head)
        {
            self.drained = true;
            self.ctx.drained[self.spec.index].store(true, Ordering::Relaxed);
            self.ctx.counters.drained.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_event(
        &mut self,
        codec: &Codec,
        mut event: EventKind,
        caught_up: &mut bool,
        unacked: &mut usize,
    ) -> FrameOutcome {
        let ready = !*caught_up && codec.is_ready_signal(&event);
        let mut outcome = FrameOutcome::Continue;
        match &mut event {
            EventKind::Connected { epoch, claim, .. } => {
                self.recovery_failed_quiet =
                    matches!(claim, ResumeClaim::Recovered { recovered: false });
                if epoch.is_some() {
                    self.epoch.clone_from(epoch);
                }
                self.ctx
                    .live
                    .connect_to_hello
                    .record(self.ctx.clock.now_us().saturating_sub(self.connect_at_us));
            }
            EventKind::Message { id, replay, .. } => {
                let id = *id;
                // The codec may know it is a replay (Socket.IO's missed
                // packets come with the connect reply, the ready signal).
                *replay = *replay || !*caught_up;
                self.last_received = Some(id);
                self.recovery_failed_quiet = false;
                self.ctx.counters.deliveries.fetch_add(1, Ordering::Relaxed);
                if self.last_id.is_none_or(|last| id > last) {
                    self.last_id = Some(id);
                }
                if self.socket_last.is_none_or(|last| id > last) {
                    self.socket_last = Some(id);
                } else {
                    self.ctx
                        .live
                        .repeats_within_socket
                        .fetch_add(1, Ordering::Relaxed);
                }
                *unacked += 1;
            }
            EventKind::SendOutcome {
                client_msg_id,
                outcome: SendOutcome::Acked { id, .. },
            } => {
                if let Some(acked) = self.pending.remove(client_msg_id) {
                    self.ctx
                        .live
                        .ack
                        .record(self.ctx.clock.now_us().saturating_sub(acked.due_us));
                    self.pending_order
                        .retain(|pending| pending != client_msg_id);
                    self.ctx
                        .counters
                        .outstanding_sends
                        .fetch_sub(1, Ordering::Relaxed);
                    self.ctx.counters.acks.fetch_add(1, Ordering::Relaxed);
                    self.ctx.note_acked(self.spec.conversation, *id);
                }
            }
            // Definite or not, the answer is the same: retry with the same
            // client_msg_id, which the server deduplicates. The history
            // keeps the outcome, and the checker holds a definite one to
            // the log. A rejected send is not retried on this socket.
            EventKind::SendOutcome {
                outcome: SendOutcome::DefiniteFailure { .. } | SendOutcome::Indeterminate { .. },
                ..
            } => outcome = FrameOutcome::RetrySoon,
            _ => {}
        }
        self.record(event);
        if ready {
            *caught_up = true;
            outcome = FrameOutcome::CaughtUp;
        }
        outcome
    }

    async fn write(&mut self, ws: &mut Ws, frame: Message) -> Result<(), DisconnectCause> {
        ws.send(frame).await.map_err(|err| DisconnectCause::Error {
            message: err.to_string(),
        })
    }

    /// Sends the orders already queued before a planned drop or a storm's:
    /// they fell due while the socket was online. `select!` picks among
    /// ready branches at random, so a drop due in the same instant could
    /// win and hold such a send for the whole offline time, counted as
    /// live latency from its due time (a 1.89 s delivery in a churn-1k
    /// run: docs/performance.md, "Re-measurement after the seventh pass").
    /// Orders are only taken once caught up; before that none are queued
    /// for this socket.
    async fn send_queued(
        &mut self,
        ws: &mut Ws,
        codec: &mut Codec,
        caught_up: bool,
    ) -> Result<(), DisconnectCause> {
        if !caught_up {
            return Ok(());
        }
        for order in self.orders.take_queued() {
            self.send_new(ws, codec, order).await?;
        }
        Ok(())
    }

    async fn send_new(
        &mut self,
        ws: &mut Ws,
        codec: &mut Codec,
        order: SendOrder,
    ) -> Result<(), DisconnectCause> {
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
        self.write_send(ws, codec, order.client_msg_id).await
    }

    async fn write_send(
        &mut self,
        ws: &mut Ws,
        codec: &mut Codec,
        client_msg_id: Uuid,
    ) -> Result<(), DisconnectCause> {
        let Some(pending) = self.pending.get(&client_msg_id) else {
            return Ok(());
        };
        let frame = codec.encode_send(client_msg_id, &pending.body);
        let (hash, len, due_us, attempt) = (
            body_hash(&pending.body),
            pending.body.len() as u32,
            pending.due_us,
            pending.attempt,
        );
        self.record(EventKind::Send {
            client_msg_id,
            body_hash: hash,
            body_len: len,
            due_us,
            attempt,
        });
        self.write(ws, frame).await
    }

    /// Re-sends every unacked send with the same client_msg_id (the server
    /// must not append it twice).
    async fn resend_pending(
        &mut self,
        ws: &mut Ws,
        codec: &mut Codec,
    ) -> Result<(), DisconnectCause> {
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
            self.write_send(ws, codec, client_msg_id).await?;
        }
        Ok(())
    }

    async fn send_ack(
        &mut self,
        ws: &mut Ws,
        codec: &mut Codec,
        acked_sent: &mut Option<Position>,
    ) -> Result<(), DisconnectCause> {
        let Some(last) = self.socket_last else {
            return Ok(());
        };
        if acked_sent.is_some_and(|sent| sent >= last) {
            return Ok(());
        }
        let Some(frame) = codec.encode_ack(last) else {
            // The protocol has no client acks.
            return Ok(());
        };
        *acked_sent = Some(last);
        self.record(EventKind::AckSent { id: last });
        self.write(ws, frame).await
    }
}

/// Logs (debug) the size of a connection's futures once per kind: they
/// are per-socket memory (docs/performance.md, "Client, third pass").
fn log_future_size<T>(what: &'static str, future: &T) {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if !seen.contains(&what) {
        seen.push(what);
        tracing::debug!(what, bytes = std::mem::size_of_val(future), "future size");
    }
}

/// Waits for the next change of a watch channel, owning its receiver so
/// the future can live across the `select!` loop (and be replaced in
/// place). Returns the receiver and whether the sender is still there.
async fn next_change<T>(mut receiver: watch::Receiver<T>) -> (watch::Receiver<T>, bool) {
    let open = receiver.changed().await.is_ok();
    (receiver, open)
}

enum Drive {
    Planned(DropKind),
    /// Dropped on the load shape's orders (storm, online target): offline
    /// for `offline`, not for a churn sample.
    Dropped {
        kind: DropKind,
        offline: Duration,
    },
    Lost(DisconnectCause),
    RunOver,
}

enum FrameOutcome {
    Continue,
    CaughtUp,
    RetrySoon,
}
