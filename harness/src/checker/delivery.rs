//! What each device received against what the log says it was owed:
//! `lost`, `duplicate`, `redelivered`, `reorder` and `skip`.
//!
//! One pass over the events in recording order: each event goes to the
//! small state of its (device, conversation) slot, which walks that slot's
//! sockets in order exactly as a slot-by-slot walk would (the recording
//! already has each slot's events in (socket, time) order; the rare slot
//! whose events are not is gathered and sorted on its own). Per slot, the
//! log positions the device received are kept as runs of positions with
//! the last socket that delivered them (`Received`), so memory grows with
//! slots and reconnects, not with events. Receipts of wiped messages (no
//! log position) use a small map instead.

use crate::history::{CursorOrigin, GapReason, Position};
use fnv::FnvHashMap;

use super::ack_proof::AckProof;
use super::appends::{Receipt, ReceiptJudge, Received};
use super::findings::{device_label, Findings, Site};
use super::index::{ConvLog, Slot, SlotTable, MAX_CHECKED_EVENTS};
use super::outcome::{AnomalyKind, MAX_EXAMPLES};
use super::{claims, gaps};
use crate::history::{Event, EventKind, ResumeClaim, ResumeMode, RunMeta};

pub(crate) struct DeliveryInput<'a> {
    pub meta: &'a RunMeta,
    pub slots: &'a SlotTable,
    /// Per conversation: whether hellos ever announced two epochs.
    pub epochs_vary: &'a [bool],
    pub judge: &'a ReceiptJudge<'a>,
    pub drain_complete: bool,
    /// How long the target keeps messages, if known (see `gaps`).
    pub retention: Option<std::time::Duration>,
}

#[derive(Debug, Default)]
pub(crate) struct DeliveryStats {
    pub deliveries: u64,
    pub sockets: u64,
    pub devices: u64,
    pub declared_gaps: u64,
}

/// `last_socket` value of a position the device never received.
const NOT_RECEIVED: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct HelloSeen {
    resume_from: Position,
    cursor: CursorOrigin,
    epoch: EpochId,
}

/// An epoch string, interned: socket states outlive the events they saw.
type EpochId = u32;

/// The epochs seen so far; id 0 is the empty epoch (none given).
struct Epochs {
    ids: FnvHashMap<String, EpochId>,
    names: Vec<String>,
}

impl Epochs {
    fn new() -> Self {
        Epochs {
            ids: FnvHashMap::default(),
            names: vec![String::new()],
        }
    }

    fn intern(&mut self, epoch: &str) -> EpochId {
        if epoch.is_empty() {
            return 0;
        }
        if let Some(&id) = self.ids.get(epoch) {
            return id;
        }
        let id = self.names.len() as EpochId;
        self.names.push(epoch.to_string());
        self.ids.insert(epoch.to_string(), id);
        id
    }

    fn name(&self, id: EpochId) -> &str {
        &self.names[id as usize]
    }
}

/// A position a socket jumped over; a skip unless the socket delivers it
/// later (then it was a reorder, reported as such).
struct PendingSkip {
    position: usize,
    at_us: u64,
    /// The id whose delivery jumped over the position.
    past: Position,
}

/// The fields every receipt reads come first, in declaration order
/// (`repr(C)`), so a receipt touches one or two cache lines of its socket.
#[repr(C)]
struct SocketScan {
    number: u32,
    recv_before_hello: bool,
    /// A declared gap whose end the protocol did not name (Socket.IO
    /// `recovered: false`): it ends at the socket's first delivery; if the
    /// socket delivers nothing, it excuses only messages first sent before
    /// the socket's hello (see `close_open_gap`).
    open_gap: Option<GapReason>,
    /// The log position after the previous receipt's (a lookup hint).
    next_position: usize,
    /// First log position this socket still owes; `None` while the socket
    /// has made no promise yet (no hello), so nothing is owed.
    next_owed: Option<usize>,
    /// The previous delivered id, for `reorder`.
    prev: Option<Position>,
    hello: Option<HelloSeen>,
    /// The epoch the device sent with its last connect attempt (the epoch
    /// of a client cursor).
    connect_epoch: Option<EpochId>,
    /// Where a gap that came before the hello moved delivery to.
    gap_floor: Option<usize>,
    /// `first_available` of an `epoch_changed` gap: the device's cursor
    /// belonged to a destroyed stream, so the replay may repeat what it had.
    epoch_replay_from: Option<Position>,
    caught_up: Option<Position>,
    /// When the hello arrived.
    hello_at_us: Option<u64>,
    /// When the device asked for this socket (its `Connect` event).
    connect_at_us: Option<u64>,
    /// A stored-cursor device whose hello said `cursor: "none"` although it
    /// had never sent an ack in this conversation: the server had nothing
    /// to store, so the replay from the start owes at-least-once only.
    nothing_to_store: bool,
    /// Whether this socket leaves the server a cursor to store.
    ack_proof: AckProof,
}

impl SocketScan {
    fn new(number: u32) -> Self {
        SocketScan {
            number,
            connect_epoch: None,
            hello: None,
            next_owed: None,
            gap_floor: None,
            epoch_replay_from: None,
            prev: None,
            next_position: 0,
            caught_up: None,
            recv_before_hello: false,
            open_gap: None,
            hello_at_us: None,
            connect_at_us: None,
            nothing_to_store: false,
            ack_proof: AckProof::default(),
        }
    }
}

#[derive(Default)]
struct SlotSummary {
    /// The first hello's `resume_from`: the device is owed what follows.
    initial: Option<Position>,
    max_position: Option<usize>,
    /// Number of the last socket and what it caught up to.
    last_socket: Option<(u32, Option<Position>)>,
    /// A socket of the device in this conversation left the server a
    /// cursor to store: it provably read an ack and did not vanish before
    /// its save (see `ack_proof`).
    acked: bool,
}

/// The log positions one slot received, as runs of consecutive positions
/// with the last socket that delivered each: a socket mostly delivers a
/// contiguous stretch, so there are about as many runs as sockets.
///
/// The last run is kept inline (`open`), beside the slot's other state:
/// almost every receipt only reads and extends it, and a run in the
/// vector's heap block costs a cache miss per receipt once there are
/// thousands of slots.
#[derive(Default)]
#[repr(C)]
struct ReceivedRuns {
    /// The last run, if any position was received.
    open: Option<(u32, u32, u32)>,
    /// Sorted, disjoint, non-empty `(start, end, socket)`, all before
    /// `open`; adjacent runs of one socket are merged.
    runs: Vec<(u32, u32, u32)>,
}

impl ReceivedRuns {
    /// The last socket that delivered `position`, or `NOT_RECEIVED`.
    fn get(&self, position: usize) -> u32 {
        let position = position as u32;
        if let Some((start, end, socket)) = self.open {
            if position >= start {
                return if position < end { socket } else { NOT_RECEIVED };
            }
        }
        let ix = self.runs.partition_point(|run| run.0 <= position);
        match ix.checked_sub(1).map(|ix| self.runs[ix]) {
            Some((_, end, socket)) if position < end => socket,
            _ => NOT_RECEIVED,
        }
    }

    /// Records that `socket` delivered `position`.
    fn set(&mut self, position: usize, socket: u32) {
        let position = position as u32;
        let Some(open) = self.open.as_mut() else {
            self.open = Some((position, position + 1, socket));
            return;
        };
        // The common case: the next position on the same socket.
        if open.1 == position && open.2 == socket {
            open.1 += 1;
            return;
        }
        if open.1 < position || (open.1 == position && open.2 != socket) {
            self.runs.push(*open);
            *open = (position, position + 1, socket);
            return;
        }
        // Inside or before the open run: edit the whole list, then take
        // its last run back out.
        self.runs.push(*open);
        self.set_inside(position, socket);
        self.open = self.runs.pop();
    }

    /// `set` for a position at or before the last run's end.
    fn set_inside(&mut self, position: u32, socket: u32) {
        let ix = self.runs.partition_point(|run| run.0 <= position);
        if let Some(at) = ix.checked_sub(1) {
            let (start, end, old) = self.runs[at];
            if position < end {
                if old == socket {
                    return;
                }
                // Split the run around the position.
                let mut pieces = Vec::with_capacity(3);
                if start < position {
                    pieces.push((start, position, old));
                }
                pieces.push((position, position + 1, socket));
                if position + 1 < end {
                    pieces.push((position + 1, end, old));
                }
                self.runs.splice(at..=at, pieces);
                self.merge_around(position);
                return;
            }
        }
        self.runs.insert(ix, (position, position + 1, socket));
        self.merge_around(position);
    }

    /// Merges the run holding `position` with touching runs of its socket.
    fn merge_around(&mut self, position: u32) {
        let ix = self.runs.partition_point(|run| run.0 <= position) - 1;
        if ix + 1 < self.runs.len() {
            let (next_start, next_end, next_socket) = self.runs[ix + 1];
            if self.runs[ix].1 == next_start && self.runs[ix].2 == next_socket {
                self.runs[ix].1 = next_end;
                self.runs.remove(ix + 1);
            }
        }
        if ix > 0 {
            let (start, end, socket) = self.runs[ix];
            if self.runs[ix - 1].1 == start && self.runs[ix - 1].2 == socket {
                self.runs[ix - 1].1 = end;
                self.runs.remove(ix);
            }
        }
    }
}

/// Everything the delivery checks keep about one slot while the events
/// stream past, besides its open socket (kept apart, so the two can be
/// borrowed together). What every receipt touches comes first (`repr(C)`).
#[derive(Default)]
#[repr(C)]
struct SlotState {
    /// Findings this slot recorded so far (their order, see `Findings`).
    findings_recorded: u32,
    received: ReceivedRuns,
    summary: SlotSummary,
    /// The last socket for receipts of wiped messages, which have no
    /// position.
    vanished_last_socket: FnvHashMap<Position, u32>,
    declared: Vec<(usize, usize)>,
    /// Gaps of this slot that the log proves false (see `gaps`).
    false_gaps: Vec<gaps::FalseGap>,
    pending: Vec<PendingSkip>,
}

struct Scanner<'a, 'f> {
    input: &'a DeliveryInput<'a>,
    findings: &'a mut Findings<'f>,
    stats: DeliveryStats,
    epochs: Epochs,
    sockets_without_hello: u64,
    unplaced_receipts: u64,
    outstanding_notes: Vec<String>,
    outstanding_pairs: u64,
    outstanding_messages: u64,
}

/// Runs the delivery checks over `events` (the history in recording
/// order); adds to `reasons` what could not be judged.
pub(crate) fn check_deliveries<E: std::borrow::Borrow<Event>>(
    input: &DeliveryInput,
    events: impl Iterator<Item = E>,
    findings: &mut Findings,
    reasons: &mut Vec<String>,
) -> DeliveryStats {
    let mut scanner = Scanner {
        input,
        findings,
        stats: DeliveryStats::default(),
        epochs: Epochs::new(),
        sockets_without_hello: 0,
        unplaced_receipts: 0,
        outstanding_notes: Vec::new(),
        outstanding_pairs: 0,
        outstanding_messages: 0,
    };
    let table = input.slots;
    let mut states: Vec<SlotState> = table.slots.iter().map(|_| SlotState::default()).collect();
    let mut sockets: Vec<Option<SocketScan>> = table.slots.iter().map(|_| None).collect();
    // The events of slots the recording has out of order, sorted below.
    let mut gathered: FnvHashMap<u32, Vec<Event>> = FnvHashMap::default();
    for event in events.take(MAX_CHECKED_EVENTS as usize) {
        let event = event.borrow();
        let Some(slot) = table.slot_of(event) else {
            continue;
        };
        if table.disordered[slot as usize] {
            gathered.entry(slot).or_default().push(event.clone());
        } else {
            let ix = slot as usize;
            scanner.step(slot, &mut states[ix], &mut sockets[ix], event);
        }
    }
    for (slot, mut events) in gathered {
        // Stable: equal (socket, time) keep their recording order.
        events.sort_by_key(|event| (event.socket, event.at_us));
        for event in &events {
            let ix = slot as usize;
            scanner.step(slot, &mut states[ix], &mut sockets[ix], event);
        }
    }
    let mut device_seen = vec![false; input.meta.devices.len()];
    for (ix, (state, socket)) in states.iter_mut().zip(&mut sockets).enumerate() {
        let slot = &table.slots[ix];
        device_seen[slot.device as usize] = true;
        scanner.finish_slot(ix as u32, slot, state, socket.take());
    }
    scanner.findings.after_deliveries();
    scanner.stats.devices = device_seen.iter().filter(|seen| **seen).count() as u64;
    scanner.explain_unchecked(reasons);
    scanner.stats
}

impl Scanner<'_, '_> {
    /// One event of slot `slot_ix`, in the slot's (socket, time) order.
    fn step(
        &mut self,
        slot_ix: u32,
        state: &mut SlotState,
        socket: &mut Option<SocketScan>,
        event: &Event,
    ) {
        let input = self.input;
        let slot = &input.slots.slots[slot_ix as usize];
        let conv = &input.judge.log.conversations[slot.conversation as usize];
        self.findings.enter_slot(slot_ix, state.findings_recorded);
        if socket
            .as_ref()
            .is_some_and(|open| open.number != event.socket)
        {
            if let Some(done) = socket.take() {
                self.finish_socket(slot, conv, state, done);
            }
        }
        // In place: a socket's state is too large to move per event.
        let current = socket.get_or_insert_with(|| SocketScan::new(event.socket));
        self.on_event(slot, conv, state, current, event);
        state.findings_recorded = self.findings.slot_local(slot_ix);
    }

    fn on_event(
        &mut self,
        slot: &Slot,
        conv: &ConvLog,
        state: &mut SlotState,
        current: &mut SocketScan,
        event: &Event,
    ) {
        if current.ack_proof.on_event(&event.kind) {
            state.summary.acked = true;
        }
        match &event.kind {
            EventKind::Connect { epoch, .. } => {
                current.connect_epoch = epoch.as_deref().map(|epoch| self.epochs.intern(epoch));
                current.connect_at_us = Some(event.at_us);
            }
            EventKind::Connected { claim, epoch, .. } => {
                let epoch = self.epochs.intern(epoch.as_deref().unwrap_or(""));
                let hello = match *claim {
                    ResumeClaim::Cursor { from, origin } => HelloSeen {
                        resume_from: from,
                        cursor: origin,
                        epoch,
                    },
                    // No position named: the claim is about the
                    // device's own cursor (its highest receipt so far),
                    // exactly once after it; see docs/adapters.md.
                    ResumeClaim::Recovered { recovered } => {
                        if !recovered {
                            current.open_gap = Some(GapReason::RecoveryFailed);
                            current.hello_at_us.get_or_insert(event.at_us);
                        }
                        HelloSeen {
                            resume_from: state
                                .summary
                                .max_position
                                .map_or(Position::ZERO, |position| conv.ids[position]),
                            cursor: CursorOrigin::Client,
                            epoch,
                        }
                    }
                };
                on_hello(conv, current, hello, &mut state.summary);
            }
            EventKind::Gap {
                resume_from,
                first_available,
                reason,
            } => {
                let resume_from = resume_from
                    .or(current.hello.map(|hello| hello.resume_from))
                    .unwrap_or(Position::ZERO);
                match first_available {
                    Some(first_available) => {
                        let gap = gaps::DeclaredGap {
                            socket: current.number,
                            at_us: event.at_us,
                            resume_from,
                            first_available: *first_available,
                            reason: *reason,
                        };
                        self.on_gap(slot, conv, state, current, gap);
                    }
                    // The protocol does not say where delivery restarts:
                    // the socket's first delivery does (see `open_gap`).
                    None => current.open_gap = Some(*reason),
                }
            }
            EventKind::Message {
                id,
                sender_id,
                client_msg_id,
                body_hash,
                ..
            } => {
                let received = Received {
                    id: *id,
                    sender_id: *sender_id,
                    client_msg_id: *client_msg_id,
                    body_hash: *body_hash,
                    position_hint: current.next_position,
                };
                if let Some(reason) = current.open_gap.take() {
                    let gap = gaps::DeclaredGap {
                        socket: current.number,
                        at_us: event.at_us,
                        resume_from: current
                            .hello
                            .map_or(Position::ZERO, |hello| hello.resume_from),
                        first_available: *id,
                        reason,
                    };
                    self.on_gap(slot, conv, state, current, gap);
                }
                self.on_recv(slot, state, current, event, &received);
            }
            EventKind::CaughtUp { last_id, .. } => {
                if current.caught_up.is_none() {
                    self.on_caught_up(slot, conv, current, event.at_us, *last_id);
                }
                current.caught_up = Some(*last_id);
            }
            _ => {}
        }
    }

    /// After the last event: the slot's open socket, then `lost`.
    fn finish_slot(
        &mut self,
        slot_ix: u32,
        slot: &Slot,
        state: &mut SlotState,
        socket: Option<SocketScan>,
    ) {
        let input = self.input;
        let conv = &input.judge.log.conversations[slot.conversation as usize];
        self.findings.enter_slot(slot_ix, state.findings_recorded);
        if let Some(done) = socket {
            self.finish_socket(slot, conv, state, done);
        }
        self.check_lost(slot, conv, state);
        state.findings_recorded = self.findings.slot_local(slot_ix);
    }

    fn on_gap(
        &mut self,
        slot: &Slot,
        conv: &ConvLog,
        state: &mut SlotState,
        current: &mut SocketScan,
        gap: gaps::DeclaredGap,
    ) {
        self.stats.declared_gaps += 1;
        if gap.reason == GapReason::EpochChanged {
            current.epoch_replay_from = Some(gap.first_available);
        }
        let start = conv.first_after(gap.resume_from);
        let end = conv.first_at_or_after(gap.first_available);
        if start < end {
            let judge = gaps::GapJudge {
                meta: self.input.meta,
                source: self.input.judge.log.source,
                retention: self.input.retention,
                epochs_vary: self.input.epochs_vary[slot.conversation as usize],
            };
            let epochs = &self.epochs;
            let cursor = current
                .hello
                .map(|hello| (hello.cursor, epochs.name(hello.epoch)));
            let sent_epoch = current.connect_epoch.map(|epoch| epochs.name(epoch));
            match judge.judge(conv, start..end, &gap, cursor, sent_epoch) {
                Some(false_gap) => {
                    if start < false_gap.positions.start {
                        state.declared.push((start, false_gap.positions.start));
                    }
                    state.false_gaps.push(false_gap);
                }
                None => state.declared.push((start, end)),
            }
        }
        // Delivery restarts at `first_available`, even below `resume_from`
        // (a recreated stream after an epoch change).
        current.next_owed = match (current.hello, current.prev, current.next_owed) {
            (None, _, _) => {
                current.gap_floor = Some(end);
                None
            }
            (Some(_), None, _) => Some(end),
            (Some(_), Some(_), owed) => owed.map(|owed| owed.max(end)),
        };
    }

    fn on_recv(
        &mut self,
        slot: &Slot,
        state: &mut SlotState,
        current: &mut SocketScan,
        event: &Event,
        received: &Received,
    ) {
        self.stats.deliveries += 1;
        let site = Site {
            device: Some(slot.device),
            conversation: slot.conversation,
            socket: Some(current.number),
            at_us: Some(event.at_us),
            client_msg_id: Some(received.client_msg_id),
        };
        let position = match self.input.judge.judge(received, site, self.findings) {
            Receipt::InLog(position) => Some(position),
            Receipt::Vanished => None,
            Receipt::Phantom | Receipt::Leaked => return,
            Receipt::Unplaced => {
                self.unplaced_receipts += 1;
                return;
            }
        };
        if current.hello.is_none() {
            current.recv_before_hello = true;
        }
        let meta = self.input.meta;
        let id = received.id;
        let socket = current.number;
        let previous_socket = match position {
            Some(position) => state.received.get(position),
            None => state
                .vanished_last_socket
                .get(&id)
                .copied()
                .unwrap_or(NOT_RECEIVED),
        };
        if previous_socket == socket {
            // A repeat within one socket is a duplicate, never a reorder
            // too, and never an allowed redelivery.
            self.findings.record(AnomalyKind::Duplicate, site, || {
                let detail = format!(
                    "{} received {id} twice on socket {socket} in conversation {}",
                    device_label(meta, slot.device),
                    slot.conversation
                );
                (vec![id], detail)
            });
            return;
        }
        if let Some(prev) = current.prev.filter(|prev| id < *prev) {
            self.findings.record(AnomalyKind::Reorder, site, || {
                let detail = format!(
                    "{} received {id} after {prev} on socket {socket} in conversation {}",
                    device_label(meta, slot.device),
                    slot.conversation
                );
                (vec![prev, id], detail)
            });
        }
        current.prev = Some(id);
        if previous_socket != NOT_RECEIVED {
            self.on_repeat(slot, current, id, previous_socket, site);
        }
        let Some(position) = position else {
            // A wiped message: owed by no one (skip and lost concern log
            // ids only), so it must not move the socket's owed pointer.
            state.vanished_last_socket.insert(id, socket);
            return;
        };
        state.received.set(position, socket);
        current.next_position = position + 1;
        state.summary.max_position = state.summary.max_position.max(Some(position));
        if let Some(next_owed) = current.next_owed {
            if position >= next_owed {
                state
                    .pending
                    .extend((next_owed..position).map(|skipped| PendingSkip {
                        position: skipped,
                        at_us: event.at_us,
                        past: id,
                    }));
                current.next_owed = Some(position + 1);
            }
        }
    }

    fn on_caught_up(
        &mut self,
        slot: &Slot,
        conv: &ConvLog,
        current: &SocketScan,
        at_us: u64,
        last_id: Position,
    ) {
        let Some(connect_at_us) = current.connect_at_us else {
            return;
        };
        let facts = &self.input.judge.facts[slot.conversation as usize];
        let acks = claims::AckTimes {
            acked_at_us: &facts.acked_at_us,
            acked_from: &facts.acked_from,
        };
        let Some(false_claim) = claims::judge(conv, &acks, connect_at_us, last_id) else {
            return;
        };
        let site = Site {
            device: Some(slot.device),
            conversation: slot.conversation,
            socket: Some(current.number),
            at_us: Some(at_us),
            client_msg_id: None,
        };
        let meta = self.input.meta;
        let socket = current.number;
        self.findings.record(AnomalyKind::FalseCaughtUp, site, || {
            let detail = format!(
                "{}: socket {socket} in conversation {} {}",
                device_label(meta, slot.device),
                slot.conversation,
                false_claim.what
            );
            (false_claim.ids, detail)
        });
    }

    /// A message the device already had, delivered again on a later socket.
    fn on_repeat(
        &mut self,
        slot: &Slot,
        current: &SocketScan,
        id: Position,
        previous_socket: u32,
        site: Site,
    ) {
        let meta = self.input.meta;
        let mode = meta.devices[slot.device as usize].resume_mode;
        // At-least-once only covers what lies above the stored cursor the
        // server itself announced.
        let stored_cursor = current
            .hello
            .filter(|hello| hello.cursor == CursorOrigin::Stored)
            .map(|hello| hello.resume_from);
        let above_stored_cursor =
            mode == ResumeMode::StoredCursor && stored_cursor.is_some_and(|cursor| id > cursor);
        // A device none of whose acks provably reached a server that lived
        // to save it (it dropped before its first ack, reset right after
        // it, or its server crashed) left no cursor to store; "none" is
        // then the truth and the replay from the start may repeat what that
        // socket had. Otherwise "none" means the server lost or never kept
        // the cursor: a repeat is a duplicate (seed bug 1, `new-client-id`).
        let never_acked = mode == ResumeMode::StoredCursor && current.nothing_to_store;
        let wiped_cursor = self.input.judge.allow_lost_ack
            && wiped_cursor(mode, current).is_some_and(|from| id >= from);
        let kind = if above_stored_cursor || wiped_cursor || never_acked {
            AnomalyKind::Redelivered
        } else {
            AnomalyKind::Duplicate
        };
        let socket = current.number;
        let resumed = current.hello.map(|hello| (hello.resume_from, hello.cursor));
        self.findings.record(kind, site, || {
            let how = match resumed {
                Some((from, cursor)) => format!(
                    "after resuming from {from} ({} cursor)",
                    cursor_name(cursor)
                ),
                None => "before any hello".to_string(),
            };
            let why = if wiped_cursor {
                "; its cursor was destroyed with the Redis data"
            } else if never_acked {
                "; no ack of it had provably reached a server that lived to save it, so there was no cursor to store"
            } else {
                ""
            };
            let detail = format!(
                "{} received {id} again on socket {socket} {how} in conversation {}; \
                 it already had it from socket {previous_socket}{why}",
                device_label(meta, slot.device),
                slot.conversation
            );
            (vec![id], detail)
        });
    }

    /// A socket that declared a failed recovery and then delivered nothing:
    /// the gap covers what was first sent before its hello (the server
    /// never had to deliver that), and ends at the first message sent
    /// after it, which was owed like any other.
    fn close_open_gap(
        &mut self,
        slot: &Slot,
        conv: &ConvLog,
        state: &mut SlotState,
        done: &mut SocketScan,
    ) {
        let (Some(reason), Some(hello), Some(hello_at_us)) =
            (done.open_gap.take(), done.hello, done.hello_at_us)
        else {
            return;
        };
        let messages = &self.input.judge.messages.by_key;
        let start = conv.first_after(hello.resume_from);
        let end = (start..conv.len())
            .find(|&position| {
                let key = (slot.conversation, conv.entries[position].client_msg_id);
                messages
                    .get(&key)
                    .and_then(|info| info.send)
                    .is_some_and(|send| send.at_us >= hello_at_us)
            })
            .unwrap_or(conv.len());
        let first_available = conv.ids.get(end).copied().unwrap_or(Position::MAX);
        let gap = gaps::DeclaredGap {
            socket: done.number,
            at_us: hello_at_us,
            resume_from: hello.resume_from,
            first_available,
            reason,
        };
        self.on_gap(slot, conv, state, done, gap);
    }

    fn finish_socket(
        &mut self,
        slot: &Slot,
        conv: &ConvLog,
        state: &mut SlotState,
        mut done: SocketScan,
    ) {
        self.close_open_gap(slot, conv, state, &mut done);
        self.stats.sockets += 1;
        if done.recv_before_hello {
            self.sockets_without_hello += 1;
        }
        state.summary.last_socket = Some((done.number, done.caught_up));
        let meta = self.input.meta;
        let mut pending = std::mem::take(&mut state.pending);
        for skip in pending.drain(..) {
            if state.received.get(skip.position) == done.number {
                continue;
            }
            let entry = conv.entries[skip.position];
            let skipped = entry.id;
            let site = Site {
                device: Some(slot.device),
                conversation: slot.conversation,
                socket: Some(done.number),
                at_us: Some(skip.at_us),
                client_msg_id: Some(entry.client_msg_id),
            };
            let resumed = done.hello.map(|hello| hello.resume_from);
            self.findings.record(AnomalyKind::Skip, site, || {
                let from = resumed.map_or_else(String::new, |from| {
                    format!(" (it resumed after {from})")
                });
                let detail = format!(
                    "{} socket {} in conversation {} delivered {} without ever delivering {skipped}{from}",
                    device_label(meta, slot.device),
                    done.number,
                    slot.conversation,
                    skip.past
                );
                (vec![skipped, skip.past], detail)
            });
        }
        // Hand the (now empty) allocation back for the next socket.
        state.pending = pending;
    }

    fn check_lost(&mut self, slot: &Slot, conv: &ConvLog, state: &mut SlotState) {
        let meta = self.input.meta;
        let summary = &state.summary;
        let facts = &self.input.judge.facts[slot.conversation as usize];
        let start = summary
            .initial
            .map_or(0, |initial| conv.first_after(initial));
        let declared = merge_ranges(&mut state.declared);
        let mut declared_ix = 0;
        let mut outstanding = 0u64;
        let mut first_outstanding = None;
        for position in start..conv.len() {
            if state.received.get(position) != NOT_RECEIVED {
                continue;
            }
            while declared
                .get(declared_ix)
                .is_some_and(|&(_, end)| end <= position)
            {
                declared_ix += 1;
            }
            if declared
                .get(declared_ix)
                .is_some_and(|&(begin, _)| begin <= position)
            {
                continue;
            }
            if let Some(false_gap) = state.false_gaps.iter().find(|gap| gap.covers(position)) {
                // The device moved past it on the server's (false) word, so
                // it is loss whether or not the drain completed.
                let entry = conv.entries[position];
                let site = Site {
                    device: Some(slot.device),
                    conversation: slot.conversation,
                    socket: Some(false_gap.gap.socket),
                    at_us: Some(false_gap.gap.at_us),
                    client_msg_id: Some(entry.client_msg_id),
                };
                self.findings.record(AnomalyKind::FalseGap, site, || {
                    let detail = false_gap.describe(meta, slot.device, slot.conversation, entry.id);
                    (
                        vec![
                            entry.id,
                            false_gap.gap.resume_from,
                            false_gap.gap.first_available,
                        ],
                        detail,
                    )
                });
                continue;
            }
            // Without a complete drain, only a message the device has
            // provably moved past counts as lost; the tail is unknown.
            let moved_past = summary.max_position.is_some_and(|max| position < max);
            if !self.input.drain_complete && !moved_past {
                outstanding += 1;
                first_outstanding.get_or_insert(position);
                continue;
            }
            let entry = conv.entries[position];
            let appended_at_us = facts.appended_at_us[position];
            let site = Site {
                device: Some(slot.device),
                conversation: slot.conversation,
                socket: summary.last_socket.map(|(number, _)| number),
                at_us: (appended_at_us != u64::MAX).then_some(appended_at_us),
                client_msg_id: Some(entry.client_msg_id),
            };
            self.findings.record(AnomalyKind::Lost, site, || {
                let last = match summary.last_socket {
                    None => "it never connected".to_string(),
                    Some((number, Some(caught_up))) => {
                        format!("its last socket {number} caught up to {caught_up}")
                    }
                    Some((number, None)) => format!("its last socket {number} never caught up"),
                };
                let detail = format!(
                    "{} never received {} in conversation {}; {last}",
                    device_label(meta, slot.device),
                    entry.id,
                    slot.conversation
                );
                (vec![entry.id], detail)
            });
        }
        if let Some(first) = first_outstanding {
            self.outstanding_pairs += 1;
            self.outstanding_messages += outstanding;
            if self.outstanding_notes.len() < MAX_EXAMPLES {
                self.outstanding_notes.push(format!(
                    "{} did not catch up in conversation {}: {outstanding} messages outstanding \
                     from {}",
                    device_label(meta, slot.device),
                    slot.conversation,
                    conv.ids[first]
                ));
            }
        }
    }

    fn explain_unchecked(&mut self, reasons: &mut Vec<String>) {
        let listed = self.outstanding_notes.len() as u64;
        reasons.append(&mut self.outstanding_notes);
        if self.outstanding_pairs > listed {
            reasons.push(format!(
                "{} (device, conversation) pairs in all did not catch up: {} messages outstanding",
                self.outstanding_pairs, self.outstanding_messages
            ));
        }
        if self.sockets_without_hello > 0 {
            reasons.push(format!(
                "{} sockets delivered messages before their hello; skips on them were not checked",
                self.sockets_without_hello
            ));
        }
        if self.unplaced_receipts > 0 {
            reasons.push(format!(
                "{} receipts are missing from the rebuilt log (log and history do not belong \
                 together); they were not checked",
                self.unplaced_receipts
            ));
        }
    }
}

fn on_hello(conv: &ConvLog, current: &mut SocketScan, hello: HelloSeen, summary: &mut SlotSummary) {
    if current.hello.is_some() {
        // The first hello made the socket's promise; a second one is
        // not in the protocol and must not reset what is owed.
        return;
    }
    let resume_from = hello.resume_from;
    current.nothing_to_store = hello.cursor == CursorOrigin::None && !summary.acked;
    current.hello = Some(hello);
    summary.initial.get_or_insert(resume_from);
    if !current.recv_before_hello {
        let owed_from = current
            .gap_floor
            .unwrap_or_else(|| conv.first_after(resume_from));
        current.next_owed = Some(owed_from);
    }
}

/// Sorts and merges half-open position ranges in place.
fn merge_ranges(ranges: &mut Vec<(usize, usize)>) -> &[(usize, usize)] {
    ranges.sort_unstable();
    let mut merged = 0;
    for ix in 0..ranges.len() {
        let (begin, end) = ranges[ix];
        if merged > 0 && begin <= ranges[merged - 1].1 {
            ranges[merged - 1].1 = ranges[merged - 1].1.max(end);
        } else {
            ranges[merged] = (begin, end);
            merged += 1;
        }
    }
    ranges.truncate(merged);
    ranges
}

/// Where a socket's replay may repeat what the device had because its
/// cursor lived in Redis data that was destroyed: from `first_available`
/// after an `epoch_changed` gap, or from the start when a stored-cursor
/// device's hello found no stored cursor at all.
fn wiped_cursor(mode: ResumeMode, socket: &SocketScan) -> Option<Position> {
    let no_stored_cursor = mode == ResumeMode::StoredCursor
        && socket
            .hello
            .is_some_and(|hello| hello.cursor == CursorOrigin::None);
    match (socket.epoch_replay_from, no_stored_cursor) {
        (Some(from), _) => Some(from),
        (None, true) => Some(Position::ZERO),
        (None, false) => None,
    }
}

fn cursor_name(cursor: CursorOrigin) -> &'static str {
    match cursor {
        CursorOrigin::Client => "client",
        CursorOrigin::Stored => "stored",
        CursorOrigin::None => "no",
    }
}

#[cfg(test)]
mod tests {
    use super::merge_ranges;

    #[test]
    fn merges_overlapping_and_touching_ranges() {
        let mut ranges = vec![(5, 7), (0, 2), (1, 3), (3, 4), (9, 10)];
        assert_eq!(merge_ranges(&mut ranges), &[(0, 4), (5, 7), (9, 10)]);
        let mut empty = Vec::new();
        assert!(merge_ranges(&mut empty).is_empty());
    }
}
