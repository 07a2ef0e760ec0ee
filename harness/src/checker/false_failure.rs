//! `false_failure`: a send answered with a definite failure (v1: `error
//! unavailable`) promises "NOT appended"; an indeterminate answer (v1:
//! `indeterminate`, `internal`) promises nothing. The promise is false
//! when the message is appended after all and no other attempt can have
//! done it:
//!
//! - the first `ack` of the message says `duplicate: true`, and every
//!   attempt written before it was answered `unavailable`: the original
//!   append the ack points back to came from one of those attempts;
//! - or the message is never acked, every attempt was answered
//!   `unavailable`, and the log holds it anyway.
//!
//! An attempt that got no answer (its socket dropped) may have appended
//! the message, so a history with one is never judged: the rule only
//! fires where every attempt but the acked one was told "not appended".

use crate::history::{Position, SendOutcome};
use fnv::FnvHashMap;

use super::appends::MsgKey;
use super::findings::{device_label, Findings, Site};
use super::index::LogIndex;
use super::outcome::AnomalyKind;
use crate::history::{Event, EventKind, RunMeta};

/// What the attempts of one message got, up to its first ack.
#[derive(Default)]
struct Attempts {
    sends: u32,
    definite_failures: u32,
    /// The first `unavailable` answer: where the false promise was made.
    first_failure: Option<Site>,
    /// The first ack: its id and `duplicate` flag.
    first_ack: Option<(Position, bool)>,
}

/// The attempts of every message, tallied in one pass over the history
/// (`add` sees every event).
#[derive(Default)]
pub(crate) struct AttemptTally {
    by_key: FnvHashMap<MsgKey, Attempts>,
}

impl AttemptTally {
    /// Sees one event, in recording order.
    pub fn add(&mut self, event: &Event) {
        tally(event, &mut self.by_key);
    }
}

/// Judges every message that was told "not appended" at least once.
pub(crate) fn check_false_failures(
    meta: &RunMeta,
    tally: AttemptTally,
    log: &LogIndex,
    findings: &mut Findings,
) {
    let by_key = tally.by_key;
    let mut judged: Vec<(MsgKey, Attempts)> = by_key
        .into_iter()
        .filter(|(_, attempts)| attempts.definite_failures > 0)
        .collect();
    judged.sort_unstable_by_key(|(key, _)| *key);
    for (key, attempts) in judged {
        let Some(site) = attempts.first_failure else {
            continue;
        };
        let every_other_attempt_failed = match attempts.first_ack {
            Some(_) => attempts.definite_failures + 1 == attempts.sends,
            None => attempts.definite_failures == attempts.sends,
        };
        if !every_other_attempt_failed {
            continue;
        }
        let evidence = match attempts.first_ack {
            Some((id, true)) => Some((
                id,
                format!("its retry was acked at {id} with `duplicate: true`"),
            )),
            Some((_, false)) => None,
            None => in_log(log, key).map(|id| {
                (
                    id,
                    format!("it was never acked, yet the log holds it at {id}"),
                )
            }),
        };
        let Some((id, evidence)) = evidence else {
            continue;
        };
        findings.record(AnomalyKind::FalseFailure, site, || {
            let device = site
                .device
                .map_or_else(|| "a device".to_string(), |d| device_label(meta, d));
            (
                vec![id],
                format!(
                    "{device} was told `unavailable` (not appended) for client_msg_id {} in \
                     conversation {}, and every other attempt too, but {evidence}: an attempt \
                     that was told it failed had appended it",
                    key.1, key.0
                ),
            )
        });
    }
}

fn tally(event: &Event, by_key: &mut FnvHashMap<MsgKey, Attempts>) {
    let (client_msg_id, answer) = match &event.kind {
        EventKind::Send { client_msg_id, .. } => (*client_msg_id, None),
        EventKind::SendOutcome {
            client_msg_id,
            outcome,
        } => (*client_msg_id, Some(outcome)),
        _ => return,
    };
    let attempts = by_key
        .entry((event.conversation, client_msg_id))
        .or_default();
    if attempts.first_ack.is_some() {
        // Only what came before the first ack is judged.
        return;
    }
    match answer {
        None => attempts.sends += 1,
        Some(SendOutcome::Acked { id, duplicate }) => attempts.first_ack = Some((*id, *duplicate)),
        Some(SendOutcome::DefiniteFailure { .. }) => {
            attempts.definite_failures += 1;
            attempts.first_failure.get_or_insert(Site {
                device: Some(event.device),
                conversation: event.conversation,
                socket: Some(event.socket),
                at_us: Some(event.at_us),
                client_msg_id: Some(client_msg_id),
            });
        }
        Some(SendOutcome::Indeterminate { .. } | SendOutcome::Rejected { .. }) => {}
    }
}

/// The id at which the log holds this message, if it does.
fn in_log(log: &LogIndex, key: MsgKey) -> Option<Position> {
    let conv = log.conversations.get(key.0 as usize)?;
    conv.entries
        .iter()
        .zip(&conv.ids)
        .find(|(entry, _)| entry.client_msg_id == key.1)
        .map(|(_, id)| *id)
}
