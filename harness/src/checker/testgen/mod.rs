//! Generates valid histories (with their Redis-style log) and applies one
//! known mutation to them, each with the anomaly the checker must report.
//! Used by the checker's tests and, behind the `testgen` feature, by
//! benchmarks.
//!
//! The simulated server is correct by construction: every connected
//! socket receives every message live, and a reconnect replays exactly what
//! follows the device's cursor (client or stored), so any anomaly the
//! checker reports comes from the mutation alone.
//!
//! Optional wipes destroy the simulated Redis data the way a wipe of the
//! reference server's Redis does: the log, the stored cursors and the
//! epoch are gone; open sockets live on; a reconnect with a cursor from the
//! old epoch gets `gap epoch_changed` and the whole new stream.

mod mutate;

use std::collections::HashSet;

pub use mutate::{mutate, ExpectedAnomaly, Mutation};

use crate::history::{CursorOrigin, GapReason, Position, ResumeClaim, SendOutcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::history::{
    ConversationInfo, ConversationIx, DeviceInfo, DeviceIx, DisconnectCause, Event, EventKind,
    History, LogEntry, LogOrigin, MessageLog, ResumeMode, RunMeta,
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
    /// Steps before which the simulated Redis loses all its data.
    pub wipe_before_steps: Vec<u32>,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            devices: 4,
            conversations: 2,
            steps: 200,
            stored_cursor_percent: 50,
            seed: 7,
            wipe_before_steps: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub history: History,
    pub log: MessageLog,
    /// Acked messages the wipes destroyed (absent from `log`).
    pub wiped_messages: u64,
    /// Receipts of a message the device already had: replays after a wipe
    /// destroyed the cursor that would have prevented them.
    pub repeated_receipts: u64,
}

/// Stream ids with a small `seq` range, so `5-10` vs `5-9` is exercised.
fn stream_id(counter: u64) -> Position {
    Position::new(1_700_000_000_000 + counter / 12, counter % 12)
}

struct SlotSim {
    device: DeviceIx,
    conversation: ConversationIx,
    next_socket: u32,
    connected: bool,
    last_received: Position,
    /// Every id this device received in this conversation.
    received: HashSet<Position>,
    /// Epoch of the last hello the device saw (what a client sends back).
    hello_epoch: u32,
    /// The server's stored cursor and the epoch it was stored in.
    stored: Option<(Position, u32)>,
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
    /// The current stream epoch; a wipe starts a new one.
    epoch: u32,
    wiped_messages: u64,
    repeated_receipts: u64,
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
        // Resume precedence as the protocol has it: the client's cursor,
        // else the stored one, else 0; each with the epoch it came from.
        let (last_id, resume_from, cursor, cursor_epoch) = match device.resume_mode {
            ResumeMode::ClientCursor if !last.is_zero() => (
                Some(last),
                last,
                CursorOrigin::Client,
                Some(info.hello_epoch),
            ),
            ResumeMode::StoredCursor => match info.stored {
                Some((stored, epoch)) => (None, stored, CursorOrigin::Stored, Some(epoch)),
                None => (None, Position::ZERO, CursorOrigin::None, None),
            },
            ResumeMode::ClientCursor => (None, Position::ZERO, CursorOrigin::None, None),
        };
        let sent_epoch = (device.resume_mode == ResumeMode::ClientCursor && socket > 0)
            .then(|| format!("epoch-{}", info.hello_epoch));
        info.hello_epoch = self.epoch;
        let target = "ws://127.0.0.1:1/ws".to_string();
        self.emit(
            slot,
            socket,
            EventKind::Connect {
                last_id,
                epoch: sent_epoch,
                target,
            },
        );
        let hello = EventKind::Connected {
            client_id: Some(client_id),
            claim: ResumeClaim::Cursor {
                from: resume_from,
                origin: cursor,
            },
            epoch: Some(format!("epoch-{}", self.epoch)),
        };
        self.emit(slot, socket, hello);
        let log = &self.logs[conversation];
        let epoch_changed = cursor_epoch.is_some_and(|epoch| epoch != self.epoch);
        let replay_after = if epoch_changed {
            // The cursor points into a destroyed stream: replay all of it.
            let first_available = log.first().map_or(Position::ZERO, |entry| entry.id);
            let gap = EventKind::Gap {
                resume_from: Some(resume_from),
                first_available: Some(first_available),
                reason: GapReason::EpochChanged,
            };
            self.emit(slot, socket, gap);
            None
        } else {
            Some(resume_from)
        };
        let backlog: Vec<LogEntry> = self.logs[conversation]
            .iter()
            .filter(|entry| replay_after.is_none_or(|after| entry.id > after))
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
        let recv = EventKind::Message {
            id: entry.id,
            sender_id: entry.sender_id,
            client_msg_id: entry.client_msg_id,
            body_hash: entry.body_hash,
            body_len: 16,
            sent_at_ms: entry.id.major,
            replay,
        };
        self.emit(slot, socket, recv);
        let info = &mut self.slots[slot];
        info.last_received = entry.id;
        if !info.received.insert(entry.id) {
            self.repeated_receipts += 1;
        }
    }

    fn disconnect(&mut self, slot: usize, cause: DisconnectCause) {
        let socket = self.slots[slot].next_socket - 1;
        let last = self.slots[slot].last_received;
        if !last.is_zero() {
            // The stored cursor of a stored-cursor device is this ack,
            // persisted in the epoch the socket's session knows.
            self.emit(slot, socket, EventKind::AckSent { id: last });
            let info = &mut self.slots[slot];
            info.stored = Some((last, info.hello_epoch));
        }
        self.emit(slot, socket, EventKind::Disconnect(cause));
        self.slots[slot].connected = false;
    }

    /// Redis loses everything: messages, stored cursors, the epoch. Ids
    /// keep growing (they are times), and open sockets live on.
    fn wipe(&mut self) {
        for log in &mut self.logs {
            self.wiped_messages += log.len() as u64;
            log.clear();
        }
        for slot in &mut self.slots {
            slot.stored = None;
        }
        self.epoch += 1;
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
        let ack = EventKind::SendOutcome {
            client_msg_id,
            outcome: SendOutcome::Acked {
                id,
                duplicate: false,
            },
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
                last_received: Position::ZERO,
                received: HashSet::new(),
                hello_epoch: 0,
                stored: None,
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
        epoch: 0,
        wiped_messages: 0,
        repeated_receipts: 0,
    };
    for slot in 0..sim.slots.len() {
        sim.connect(slot);
    }
    for step in 0..config.steps {
        if config.wipe_before_steps.contains(&step) {
            sim.wipe();
        }
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
            source: LogOrigin::Redis,
            conversations: sim.logs,
        },
        wiped_messages: sim.wiped_messages,
        repeated_receipts: sim.repeated_receipts,
    }
}
