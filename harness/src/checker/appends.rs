//! What the writers did against what the log holds: `lost_ack`,
//! `duplicate_append`, and the per-receipt `phantom` / `corrupt` judgement
//! that the delivery pass calls for every `Recv`.
//!
//! A message is identified by (conversation, client_msg_id): the protocol
//! makes sends idempotent per conversation, not globally.

use crate::history::Position;
use fnv::FnvHashMap;
use uuid::Uuid;

use super::findings::{device_label, Findings, Site};
use super::index::LogIndex;
use super::outcome::AnomalyKind;
use crate::history::{
    ConversationIx, DeviceIx, Event, EventKind, LogEntry, LogOrigin, RunMeta, SendOutcome,
};

pub(crate) type MsgKey = (ConversationIx, Uuid);

/// The first `Send` of a client_msg_id (retries repeat the same body).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendRef {
    pub device: DeviceIx,
    pub socket: u32,
    pub at_us: u64,
    pub body_hash: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct AckRef {
    pub id: Position,
    pub device: DeviceIx,
    pub socket: u32,
    pub at_us: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MsgInfo {
    pub send: Option<SendRef>,
    pub ack: Option<AckRef>,
}

/// Sends and acks by message, built in one pass over the history (`add`
/// sees every event): memory grows with messages, not with receipts.
#[derive(Default)]
pub(crate) struct MessageIndex {
    pub by_key: FnvHashMap<MsgKey, MsgInfo>,
    /// Acks whose id differs from the first ack of the same message: rare,
    /// so kept apart instead of a vector in every `MsgInfo`.
    other_acks: Vec<(MsgKey, AckRef)>,
}

impl MessageIndex {
    /// Sees one event, in recording order.
    pub fn add(&mut self, event: &Event) {
        let by_key = &mut self.by_key;
        let other_acks = &mut self.other_acks;
        match &event.kind {
            EventKind::Send {
                client_msg_id,
                body_hash,
                ..
            } => {
                let info = by_key
                    .entry((event.conversation, *client_msg_id))
                    .or_default();
                info.send.get_or_insert(SendRef {
                    device: event.device,
                    socket: event.socket,
                    at_us: event.at_us,
                    body_hash: *body_hash,
                });
            }
            EventKind::SendOutcome {
                client_msg_id,
                outcome: SendOutcome::Acked { id, .. },
            } => {
                let key = (event.conversation, *client_msg_id);
                let ack = AckRef {
                    id: *id,
                    device: event.device,
                    socket: event.socket,
                    at_us: event.at_us,
                };
                let info = by_key.entry(key).or_default();
                match info.ack {
                    None => info.ack = Some(ack),
                    Some(first) if first.id != ack.id => other_acks.push((key, ack)),
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }

    pub fn was_sent(&self, key: MsgKey) -> bool {
        self.send_of(key).is_some()
    }

    /// The first `Send` of a message, if any device sent it.
    pub fn send_of(&self, key: MsgKey) -> Option<SendRef> {
        self.by_key.get(&key).and_then(|info| info.send)
    }

    /// Distinct messages that got at least one ack.
    pub fn sends_acked(&self) -> u64 {
        self.by_key
            .values()
            .filter(|info| info.ack.is_some())
            .count() as u64
    }
}

/// Per log position, what the delivery pass needs without hashing again.
pub(crate) struct LogFacts {
    /// Whether some device sent this entry's client_msg_id.
    pub cmid_sent: Vec<bool>,
    /// When the message was acked (else first sent); `u64::MAX` if unknown.
    pub appended_at_us: Vec<u64>,
    /// When the message was first acked; `u64::MAX` if never.
    pub acked_at_us: Vec<u64>,
    /// Earliest ack time of this position or any later one.
    pub acked_from: Vec<u64>,
}

/// Checks the log against sends and acks; returns facts for the delivery pass.
pub(crate) fn check_appends(
    meta: &RunMeta,
    log: &LogIndex,
    messages: &MessageIndex,
    findings: &mut Findings,
) -> Vec<LogFacts> {
    let mut facts = Vec::with_capacity(log.conversations.len());
    // client_msg_id -> every id it sits at in the log, only for repeats.
    let mut repeated_in_log: FnvHashMap<MsgKey, Vec<Position>> = FnvHashMap::default();
    for (conversation, conv) in log.conversations.iter().enumerate() {
        let conversation = conversation as ConversationIx;
        let mut first_position: FnvHashMap<Uuid, usize> = FnvHashMap::default();
        let mut cmid_sent = Vec::with_capacity(conv.len());
        let mut appended_at_us = Vec::with_capacity(conv.len());
        let mut acked_at_us = Vec::with_capacity(conv.len());
        for (position, entry) in conv.entries.iter().enumerate() {
            let key = (conversation, entry.client_msg_id);
            if let Some(&first) = first_position.get(&entry.client_msg_id) {
                repeated_in_log
                    .entry(key)
                    .or_insert_with(|| vec![conv.ids[first]])
                    .push(entry.id);
            } else {
                first_position.insert(entry.client_msg_id, position);
            }
            let info = messages.by_key.get(&key).copied().unwrap_or_default();
            cmid_sent.push(info.send.is_some());
            // Only an ack of this very id proves this entry existed then
            // (a retry may have been acked at another id).
            acked_at_us.push(
                info.ack
                    .filter(|ack| ack.id == entry.id)
                    .map_or(u64::MAX, |ack| ack.at_us),
            );
            appended_at_us.push(
                info.ack
                    .map(|ack| ack.at_us)
                    .or(info.send.map(|send| send.at_us))
                    .unwrap_or(u64::MAX),
            );
            if let Some(send) = info.send {
                check_entry_against_send(meta, send, key, entry, findings);
            }
        }
        facts.push(LogFacts {
            cmid_sent,
            appended_at_us,
            acked_from: super::claims::earliest_ack_from(&acked_at_us),
            acked_at_us,
        });
    }
    check_acks(meta, log, messages, findings);
    check_duplicate_appends(meta, messages, repeated_in_log, findings);
    facts
}

fn check_entry_against_send(
    meta: &RunMeta,
    send: SendRef,
    key: MsgKey,
    entry: &LogEntry,
    findings: &mut Findings,
) {
    let (conversation, id) = (key.0, entry.id);
    let sender_user = meta
        .devices
        .get(send.device as usize)
        .map(|info| info.user_id);
    let sender_ok = sender_user.is_none_or(|user| user == entry.sender_id);
    let body_ok = send.body_hash == entry.body_hash;
    if sender_ok && body_ok {
        return;
    }
    let site = Site {
        device: Some(send.device),
        conversation,
        socket: Some(send.socket),
        at_us: Some(send.at_us),
        client_msg_id: Some(key.1),
    };
    findings.record(AnomalyKind::Corrupt, site, || {
        let what = match (sender_ok, body_ok) {
            (false, false) => "sender and body",
            (false, true) => "sender",
            _ => "body",
        };
        (
            vec![id],
            format!(
                "log entry {id} in conversation {conversation} holds a different {what} than \
                 {} sent with client_msg_id {}",
                device_label(meta, send.device),
                key.1
            ),
        )
    });
}

/// `lost_ack`: an acked id that does not hold the acked message.
fn check_acks(meta: &RunMeta, log: &LogIndex, messages: &MessageIndex, findings: &mut Findings) {
    let firsts = messages
        .by_key
        .iter()
        .filter_map(|(key, info)| info.ack.map(|ack| (*key, ack)));
    for (key, ack) in firsts.chain(messages.other_acks.iter().copied()) {
        let conv = &log.conversations[key.0 as usize];
        let holder = conv
            .position(ack.id)
            .map(|position| conv.entries[position].client_msg_id);
        if holder == Some(key.1) {
            continue;
        }
        let site = Site {
            device: Some(ack.device),
            conversation: key.0,
            socket: Some(ack.socket),
            at_us: Some(ack.at_us),
            client_msg_id: Some(key.1),
        };
        findings.record(AnomalyKind::LostAck, site, || {
            let found = match holder {
                None => format!("the log of conversation {} has no entry {}", key.0, ack.id),
                Some(other) => format!("log entry {} holds client_msg_id {other} instead", ack.id),
            };
            (
                vec![ack.id],
                format!(
                    "{} got ack {} for client_msg_id {} but {found}",
                    device_label(meta, ack.device),
                    ack.id,
                    key.1
                ),
            )
        });
    }
}

/// `duplicate_append`: one message at two ids, in the log or in the acks.
/// Counted once per message, with every id it was seen at.
fn check_duplicate_appends(
    meta: &RunMeta,
    messages: &MessageIndex,
    mut repeated_in_log: FnvHashMap<MsgKey, Vec<Position>>,
    findings: &mut Findings,
) {
    let mut acked_twice: FnvHashMap<MsgKey, Vec<AckRef>> = FnvHashMap::default();
    for (key, ack) in &messages.other_acks {
        acked_twice.entry(*key).or_default().push(*ack);
    }
    let mut keys: Vec<MsgKey> = repeated_in_log
        .keys()
        .chain(acked_twice.keys())
        .copied()
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let info = messages.by_key.get(&key).copied().unwrap_or_default();
        let mut ids = repeated_in_log.remove(&key).unwrap_or_default();
        let extra_acks = acked_twice.remove(&key).unwrap_or_default();
        ids.extend(info.ack.iter().chain(&extra_acks).map(|ack| ack.id));
        ids.sort_unstable();
        ids.dedup();
        // Prefer the ack that revealed the second id: that is the retry.
        let (device, socket, at_us) = match (extra_acks.first(), info.send) {
            (Some(ack), _) => (Some(ack.device), Some(ack.socket), Some(ack.at_us)),
            (None, Some(send)) => (Some(send.device), Some(send.socket), Some(send.at_us)),
            (None, None) => (None, None, None),
        };
        let site = Site {
            device,
            conversation: key.0,
            socket,
            at_us,
            client_msg_id: Some(key.1),
        };
        findings.record(AnomalyKind::DuplicateAppend, site, || {
            let listed: Vec<String> = ids.iter().map(ToString::to_string).collect();
            let sender = info.send.map_or_else(
                || "no device".to_string(),
                |send| device_label(meta, send.device),
            );
            let detail = format!(
                "client_msg_id {} (sent by {sender}) was appended to conversation {} at {} ids: {}",
                key.1,
                key.0,
                ids.len(),
                listed.join(", ")
            );
            (ids.clone(), detail)
        });
    }
}

/// How one `Recv` relates to the log.
pub(crate) enum Receipt {
    /// At this log position; delivery checks apply.
    InLog(usize),
    /// Not in the log, but some device sent it and the scenario destroys
    /// Redis data: a message that existed and was wiped. Checked against
    /// its `Send`; it owes nothing and moves no "owed" pointer, but still
    /// counts for duplicates and order on its socket.
    Vanished,
    /// Reported as `phantom`; no delivery checks.
    Phantom,
    /// A message of another conversation, reported as `leak`; no delivery
    /// checks (it owes this socket nothing).
    Leaked,
    /// A rebuilt log lacks the id though the message was sent: the log and
    /// the history do not belong together.
    Unplaced,
}

/// The fields of a `Recv` that the log is compared with.
pub(crate) struct Received {
    pub id: Position,
    pub sender_id: Uuid,
    pub client_msg_id: Uuid,
    pub body_hash: u64,
    /// Where in the log it most likely sits (right after the socket's
    /// previous receipt); only a shortcut, any value is correct.
    pub position_hint: usize,
}

/// Everything a receipt is judged against.
pub(crate) struct ReceiptJudge<'a> {
    pub meta: &'a RunMeta,
    pub log: &'a LogIndex<'a>,
    pub facts: &'a [LogFacts],
    pub messages: &'a MessageIndex,
    /// The scenario destroys Redis data (`Expectations::allow_lost_ack`):
    /// an id missing from the log may be a message that was wiped.
    pub allow_lost_ack: bool,
}

impl ReceiptJudge<'_> {
    /// Judges one receipt: `phantom` when it is not in the log (Redis log,
    /// unless wiped data is allowed and some device sent it) or nobody
    /// sent it; `corrupt` when it differs from its log entry (or from its
    /// `Send` when it has none).
    pub fn judge(&self, received: &Received, site: Site, findings: &mut Findings) -> Receipt {
        let meta = self.meta;
        let conv = &self.log.conversations[site.conversation as usize];
        let facts = &self.facts[site.conversation as usize];
        let source = self.log.source;
        let messages = self.messages;
        let device = site.device.unwrap_or_default();
        let id = received.id;
        let Some(position) = conv.position_near(id, received.position_hint) else {
            let send = messages.send_of((site.conversation, received.client_msg_id));
            if send.is_none() {
                if let Some(receipt) = self.leaked(received, site, findings) {
                    return receipt;
                }
            }
            match (source, send) {
                (LogOrigin::Rebuilt, Some(_)) => return Receipt::Unplaced,
                (LogOrigin::Redis, Some(send)) if self.allow_lost_ack => {
                    self.check_vanished(received, send, site, findings);
                    return Receipt::Vanished;
                }
                _ => {}
            }
            let allow_lost_ack = self.allow_lost_ack;
            findings.record(AnomalyKind::Phantom, site, || {
                let why = match (source, allow_lost_ack) {
                    (LogOrigin::Redis, false) => format!(
                        "id {id} is not in the log of conversation {}",
                        site.conversation
                    ),
                    (LogOrigin::Redis, true) => format!(
                        "id {id} is not in the log of conversation {} and no device sent \
                         its client_msg_id {} (so it is no wiped message)",
                        site.conversation, received.client_msg_id
                    ),
                    (LogOrigin::Rebuilt, _) => format!(
                        "no device sent its client_msg_id {}",
                        received.client_msg_id
                    ),
                };
                (
                    vec![id],
                    format!("{} received {id}, but {why}", device_label(meta, device)),
                )
            });
            return Receipt::Phantom;
        };
        let entry = conv.entries[position];
        let same_message = received.client_msg_id == entry.client_msg_id;
        let sent = if same_message {
            facts.cmid_sent[position]
        } else {
            messages.was_sent((site.conversation, received.client_msg_id))
        };
        if !sent {
            // Another conversation's message whose id happens to exist here.
            if let Some(receipt) = self.leaked(received, site, findings) {
                return receipt;
            }
        }
        if !sent {
            findings.record(AnomalyKind::Phantom, site, || {
                let detail = format!(
                    "{} received {id} with client_msg_id {}, which no device sent",
                    device_label(meta, device),
                    received.client_msg_id
                );
                (vec![id], detail)
            });
        }
        let sender_ok = received.sender_id == entry.sender_id;
        let body_ok = received.body_hash == entry.body_hash;
        if !(same_message && sender_ok && body_ok) {
            findings.record(AnomalyKind::Corrupt, site, || {
                let mut differing = Vec::new();
                if !same_message {
                    differing.push("client_msg_id");
                }
                if !sender_ok {
                    differing.push("sender");
                }
                if !body_ok {
                    differing.push("body");
                }
                let detail = format!(
                    "{} received {id} with a {} that differs from the log entry",
                    device_label(meta, device),
                    differing.join(" and ")
                );
                (vec![id], detail)
            });
        }
        Receipt::InLog(position)
    }

    /// `leak` if the receipt belongs to another conversation than its
    /// socket's.
    fn leaked(&self, received: &Received, site: Site, findings: &mut Findings) -> Option<Receipt> {
        let owner = super::leak::owner_elsewhere(
            self.log,
            self.messages,
            site.conversation,
            received.id,
            received.client_msg_id,
        )?;
        super::leak::record_leak(
            findings,
            self.meta,
            self.messages,
            site,
            owner,
            received.id,
            received.client_msg_id,
        );
        Some(Receipt::Leaked)
    }

    /// `corrupt` for a receipt whose log entry was wiped: only the `Send`
    /// of its client_msg_id is left to compare with.
    fn check_vanished(
        &self,
        received: &Received,
        send: SendRef,
        site: Site,
        findings: &mut Findings,
    ) {
        let meta = self.meta;
        let sender_user = meta
            .devices
            .get(send.device as usize)
            .map(|info| info.user_id);
        let sender_ok = sender_user.is_none_or(|user| user == received.sender_id);
        let body_ok = send.body_hash == received.body_hash;
        if sender_ok && body_ok {
            return;
        }
        let id = received.id;
        let device = site.device.unwrap_or_default();
        findings.record(AnomalyKind::Corrupt, site, || {
            let what = match (sender_ok, body_ok) {
                (false, false) => "sender and body",
                (false, true) => "sender",
                _ => "body",
            };
            let detail = format!(
                "{} received {id} (not in the log: wiped) with a {what} that differs from \
                 what {} sent with client_msg_id {}",
                device_label(meta, device),
                device_label(meta, send.device),
                received.client_msg_id
            );
            (vec![id], detail)
        });
    }
}
