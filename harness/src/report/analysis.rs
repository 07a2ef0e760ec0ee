//! The single aggregator: one history in, every number the reports show
//! out. It reads only the history, so `harness report RUN_DIR` can redo it
//! from the history (`history.bin`) alone.
//!
//! Two linear passes: the first counts everything and remembers each
//! message's first intended send time; the second measures deliveries
//! against it. Two passes because recording order is not causal order
//! across devices: a receipt may be recorded before its send.

use std::collections::BTreeMap;

use crate::history::{ErrorCode, GapReason, ResumeClaim, SendOutcome};
use fnv::{FnvHashMap, FnvHashSet};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::faults::{FaultImpact, FaultTracker, OnlineLevels};
use super::hlog::IntervalLog;
use super::latency::{new_histogram, record_clamped, LatencyRecorder};
use crate::history::{
    ConversationIx, DeviceIx, DisconnectCause, Event, EventKind, History, RunMeta,
};
use crate::scenario::LatencyMetric;

const US_PER_SECOND: u64 = 1_000_000;
/// The per-second series stops after a day so a corrupt timestamp cannot
/// allocate without bound; totals and histograms still count later events.
pub const MAX_SERIES_SECONDS: u64 = 86_400;
/// Per-second p99 needs one histogram per second; 2 digits (1%) keeps
/// them small enough for hour-long runs.
const PER_SECOND_SIGFIG: u8 = 2;

/// One second of the run (`second` = `at_us / 1e6`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondStats {
    pub second: u64,
    /// Most sockets online at once during this second (online = after
    /// `hello`, until `disconnect`).
    pub sockets_online: u64,
    /// `send` frames written (retries included).
    pub sends: u64,
    /// Messages received, live and replayed.
    pub deliveries: u64,
    pub acks: u64,
    /// Connection attempts on socket numbers >= 1.
    pub reconnects: u64,
    /// p99 of live delivery latency of messages received this second.
    pub live_delivery_p99_us: Option<u64>,
}

/// Counts over the whole history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub devices: u64,
    pub conversations: u64,
    /// Connection attempts (first connects and reconnects).
    pub connects: u64,
    /// Connection attempts on socket numbers >= 1.
    pub reconnects: u64,
    pub connect_failures: u64,
    pub hellos: u64,
    pub caught_ups: u64,
    /// `send` frames written, retries included.
    pub sends: u64,
    /// `send` frames with attempt >= 1.
    pub send_retries: u64,
    /// Distinct client_msg_ids sent.
    pub messages_sent: u64,
    pub acks: u64,
    /// Acks the server marked `duplicate` (a retry of a stored message).
    pub duplicate_acks: u64,
    /// Cumulative `ack` frames the devices sent to the server.
    pub acks_sent: u64,
    /// `error` frames by code (`bad_frame`, `too_large`, `unavailable`, `internal`).
    pub errors_by_code: BTreeMap<String, u64>,
    pub deliveries_live: u64,
    pub deliveries_replayed: u64,
    /// Receipts whose client_msg_id no device sent in this history (the
    /// checker judges them; here they only have no latency).
    pub deliveries_without_send: u64,
    pub gaps: u64,
    /// Gaps by reason; both `trimmed` and `epoch_changed` are always
    /// present (0 when none), so a fault report can quote them directly.
    pub gaps_by_reason: BTreeMap<String, u64>,
    /// Socket ends by cause (`client_close`, `client_abrupt`,
    /// `client_reset`, `server_close`, `error`, `run_end`).
    pub disconnects_by_cause: BTreeMap<String, u64>,
    pub peak_sockets_online: u64,
    /// Time of the last event (seconds since the run's time origin).
    pub history_duration_s: f64,
    /// All deliveries (live and replayed) per second of `history_duration_s`.
    pub delivery_rate_per_s: f64,
}

impl Totals {
    pub fn deliveries(&self) -> u64 {
        self.deliveries_live + self.deliveries_replayed
    }
}

#[derive(Debug, Clone)]
pub struct Analysis {
    latency: [LatencyRecorder; LatencyMetric::ALL.len()],
    /// Per metric: the `.hlog` interval log text (1 s intervals).
    interval_logs: [String; LatencyMetric::ALL.len()],
    pub series: Vec<SecondStats>,
    /// Whether events after [`MAX_SERIES_SECONDS`] were left out of `series`.
    pub series_truncated: bool,
    pub totals: Totals,
    /// One per `RunMeta::faults` entry, in that order.
    pub faults: Vec<FaultImpact>,
}

impl Analysis {
    pub fn latency(&self, metric: LatencyMetric) -> &LatencyRecorder {
        &self.latency[metric_index(metric)]
    }

    /// The metric's HdrHistogram interval log (`<metric>.hlog`).
    pub fn interval_log(&self, metric: LatencyMetric) -> &str {
        &self.interval_logs[metric_index(metric)]
    }
}

fn metric_index(metric: LatencyMetric) -> usize {
    LatencyMetric::ALL
        .iter()
        .position(|candidate| *candidate == metric)
        .expect("LatencyMetric::ALL lists every metric")
}

pub fn error_code_name(code: ErrorCode) -> &'static str {
    code.name()
}

/// The gap reasons listed in totals even when they never happened (the
/// ones the default protocol can declare; others appear when they happen).
const GAP_REASONS: [GapReason; 2] = [GapReason::Trimmed, GapReason::EpochChanged];

fn gap_reason_name(reason: GapReason) -> &'static str {
    match reason {
        GapReason::Trimmed => "trimmed",
        GapReason::EpochChanged => "epoch_changed",
        GapReason::RecoveryFailed => "recovery_failed",
    }
}

fn disconnect_cause_name(cause: &DisconnectCause) -> &'static str {
    match cause {
        DisconnectCause::ClientClose => "client_close",
        DisconnectCause::ClientAbrupt => "client_abrupt",
        DisconnectCause::ClientReset => "client_reset",
        DisconnectCause::ServerClose { .. } => "server_close",
        DisconnectCause::Error { .. } => "error",
        DisconnectCause::RunEnd => "run_end",
    }
}

type SocketKey = (DeviceIx, ConversationIx, u32);

fn socket_key(event: &Event) -> SocketKey {
    (event.device, event.conversation, event.socket)
}

#[derive(Debug, Clone, Copy)]
struct ConnectTimes {
    /// Recovery counts from here: a socket number attempted twice is one
    /// recovery that took longer.
    first_us: u64,
    /// connect_to_hello counts from here: the attempt that got the hello.
    latest_us: u64,
}

#[derive(Default)]
struct SecondCounts {
    sends: u64,
    deliveries: u64,
    acks: u64,
    reconnects: u64,
    live_delivery: Option<(Histogram<u32>, u64)>,
}

#[derive(Default)]
struct Accumulator {
    latency: [LatencyRecorder; LatencyMetric::ALL.len()],
    intervals: [IntervalLog; LatencyMetric::ALL.len()],
    totals: Totals,
    seconds: Vec<SecondCounts>,
    series_truncated: bool,
    last_event_us: u64,
    /// (attempt, due_us) of the lowest attempt seen per message.
    first_send: FnvHashMap<Uuid, (u32, u64)>,
    first_ack_us: FnvHashMap<Uuid, u64>,
    connects: FnvHashMap<SocketKey, ConnectTimes>,
    online: FnvHashSet<SocketKey>,
    /// (at_us, +1 hello / -1 disconnect), swept in time order at the end.
    online_changes: Vec<(u64, i8)>,
    faults: FaultTracker,
}

impl Accumulator {
    fn second(&mut self, at_us: u64) -> Option<&mut SecondCounts> {
        let second = at_us / US_PER_SECOND;
        if second >= MAX_SERIES_SECONDS {
            self.series_truncated = true;
            return None;
        }
        let index = second as usize;
        if self.seconds.len() <= index {
            self.seconds.resize_with(index + 1, SecondCounts::default);
        }
        Some(&mut self.seconds[index])
    }

    /// Records a latency measured at `at_us` (run clock).
    fn record(&mut self, metric: LatencyMetric, at_us: u64, value_us: u64) {
        self.latency[metric_index(metric)].record(value_us);
        self.intervals[metric_index(metric)].record(at_us, value_us);
    }

    fn count_event(&mut self, event: &Event) {
        self.faults.observe(event);
        self.last_event_us = self.last_event_us.max(event.at_us);
        // Touch the second so the series spans every event, even quiet ones.
        let _ = self.second(event.at_us);
        let at_us = event.at_us;
        match &event.kind {
            EventKind::Connect { .. } => {
                self.totals.connects += 1;
                if event.socket >= 1 {
                    self.totals.reconnects += 1;
                    if let Some(second) = self.second(at_us) {
                        second.reconnects += 1;
                    }
                }
                self.connects
                    .entry(socket_key(event))
                    .and_modify(|times| times.latest_us = at_us)
                    .or_insert(ConnectTimes {
                        first_us: at_us,
                        latest_us: at_us,
                    });
            }
            EventKind::ConnectFailed { .. } => self.totals.connect_failures += 1,
            EventKind::Connected { claim, .. } => {
                self.totals.hellos += 1;
                if let Some(times) = self.connects.get(&socket_key(event)).copied() {
                    self.record(
                        LatencyMetric::ConnectToHello,
                        at_us,
                        at_us.saturating_sub(times.latest_us),
                    );
                    // A protocol without `caught_up` (Socket.IO) hands the
                    // missed messages out before or with its connect reply:
                    // that reply ends the recovery.
                    if event.socket >= 1 && matches!(claim, ResumeClaim::Recovered { .. }) {
                        self.record(
                            LatencyMetric::Recovery,
                            at_us,
                            at_us.saturating_sub(times.first_us),
                        );
                    }
                }
                if self.online.insert(socket_key(event)) {
                    self.online_changes.push((at_us, 1));
                }
            }
            EventKind::CaughtUp { .. } => {
                self.totals.caught_ups += 1;
                if event.socket >= 1 {
                    if let Some(times) = self.connects.get(&socket_key(event)).copied() {
                        self.record(
                            LatencyMetric::Recovery,
                            at_us,
                            at_us.saturating_sub(times.first_us),
                        );
                    }
                }
            }
            EventKind::Gap { reason, .. } => {
                self.totals.gaps += 1;
                *self
                    .totals
                    .gaps_by_reason
                    .entry(gap_reason_name(*reason).to_string())
                    .or_default() += 1;
            }
            EventKind::Message { replay, .. } => {
                if *replay {
                    self.totals.deliveries_replayed += 1;
                } else {
                    self.totals.deliveries_live += 1;
                }
                if let Some(second) = self.second(at_us) {
                    second.deliveries += 1;
                }
            }
            EventKind::Send {
                client_msg_id,
                due_us,
                attempt,
                ..
            } => {
                self.totals.sends += 1;
                if *attempt >= 1 {
                    self.totals.send_retries += 1;
                }
                if let Some(second) = self.second(at_us) {
                    second.sends += 1;
                }
                let first = self
                    .first_send
                    .entry(*client_msg_id)
                    .or_insert((*attempt, *due_us));
                if *attempt < first.0 {
                    *first = (*attempt, *due_us);
                }
            }
            EventKind::SendOutcome {
                client_msg_id,
                outcome: SendOutcome::Acked { duplicate, .. },
            } => {
                self.totals.acks += 1;
                if *duplicate {
                    self.totals.duplicate_acks += 1;
                }
                if let Some(second) = self.second(at_us) {
                    second.acks += 1;
                }
                let first = self.first_ack_us.entry(*client_msg_id).or_insert(at_us);
                *first = (*first).min(at_us);
            }
            EventKind::Error { code, .. }
            | EventKind::SendOutcome {
                outcome:
                    SendOutcome::DefiniteFailure { code, .. }
                    | SendOutcome::Indeterminate { code, .. }
                    | SendOutcome::Rejected { code, .. },
                ..
            } => {
                *self
                    .totals
                    .errors_by_code
                    .entry(error_code_name(*code).to_string())
                    .or_default() += 1;
            }
            EventKind::AckSent { .. } => self.totals.acks_sent += 1,
            EventKind::Disconnect(cause) => {
                *self
                    .totals
                    .disconnects_by_cause
                    .entry(disconnect_cause_name(cause).to_string())
                    .or_default() += 1;
                let key = socket_key(event);
                // The socket number is done; a later attempt uses the next one.
                self.connects.remove(&key);
                if self.online.remove(&key) {
                    self.online_changes.push((at_us, -1));
                }
            }
        }
    }

    fn measure_delivery(&mut self, event: &Event) {
        let EventKind::Message {
            client_msg_id,
            replay,
            ..
        } = &event.kind
        else {
            return;
        };
        let Some(&(_, due_us)) = self.first_send.get(client_msg_id) else {
            self.totals.deliveries_without_send += 1;
            return;
        };
        let latency_us = event.at_us.saturating_sub(due_us);
        if *replay {
            self.record(LatencyMetric::ReplayStaleness, event.at_us, latency_us);
            return;
        }
        self.record(LatencyMetric::LiveDelivery, event.at_us, latency_us);
        if let Some(second) = self.second(event.at_us) {
            let (histogram, max_us) = second
                .live_delivery
                .get_or_insert_with(|| (new_histogram(PER_SECOND_SIGFIG), 0));
            record_clamped(histogram, latency_us);
            *max_us = (*max_us).max(latency_us);
        }
    }

    fn measure_acks(&mut self) {
        let mut acks: Vec<(u64, u64)> = self
            .first_ack_us
            .iter()
            .filter_map(|(client_msg_id, ack_us)| {
                let (_, due_us) = self.first_send.get(client_msg_id)?;
                Some((*ack_us, ack_us.saturating_sub(*due_us)))
            })
            .collect();
        // In ack time order, as the interval log wants them.
        acks.sort_unstable();
        for (ack_us, latency_us) in acks {
            self.record(LatencyMetric::Ack, ack_us, latency_us);
        }
    }

    /// Peak sockets online per second, from the hello/disconnect changes.
    fn sockets_online_per_second(&mut self) -> Vec<u64> {
        // A disconnect and a hello at the same instant are a hand-over, not
        // two sockets at once: apply the -1 first.
        self.online_changes.sort_unstable();
        let mut online_per_second = vec![0; self.seconds.len()];
        let mut level: i64 = 0;
        let mut peak_overall: i64 = 0;
        let mut changes = self.online_changes.iter().peekable();
        for (second, slot) in online_per_second.iter_mut().enumerate() {
            let mut peak = level;
            while let Some((at_us, delta)) =
                changes.next_if(|(at_us, _)| *at_us / US_PER_SECOND <= second as u64)
            {
                debug_assert!(*at_us / US_PER_SECOND == second as u64);
                level += i64::from(*delta);
                peak = peak.max(level);
            }
            peak_overall = peak_overall.max(peak);
            *slot = peak.max(0) as u64;
        }
        for (_, delta) in changes {
            level += i64::from(*delta);
            peak_overall = peak_overall.max(level);
        }
        self.totals.peak_sockets_online = peak_overall.max(0) as u64;
        online_per_second
    }

    fn finish(mut self, started_at_unix_ms: u64) -> Analysis {
        self.measure_acks();
        self.totals.messages_sent = self.first_send.len() as u64;
        self.totals.history_duration_s = self.last_event_us as f64 / US_PER_SECOND as f64;
        self.totals.delivery_rate_per_s = if self.totals.history_duration_s > 0.0 {
            self.totals.deliveries() as f64 / self.totals.history_duration_s
        } else {
            0.0
        };
        let online = self.sockets_online_per_second();
        // sockets_online_per_second sorted the changes.
        let faults =
            std::mem::take(&mut self.faults).finish(&OnlineLevels::new(&self.online_changes));
        let series =
            self.seconds
                .iter()
                .zip(online)
                .enumerate()
                .map(|(second, (counts, sockets_online))| SecondStats {
                    second: second as u64,
                    sockets_online,
                    sends: counts.sends,
                    deliveries: counts.deliveries,
                    acks: counts.acks,
                    reconnects: counts.reconnects,
                    live_delivery_p99_us: counts.live_delivery.as_ref().map(
                        |(histogram, max_us)| histogram.value_at_percentile(99.0).min(*max_us),
                    ),
                })
                .collect();
        let interval_logs = std::array::from_fn(|index| {
            std::mem::take(&mut self.intervals[index])
                .finish(LatencyMetric::ALL[index].name(), started_at_unix_ms)
        });
        Analysis {
            latency: self.latency,
            interval_logs,
            series,
            series_truncated: self.series_truncated,
            totals: self.totals,
            faults,
        }
    }
}

/// Every number the reports need, from the history alone.
pub fn analyze(history: &History) -> Analysis {
    let events = &history.events;
    analyze_events(&history.meta, || events.iter())
}

/// [`analyze`] of a history file, streaming (two passes): memory does not
/// grow with the history.
pub fn analyze_passes(
    history: &crate::history::HistoryPasses,
) -> Result<Analysis, crate::history::HistoryError> {
    let analysis = analyze_events(history.meta(), || history.events());
    history.finish()?;
    Ok(analysis)
}

/// `analyze`, reading the events through `events` (called twice, each
/// time for the whole history in recording order).
fn analyze_events<I, E>(meta: &RunMeta, mut events: impl FnMut() -> I) -> Analysis
where
    I: Iterator<Item = E>,
    E: std::borrow::Borrow<Event>,
{
    let mut accumulator = Accumulator::default();
    accumulator.totals.devices = meta.devices.len() as u64;
    accumulator.totals.conversations = meta.conversations.len() as u64;
    for reason in GAP_REASONS {
        accumulator
            .totals
            .gaps_by_reason
            .insert(gap_reason_name(reason).to_string(), 0);
    }
    accumulator.faults = FaultTracker::new(&meta.faults);
    for event in events() {
        accumulator.count_event(event.borrow());
    }
    for event in events() {
        accumulator.measure_delivery(event.borrow());
    }
    accumulator.finish(meta.started_at_unix_ms)
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
pub(crate) mod tests;
