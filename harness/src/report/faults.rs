//! What each injected fault did to the clients: reconnects it caused, how
//! long the system took to recover, and what happened to sends during it.
//!
//! Fed one event at a time by the analysis' first pass (faults are few,
//! so every event is checked against every window), then finished with
//! the analysis' online tracking. Everything is computed from the history
//! alone, so `harness report RUN_DIR` reproduces it. The definitions are
//! documented in `docs/report-format.md` (`faults[]`).

use fnv::{FnvHashMap, FnvHashSet};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::history::{DisconnectCause, Event, EventKind, FaultWindow, SendOutcome};

const US_PER_SECOND: f64 = 1e6;
/// Unplanned disconnects and failed connects up to this long after a fault
/// is lifted are blamed on it: clients notice a dead server or link only
/// when a read or write fails, which can trail the fault by a heartbeat.
pub const FAULT_ATTRIBUTION_TAIL_US: u64 = 5_000_000;
/// Recovered means at least this share of the sockets that were online
/// just before the fault are online again (churn moves the level a little
/// on its own, so "all of them" might never happen).
pub const RECOVERED_ONLINE_PERCENT: u64 = 95;

/// One injected fault and its effect, in `RunMeta::faults` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultImpact {
    /// `redis_restart`, `server_kill`, `blackhole`, ...
    pub kind: String,
    /// What it hit: `redis`, `server 1`, `link clients`, ...
    pub target: String,
    /// Seconds since the run's time origin.
    pub start_s: f64,
    /// When it was lifted (== `start_s` for instant faults).
    pub end_s: f64,
    pub duration_s: f64,
    /// `unplanned_disconnects + connect_failures + sockets_dropped`.
    pub reconnects_caused: u64,
    /// Sockets the harness dropped for it (`reconnect_storm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets_dropped: Option<u64>,
    /// Sockets the server closed or that failed (not closed by the client
    /// on purpose) from the start until [`FAULT_ATTRIBUTION_TAIL_US`]
    /// after the end.
    pub unplanned_disconnects: u64,
    /// Connection attempts that failed in the same span.
    pub connect_failures: u64,
    /// Sockets online just before the start.
    pub sockets_online_before: u64,
    /// From the end until [`RECOVERED_ONLINE_PERCENT`] of
    /// `sockets_online_before` are online and a live message has been
    /// received after the end; `None` if that never happened.
    pub recovery_s: Option<f64>,
    /// Distinct messages acked between start and end (inclusive).
    pub messages_acked: u64,
    /// Sends answered with a definite failure (v1: `unavailable`) between
    /// start and end.
    pub unavailable_send_errors: u64,
    /// Connections opened between start and end that reached `caught_up`
    /// (for a storm: the reconnects of the dropped sockets).
    #[serde(default)]
    pub catch_ups: u64,
    /// Their connect-to-`caught_up` latency, in milliseconds.
    #[serde(default)]
    pub catch_up_p50_ms: Option<f64>,
    #[serde(default)]
    pub catch_up_p99_ms: Option<f64>,
    #[serde(default)]
    pub catch_up_max_ms: Option<f64>,
    /// Anything that went wrong injecting or lifting the fault.
    pub error: Option<String>,
}

impl FaultImpact {
    pub fn recovered(&self) -> bool {
        self.recovery_s.is_some()
    }
}

fn seconds(at_us: u64) -> f64 {
    at_us as f64 / US_PER_SECOND
}

/// Counts of one fault window, gathered while the events stream by.
struct Tally {
    window: FaultWindow,
    unplanned_disconnects: u64,
    connect_failures: u64,
    acked: FnvHashSet<Uuid>,
    unavailable_send_errors: u64,
    /// Recording order is not time order, so keep the earliest seen.
    first_live_after_end_us: Option<u64>,
    /// Connections opened during the window, by (device, conversation,
    /// socket), until their `caught_up`.
    opened_us: FnvHashMap<(u32, u32, u32), u64>,
    catch_up_us: Vec<u64>,
}

impl Tally {
    fn during(&self, at_us: u64) -> bool {
        (self.window.start_us..=self.window.end_us).contains(&at_us)
    }

    fn in_attribution_span(&self, at_us: u64) -> bool {
        let tail_end_us = self.window.end_us.saturating_add(FAULT_ATTRIBUTION_TAIL_US);
        (self.window.start_us..=tail_end_us).contains(&at_us)
    }

    fn observe(&mut self, event: &Event) {
        let at_us = event.at_us;
        let socket = (event.device, event.conversation, event.socket);
        match &event.kind {
            EventKind::Connect { .. } if self.during(at_us) => {
                self.opened_us.insert(socket, at_us);
            }
            EventKind::CaughtUp { .. } => {
                if let Some(opened_us) = self.opened_us.remove(&socket) {
                    self.catch_up_us.push(at_us.saturating_sub(opened_us));
                }
            }
            EventKind::Disconnect(DisconnectCause::ServerClose { .. })
            | EventKind::Disconnect(DisconnectCause::Error { .. })
                if self.in_attribution_span(at_us) =>
            {
                self.unplanned_disconnects += 1;
            }
            EventKind::ConnectFailed { .. } if self.in_attribution_span(at_us) => {
                self.connect_failures += 1;
            }
            EventKind::SendOutcome {
                client_msg_id,
                outcome: SendOutcome::Acked { .. },
            } if self.during(at_us) => {
                self.acked.insert(*client_msg_id);
            }
            EventKind::SendOutcome {
                outcome: SendOutcome::DefiniteFailure { .. },
                ..
            } if self.during(at_us) => {
                self.unavailable_send_errors += 1;
            }
            EventKind::Message { replay: false, .. } if at_us > self.window.end_us => {
                let first = self.first_live_after_end_us.get_or_insert(at_us);
                *first = (*first).min(at_us);
            }
            _ => {}
        }
    }
}

/// Sockets online over time: the level after each hello (+1) or
/// disconnect (-1), in time order.
pub(super) struct OnlineLevels {
    /// (at_us, level after this change).
    steps: Vec<(u64, i64)>,
}

impl OnlineLevels {
    /// `changes` must be sorted; at one instant the -1s come first (a
    /// hand-over is not two sockets), which `(u64, i8)` ordering gives.
    pub(super) fn new(changes: &[(u64, i8)]) -> OnlineLevels {
        debug_assert!(changes.windows(2).all(|pair| pair[0] <= pair[1]));
        let mut level = 0_i64;
        let steps = changes
            .iter()
            .map(|(at_us, delta)| {
                level += i64::from(*delta);
                (*at_us, level)
            })
            .collect();
        OnlineLevels { steps }
    }

    /// Sockets online just before `at_us` (changes at `at_us` excluded).
    fn before(&self, at_us: u64) -> u64 {
        let count = self.steps.partition_point(|(step_us, _)| *step_us < at_us);
        self.level_after_steps(count)
    }

    fn level_after_steps(&self, count: usize) -> u64 {
        count
            .checked_sub(1)
            .map_or(0, |last| self.steps[last].1.max(0) as u64)
    }

    /// The first instant at or after `from_us` with at least `wanted`
    /// sockets online. Within one instant the -1s come first, so a level
    /// reached mid-instant only grows until the instant ends.
    fn first_at_least(&self, from_us: u64, wanted: u64) -> Option<u64> {
        let settled = self
            .steps
            .partition_point(|(step_us, _)| *step_us <= from_us);
        if self.level_after_steps(settled) >= wanted {
            return Some(from_us);
        }
        self.steps[settled..]
            .iter()
            .find(|(_, level)| *level >= 0 && *level as u64 >= wanted)
            .map(|(at_us, _)| *at_us)
    }
}

/// Per-fault tallies for one analysis.
#[derive(Default)]
pub(super) struct FaultTracker {
    tallies: Vec<Tally>,
}

impl FaultTracker {
    pub(super) fn new(windows: &[FaultWindow]) -> FaultTracker {
        FaultTracker {
            tallies: windows
                .iter()
                .map(|window| Tally {
                    // A window recorded backwards is treated as instant
                    // rather than producing negative durations.
                    window: FaultWindow {
                        end_us: window.end_us.max(window.start_us),
                        ..window.clone()
                    },
                    unplanned_disconnects: 0,
                    connect_failures: 0,
                    acked: FnvHashSet::default(),
                    unavailable_send_errors: 0,
                    first_live_after_end_us: None,
                    opened_us: FnvHashMap::default(),
                    catch_up_us: Vec::new(),
                })
                .collect(),
        }
    }

    pub(super) fn observe(&mut self, event: &Event) {
        for tally in &mut self.tallies {
            tally.observe(event);
        }
    }

    pub(super) fn finish(self, online: &OnlineLevels) -> Vec<FaultImpact> {
        self.tallies
            .into_iter()
            .map(|tally| impact(tally, online))
            .collect()
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], percent: u64) -> Option<f64> {
    let last = sorted_us.len().checked_sub(1)?;
    let rank = (sorted_us.len() as u64 * percent).div_ceil(100).max(1) as usize - 1;
    Some(sorted_us[rank.min(last)] as f64 / 1e3)
}

fn impact(mut tally: Tally, online: &OnlineLevels) -> FaultImpact {
    tally.catch_up_us.sort_unstable();
    let window = &tally.window;
    let end_us = window.end_us;
    let sockets_online_before = online.before(window.start_us);
    // Integer ceiling of 95%: no float rounding decides "recovered".
    let wanted = (sockets_online_before * RECOVERED_ONLINE_PERCENT).div_ceil(100);
    let recovered_at_us = tally
        .first_live_after_end_us
        .and_then(|live_us| online.first_at_least(live_us, wanted));
    FaultImpact {
        kind: window.kind.clone(),
        target: window.target.clone(),
        start_s: seconds(window.start_us),
        end_s: seconds(end_us),
        duration_s: seconds(end_us - window.start_us),
        reconnects_caused: tally.unplanned_disconnects
            + tally.connect_failures
            + window.sockets_dropped.unwrap_or(0),
        sockets_dropped: window.sockets_dropped,
        unplanned_disconnects: tally.unplanned_disconnects,
        connect_failures: tally.connect_failures,
        sockets_online_before,
        recovery_s: recovered_at_us.map(|at_us| seconds(at_us - end_us)),
        messages_acked: tally.acked.len() as u64,
        unavailable_send_errors: tally.unavailable_send_errors,
        catch_ups: tally.catch_up_us.len() as u64,
        catch_up_p50_ms: percentile_ms(&tally.catch_up_us, 50),
        catch_up_p99_ms: percentile_ms(&tally.catch_up_us, 99),
        catch_up_max_ms: percentile_ms(&tally.catch_up_us, 100),
        error: window.error.clone(),
    }
}

#[cfg(test)]
#[path = "faults_tests.rs"]
pub(crate) mod tests;
