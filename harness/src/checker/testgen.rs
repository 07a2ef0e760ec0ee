//! Generates valid histories (with their Redis-style log) and applies one
//! known mutation to them, each with the anomaly the checker must report.
//! Used by the checker's tests and, behind the `testgen` feature, by
//! benchmarks.
//!
//! The simulated server is correct by construction: every connected
//! socket receives every message live, and a reconnect replays exactly what
//! follows the device's cursor (client or stored), so any anomaly the
//! checker reports comes from the mutation alone.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recovery_protocol::{CursorSource, GapReason, StreamId};
use uuid::Uuid;

use super::outcome::AnomalyKind;
use crate::history::{
    ConversationInfo, ConversationIx, DeviceInfo, DeviceIx, DisconnectCause, Event, EventKind,
    History, LogEntry, LogSource, MessageLog, ResumeMode, RunMeta,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenConfig {
    pub devices: u32,
    pub conversations: u32,
    /// Simulation steps: each one sends, drops or reconnects one socket.
    pub steps: u32,
    /// Share of devices that resume with the server's stored cursor.
    pub stored_cursor_percent: u32,
    pub seed: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            devices: 4,
            conversations: 2,
            steps: 200,
            stored_cursor_percent: 50,
            seed: 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub history: History,
    pub log: MessageLog,
}

/// Stream ids with a small `seq` range, so `5-10` vs `5-9` is exercised.
fn stream_id(counter: u64) -> StreamId {
    StreamId::new(1_700_000_000_000 + counter / 12, counter % 12)
}

struct SlotSim {
    device: DeviceIx,
    conversation: ConversationIx,
    next_socket: u32,
    connected: bool,
    last_received: StreamId,
}

struct Sim {
    rng: StdRng,
    now_us: u64,
    devices: Vec<DeviceInfo>,
    events: Vec<Event>,
    logs: Vec<Vec<LogEntry>>,
    sent_counter: Vec<u64>,
    slots: Vec<SlotSim>,
    slots_of_conversation: Vec<Vec<usize>>,
}

fn random_uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

impl Sim {
    fn emit(&mut self, slot: usize, socket: u32, kind: EventKind) {
        self.now_us += self.rng.random_range(1..20);
        let info = &self.slots[slot];
        self.events.push(Event {
            at_us: self.now_us,
            device: info.device,
            conversation: info.conversation,
            socket,
            kind,
        });
    }

    fn connect(&mut self, slot: usize) {
        let info = &mut self.slots[slot];
        let socket = info.next_socket;
        info.next_socket += 1;
        let conversation = info.conversation as usize;
        let last = info.last_received;
        let device = &self.devices[info.device as usize];
        let client_id = device.client_id;
        let (last_id, cursor) = match (device.resume_mode, last.is_zero()) {
            (_, true) => (None, CursorSource::None),
            (ResumeMode::ClientCursor, false) => (Some(last), CursorSource::Client),
            (ResumeMode::StoredCursor, false) => (None, CursorSource::Stored),
        };
        let epoch = (socket > 0).then(|| "epoch-1".to_string());
        let target = "ws://127.0.0.1:1/ws".to_string();
        self.emit(
            slot,
            socket,
            EventKind::Connect {
                last_id,
                epoch,
                target,
            },
        );
        let hello = EventKind::Hello {
            client_id,
            resume_from: last,
            cursor,
            epoch: "epoch-1".into(),
        };
        self.emit(slot, socket, hello);
        let backlog: Vec<LogEntry> = self.logs[conversation]
            .iter()
            .filter(|entry| entry.id > last)
            .cloned()
            .collect();
        for entry in &backlog {
            self.deliver(slot, socket, entry, true);
        }
        let caught_up = EventKind::CaughtUp {
            last_id: self.slots[slot].last_received,
            replayed: backlog.len() as u64,
        };
        self.emit(slot, socket, caught_up);
        self.slots[slot].connected = true;
    }

    fn deliver(&mut self, slot: usize, socket: u32, entry: &LogEntry, replay: bool) {
        let recv = EventKind::Recv {
            id: entry.id,
            sender_id: entry.sender_id,
            client_msg_id: entry.client_msg_id,
            body_hash: entry.body_hash,
            body_len: 16,
            sent_at_ms: entry.id.ms,
            replay,
        };
        self.emit(slot, socket, recv);
        self.slots[slot].last_received = entry.id;
    }

    fn disconnect(&mut self, slot: usize, cause: DisconnectCause) {
        let socket = self.slots[slot].next_socket - 1;
        let last = self.slots[slot].last_received;
        if !last.is_zero() {
            // The stored cursor of a stored-cursor device is this ack.
            self.emit(slot, socket, EventKind::AckSent { id: last });
        }
        self.emit(slot, socket, EventKind::Disconnect(cause));
        self.slots[slot].connected = false;
    }

    fn send(&mut self, slot: usize) {
        let socket = self.slots[slot].next_socket - 1;
        let conversation = self.slots[slot].conversation as usize;
        let client_msg_id = random_uuid(&mut self.rng);
        let body_hash = self.rng.random();
        let due_us = self.now_us;
        let send = EventKind::Send {
            client_msg_id,
            body_hash,
            body_len: 16,
            due_us,
            attempt: 0,
        };
        self.emit(slot, socket, send);
        let id = stream_id(self.sent_counter[conversation]);
        self.sent_counter[conversation] += 1;
        let entry = LogEntry {
            id,
            sender_id: self.devices[self.slots[slot].device as usize].user_id,
            client_msg_id,
            body_hash,
        };
        self.logs[conversation].push(entry.clone());
        let ack = EventKind::Ack {
            client_msg_id,
            id,
            duplicate: false,
        };
        self.emit(slot, socket, ack);
        for member_ix in 0..self.slots_of_conversation[conversation].len() {
            let member = self.slots_of_conversation[conversation][member_ix];
            if self.slots[member].connected {
                let member_socket = self.slots[member].next_socket - 1;
                self.deliver(member, member_socket, &entry, false);
            }
        }
    }
}

/// A valid history: every device connects first, then random sends,
/// drops and reconnects, then a complete drain.
pub fn generate(config: &GenConfig) -> Generated {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let conversation_count = config.conversations.max(1);
    let conversations: Vec<ConversationInfo> = (0..conversation_count)
        .map(|_| ConversationInfo {
            conversation_id: random_uuid(&mut rng),
        })
        .collect();
    let mut devices = Vec::new();
    for _ in 0..config.devices.max(1) {
        let mut member_of: Vec<ConversationIx> = (0..conversation_count)
            .filter(|_| rng.random_bool(0.6))
            .collect();
        if member_of.is_empty() {
            member_of.push(rng.random_range(0..conversation_count));
        }
        let stored = rng.random_range(0..100) < config.stored_cursor_percent;
        devices.push(DeviceInfo {
            user_id: random_uuid(&mut rng),
            client_id: random_uuid(&mut rng),
            resume_mode: if stored {
                ResumeMode::StoredCursor
            } else {
                ResumeMode::ClientCursor
            },
            conversations: member_of,
        });
    }
    let mut slots = Vec::new();
    let mut slots_of_conversation = vec![Vec::new(); conversation_count as usize];
    for (device, info) in devices.iter().enumerate() {
        for &conversation in &info.conversations {
            slots_of_conversation[conversation as usize].push(slots.len());
            slots.push(SlotSim {
                device: device as DeviceIx,
                conversation,
                next_socket: 0,
                connected: false,
                last_received: StreamId::ZERO,
            });
        }
    }
    let mut sim = Sim {
        rng,
        now_us: 0,
        devices,
        events: Vec::new(),
        logs: vec![Vec::new(); conversation_count as usize],
        sent_counter: vec![0; conversation_count as usize],
        slots,
        slots_of_conversation,
    };
    for slot in 0..sim.slots.len() {
        sim.connect(slot);
    }
    for _ in 0..config.steps {
        let slot = sim.rng.random_range(0..sim.slots.len());
        if !sim.slots[slot].connected {
            sim.connect(slot);
        } else if sim.rng.random_range(0..100) < 75 {
            sim.send(slot);
        } else {
            let cause = if sim.rng.random_bool(0.5) {
                DisconnectCause::ClientClose
            } else {
                DisconnectCause::ClientAbrupt
            };
            sim.disconnect(slot, cause);
        }
    }
    for slot in 0..sim.slots.len() {
        if !sim.slots[slot].connected {
            sim.connect(slot);
        }
    }
    for slot in 0..sim.slots.len() {
        sim.disconnect(slot, DisconnectCause::RunEnd);
    }
    let meta = RunMeta {
        faults: Vec::new(),
        scenario_name: "generated".into(),
        seed: config.seed,
        started_at_unix_ms: 1_700_000_000_000,
        devices: sim.devices,
        conversations,
    };
    Generated {
        history: History {
            meta,
            events: sim.events,
        },
        log: MessageLog {
            source: LogSource::Redis,
            conversations: sim.logs,
        },
    }
}

/// One known way to break a valid history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Remove one receipt: `lost`, plus `skip` if its socket delivered a
    /// later id.
    DropRecv,
    /// Deliver one receipt twice in a row: `duplicate`.
    DuplicateRecv,
    /// Swap two consecutive receipts of a socket: `reorder`.
    SwapRecvs,
    /// Move a receipt (not its socket's last) to the start of the next
    /// socket: `skip`, not `lost`.
    MoveRecvToNextSocket,
    /// Deliver an id that is not in the log: `phantom`.
    PhantomRecv,
    /// Remove an acked message from the log and from every receipt:
    /// `lost_ack`.
    RemoveAckedFromLog,
    /// Make a later message a retry of an earlier one that the server
    /// appended again: `duplicate_append`.
    DuplicateAppend,
    /// Change the body hash of one receipt: `corrupt`.
    CorruptBody,
    /// A stored-cursor reconnect resumes from an older stored cursor and
    /// replays what the device had: `redelivered`.
    StoredCursorRedelivery,
    /// Remove the start of a reconnect's replay and declare it with a
    /// `gap`: nothing.
    DeclaredGap,
    /// The same removal without the `gap`: `lost` and `skip`.
    UndeclaredGap,
}

impl Mutation {
    pub const ALL: [Mutation; 11] = [
        Mutation::DropRecv,
        Mutation::DuplicateRecv,
        Mutation::SwapRecvs,
        Mutation::MoveRecvToNextSocket,
        Mutation::PhantomRecv,
        Mutation::RemoveAckedFromLog,
        Mutation::DuplicateAppend,
        Mutation::CorruptBody,
        Mutation::StoredCursorRedelivery,
        Mutation::DeclaredGap,
        Mutation::UndeclaredGap,
    ];
}

/// One anomaly kind a mutation must produce, and an example it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedAnomaly {
    pub kind: AnomalyKind,
    pub count: u64,
    pub device: Option<DeviceIx>,
    pub conversation: ConversationIx,
    /// `None`: any socket.
    pub socket: Option<u32>,
    pub ids: Vec<StreamId>,
}

/// Receipts of each socket, keyed by (device, conversation, socket).
type SocketKey = (DeviceIx, ConversationIx, u32);

struct SocketView {
    hello: Option<usize>,
    recvs: Vec<usize>,
}

fn sockets(history: &History) -> BTreeMap<SocketKey, SocketView> {
    let mut view: BTreeMap<SocketKey, SocketView> = BTreeMap::new();
    for (ix, event) in history.events.iter().enumerate() {
        let socket = view
            .entry((event.device, event.conversation, event.socket))
            .or_insert(SocketView {
                hello: None,
                recvs: Vec::new(),
            });
        match event.kind {
            EventKind::Hello { .. } => socket.hello = Some(ix),
            EventKind::Recv { .. } => socket.recvs.push(ix),
            _ => {}
        }
    }
    view
}

fn recv_id(event: &Event) -> StreamId {
    match event.kind {
        EventKind::Recv { id, .. } => id,
        _ => StreamId::ZERO,
    }
}

fn expect(
    kind: AnomalyKind,
    count: u64,
    key: SocketKey,
    socket: Option<u32>,
    ids: Vec<StreamId>,
) -> ExpectedAnomaly {
    ExpectedAnomaly {
        kind,
        count,
        device: Some(key.0),
        conversation: key.1,
        socket,
        ids,
    }
}

fn choose<T>(candidates: Vec<T>, pick: usize) -> Option<T> {
    if candidates.is_empty() {
        return None;
    }
    let ix = pick % candidates.len();
    candidates.into_iter().nth(ix)
}

/// Applies `mutation` at the site `pick` selects (modulo the number of
/// sites); `None` when the history has no site for it. Returns every
/// anomaly the checker must report, and nothing else may be reported.
pub fn mutate(
    generated: &mut Generated,
    mutation: Mutation,
    pick: usize,
) -> Option<Vec<ExpectedAnomaly>> {
    let view = sockets(&generated.history);
    let events = &mut generated.history.events;
    match mutation {
        Mutation::DropRecv
        | Mutation::DuplicateRecv
        | Mutation::PhantomRecv
        | Mutation::CorruptBody => {
            let sites: Vec<(SocketKey, usize, Option<usize>)> = view
                .iter()
                .flat_map(|(key, socket)| {
                    socket
                        .recvs
                        .iter()
                        .enumerate()
                        .map(|(n, ix)| (*key, *ix, socket.recvs.get(n + 1).copied()))
                })
                .collect();
            let (key, ix, next) = choose(sites, pick)?;
            let id = recv_id(&events[ix]);
            let here = Some(key.2);
            Some(match mutation {
                Mutation::DropRecv => {
                    let mut expected = vec![expect(AnomalyKind::Lost, 1, key, None, vec![id])];
                    if let Some(next) = next {
                        let past = recv_id(&events[next]);
                        expected.push(expect(AnomalyKind::Skip, 1, key, here, vec![id, past]));
                    }
                    events.remove(ix);
                    expected
                }
                Mutation::DuplicateRecv => {
                    let copy = events[ix].clone();
                    events.insert(ix + 1, copy);
                    vec![expect(AnomalyKind::Duplicate, 1, key, here, vec![id])]
                }
                Mutation::PhantomRecv => {
                    let phantom_id = StreamId::new(id.ms, id.seq + 1_000_000);
                    let mut phantom = events[ix].clone();
                    if let EventKind::Recv {
                        id, client_msg_id, ..
                    } = &mut phantom.kind
                    {
                        *id = phantom_id;
                        *client_msg_id = Uuid::from_u128(u128::from(phantom_id.seq) << 64 | 0xfeed);
                    }
                    events.insert(ix + 1, phantom);
                    vec![expect(AnomalyKind::Phantom, 1, key, here, vec![phantom_id])]
                }
                _ => {
                    if let EventKind::Recv { body_hash, .. } = &mut events[ix].kind {
                        *body_hash ^= 0x5a5a;
                    }
                    vec![expect(AnomalyKind::Corrupt, 1, key, here, vec![id])]
                }
            })
        }
        Mutation::SwapRecvs => {
            let sites: Vec<(SocketKey, usize, usize)> = view
                .iter()
                .flat_map(|(key, socket)| {
                    socket.recvs.windows(2).map(|pair| (*key, pair[0], pair[1]))
                })
                .collect();
            let (key, first, second) = choose(sites, pick)?;
            let (a, b) = (recv_id(&events[first]), recv_id(&events[second]));
            let first_kind = events[first].kind.clone();
            events[first].kind = events[second].kind.clone();
            events[second].kind = first_kind;
            Some(vec![expect(
                AnomalyKind::Reorder,
                1,
                key,
                Some(key.2),
                vec![b, a],
            )])
        }
        Mutation::MoveRecvToNextSocket => {
            let sites: Vec<(SocketKey, usize, usize, usize)> = view
                .iter()
                .filter_map(|(key, socket)| {
                    let next_hello = view.get(&(key.0, key.1, key.2 + 1))?.hello?;
                    Some(
                        socket
                            .recvs
                            .windows(2)
                            .map(move |pair| (*key, pair[0], pair[1], next_hello)),
                    )
                })
                .flatten()
                .collect();
            let (key, ix, next, hello) = choose(sites, pick)?;
            let (id, past) = (recv_id(&events[ix]), recv_id(&events[next]));
            let mut moved = events.remove(ix);
            let hello = hello - 1;
            moved.at_us = events[hello].at_us;
            moved.socket = key.2 + 1;
            if let EventKind::Recv { replay, .. } = &mut moved.kind {
                *replay = true;
            }
            events.insert(hello + 1, moved);
            Some(vec![expect(
                AnomalyKind::Skip,
                1,
                key,
                Some(key.2),
                vec![id, past],
            )])
        }
        Mutation::RemoveAckedFromLog => remove_acked(generated, pick),
        Mutation::DuplicateAppend => duplicate_append(generated, pick),
        Mutation::StoredCursorRedelivery => stored_redelivery(generated, &view, pick),
        Mutation::DeclaredGap | Mutation::UndeclaredGap => {
            let sites: Vec<(SocketKey, usize, &[usize])> = view
                .iter()
                .filter(|(key, socket)| key.2 > 0 && socket.recvs.len() >= 2)
                .filter_map(|(key, socket)| Some((*key, socket.hello?, &socket.recvs[..])))
                .filter(|(_, hello, recvs)| recvs[0] == hello + 1 && recvs[1] == hello + 2)
                .collect();
            let (key, hello, recvs) = choose(sites, pick)?;
            // Only the replay right after the hello: consecutive receipts.
            let replayed = recvs
                .iter()
                .enumerate()
                .take_while(|(n, ix)| **ix == hello + 1 + n)
                .count();
            let removed = 1 + (pick / 7) % (replayed - 1);
            let lost: Vec<StreamId> = recvs[..removed]
                .iter()
                .map(|ix| recv_id(&events[*ix]))
                .collect();
            let first_kept = recv_id(&events[recvs[removed]]);
            let EventKind::Hello { resume_from, .. } = events[hello].kind else {
                return None;
            };
            let gap_event = Event {
                kind: EventKind::Gap {
                    resume_from,
                    first_available: first_kept,
                    reason: GapReason::Trimmed,
                },
                ..events[hello].clone()
            };
            events.drain(hello + 1..hello + 1 + removed);
            if mutation == Mutation::DeclaredGap {
                events.insert(hello + 1, gap_event);
                return Some(Vec::new());
            }
            let count = lost.len() as u64;
            Some(vec![
                expect(AnomalyKind::Lost, count, key, None, vec![lost[0]]),
                expect(
                    AnomalyKind::Skip,
                    count,
                    key,
                    Some(key.2),
                    vec![lost[0], first_kept],
                ),
            ])
        }
    }
}

fn log_sites(log: &MessageLog) -> Vec<(usize, usize)> {
    log.conversations
        .iter()
        .enumerate()
        .flat_map(|(conversation, entries)| {
            (0..entries.len()).map(move |position| (conversation, position))
        })
        .collect()
}

fn remove_acked(generated: &mut Generated, pick: usize) -> Option<Vec<ExpectedAnomaly>> {
    let (conversation, position) = choose(log_sites(&generated.log), pick)?;
    let entry = generated.log.conversations[conversation].remove(position);
    let conversation = conversation as ConversationIx;
    let events = &mut generated.history.events;
    events.retain(|event| {
        !(event.conversation == conversation
            && matches!(event.kind, EventKind::Recv { id, .. } if id == entry.id))
    });
    let ack = events.iter().find(|event| {
        event.conversation == conversation
            && matches!(event.kind, EventKind::Ack { client_msg_id, .. } if client_msg_id == entry.client_msg_id)
    })?;
    let key = (ack.device, conversation, ack.socket);
    Some(vec![expect(
        AnomalyKind::LostAck,
        1,
        key,
        Some(ack.socket),
        vec![entry.id],
    )])
}

fn duplicate_append(generated: &mut Generated, pick: usize) -> Option<Vec<ExpectedAnomaly>> {
    let sites: Vec<(usize, usize, usize)> = generated
        .log
        .conversations
        .iter()
        .enumerate()
        .flat_map(|(conversation, entries)| {
            (0..entries.len()).flat_map(move |first| {
                (first + 1..entries.len()).map(move |second| (conversation, first, second))
            })
        })
        .collect();
    let (conversation, first, second) = choose(sites, pick)?;
    let entries = &mut generated.log.conversations[conversation];
    let original = entries[first].clone();
    let copy_id = entries[second].id;
    let replaced = std::mem::replace(
        &mut entries[second],
        LogEntry {
            id: copy_id,
            ..original.clone()
        },
    );
    let conversation = conversation as ConversationIx;
    let mut retry_ack = None;
    for event in &mut generated.history.events {
        if event.conversation != conversation {
            continue;
        }
        match &mut event.kind {
            EventKind::Recv {
                id,
                sender_id,
                client_msg_id,
                body_hash,
                ..
            } if *id == copy_id => {
                *sender_id = original.sender_id;
                *client_msg_id = original.client_msg_id;
                *body_hash = original.body_hash;
            }
            EventKind::Send {
                client_msg_id,
                body_hash,
                attempt,
                ..
            } if *client_msg_id == replaced.client_msg_id => {
                *client_msg_id = original.client_msg_id;
                *body_hash = original.body_hash;
                *attempt = 1;
            }
            EventKind::Ack { client_msg_id, .. } if *client_msg_id == replaced.client_msg_id => {
                *client_msg_id = original.client_msg_id;
                retry_ack = Some((event.device, event.socket));
            }
            _ => {}
        }
    }
    let (device, socket) = retry_ack?;
    let key = (device, conversation, socket);
    Some(vec![expect(
        AnomalyKind::DuplicateAppend,
        1,
        key,
        Some(socket),
        vec![original.id, copy_id],
    )])
}

fn stored_redelivery(
    generated: &mut Generated,
    view: &BTreeMap<SocketKey, SocketView>,
    pick: usize,
) -> Option<Vec<ExpectedAnomaly>> {
    let history = &generated.history;
    let sites: Vec<(SocketKey, usize, usize)> = view
        .iter()
        .filter(|(key, _)| {
            history.meta.devices[key.0 as usize].resume_mode == ResumeMode::StoredCursor
        })
        .filter_map(|(key, socket)| {
            let hello = socket.hello?;
            let EventKind::Hello {
                resume_from,
                cursor: CursorSource::Stored,
                ..
            } = history.events[hello].kind
            else {
                return None;
            };
            let position = generated.log.conversations[key.1 as usize]
                .binary_search_by_key(&resume_from, |entry| entry.id)
                .ok()?;
            Some((*key, hello, position))
        })
        .collect();
    let (key, hello, position) = choose(sites, pick)?;
    let entries = &generated.log.conversations[key.1 as usize];
    let again = 1 + (pick / 5) % (position + 1).min(3);
    let redelivered: Vec<LogEntry> = entries[position + 1 - again..=position].to_vec();
    let older_cursor = if position >= again {
        entries[position - again].id
    } else {
        StreamId::ZERO
    };
    let events = &mut generated.history.events;
    let hello_at_us = events[hello].at_us;
    if let EventKind::Hello { resume_from, .. } = &mut events[hello].kind {
        *resume_from = older_cursor;
    }
    for (n, entry) in redelivered.iter().enumerate() {
        let replay = EventKind::Recv {
            id: entry.id,
            sender_id: entry.sender_id,
            client_msg_id: entry.client_msg_id,
            body_hash: entry.body_hash,
            body_len: 16,
            sent_at_ms: entry.id.ms,
            replay: true,
        };
        let event = Event {
            at_us: hello_at_us,
            device: key.0,
            conversation: key.1,
            socket: key.2,
            kind: replay,
        };
        events.insert(hello + 1 + n, event);
    }
    Some(vec![expect(
        AnomalyKind::Redelivered,
        again as u64,
        key,
        Some(key.2),
        vec![redelivered[0].id],
    )])
}
