//! Rebuilding the message log from the history, for runs whose Redis could
//! not be read back. Weaker than the real log: a message that nobody acked
//! and nobody received is invisible, so `lost` can only be judged for
//! messages at least one party saw.

use crate::history::Position;
use fnv::{FnvHashMap, FnvHashSet};
use uuid::Uuid;

use crate::history::{
    ConversationIx, Event, EventKind, History, HistoryError, HistoryPasses, LogEntry, LogOrigin,
    MessageLog, RunMeta, SendOutcome,
};

/// Where the rebuilt entry of an id came from; lower wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Witness {
    /// The server's own word about where it appended.
    Ack,
    Receipt,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    witness: Witness,
    client_msg_id: Uuid,
    /// Sender and body of the witnessing receipt (an ack carries
    /// neither), for a message no device sent.
    receipt_content: (Uuid, u64),
}

/// The log as the acks and receipts show it: the union of their ids per
/// conversation, sorted. An id's client_msg_id comes from an ack if there
/// is one, else from the first receipt; sender and body come from the
/// `Send` of that client_msg_id, else from a receipt.
///
/// Receipts of messages nobody sent are kept (the server evidently has
/// them); the checker reports them as `phantom`. Receipts of a message
/// sent only in another conversation are not evidence of this one's log
/// (the checker reports them as `leak`).
pub fn rebuild_log(history: &History) -> MessageLog {
    let events = &history.events;
    rebuild_log_events(&history.meta, || events.iter())
}

/// [`rebuild_log`] from a history file, streaming (two passes).
pub fn rebuild_log_from_passes(history: &HistoryPasses) -> Result<MessageLog, HistoryError> {
    let log = rebuild_log_events(history.meta(), || history.events());
    history.finish()?;
    Ok(log)
}

fn rebuild_log_events<I, E>(meta: &RunMeta, mut events: impl FnMut() -> I) -> MessageLog
where
    I: Iterator<Item = E>,
    E: std::borrow::Borrow<Event>,
{
    let conversation_count = meta.conversations.len();
    let mut sent: FnvHashMap<(ConversationIx, Uuid), (Uuid, u64)> = FnvHashMap::default();
    let mut sent_anywhere: FnvHashSet<Uuid> = FnvHashSet::default();
    let mut sent_in: FnvHashSet<(ConversationIx, Uuid)> = FnvHashSet::default();
    for event in events() {
        let event = event.borrow();
        if let EventKind::Send {
            client_msg_id,
            body_hash,
            ..
        } = &event.kind
        {
            sent_anywhere.insert(*client_msg_id);
            sent_in.insert((event.conversation, *client_msg_id));
            if let Some(device) = meta.devices.get(event.device as usize) {
                sent.entry((event.conversation, *client_msg_id))
                    .or_insert((device.user_id, *body_hash));
            }
        }
    }
    let mut witnessed: FnvHashMap<(ConversationIx, Position), Candidate> = FnvHashMap::default();
    for event in events() {
        let event = event.borrow();
        if event.conversation as usize >= conversation_count {
            continue;
        }
        let (id, client_msg_id, witness) = match &event.kind {
            EventKind::Message { client_msg_id, .. }
                if sent_anywhere.contains(client_msg_id)
                    && !sent_in.contains(&(event.conversation, *client_msg_id)) =>
            {
                continue;
            }
            EventKind::SendOutcome {
                client_msg_id,
                outcome: SendOutcome::Acked { id, .. },
            } => (*id, *client_msg_id, Witness::Ack),
            EventKind::Message {
                id, client_msg_id, ..
            } => (*id, *client_msg_id, Witness::Receipt),
            _ => continue,
        };
        let receipt_content = match &event.kind {
            EventKind::Message {
                sender_id,
                body_hash,
                ..
            } => (*sender_id, *body_hash),
            _ => (Uuid::nil(), 0),
        };
        let candidate = Candidate {
            witness,
            client_msg_id,
            receipt_content,
        };
        witnessed
            .entry((event.conversation, id))
            .and_modify(|kept| {
                if witness < kept.witness {
                    *kept = candidate;
                }
            })
            .or_insert(candidate);
    }

    let mut conversations: Vec<Vec<LogEntry>> = vec![Vec::new(); conversation_count];
    for ((conversation, id), candidate) in witnessed {
        let (sender_id, body_hash) = sent
            .get(&(conversation, candidate.client_msg_id))
            .copied()
            .unwrap_or(candidate.receipt_content);
        conversations[conversation as usize].push(LogEntry {
            id,
            sender_id,
            client_msg_id: candidate.client_msg_id,
            body_hash,
        });
    }
    for entries in &mut conversations {
        entries.sort_unstable_by_key(|entry| entry.id);
    }
    MessageLog {
        source: LogOrigin::Rebuilt,
        conversations,
    }
}
