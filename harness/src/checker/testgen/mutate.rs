//! Known ways to break a valid generated history, each with exactly the
//! anomalies the checker must report for it.

use std::collections::BTreeMap;

use crate::history::{CursorOrigin, ErrorCode, GapReason, Position, ResumeClaim, SendOutcome};
use uuid::Uuid;

use super::Generated;
use crate::checker::outcome::AnomalyKind;
use crate::history::{
    ConversationIx, DeviceIx, Event, EventKind, History, LogEntry, MessageLog, ResumeMode,
};

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
    /// `trimmed` gap, the messages really gone (from the log and from
    /// every event that mentions them): nothing.
    DeclaredGap,
    /// The same removal without the `gap`: `lost` and `skip`.
    UndeclaredGap,
    /// The same removal declared with a gap (`trimmed` or, for odd picks,
    /// `epoch_changed` with the epoch unchanged) while the log still holds
    /// the messages: `false_gap`, one per missed message.
    FalseGap,
    /// Deliver a message of one conversation on a socket of another (odd
    /// picks: with the id of a message of the receiving conversation, so
    /// only the client_msg_id tells): `leak`.
    Leak,
    /// Send a reconnect's `caught_up` before the last message of its
    /// backlog (acked before the socket connected), claiming the head
    /// below it: `false_caught_up`.
    EarlyCaughtUp,
    /// Answer a send `unavailable` ("not appended") though it was appended:
    /// even picks add that answer and a retry acked `duplicate: true`; odd
    /// picks replace the only ack with it (the log still holds the
    /// message): `false_failure`.
    FalseFailure,
}

impl Mutation {
    pub const ALL: [Mutation; 15] = [
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
        Mutation::FalseGap,
        Mutation::Leak,
        Mutation::EarlyCaughtUp,
        Mutation::FalseFailure,
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
    pub ids: Vec<Position>,
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
            EventKind::Connected { .. } => socket.hello = Some(ix),
            EventKind::Message { .. } => socket.recvs.push(ix),
            _ => {}
        }
    }
    view
}

fn recv_id(event: &Event) -> Position {
    match event.kind {
        EventKind::Message { id, .. } => id,
        _ => Position::ZERO,
    }
}

fn expect(
    kind: AnomalyKind,
    count: u64,
    key: SocketKey,
    socket: Option<u32>,
    ids: Vec<Position>,
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
                    let phantom_id = Position::new(id.major, id.minor + 1_000_000);
                    let mut phantom = events[ix].clone();
                    if let EventKind::Message {
                        id, client_msg_id, ..
                    } = &mut phantom.kind
                    {
                        *id = phantom_id;
                        *client_msg_id =
                            Uuid::from_u128(u128::from(phantom_id.minor) << 64 | 0xfeed);
                    }
                    events.insert(ix + 1, phantom);
                    vec![expect(AnomalyKind::Phantom, 1, key, here, vec![phantom_id])]
                }
                _ => {
                    if let EventKind::Message { body_hash, .. } = &mut events[ix].kind {
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
            if let EventKind::Message { replay, .. } = &mut moved.kind {
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
        Mutation::Leak => leak(generated, &view, pick),
        Mutation::EarlyCaughtUp => early_caught_up(generated, &view, pick),
        Mutation::FalseFailure => false_failure(generated, pick),
        Mutation::DuplicateAppend => duplicate_append(generated, pick),
        Mutation::StoredCursorRedelivery => stored_redelivery(generated, &view, pick),
        Mutation::DeclaredGap | Mutation::UndeclaredGap | Mutation::FalseGap => {
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
            let lost: Vec<Position> = recvs[..removed]
                .iter()
                .map(|ix| recv_id(&events[*ix]))
                .collect();
            let first_kept = recv_id(&events[recvs[removed]]);
            let EventKind::Connected {
                claim:
                    ResumeClaim::Cursor {
                        from: resume_from, ..
                    },
                ..
            } = events[hello].kind
            else {
                return None;
            };
            let reason = if mutation == Mutation::FalseGap && pick % 2 == 1 {
                GapReason::EpochChanged
            } else {
                GapReason::Trimmed
            };
            let gap_event = Event {
                kind: EventKind::Gap {
                    resume_from: Some(resume_from),
                    first_available: Some(first_kept),
                    reason,
                },
                ..events[hello].clone()
            };
            events.drain(hello + 1..hello + 1 + removed);
            let count = lost.len() as u64;
            match mutation {
                Mutation::DeclaredGap => {
                    events.insert(hello + 1, gap_event);
                    trim(generated, key.1, &lost);
                    return Some(Vec::new());
                }
                Mutation::FalseGap => {
                    events.insert(hello + 1, gap_event);
                    return Some(vec![expect(
                        AnomalyKind::FalseGap,
                        count,
                        key,
                        Some(key.2),
                        vec![lost[0], resume_from, first_kept],
                    )]);
                }
                _ => {}
            }
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

/// Retention at work: `ids` leave the log, and so does every event that
/// mentions them (their sends, acks and receipts), as if they had been
/// trimmed before anyone could see them.
fn trim(generated: &mut Generated, conversation: ConversationIx, ids: &[Position]) {
    let entries = &mut generated.log.conversations[conversation as usize];
    let gone: Vec<Uuid> = entries
        .iter()
        .filter(|entry| ids.contains(&entry.id))
        .map(|entry| entry.client_msg_id)
        .collect();
    entries.retain(|entry| !ids.contains(&entry.id));
    generated.history.events.retain(|event| {
        event.conversation != conversation
            || match &event.kind {
                EventKind::Message { id, .. } => !ids.contains(id),
                EventKind::Send { client_msg_id, .. }
                | EventKind::SendOutcome {
                    client_msg_id,
                    outcome: SendOutcome::Acked { .. },
                } => !gone.contains(client_msg_id),
                _ => true,
            }
    });
}

fn leak(
    generated: &mut Generated,
    view: &BTreeMap<SocketKey, SocketView>,
    pick: usize,
) -> Option<Vec<ExpectedAnomaly>> {
    let recvs: Vec<(usize, ConversationIx)> = view
        .iter()
        .flat_map(|(key, socket)| socket.recvs.iter().map(|recv| (*recv, key.1)))
        .collect();
    let sites: Vec<(usize, SocketKey, usize)> = recvs
        .iter()
        .flat_map(|&(recv, conversation)| {
            view.iter()
                .filter(move |(key, _)| key.1 != conversation)
                .filter_map(move |(key, socket)| Some((recv, *key, socket.hello?)))
        })
        .collect();
    let (recv, key, hello) = choose(sites, pick)?;
    let events = &mut generated.history.events;
    let mut leaked = Event {
        at_us: events[hello].at_us,
        device: key.0,
        conversation: key.1,
        socket: key.2,
        ..events[recv].clone()
    };
    let own_entries = &generated.log.conversations[key.1 as usize];
    if pick % 2 == 1 && !own_entries.is_empty() {
        if let EventKind::Message { id, .. } = &mut leaked.kind {
            *id = own_entries[pick % own_entries.len()].id;
        }
    }
    let id = recv_id(&leaked);
    events.insert(hello + 1, leaked);
    Some(vec![expect(
        AnomalyKind::Leak,
        1,
        key,
        Some(key.2),
        vec![id],
    )])
}

fn early_caught_up(
    generated: &mut Generated,
    view: &BTreeMap<SocketKey, SocketView>,
    pick: usize,
) -> Option<Vec<ExpectedAnomaly>> {
    let events = &mut generated.history.events;
    // Sockets whose hello is followed by the backlog and then caught_up.
    let sites: Vec<(SocketKey, usize, usize)> = view
        .iter()
        .filter(|(key, socket)| key.2 > 0 && !socket.recvs.is_empty())
        .filter_map(|(key, socket)| {
            let hello = socket.hello?;
            let replayed = socket
                .recvs
                .iter()
                .enumerate()
                .take_while(|(n, ix)| **ix == hello + 1 + n)
                .count();
            let caught_up = hello + 1 + replayed;
            let is_caught_up = matches!(events[caught_up].kind, EventKind::CaughtUp { .. });
            (replayed > 0 && is_caught_up).then_some((*key, hello, replayed))
        })
        .collect();
    let (key, hello, replayed) = choose(sites, pick)?;
    let last = hello + replayed;
    let missed = recv_id(&events[last]);
    let claimed = if replayed >= 2 {
        recv_id(&events[last - 1])
    } else {
        match events[hello].kind {
            EventKind::Connected {
                claim:
                    ResumeClaim::Cursor {
                        from: resume_from, ..
                    },
                ..
            } => resume_from,
            _ => return None,
        }
    };
    let mut caught_up = events.remove(last + 1);
    caught_up.at_us = events[last].at_us;
    if let EventKind::CaughtUp {
        last_id,
        replayed: count,
    } = &mut caught_up.kind
    {
        *last_id = claimed;
        *count = replayed as u64 - 1;
    }
    if let EventKind::Message { replay, .. } = &mut events[last].kind {
        *replay = false;
    }
    events.insert(last, caught_up);
    Some(vec![expect(
        AnomalyKind::FalseCaughtUp,
        1,
        key,
        Some(key.2),
        vec![claimed, missed],
    )])
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
            && matches!(event.kind, EventKind::Message { id, .. } if id == entry.id))
    });
    let ack = events.iter().find(|event| {
        event.conversation == conversation
            && matches!(event.kind, EventKind::SendOutcome {
 client_msg_id,
 outcome: SendOutcome::Acked { .. },
 } if client_msg_id == entry.client_msg_id)
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
            EventKind::Message {
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
            EventKind::SendOutcome {
                client_msg_id,
                outcome: SendOutcome::Acked { .. },
            } if *client_msg_id == replaced.client_msg_id => {
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
            let EventKind::Connected {
                claim:
                    ResumeClaim::Cursor {
                        from: resume_from,
                        origin: CursorOrigin::Stored,
                    },
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
        Position::ZERO
    };
    let events = &mut generated.history.events;
    let hello_at_us = events[hello].at_us;
    if let EventKind::Connected {
        claim: ResumeClaim::Cursor {
            from: resume_from, ..
        },
        ..
    } = &mut events[hello].kind
    {
        *resume_from = older_cursor;
    }
    for (n, entry) in redelivered.iter().enumerate() {
        let replay = EventKind::Message {
            id: entry.id,
            sender_id: entry.sender_id,
            client_msg_id: entry.client_msg_id,
            body_hash: entry.body_hash,
            body_len: 16,
            sent_at_ms: entry.id.major,
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

fn false_failure(generated: &mut Generated, pick: usize) -> Option<Vec<ExpectedAnomaly>> {
    let events = &mut generated.history.events;
    // Acks of a message sent exactly once before them, acked once.
    let sends_of = |key: (ConversationIx, Uuid), events: &[Event]| {
        events
            .iter()
            .filter(|event| {
                event.conversation == key.0
                    && matches!(&event.kind, EventKind::Send { client_msg_id, .. } | EventKind::SendOutcome {
 client_msg_id,
 outcome: SendOutcome::Acked { .. },
 } if *client_msg_id == key.1)
            })
            .count()
    };
    let sites: Vec<usize> = events
        .iter()
        .enumerate()
        .filter_map(|(ix, event)| match event.kind {
            EventKind::SendOutcome {
                client_msg_id,
                outcome:
                    SendOutcome::Acked {
                        duplicate: false, ..
                    },
            } => Some((ix, (event.conversation, client_msg_id))),
            _ => None,
        })
        .filter(|(_, key)| sends_of(*key, events) == 2)
        .map(|(ix, _)| ix)
        .collect();
    let ix = choose(sites, pick)?;
    let ack = events[ix].clone();
    let EventKind::SendOutcome {
        client_msg_id,
        outcome: SendOutcome::Acked { id, .. },
    } = ack.kind
    else {
        return None;
    };
    let refusal = Event {
        kind: EventKind::SendOutcome {
            client_msg_id,
            outcome: SendOutcome::DefiniteFailure {
                code: ErrorCode::Unavailable,
                message: "not appended".into(),
            },
        },
        ..ack.clone()
    };
    if pick & 1 == 0 {
        let send = events[..ix].iter().rev().find(|event| {
            matches!(&event.kind, EventKind::Send { client_msg_id: sent, .. } if *sent == client_msg_id)
        })?;
        let mut retry = Event {
            at_us: ack.at_us,
            device: ack.device,
            conversation: ack.conversation,
            socket: ack.socket,
            kind: send.kind.clone(),
        };
        if let EventKind::Send { attempt, .. } = &mut retry.kind {
            *attempt = 1;
        }
        if let EventKind::SendOutcome {
            outcome: SendOutcome::Acked { duplicate, .. },
            ..
        } = &mut events[ix].kind
        {
            *duplicate = true;
        }
        events.insert(ix, retry);
        events.insert(ix, refusal);
    } else {
        events[ix] = refusal;
    }
    let key = (ack.device, ack.conversation, ack.socket);
    Some(vec![expect(
        AnomalyKind::FalseFailure,
        1,
        key,
        Some(ack.socket),
        vec![id],
    )])
}
