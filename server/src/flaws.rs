//! Deliberate recovery bugs, switchable with `--inject-flaw NAME`: a
//! TESTING AID that re-creates, one by one, the bugs the seed project
//! shipped, and three lies a server can tell (`false-gap`, `crosstalk`,
//! `unavailable-after-append`; docs/flaws.md), so the harness can prove
//! it catches each.
//! Never enable one in production; the server logs a loud warning.

use std::sync::atomic::{AtomicU64, Ordering};

use clap::ValueEnum;
use recovery_protocol::{GapReason, MessageFrame, StreamId};
use uuid::Uuid;

use crate::app::AppState;
use crate::session::resume::{DeclaredGap, ResumePlan};
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Flaw {
    /// Ignore the client's `client_id`; make a new one per connection, so a
    /// stored cursor is never found again (seed bug 1).
    NewClientId,
    /// Read the backlog, then register for live messages: what is appended
    /// in between is lost (seed bug 2).
    BacklogBeforeSubscribe,
    /// Register first but never drop the backlog/live overlap: it is sent
    /// twice (seed bug 2, "fixed").
    NoOverlapDedup,
    /// Resume with an inclusive range: the last message seen comes again
    /// on every reconnect (seed bug 3).
    InclusiveResume,
    /// Advance the stored cursor when a message is sent, not when the
    /// client acks it: what was in flight at a drop is lost (seed bug 4).
    CursorOnSend,
    /// One stored cursor per device shared by all its conversations
    /// (seed bug 5).
    CursorPerDevice,
    /// A socket whose live queue overflows drops messages instead of
    /// re-reading from Redis (seed bug 7, lagging receiver).
    DropOnLag,
    /// Live fan-out only to sockets of the same process (seed bug 7,
    /// in-memory broadcast).
    LocalFanout,
    /// On every second reconnect with a cursor that needs no gap, declare
    /// a `trimmed` gap up to the stream head and skip the backlog, though
    /// nothing was trimmed: loss disguised as a declared gap.
    FalseGap,
    /// Every 8th new message is appended, then answered `error
    /// unavailable` ("not appended") instead of `ack`: a definite failure
    /// that is false (the client's retry gets `duplicate: true`).
    UnavailableAfterAppend,
    /// Every 40th appended message also goes live to the sockets of
    /// another conversation (labelled with its own): one conversation's
    /// messages reach another conversation's members.
    Crosstalk,
}

/// The set of flaws switched on (usually empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flaws(Vec<Flaw>);

impl Flaws {
    pub fn new(flaws: &[Flaw]) -> Flaws {
        let mut list = flaws.to_vec();
        list.dedup();
        Flaws(list)
    }

    pub fn has(&self, flaw: Flaw) -> bool {
        self.0.contains(&flaw)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|flaw| flaw.to_possible_value().map(|v| v.get_name().to_string()))
            .collect()
    }
}

/// How often the counted flaws strike: every `FALSE_GAP_EVERY`th eligible
/// reconnect, every `CROSSTALK_EVERY`th / `DENY_APPEND_EVERY`th append.
const FALSE_GAP_EVERY: u64 = 2;
const CROSSTALK_EVERY: u64 = 40;
const DENY_APPEND_EVERY: u64 = 8;

static FALSE_GAP_TURN: AtomicU64 = AtomicU64::new(0);
static CROSSTALK_TURN: AtomicU64 = AtomicU64::new(0);
static DENY_APPEND_TURN: AtomicU64 = AtomicU64::new(0);

// `is_multiple_of` needs Rust 1.87; the workspace declares rust-version 1.85.
#[allow(clippy::manual_is_multiple_of)]
fn due(turn: &AtomicU64, every: u64) -> bool {
    turn.fetch_add(1, Ordering::Relaxed) % every == 0
}

/// Flaw `false-gap`: turns some honest resume plans (a cursor, no gap)
/// into a `trimmed` gap whose `first_available` is just past the stream
/// head, so the backlog is skipped. The plan is returned unchanged when
/// the flaw is off.
pub async fn disguise_loss(
    app: &AppState,
    conversation_id: Uuid,
    plan: ResumePlan,
) -> Result<ResumePlan, StoreError> {
    if !app.flaws.has(Flaw::FalseGap) || plan.gap.is_some() || plan.resume_from.is_zero() {
        return Ok(plan);
    }
    let Some(shape) = app.store.stream_shape(conversation_id).await? else {
        return Ok(plan);
    };
    // Only where there is a backlog to skip, and only every so often.
    if shape.last_generated_id <= plan.resume_from || !due(&FALSE_GAP_TURN, FALSE_GAP_EVERY) {
        return Ok(plan);
    }
    let first_available = shape.last_generated_id.successor().unwrap_or(StreamId::MAX);
    Ok(ResumePlan {
        gap: Some(DeclaredGap {
            first_available,
            reason: GapReason::Trimmed,
        }),
        ..plan
    })
}

/// Flaws that act on a message this process just appended: `local-fanout`
/// (hand it to this process's sockets, as there is no tailer) and
/// `crosstalk` (every so often, also to another conversation's sockets).
pub fn on_appended(app: &AppState, message: MessageFrame) {
    if app.flaws.has(Flaw::Crosstalk) && due(&CROSSTALK_TURN, CROSSTALK_EVERY) {
        app.fanout.crosstalk(message.clone());
    }
    if app.flaws.has(Flaw::LocalFanout) {
        app.fanout.publish_local(message);
    }
}

/// Flaw `unavailable-after-append`: whether to answer this new, already
/// appended message with a definite failure instead of its ack.
pub fn deny_append(app: &AppState) -> bool {
    app.flaws.has(Flaw::UnavailableAfterAppend) && due(&DENY_APPEND_TURN, DENY_APPEND_EVERY)
}
