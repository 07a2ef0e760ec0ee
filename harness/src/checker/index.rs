//! Indexes the checker builds once, so every check is a linear walk:
//! the log of each conversation as a sorted id vector, and the table of
//! (device, conversation) slots the events belong to.

use crate::history::Position;
use fnv::FnvHashMap;

use crate::history::{ConversationIx, DeviceIx, Event, LogEntry, LogOrigin, MessageLog, RunMeta};

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

/// One (device, conversation) pair: the unit the delivery checks judge.
pub(crate) struct Slot {
    pub device: DeviceIx,
    pub conversation: ConversationIx,
}

/// Every (device, conversation) pair of the run, and the slot of each
/// event, built in one pass over the history. Memory is one entry per pair
/// (plus one flag and one sort key), never per event.
pub(crate) struct SlotTable {
    /// Member pairs from the run meta first (in meta order), then pairs
    /// that only appear in events.
    pub slots: Vec<Slot>,
    pairs: PairTable,
    /// The (socket, at_us) of each slot's latest event so far, to see
    /// whether the recording already has the order the checks walk in.
    last_key: Vec<(u32, u64)>,
    /// Slots whose events are not in (socket, at_us) order in the
    /// recording: the delivery pass gathers and sorts only these.
    pub disordered: Vec<bool>,
    device_count: usize,
    conversation_count: usize,
    events: u64,
    bad_events: u64,
    first_bad: Option<(DeviceIx, ConversationIx, u64)>,
}

const NO_SLOT: u32 = u32::MAX;

/// The most events one check judges for delivery (slot numbers and
/// counters are 32-bit).
pub(crate) const MAX_CHECKED_EVENTS: u64 = u32::MAX as u64;

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

    fn get(&self, device: DeviceIx, conversation: ConversationIx) -> u32 {
        match self {
            PairTable::Dense {
                conversations,
                slots,
            } => slots[device as usize * *conversations + conversation as usize],
            PairTable::Sparse(map) => map.get(&(device, conversation)).copied().unwrap_or(NO_SLOT),
        }
    }
}

impl SlotTable {
    /// The member pairs of the meta; `add` then sees every event once.
    pub fn new(meta: &RunMeta, reasons: &mut Vec<String>) -> Self {
        let conversation_count = meta.conversations.len();
        let mut table = SlotTable {
            slots: Vec::new(),
            pairs: PairTable::new(meta.devices.len(), conversation_count),
            last_key: Vec::new(),
            disordered: Vec::new(),
            device_count: meta.devices.len(),
            conversation_count,
            events: 0,
            bad_events: 0,
            first_bad: None,
        };
        let mut bad_memberships = 0usize;
        for (device, info) in meta.devices.iter().enumerate() {
            for &conversation in &info.conversations {
                if (conversation as usize) < conversation_count {
                    table.slot_or_add(device as DeviceIx, conversation);
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
        table
    }

    fn slot_or_add(&mut self, device: DeviceIx, conversation: ConversationIx) -> u32 {
        let slots = &mut self.slots;
        let last_key = &mut self.last_key;
        let disordered = &mut self.disordered;
        self.pairs.slot_of(device, conversation, || {
            slots.push(Slot {
                device,
                conversation,
            });
            last_key.push((0, 0));
            disordered.push(false);
            (slots.len() - 1) as u32
        })
    }

    fn known(&self, event: &Event) -> bool {
        (event.device as usize) < self.device_count
            && (event.conversation as usize) < self.conversation_count
    }

    /// Sees one event, in recording order.
    pub fn add(&mut self, event: &Event) {
        self.events += 1;
        if self.events > MAX_CHECKED_EVENTS {
            return;
        }
        if !self.known(event) {
            self.bad_events += 1;
            self.first_bad
                .get_or_insert((event.device, event.conversation, event.at_us));
            return;
        }
        let slot = self.slot_or_add(event.device, event.conversation) as usize;
        let key = (event.socket, event.at_us);
        if key < self.last_key[slot] {
            self.disordered[slot] = true;
        }
        self.last_key[slot] = key;
    }

    /// After the last `add`: what could not be checked.
    pub fn explain(&self, reasons: &mut Vec<String>) {
        if self.events > MAX_CHECKED_EVENTS {
            reasons.push(format!(
                "the history has {} events; only the first {MAX_CHECKED_EVENTS} were checked",
                self.events
            ));
        }
        if let Some((device, conversation, at_us)) = self.first_bad {
            reasons.push(format!(
                "{} events name a device or conversation the run meta does not have \
                 (first: device {device} conversation {conversation} at {at_us} us); they were not checked",
                self.bad_events
            ));
        }
    }

    /// Makes the delivery pass gather and sort every slot (tests compare
    /// that walk with the streaming one).
    #[cfg(test)]
    pub fn gather_all(&mut self) {
        self.disordered.iter_mut().for_each(|gather| *gather = true);
    }

    /// The slot of an event; `None` for events that name a device or
    /// conversation the meta does not have.
    pub fn slot_of(&self, event: &Event) -> Option<u32> {
        if !self.known(event) {
            return None;
        }
        let slot = self.pairs.get(event.device, event.conversation);
        (slot != NO_SLOT).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ConversationInfo, DeviceInfo, EventKind, History, ResumeMode};
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
    fn events_find_their_slot_and_disorder_is_seen() {
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
        let mut index = SlotTable::new(&history.meta, &mut reasons);
        for event in &history.events {
            index.add(event);
        }
        index.explain(&mut reasons);
        assert_eq!(index.slots.len(), 1);
        assert!(index.disordered[0], "socket 1 came before socket 0");
        assert_eq!(index.slot_of(&history.events[1]), Some(0));
        assert_eq!(index.slot_of(&history.events[3]), None);
        assert_eq!(
            reasons.len(),
            1,
            "the event in conversation 7 is reported: {reasons:?}"
        );
    }
}
