//! The checker: judges a recorded history against the message log
//! (Jepsen/Maelstrom style: record first, check afterwards), and names
//! every anomaly with concrete examples.
//!
//! Rules, where the protocol leaves a choice (docs: `protocol-v1.md`):
//! - `lost`: a member (device, conversation) is owed every log entry after
//!   its first hello's `resume_from`, except ids a `gap` on any of its
//!   sockets declared (`resume_from < id < first_available`). With a
//!   complete drain every missing entry is lost. Without one, a missing
//!   entry is lost only if the device received a later entry of that
//!   conversation (it provably moved past it); the rest become an unknown
//!   reason ("did not catch up: N messages outstanding").
//! - `duplicate` / `redelivered`: an id a device received before. Within
//!   one socket it is always `duplicate`. Across sockets it is
//!   `redelivered` only for a stored-cursor device whose new socket's hello
//!   said `cursor: "stored"` and whose id lies above that stored cursor,
//!   or whose hello said `cursor: "none"` before any server had provably
//!   read an ack of the device in that conversation and lived to save it
//!   (nothing to store, so "none" is the truth; see `ack_proof`);
//!   anything else (a client cursor, `cursor: "none"` after an ack) is
//!   `duplicate`.
//! - `reorder`: on one socket, an id below the previous delivered id that
//!   this socket had not delivered yet. A repeat on the same socket is only
//!   a `duplicate` (one name per receipt); a repeat of an id from an
//!   earlier socket can be both (two different guarantees broke).
//! - `skip`: after its hello a socket owes every log id above
//!   `resume_from` (from `first_available` after a gap). An owed id the
//!   socket jumped over and never delivered is a skip, even if another
//!   socket delivered it later. Jumped over but delivered later on the same
//!   socket is a `reorder`, not a skip.
//! - `phantom`: a receipt of an id not in the log (Redis log only), or of
//!   a client_msg_id no device sent (both logs). Phantoms get no delivery
//!   checks. `corrupt`: a receipt whose client_msg_id, sender or body
//!   differs from its log entry, or a log entry whose sender or body
//!   differs from the `Send` of its client_msg_id.
//! - `lost_ack` / `duplicate_append`: see `appends`.
//! - `false_gap`: a `gap` is believed only if the log bears it out; a
//!   message the device never received under a gap that the log disproves
//!   is `false_gap`, not excused and not `lost` (see `gaps`).
//! - `leak`: a receipt that belongs to another conversation than its
//!   socket's (see `leak`); no delivery checks, like a phantom. Also any
//!   frame an intruder without the right to read got, and any change to
//!   the stored cursor of a device whose `client_id` an intruder presented
//!   (`leak::check_intruders`).
//! - `false_caught_up`: a socket's first `caught_up` must match what it
//!   wrote before it and cover what was acked before it connected (see
//!   `claims`).
//! - `false_failure`: a send told `unavailable` ("not appended") that was
//!   appended anyway (see `false_failure`); `indeterminate` and `internal`
//!   promise nothing and are never held against the server.
//!
//! Every claim a server makes and the rule that holds it to the truth is
//! listed in docs/checker.md.
//!
//! Runs that destroy Redis data (`allow_lost_ack`: a wipe, a restart
//! without persistence) lose acked messages by design, and the log read
//! back holds only what was appended after the last loss:
//! - `lost_ack` is still counted and reported, but is no violation.
//! - A receipt of an id not in the log whose client_msg_id some device sent
//!   (in that conversation) is a wiped message, not a phantom: `corrupt` is
//!   judged against its `Send` (sender user, body); it owes nothing and
//!   moves no "owed" pointer, but counts for `duplicate` and `reorder` on
//!   its socket (ids on one socket increase across a wipe too: new stream
//!   ids are newer). An unknown client_msg_id is still a phantom.
//! - The stored cursor and the epoch live in Redis too, so a reconnect may
//!   replay messages the device had, with no way for the server to know:
//!   a repeat of an id at or after `first_available` on a socket whose gap
//!   said `epoch_changed`, or on a stored-cursor device's socket whose
//!   hello said `cursor: "none"` (its stored cursor was wiped), is
//!   `redelivered`, not `duplicate`.

mod ack_proof;
mod appends;
mod claims;
mod delivery;
mod false_failure;
mod findings;
mod gaps;
mod index;
#[cfg(test)]
mod intruder_tests;
mod leak;
mod outcome;
mod rebuild;
#[cfg(test)]
mod recovered_tests;
#[cfg(any(test, feature = "testgen"))]
pub mod testgen;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wipe_tests;

pub use outcome::*;
pub use rebuild::{rebuild_log, rebuild_log_from_passes};

use std::path::Path;

use crate::history::{Event, History, HistoryError, HistoryPasses, MessageLog, RunMeta};
use crate::scenario::Expectations;

/// What a check needs besides the history, whether the history is in
/// memory ([`check`]) or streamed from its file ([`check_file`]).
#[derive(Debug, Clone)]
pub struct CheckOptions<'a> {
    pub log: &'a MessageLog,
    pub expect: &'a Expectations,
    /// Whether every device reconnected and caught up at the end; without
    /// it the verdict is at best `Unknown`.
    pub drain_complete: bool,
    /// Reasons known before checking why the verdict cannot be `Valid`.
    pub unknown_reasons: Vec<String>,
    /// How long the target keeps messages, if known. A `trimmed` gap may
    /// then cover entries older than this at the gap's time even if the
    /// stream still holds them; `None` applies the protocol strictly
    /// (`first_available` is the oldest retained entry).
    pub retention: Option<std::time::Duration>,
    /// What the run's intruders got (`[intruders]`); see `leak`.
    pub intruders: &'a [crate::intruders::IntruderRecord],
}

impl<'a> CheckOptions<'a> {
    /// A run that drained completely, with no reason known beforehand why
    /// it cannot be valid, no known retention and no intruders; set the
    /// other fields with struct update syntax where they differ.
    pub fn new(log: &'a MessageLog, expect: &'a Expectations) -> Self {
        CheckOptions {
            log,
            expect,
            drain_complete: true,
            unknown_reasons: Vec::new(),
            retention: None,
            intruders: &[],
        }
    }
}

/// Judges a history held in memory against its log.
pub fn check(history: &History, options: &CheckOptions) -> CheckOutcome {
    let events = &history.events;
    check_events(options, &history.meta, Walk::Stream, || events.iter())
}

/// Judges the history file at `path` (`history.bin`, or the older
/// `history.jsonl`) against its log without loading it: the file is read
/// twice, one event at a time, so memory does not grow with the history.
/// The JSON-lines file is loaded whole (it is an export, not what runs
/// write).
pub fn check_file(path: &Path, options: &CheckOptions) -> Result<CheckOutcome, HistoryError> {
    check_passes(&HistoryPasses::open(path)?, options)
}

/// [`check_file`] on a history file already opened.
pub fn check_passes(
    history: &HistoryPasses,
    options: &CheckOptions,
) -> Result<CheckOutcome, HistoryError> {
    let outcome = check_events(options, history.meta(), Walk::Stream, || history.events());
    // A pass that ended early judged half a history: no verdict.
    history.finish()?;
    Ok(outcome)
}

/// How the delivery checks walk each slot's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// As they stream past, gathering only slots the recording has out of
    /// (socket, time) order.
    Stream,
    /// Gathering and sorting every slot first: the reference the streaming
    /// walk is tested against.
    #[cfg(test)]
    GatherAll,
}

/// `check` against the slot-by-slot walk of every slot's sorted events.
#[cfg(test)]
fn check_gathering_every_slot(history: &History, options: &CheckOptions) -> CheckOutcome {
    let events = &history.events;
    check_events(options, &history.meta, Walk::GatherAll, || events.iter())
}

/// `check`, reading the events through `events` (called twice, each time
/// for the whole history in recording order). Beyond the message log and
/// per-message facts, memory is per (device, conversation) slot and per
/// reconnect, never per event: a history streamed from disk is never held.
fn check_events<I, E>(
    input: &CheckOptions,
    meta: &RunMeta,
    walk: Walk,
    mut events: impl FnMut() -> I,
) -> CheckOutcome
where
    I: Iterator<Item = E>,
    E: std::borrow::Borrow<Event>,
{
    let mut reasons = input.unknown_reasons.clone();
    let log = index::LogIndex::build(input.log, meta.conversations.len(), &mut reasons);
    // Pass 1: everything the receipts are judged against.
    let mut slots = index::SlotTable::new(meta, &mut reasons);
    let mut messages = appends::MessageIndex::default();
    let mut attempts = false_failure::AttemptTally::default();
    let mut epochs = gaps::EpochsSeen::new(meta.conversations.len());
    for event in events() {
        let event = event.borrow();
        slots.add(event);
        messages.add(event);
        attempts.add(event);
        epochs.add(event);
    }
    slots.explain(&mut reasons);
    #[cfg(test)]
    if walk == Walk::GatherAll {
        slots.gather_all();
    }
    #[cfg(not(test))]
    let _ = walk; // Only tests gather every slot.
    let mut findings = findings::Findings::new(meta);
    let facts = appends::check_appends(meta, &log, &messages, &mut findings);
    false_failure::check_false_failures(meta, attempts, &log, &mut findings);
    let judge = appends::ReceiptJudge {
        meta,
        log: &log,
        facts: &facts,
        messages: &messages,
        allow_lost_ack: input.expect.allow_lost_ack,
    };
    let delivery_input = delivery::DeliveryInput {
        meta,
        slots: &slots,
        epochs_vary: &epochs.vary,
        judge: &judge,
        drain_complete: input.drain_complete,
        retention: input.retention,
    };
    // Pass 2: the delivery checks.
    let delivered =
        delivery::check_deliveries(&delivery_input, events(), &mut findings, &mut reasons);
    leak::check_intruders(meta, input.intruders, &mut findings);

    if !input.drain_complete && reasons.is_empty() {
        reasons.push("the drain did not complete, though every device seen had caught up".into());
    }
    let anomalies = findings.into_reports(|kind| is_violation(kind, input.expect));
    let verdict = if anomalies.values().any(|report| report.violation) {
        Verdict::Invalid
    } else if !reasons.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    let stats = CheckStats {
        messages_in_log: log.conversations.iter().map(|conv| conv.len() as u64).sum(),
        deliveries_checked: delivered.deliveries,
        devices_checked: delivered.devices,
        sockets_checked: delivered.sockets,
        sends_acked: messages.sends_acked(),
        declared_gaps: delivered.declared_gaps,
    };
    CheckOutcome {
        verdict,
        log_source: input.log.source,
        anomalies,
        unknown_reasons: reasons,
        stats,
    }
}

/// Whether `kind` breaks the scenario's expectations; kinds that do not
/// are still counted and reported.
pub fn is_violation(kind: AnomalyKind, expect: &Expectations) -> bool {
    match kind {
        AnomalyKind::Lost => expect.no_loss,
        AnomalyKind::Duplicate => expect.no_duplicates,
        AnomalyKind::Redelivered => expect.no_duplicates && !expect.allow_stored_cursor_redelivery,
        AnomalyKind::Reorder | AnomalyKind::Skip => expect.order,
        // Only a scenario that destroys Redis data on purpose may lose acked
        // messages; the count is reported either way.
        AnomalyKind::LostAck => !expect.allow_lost_ack,
        // Loss that a server called a gap is still loss.
        AnomalyKind::FalseGap => expect.no_loss,
        AnomalyKind::Phantom
        | AnomalyKind::DuplicateAppend
        | AnomalyKind::Corrupt
        | AnomalyKind::Leak
        | AnomalyKind::FalseCaughtUp
        | AnomalyKind::FalseFailure => true,
    }
}
