//! The load shape over time: `[[stages]]` (send rate and online share,
//! ramped linearly stage by stage) and reconnect storms (a share of the
//! connected sockets dropped at once by the fault schedule).
//!
//! Neither needs a central controller: the scheduler asks the shape for
//! the rate at each candidate send, and each socket compares the online
//! share with the target on its own, dropping with the probability that
//! removes the excess on average (the same way churn is decentralised).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::connection::DropKind;
use crate::scenario::{Stage, StormDrop};

const US_PER_S: f64 = 1e6;

/// Rate and online share as piecewise-linear functions of the run clock.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadShape {
    /// `(at_us, send_rate_per_s, online_share)` at each stage boundary,
    /// starting with the initial values at 0.
    points: Vec<(u64, f64, f64)>,
    /// Whether any stage sets an online share (else sockets never check).
    limits_online: bool,
}

impl LoadShape {
    /// The shape from `[traffic] send_rate` and the stages (empty:
    /// constant rate, nobody held offline).
    pub fn new(base_rate_per_s: f64, stages: &[Stage]) -> LoadShape {
        let mut points = vec![(0, base_rate_per_s, 1.0)];
        let mut at_us = 0u64;
        for stage in stages {
            let &(_, rate, online) = points.last().unwrap_or(&(0, base_rate_per_s, 1.0));
            at_us = at_us.saturating_add(stage.duration.as_micros() as u64);
            points.push((
                at_us,
                stage.send_rate_per_s.unwrap_or(rate),
                stage.online_share.unwrap_or(online),
            ));
        }
        LoadShape {
            limits_online: stages.iter().any(|stage| stage.online_share.is_some()),
            points,
        }
    }

    /// `(rate, online)` at `at_us`, interpolated within its stage.
    fn at(&self, at_us: u64) -> (f64, f64) {
        let after = self
            .points
            .partition_point(|(point_us, ..)| *point_us <= at_us);
        let Some(&(end_us, end_rate, end_online)) = self.points.get(after) else {
            let &(_, rate, online) = self.points.last().unwrap_or(&(0, 0.0, 1.0));
            return (rate, online);
        };
        // `after >= 1` because the first point is at 0.
        let (start_us, start_rate, start_online) = self.points[after.saturating_sub(1)];
        let span = end_us.saturating_sub(start_us).max(1) as f64;
        let progress = (at_us.saturating_sub(start_us) as f64 / span).clamp(0.0, 1.0);
        (
            start_rate + (end_rate - start_rate) * progress,
            start_online + (end_online - start_online) * progress,
        )
    }

    pub fn send_rate_at(&self, at_us: u64) -> f64 {
        self.at(at_us).0.max(0.0)
    }

    /// The highest rate anywhere: the scheduler draws candidates at this
    /// rate and keeps each with probability `rate(t) / max` (thinning),
    /// which gives an exact Poisson process with the time-varying rate.
    pub fn max_send_rate(&self) -> f64 {
        self.points
            .iter()
            .map(|(_, rate, _)| *rate)
            .fold(0.0, f64::max)
    }

    /// The online share sockets aim for at `at_us`, if stages set one.
    pub fn online_target_at(&self, at_us: u64) -> Option<f64> {
        self.limits_online.then(|| self.at(at_us).1.clamp(0.0, 1.0))
    }

    /// Seconds from the start until the last stage ends.
    pub fn stages_end_s(&self) -> f64 {
        self.points
            .last()
            .map_or(0.0, |(at_us, ..)| *at_us as f64 / US_PER_S)
    }
}

/// One storm order from the fault schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StormOrder {
    pub share: f64,
    pub drop: StormDrop,
    /// Each dropped socket comes back after a uniform delay in this window.
    pub return_within: Duration,
}

impl StormOrder {
    pub fn drop_kind(&self) -> DropKind {
        match self.drop {
            StormDrop::Close => DropKind::Close,
            StormDrop::Abrupt => DropKind::Abrupt,
            StormDrop::Reset => DropKind::Reset,
        }
    }
}

/// How the fault schedule reaches the sockets, and how it learns when a
/// storm is over (every dropped socket caught up again).
pub struct StormControl {
    orders: watch::Sender<Option<StormOrder>>,
    /// Sockets dropped by the current storm that have not caught up yet.
    pending: AtomicU64,
    /// Sockets dropped by storms so far.
    dropped: AtomicU64,
}

impl Default for StormControl {
    fn default() -> Self {
        StormControl {
            orders: watch::channel(None).0,
            pending: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl StormControl {
    /// A receiver that has seen every storm so far: a socket subscribes
    /// when its connection opens, so a storm that came before it (while it
    /// was offline) does not drop it again.
    pub fn subscribe(&self) -> watch::Receiver<Option<StormOrder>> {
        let mut receiver = self.orders.subscribe();
        receiver.borrow_and_update();
        receiver
    }

    /// Starts a storm; returns the count of sockets dropped so far, to
    /// subtract from [`StormControl::dropped`] when it is over.
    pub fn start(&self, order: StormOrder) -> u64 {
        let before = self.dropped.load(Ordering::Relaxed);
        self.orders.send_replace(Some(order));
        before
    }

    /// A socket obeyed the storm.
    pub fn note_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// A socket the storm dropped has caught up again (or gave up, or the
    /// run ended), so it no longer holds the storm open.
    pub fn note_back(&self) {
        // Err means it was already 0 (a socket reported twice): nothing to undo.
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(seconds: u64, rate: Option<f64>, online: Option<f64>) -> Stage {
        Stage {
            duration: Duration::from_secs(seconds),
            send_rate_per_s: rate,
            online_share: online,
        }
    }

    #[test]
    fn no_stages_is_constant_and_never_limits_online() {
        let shape = LoadShape::new(50.0, &[]);
        assert_eq!(shape.send_rate_at(0), 50.0);
        assert_eq!(shape.send_rate_at(1_000_000_000), 50.0);
        assert_eq!(shape.max_send_rate(), 50.0);
        assert_eq!(shape.online_target_at(5), None);
    }

    #[test]
    fn stages_ramp_linearly_then_hold() {
        // Ramp 10 -> 110 over 10 s, hold (no keys), spike to 500 in 1 s.
        let shape = LoadShape::new(
            10.0,
            &[
                stage(10, Some(110.0), None),
                stage(5, None, Some(0.5)),
                stage(1, Some(500.0), None),
            ],
        );
        assert_eq!(shape.send_rate_at(0), 10.0);
        assert!((shape.send_rate_at(5_000_000) - 60.0).abs() < 1e-9);
        assert_eq!(shape.send_rate_at(12_000_000), 110.0);
        assert!((shape.send_rate_at(15_500_000) - 305.0).abs() < 1e-9);
        assert_eq!(shape.send_rate_at(99_000_000), 500.0);
        assert_eq!(shape.max_send_rate(), 500.0);
        // Online: 1.0 until 10 s, then down to 0.5 at 15 s, held.
        assert_eq!(shape.online_target_at(10_000_000), Some(1.0));
        assert!((shape.online_target_at(12_500_000).unwrap() - 0.75).abs() < 1e-9);
        assert_eq!(shape.online_target_at(60_000_000), Some(0.5));
        assert_eq!(shape.stages_end_s(), 16.0);
    }

    #[test]
    fn a_late_subscriber_does_not_see_an_old_storm() {
        let control = StormControl::default();
        control.start(StormOrder {
            share: 1.0,
            drop: StormDrop::Abrupt,
            return_within: Duration::ZERO,
        });
        let receiver = control.subscribe();
        assert!(!receiver.has_changed().unwrap_or(true));
        control.note_dropped();
        control.note_back();
        control.note_back();
        assert_eq!(control.pending(), 0);
        assert_eq!(control.dropped(), 1);
    }
}
