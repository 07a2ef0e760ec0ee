//! `false_gap`: holding a server's declared gaps to the log.
//!
//! A `gap` says "what lies strictly between `resume_from` and
//! `first_available` may be lost"; the checker forgives the device for
//! never receiving those messages. That trust must be earned:
//! - `trimmed`: the protocol sets `first_available` to the oldest entry
//!   the stream still retains. A log entry in the declared range that the
//!   log read back after the run still holds was retained at the time of
//!   the gap (nothing re-adds a trimmed id), so the claim is false, unless
//!   the target's retention (when known) had expired the entry by the
//!   gap's time (approximate trimming may leave expired entries behind).
//!   A rebuilt log (acks and receipts) cannot show what the stream still
//!   held, so there only the retention rule can convict, and only when the
//!   retention is known.
//! - `epoch_changed`: only true if the epoch the cursor belongs to differs
//!   from the socket's `hello` epoch: the `epoch` the device sent with a
//!   client cursor, or else (stored cursor, no epoch sent) any second
//!   epoch in the conversation's hellos. A gap whose range the log (read
//!   back from Redis) still holds, while the epoch never changed, is false.
//!
//! Gaps with nothing of the log in their range skip nothing and are not
//! judged. Messages the device never received under a false gap are
//! reported as `false_gap` instead of `lost` (or instead of being excused).
//! Honest gaps after a Redis wipe (`allow_lost_ack` runs) stay honest: the
//! wiped entries are not in the log read back, and a recreated stream
//! comes with a new epoch.

use std::ops::Range;
use std::time::Duration;

use crate::history::{CursorOrigin, GapReason, Position};

use super::findings::device_label;
use super::index::ConvLog;
use crate::history::{ConversationIx, DeviceIx, Event, EventKind, LogOrigin, RunMeta};

/// How far the harness's clock and the server's id clock may disagree
/// when an entry's age is compared with the retention; in the server's
/// favour.
const CLOCK_SLACK_MS: u64 = 60_000;

/// One `gap` frame as the delivery pass saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeclaredGap {
    pub socket: u32,
    pub at_us: u64,
    pub resume_from: Position,
    pub first_available: Position,
    pub reason: GapReason,
}

/// A gap the log proves false, over log positions `positions`.
#[derive(Debug, Clone)]
pub(crate) struct FalseGap {
    pub gap: DeclaredGap,
    /// The convicting entries, to the end of the declared range; below
    /// them (expired under a known retention) the gap was honest.
    pub positions: Range<usize>,
    /// Entries of the range that convict the gap (still retained).
    retained: usize,
    /// Why the gap was not believed, for the example.
    why: &'static str,
}

impl FalseGap {
    /// Whether the gap declared log position `position` lost. Only the
    /// convicting entries' range counts: with a known retention, an
    /// expired entry below them was honestly declared.
    pub fn covers(&self, position: usize) -> bool {
        self.positions.contains(&position)
    }

    pub fn describe(
        &self,
        meta: &RunMeta,
        device: DeviceIx,
        conversation: ConversationIx,
        id: Position,
    ) -> String {
        let gap = &self.gap;
        format!(
            "{} never received {id} in conversation {conversation}: socket {} declared a `{}` gap \
             (resume_from {}, first_available {}) over it, but {}; {} messages of the declared \
             range were in fact available",
            device_label(meta, device),
            gap.socket,
            reason_name(gap.reason),
            gap.resume_from,
            gap.first_available,
            self.why,
            self.retained,
        )
    }
}

/// What a gap is judged with.
pub(crate) struct GapJudge<'a> {
    pub meta: &'a RunMeta,
    pub source: LogOrigin,
    pub retention: Option<Duration>,
    /// Whether the conversation's hellos ever announced two epochs.
    pub epochs_vary: bool,
}

impl GapJudge<'_> {
    /// `Some` if the gap over log positions `range` (non-empty) is false.
    /// `cursor` is the socket's hello (cursor source, epoch); `sent_epoch`
    /// the epoch the device sent when connecting.
    pub fn judge(
        &self,
        conv: &ConvLog,
        range: Range<usize>,
        gap: &DeclaredGap,
        cursor: Option<(CursorOrigin, &str)>,
        sent_epoch: Option<&str>,
    ) -> Option<FalseGap> {
        let (convicting, why) = match gap.reason {
            GapReason::Trimmed => {
                let convicting = self.still_retained(conv, range, gap.at_us)?;
                let why = match self.source {
                    LogOrigin::Redis => "the log still holds them (nothing was trimmed)",
                    LogOrigin::Rebuilt => {
                        "they were younger than the retention at the time of the gap"
                    }
                };
                (convicting, why)
            }
            GapReason::EpochChanged => {
                if self.source != LogOrigin::Redis || self.epoch_changed(cursor, sent_epoch) {
                    return None;
                }
                let why = match cursor {
                    Some((CursorOrigin::Client, epoch)) if sent_epoch == Some(epoch) => {
                        "the device resumed with the hello's own epoch and the log still holds them"
                    }
                    _ => {
                        "every hello of the conversation announced the same epoch and the log \
                         still holds them"
                    }
                };
                (range, why)
            }
            // The server says it could not recover: that is the declaration
            // itself, and nothing in the log can show it could have.
            GapReason::RecoveryFailed => return None,
        };
        Some(FalseGap {
            gap: *gap,
            retained: convicting.len(),
            positions: convicting,
            why,
        })
    }

    /// The positions of `range` that were certainly retained when the gap
    /// was declared (from the first such one to the end), if any.
    fn still_retained(
        &self,
        conv: &ConvLog,
        range: Range<usize>,
        at_us: u64,
    ) -> Option<Range<usize>> {
        let Some(retention) = self.retention else {
            // Without a retention only the log itself can convict.
            return (self.source == LogOrigin::Redis).then_some(range);
        };
        let gap_unix_ms = self.meta.started_at_unix_ms.saturating_add(at_us / 1_000);
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        // Entries at least this new had not expired: ids are append times.
        let newest_expired = gap_unix_ms
            .saturating_add(CLOCK_SLACK_MS)
            .saturating_sub(retention_ms);
        // v1 positions are Redis stream ids, whose major part is the append
        // time in ms; a retention is only known for such targets.
        let first_young =
            range.start + conv.ids[range.clone()].partition_point(|id| id.major <= newest_expired);
        (first_young < range.end).then_some(first_young..range.end)
    }

    fn epoch_changed(
        &self,
        cursor: Option<(CursorOrigin, &str)>,
        sent_epoch: Option<&str>,
    ) -> bool {
        match (cursor, sent_epoch) {
            (Some((CursorOrigin::Client, hello_epoch)), Some(sent)) => sent != hello_epoch,
            // A stored cursor's epoch is the server's; with no epoch sent
            // only the hellos can tell.
            _ => self.epochs_vary,
        }
    }
}

/// Per conversation: whether two hellos announced different epochs,
/// seen one event at a time (`add`).
pub(crate) struct EpochsSeen {
    first: Vec<Option<String>>,
    pub vary: Vec<bool>,
}

impl EpochsSeen {
    pub fn new(conversation_count: usize) -> Self {
        EpochsSeen {
            first: vec![None; conversation_count],
            vary: vec![false; conversation_count],
        }
    }

    /// Sees one event, in recording order.
    pub fn add(&mut self, event: &Event) {
        let EventKind::Connected {
            epoch: Some(epoch), ..
        } = &event.kind
        else {
            return;
        };
        let conversation = event.conversation as usize;
        let Some(first) = self.first.get_mut(conversation) else {
            return;
        };
        match first {
            None => *first = Some(epoch.clone()),
            Some(seen) if seen != epoch => self.vary[conversation] = true,
            Some(_) => {}
        }
    }
}

pub(crate) fn reason_name(reason: GapReason) -> &'static str {
    match reason {
        GapReason::Trimmed => "trimmed",
        GapReason::EpochChanged => "epoch_changed",
        GapReason::RecoveryFailed => "recovery_failed",
    }
}
