//! Indexes the checker builds once, so every check is a linear walk:
//! the log of each conversation as a sorted id vector, and the events
//! grouped by (device, conversation) and ordered by socket and time.

use std::ops::Range;

use crate::history::Position;
use fnv::FnvHashMap;

use crate::history::{ConversationIx, DeviceIx, Event, History, LogEntry, LogOrigin, MessageLog};

/// One conversation's log, sorted by id, without duplicate ids.
pub(crate) struct ConvLog<'a> {
    pub ids: Vec<Position>,
    pub entries: Vec<&'a LogEntry>,
}

impl ConvLog<'_> {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn position(&self, id: Position) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// `position`, trying `hint` first: a socket mostly delivers the entry
    /// right after its previous one, and a hit skips the binary search.
    pub fn position_near(&self, id: Position, hint: usize) -> Option<usize> {
        if self.ids.get(hint) == Some(&id) {
            return Some(hint);
        }
        self.position(id)
    }

    /// Position of the first id strictly greater than `id`.
    pub fn first_after(&self, id: Position) -> usize {
        self.ids.partition_point(|candidate| *candidate <= id)
    }

    /// Position of the first id greater than or equal to `id`.
    pub fn first_at_or_after(&self, id: Position) -> usize {
        self.ids.partition_point(|candidate| *candidate < id)
    }
}

pub(crate) struct LogIndex<'a> {
    pub source: LogOrigin,
    /// Indexed by `ConversationIx`; exactly as many as the run has.
    pub conversations: Vec<ConvLog<'a>>,
}

impl<'a> LogIndex<'a> {
    /// Sorts each conversation's log; anything that makes the log
    /// untrustworthy (missing conversations, repeated ids) becomes a reason
    /// the verdict cannot be `valid`.
    pub fn build(
        log: &'a MessageLog,
        conversation_count: usize,
        reasons: &mut Vec<String>,
    ) -> Self {
        if log.conversations.len() != conversation_count {
            reasons.push(format!(
                "the message log has {} conversations but the run has {conversation_count}; \
                 missing ones are checked as empty, extra ones are ignored",
                log.conversations.len()
            ));
        }
        let conversations = (0..conversation_count)
            .map(|conversation| {
                let entries = log
                    .conversations
                    .get(conversation)
                    .map_or(&[][..], Vec::as_slice);
                sorted_log(conversation, entries, reasons)
            })
            .collect();
        LogIndex {
            source: log.source,
            conversations,
        }
    }
}

fn sorted_log<'a>(
    conversation: usize,
    entries: &'a [LogEntry],
    reasons: &mut Vec<String>,
) -> ConvLog<'a> {
    let mut sorted: Vec<&LogEntry> = entries.iter().collect();
    // Redis returns the log sorted; stable sort keeps the first of any
    // repeated id, and is linear on already sorted input.
    sorted.sort_by_key(|entry| entry.id);
    let before = sorted.len();
    sorted.dedup_by_key(|entry| entry.id);
    if sorted.len() != before {
        reasons.push(format!(
            "the log of conversation {conversation} repeats {} stream ids (a stream cannot); \
             the first entry of each id was used",
            before - sorted.len()
        ));
    }
    ConvLog {
        ids: sorted.iter().map(|entry| entry.id).collect(),
        entries: sorted,
    }
}

/// The events of one (device, conversation) pair.
pub(crate) struct Slot {
    pub device: DeviceIx,
    pub conversation: ConversationIx,
    /// Range in `SlotIndex::order`.
    events: Range<usize>,
}

pub(crate) struct SlotIndex {
    /// Member pairs from the run meta first (in meta order), then pairs
    /// that only appear in events.
    pub slots: Vec<Slot>,
    /// Event indices grouped by slot; within a slot ordered by socket, then
    /// `at_us`, then recording order.
    order: Vec<u32>,
}

const NO_SLOT: u32 = u32::MAX;

/// Slot number per (device, conversation): a dense table (one `u32` per
/// pair, so memory is devices x conversations) where that is small, a
/// hash map otherwise. The lookup runs once per event, so it must not hash
/// when it need not.
enum PairTable {
    Dense {
        conversations: usize,
        slots: Vec<u32>,
    },
    Sparse(FnvHashMap<(DeviceIx, ConversationIx), u32>),
}

/// Largest dense table (64 MB of slot numbers).
const MAX_DENSE_PAIRS: usize = 1 << 24;

impl PairTable {
    fn new(devices: usize, conversations: usize) -> Self {
        match devices.checked_mul(conversations) {
            Some(pairs) if pairs <= MAX_DENSE_PAIRS => PairTable::Dense {
                conversations,
                slots: vec![NO_SLOT; pairs],
            },
            _ => PairTable::Sparse(FnvHashMap::default()),
        }
    }

    /// The pair's slot; `add` makes one the first time. Callers pass only
    /// devices and conversations the meta has.
    fn slot_of(
        &mut self,
        device: DeviceIx,
        conversation: ConversationIx,
        add: impl FnOnce() -> u32,
    ) -> u32 {
        match self {
            PairTable::Dense {
                conversations,
                slots,
            } => {
                let cell = &mut slots[device as usize * *conversations + conversation as usize];
                if *cell == NO_SLOT {
                    *cell = add();
                }
                *cell
            }
            PairTable::Sparse(map) => *map.entry((device, conversation)).or_insert_with(add),
        }
    }
}

impl SlotIndex {
    pub fn build(history: &History, reasons: &mut Vec<String>) -> Self {
        let meta = &history.meta;
        let conversation_count = meta.conversations.len();
        let mut pairs = PairTable::new(meta.devices.len(), conversation_count);
        let mut slots = Vec::new();
        let mut add_slot =
            |slots: &mut Vec<Slot>, device: DeviceIx, conversation: ConversationIx| {
                pairs.slot_of(device, conversation, || {
                    slots.push(Slot {
                        device,
                        conversation,
                        events: 0..0,
                    });
                    (slots.len() - 1) as u32
                })
            };
        let mut bad_memberships = 0usize;
        for (device, info) in meta.devices.iter().enumerate() {
            for &conversation in &info.conversations {
                if (conversation as usize) < conversation_count {
                    add_slot(&mut slots, device as DeviceIx, conversation);
                } else {
                    bad_memberships += 1;
                }
            }
        }
        if bad_memberships > 0 {
            reasons.push(format!(
                "the run meta lists {bad_memberships} device memberships in conversations \
                 that do not exist (only {conversation_count} conversations); they were not checked"
            ));
        }

        let event_count = history.events.len().min(u32::MAX as usize);
        if event_count < history.events.len() {
            reasons.push(format!(
                "the history has {} events; only the first {event_count} were checked",
                history.events.len()
            ));
        }
        let mut slot_of_event = Vec::with_capacity(event_count);
        let mut bad_events = 0usize;
        let mut first_bad: Option<&Event> = None;
        for event in &history.events[..event_count] {
            let known = (event.device as usize) < meta.devices.len()
                && (event.conversation as usize) < conversation_count;
            if known {
                slot_of_event.push(add_slot(&mut slots, event.device, event.conversation));
            } else {
                bad_events += 1;
                first_bad.get_or_insert(event);
                slot_of_event.push(NO_SLOT);
            }
        }
        if let Some(event) = first_bad {
            reasons.push(format!(
                "{bad_events} events name a device or conversation the run meta does not have \
                 (first: device {} conversation {} at {} us); they were not checked",
                event.device, event.conversation, event.at_us
            ));
        }

        // Counting sort by slot: two linear passes, one allocation.
        let mut starts = vec![0usize; slots.len() + 1];
        for &slot in slot_of_event.iter().filter(|slot| **slot != NO_SLOT) {
            starts[slot as usize + 1] += 1;
        }
        for slot in 0..slots.len() {
            starts[slot + 1] += starts[slot];
        }
        for (slot, info) in slots.iter_mut().enumerate() {
            info.events = starts[slot]..starts[slot + 1];
        }
        let mut order = vec![0u32; starts[slots.len()]];
        let mut fill = starts;
        for (event, &slot) in slot_of_event.iter().enumerate() {
            if slot != NO_SLOT {
                order[fill[slot as usize]] = event as u32;
                fill[slot as usize] += 1;
            }
        }
        let events = &history.events;
        for slot in &slots {
            // Stable, and linear when the recording is already in order.
            order[slot.events.clone()].sort_by_key(|&event| {
                let event = &events[event as usize];
                (event.socket, event.at_us)
            });
        }
        SlotIndex { slots, order }
    }

    pub fn events_of(&self, slot: &Slot) -> &[u32] {
        &self.order[slot.events.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ConversationInfo, DeviceInfo, EventKind, ResumeMode, RunMeta};
    use uuid::Uuid;

    fn entry(ms: u64, seq: u64) -> LogEntry {
        LogEntry {
            id: Position::new(ms, seq),
            sender_id: Uuid::nil(),
            client_msg_id: Uuid::from_u128(u128::from(ms) << 8 | u128::from(seq)),
            body_hash: 0,
        }
    }

    #[test]
    fn log_is_sorted_numerically_and_deduplicated() {
        let log = MessageLog {
            source: LogOrigin::Redis,
            conversations: vec![vec![entry(5, 10), entry(5, 9), entry(5, 10)]],
        };
        let mut reasons = Vec::new();
        let index = LogIndex::build(&log, 2, &mut reasons);
        let ids = &index.conversations[0].ids;
        assert_eq!(ids, &[Position::new(5, 9), Position::new(5, 10)]);
        assert!(index.conversations[1].ids.is_empty());
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        let conv = &index.conversations[0];
        assert_eq!(conv.first_after(Position::new(5, 9)), 1);
        assert_eq!(conv.first_at_or_after(Position::new(5, 9)), 0);
        assert_eq!(conv.position(Position::new(5, 10)), Some(1));
        assert_eq!(conv.position(Position::new(5, 11)), None);
    }

    #[test]
    fn events_are_grouped_by_slot_and_ordered_by_socket_then_time() {
        let device = DeviceInfo {
            user_id: Uuid::from_u128(1),
            client_id: Uuid::from_u128(2),
            resume_mode: ResumeMode::ClientCursor,
            conversations: vec![0],
        };
        let meta = RunMeta {
            faults: Vec::new(),
            scenario_name: "t".into(),
            seed: 0,
            started_at_unix_ms: 0,
            devices: vec![device],
            conversations: vec![ConversationInfo {
                conversation_id: Uuid::from_u128(3),
            }],
        };
        let event = |at_us, socket, conversation| Event {
            at_us,
            device: 0,
            conversation,
            socket,
            kind: EventKind::AckSent { id: Position::ZERO },
        };
        let history = History {
            meta,
            events: vec![
                event(5, 1, 0),
                event(9, 0, 0),
                event(1, 0, 0),
                event(2, 0, 7),
            ],
        };
        let mut reasons = Vec::new();
        let index = SlotIndex::build(&history, &mut reasons);
        assert_eq!(index.slots.len(), 1);
        assert_eq!(index.events_of(&index.slots[0]), &[2, 1, 0]);
        assert_eq!(
            reasons.len(),
            1,
            "the event in conversation 7 is reported: {reasons:?}"
        );
    }
}
