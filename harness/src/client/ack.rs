//! When a socket sends its cumulative `ack`: coalesced, not per message.
//!
//! An ack is one `send` syscall on the harness (on loopback the server's
//! TCP receive runs inside it too) and one frame the server parses; at
//! churn-1k's ~2 messages per socket per second a 100 ms delay acked
//! nearly every message, one ack per 1.3 deliveries, about a quarter of
//! the harness's CPU (docs/performance.md, "Client CPU").
//!
//! Why a longer delay is safe: acks are cumulative, and the server saves
//! the highest one every sync interval (5 s by default) and once more on
//! disconnect (docs/protocol.md, section 9), so acking more often than
//! about once a second only narrows what an *abrupt* drop of a
//! stored-cursor device gets again, which the protocol allows
//! (at-least-once above the stored cursor; the checker calls those
//! `redelivered`, judged against the cursor the server's `hello`
//! announced, not against ack timing). A clean close still acks first
//! (the socket task does, before its close frame), so planned drops and
//! the run's end leave the stored cursor where the device is.

use std::time::Duration;

use tokio::time::Instant;

/// An ack goes out at the latest this long after the first message it
/// covers arrived.
pub const ACK_DELAY: Duration = Duration::from_secs(1);
/// ... or as soon as this many messages wait (a replay burst), so a
/// socket never holds much that an abrupt drop would make the server
/// send again.
pub const ACK_EVERY_MESSAGES: u32 = 64;

/// What the socket should do about acks after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckDue {
    /// Nothing waits to be acked: no timer.
    Idle,
    /// Send the ack now.
    Now,
    /// Arm (or keep) the ack timer for this instant.
    At(Instant),
}

/// Messages received on one socket and not acked yet.
#[derive(Debug, Default, Clone)]
pub struct AckBatch {
    waiting: u32,
    /// When the oldest waiting message arrived.
    since: Option<Instant>,
}

impl AckBatch {
    /// `count` messages arrived at `now` (one frame, or a batch of one
    /// frame's events).
    pub fn received(&mut self, count: u32, now: Instant) -> AckDue {
        if count == 0 {
            return self.due();
        }
        self.waiting = self.waiting.saturating_add(count);
        self.since.get_or_insert(now);
        self.due()
    }

    /// The ack timer fired at `now`: ack if its time has come.
    pub fn timer_fired(&self, now: Instant) -> AckDue {
        match self.due() {
            AckDue::At(at) if at <= now => AckDue::Now,
            other => other,
        }
    }

    /// An ack covering everything received went out.
    pub fn sent(&mut self) {
        *self = AckBatch::default();
    }

    pub fn waiting(&self) -> u32 {
        self.waiting
    }

    fn due(&self) -> AckDue {
        match self.since {
            None => AckDue::Idle,
            Some(_) if self.waiting >= ACK_EVERY_MESSAGES => AckDue::Now,
            Some(since) => AckDue::At(since + ACK_DELAY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nothing_received_means_no_timer() {
        let batch = AckBatch::default();
        assert_eq!(batch.timer_fired(Instant::now()), AckDue::Idle);
    }

    #[test]
    fn one_message_is_acked_after_the_delay_not_before() {
        let t0 = Instant::now();
        let mut batch = AckBatch::default();
        assert_eq!(batch.received(1, t0), AckDue::At(t0 + ACK_DELAY));
        // A later message does not push the deadline back.
        assert_eq!(
            batch.received(1, t0 + Duration::from_millis(900)),
            AckDue::At(t0 + ACK_DELAY)
        );
        assert_eq!(
            batch.timer_fired(t0 + Duration::from_millis(999)),
            AckDue::At(t0 + ACK_DELAY)
        );
        assert_eq!(batch.timer_fired(t0 + ACK_DELAY), AckDue::Now);
        batch.sent();
        assert_eq!(batch.timer_fired(t0 + ACK_DELAY * 2), AckDue::Idle);
    }

    #[test]
    fn a_burst_is_acked_at_once() {
        let t0 = Instant::now();
        let mut batch = AckBatch::default();
        assert_eq!(
            batch.received(ACK_EVERY_MESSAGES - 1, t0),
            AckDue::At(t0 + ACK_DELAY)
        );
        assert_eq!(batch.received(1, t0), AckDue::Now);
    }

    proptest! {
        /// Over any arrival pattern, with the socket acting on every
        /// answer (and its timer firing when due): an ack goes out at most
        /// `ACK_DELAY` after the oldest message it covers, never with more
        /// than `ACK_EVERY_MESSAGES` waiting, and never when nothing waits;
        /// and a steady stream of messages is acked at most once per
        /// `ACK_DELAY` unless bursts fill a batch.
        #[test]
        fn acks_are_bounded_in_delay_and_in_count(
            gaps_ms in prop::collection::vec((0u64..3_000, 1u32..100), 1..200),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut batch = AckBatch::default();
            let mut timer: Option<Instant> = None;
            let mut oldest: Option<Instant> = None;
            // Acks the timer sent, and when the last one went out.
            let mut timer_acks = 0u128;
            let mut last_timer_ack = t0;
            let send = |batch: &mut AckBatch, oldest: &mut Option<Instant>, at: Instant, timer: &mut Option<Instant>| {
                let since = oldest.take().expect("an ack only when something waits");
                assert!(at - since <= ACK_DELAY, "acked {:?} after the oldest message", at - since);
                batch.sent();
                *timer = None;
            };
            for (gap_ms, count) in gaps_ms {
                let next = now + Duration::from_millis(gap_ms);
                // The timer fires first if it is due before the next frame.
                if let Some(at) = timer.filter(|at| *at <= next) {
                    prop_assert_eq!(batch.timer_fired(at), AckDue::Now);
                    send(&mut batch, &mut oldest, at, &mut timer);
                    timer_acks += 1;
                    last_timer_ack = at;
                }
                now = next;
                oldest.get_or_insert(now);
                match batch.received(count, now) {
                    AckDue::Now => {
                        prop_assert!(batch.waiting() >= ACK_EVERY_MESSAGES);
                        send(&mut batch, &mut oldest, now, &mut timer);
                    }
                    AckDue::At(at) => {
                        prop_assert!(batch.waiting() < ACK_EVERY_MESSAGES);
                        prop_assert!(at <= oldest.unwrap() + ACK_DELAY);
                        timer = Some(at);
                    }
                    AckDue::Idle => prop_assert!(false, "messages wait, yet no ack is due"),
                }
            }
            // Each timer ack waited a full delay after the previous ack.
            let delays = (last_timer_ack - t0).as_millis() / ACK_DELAY.as_millis();
            prop_assert!(timer_acks <= delays, "{} timer acks in {} delays", timer_acks, delays);
        }
    }
}
