//! `summary.json`: the machine-readable result of a run. Its schema is
//! documented field by field in `docs/report-format.md`; any change that
//! removes or renames a field needs a new `schema` version.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::analysis::{Analysis, Totals};
use super::faults::FaultImpact;
use super::latency::LatencyStats;
use super::thresholds::ThresholdResult;
use super::units::format_unix_ms;
use crate::checker::{AnomalyReport, CheckOutcome, CheckStats, Verdict};
use crate::history::LogOrigin;
use crate::scenario::{LatencyMetric, Scenario, ServersSpec};

pub const SUMMARY_SCHEMA: &str = "recovery-harness/summary/v1";

/// Exit codes of `harness run` (and of `harness report`).
pub const EXIT_VALID: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_THRESHOLD_OR_UNKNOWN: u8 = 2;

/// What the runner knows about a run beyond its history.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub scenario: Scenario,
    /// The seed actually used (the scenario's, or the one picked).
    pub seed: u64,
    pub started_at_unix_ms: u64,
    pub wall_duration: Duration,
    /// User + system CPU time of the harness process.
    pub harness_cpu: Duration,
    pub harness_peak_rss_bytes: u64,
    /// Resident memory when the traffic phase ended, if readable.
    pub harness_rss_at_traffic_end_bytes: Option<u64>,
    /// Most sockets the harness held open at once.
    pub peak_sockets: u64,
    /// Whether every device had everything before the drain timeout.
    pub drain_complete: bool,
    /// How Redis was provided, e.g. `testcontainers redis:7.2 (aof-everysec)`.
    pub redis_description: String,
    /// The server URLs the devices connected to.
    pub targets: Vec<String>,
    /// Devices still missing messages when the drain timed out.
    pub stragglers: Vec<String>,
    pub sends_skipped: SendsSkipped,
    /// What the spawned server processes cost; `None` when none ran as
    /// processes (external targets, in-process servers).
    pub server_cost: Option<ServerResourcesInput>,
    /// What Redis cost, from its own `INFO`; `None` when it could not be
    /// read (no URL, or it never answered).
    pub redis_cost: Option<RedisResourcesInput>,
    /// What the `[intruders]` got, per kind (none without intruders).
    pub intruders: Option<crate::intruders::IntruderSummary>,
}

/// The spawned servers' cost as the runner sampled it from `/proc`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerResourcesInput {
    /// Server processes seen (a restart counts again).
    pub processes: u32,
    pub cpu: Duration,
    /// Largest sum of the servers' RSS seen.
    pub peak_rss_bytes: u64,
    pub rss_at_traffic_end_bytes: Option<u64>,
}

/// Redis's cost as the runner sampled it with `INFO`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisResourcesInput {
    /// CPU from the first sample to the last (`used_cpu_sys + used_cpu_user`).
    pub cpu: Duration,
    /// Largest `used_memory_rss` seen.
    pub peak_rss_bytes: u64,
    pub rss_at_traffic_end_bytes: Option<u64>,
    /// Times its CPU counter went back (Redis restarted by a fault).
    pub restarts_seen: u32,
}

/// Sends the open model scheduled but could not hand to a socket. They
/// are never sent, so they have no latency: a run that skips many was
/// lighter than its scenario says (the load generator, not the server,
/// fell short), and its latencies flatter the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SendsSkipped {
    /// Sends the schedule wanted during the traffic phase (placed + skipped).
    pub scheduled: u64,
    pub skipped: u64,
    /// Skipped because none of the sockets tried was online and caught up
    /// (devices offline by churn, during ramp-up, or in a fault).
    pub no_socket_online: u64,
    /// Skipped because every online socket tried had a full order queue
    /// (the harness's clients could not keep up with the rate).
    pub queue_full: u64,
}

impl SendsSkipped {
    /// `skipped / scheduled` in percent; 0 when nothing was scheduled.
    pub fn percent(&self) -> f64 {
        if self.scheduled == 0 {
            0.0
        } else {
            100.0 * self.skipped as f64 / self.scheduled as f64
        }
    }

    /// "12 of 600 (2.0%): 10 no socket online, 2 queue full".
    pub fn describe(&self) -> String {
        format!(
            "{} of {} scheduled ({:.1}%): {} no socket online, {} socket queue full",
            self.skipped,
            self.scheduled,
            self.percent(),
            self.no_socket_online,
            self.queue_full
        )
    }
}

/// The shape of the scenario that was played, flattened so this schema
/// stays stable when the scenario model changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunShape {
    pub duration_s: f64,
    pub ramp_up_s: f64,
    pub drain_timeout_s: f64,
    pub users: u32,
    pub devices_per_user: u32,
    pub conversations: u32,
    pub members_per_conversation: u32,
    pub sockets_when_all_online: u64,
    pub send_rate_per_s: f64,
    pub body_bytes: u32,
    pub churn_enabled: bool,
    pub abrupt_share: f64,
    pub reset_share: f64,
    pub client_cursor_share: f64,
    /// `spawn` (reference servers started by the harness) or `external`.
    pub servers_mode: String,
    /// Reference servers spawned (0 for external targets).
    pub servers_spawned: u32,
    pub expect_no_loss: bool,
    pub expect_no_duplicates: bool,
    pub expect_order: bool,
    pub allow_stored_cursor_redelivery: bool,
    /// `[[stages]]` in order (empty: constant `send_rate_per_s`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageShape>,
}

/// One `[[stages]]` entry; `None` means the previous stage's value holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageShape {
    pub duration_s: f64,
    pub send_rate_per_s: Option<f64>,
    pub online_share: Option<f64>,
}

impl RunShape {
    fn of(scenario: &Scenario) -> RunShape {
        let (servers_mode, servers_spawned) = match &scenario.servers {
            ServersSpec::Spawn { count, .. } => ("spawn", *count),
            ServersSpec::External { .. } => ("external", 0),
        };
        let population = &scenario.population;
        RunShape {
            duration_s: scenario.duration.as_secs_f64(),
            ramp_up_s: scenario.ramp_up.as_secs_f64(),
            drain_timeout_s: scenario.drain_timeout.as_secs_f64(),
            users: population.users,
            devices_per_user: population.devices_per_user,
            conversations: population.conversations,
            members_per_conversation: population.members_per_conversation,
            sockets_when_all_online: population.total_sockets(),
            send_rate_per_s: scenario.traffic.send_rate_per_s,
            body_bytes: scenario.traffic.body_bytes,
            churn_enabled: scenario.churn.enabled,
            abrupt_share: scenario.churn.abrupt_share,
            reset_share: scenario.churn.reset_share,
            client_cursor_share: scenario.churn.client_cursor_share,
            servers_mode: servers_mode.to_string(),
            servers_spawned,
            expect_no_loss: scenario.expect.no_loss,
            expect_no_duplicates: scenario.expect.no_duplicates,
            expect_order: scenario.expect.order,
            allow_stored_cursor_redelivery: scenario.expect.allow_stored_cursor_redelivery,
            stages: scenario
                .stages
                .iter()
                .map(|stage| StageShape {
                    duration_s: stage.duration.as_secs_f64(),
                    send_rate_per_s: stage.send_rate_per_s,
                    online_share: stage.online_share,
                })
                .collect(),
        }
    }
}

/// What the harness process itself cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarnessResources {
    pub cpu_seconds: f64,
    /// CPU time over wall time; 100 = one core busy the whole run.
    pub cpu_percent_of_one_core: f64,
    pub peak_rss_bytes: u64,
    pub peak_sockets: u64,
    /// `peak_rss_bytes / peak_sockets`; `null` without sockets.
    pub rss_bytes_per_socket: Option<u64>,
    /// Resident memory when the traffic phase ended (every socket's state
    /// plus the history recorded so far; before checking and reporting,
    /// which set the peak). `null` where it cannot be read.
    #[serde(default)]
    pub rss_at_traffic_end_bytes: Option<u64>,
    /// `rss_at_traffic_end_bytes / peak_sockets`.
    #[serde(default)]
    pub rss_bytes_per_socket_at_traffic_end: Option<u64>,
    /// `cpu_seconds` (run, check and report included) per delivery, in
    /// microseconds; `null` without deliveries.
    #[serde(default)]
    pub cpu_us_per_delivery: Option<f64>,
}

/// What the spawned server processes cost, sampled from `/proc` every
/// 500 ms while they ran (a killed server keeps its last sample).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerResources {
    pub processes: u32,
    pub cpu_seconds: f64,
    /// CPU time over wall time of the run, summed over the servers.
    pub cpu_percent_of_one_core: f64,
    /// `cpu_seconds` per delivery, in microseconds; `null` without deliveries.
    pub cpu_us_per_delivery: Option<f64>,
    /// Largest sum of the servers' RSS seen.
    pub peak_rss_bytes: u64,
    pub rss_at_traffic_end_bytes: Option<u64>,
    /// `rss_at_traffic_end_bytes / peak_sockets`.
    pub rss_bytes_per_socket_at_traffic_end: Option<u64>,
}

/// What Redis cost while the run played, from its own `INFO` counters
/// every 500 ms (for a Redis shared with other clients, theirs too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisResources {
    pub cpu_seconds: f64,
    /// CPU time over wall time of the run.
    pub cpu_percent_of_one_core: f64,
    /// `cpu_seconds` per delivery, in microseconds; `null` without deliveries.
    pub cpu_us_per_delivery: Option<f64>,
    /// Largest `used_memory_rss` seen.
    pub peak_rss_bytes: u64,
    pub rss_at_traffic_end_bytes: Option<u64>,
    /// `rss_at_traffic_end_bytes / peak_sockets`.
    pub rss_bytes_per_socket_at_traffic_end: Option<u64>,
    /// Restarts seen (a fault); CPU counts every process.
    pub restarts_seen: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Always [`SUMMARY_SCHEMA`].
    pub schema: String,
    pub scenario: String,
    pub seed: u64,
    pub started_at_unix_ms: u64,
    /// `started_at_unix_ms` as RFC 3339 UTC.
    pub started_at: String,
    pub wall_duration_s: f64,
    pub verdict: Verdict,
    pub exit_code: u8,
    pub drain_complete: bool,
    pub log_source: LogOrigin,
    /// One entry per anomaly kind that occurred, in kind order.
    pub anomalies: Vec<AnomalyReport>,
    pub unknown_reasons: Vec<String>,
    pub check_stats: CheckStats,
    pub thresholds: Vec<ThresholdResult>,
    /// Every metric, keyed by its name; microseconds.
    pub latency: BTreeMap<LatencyMetric, LatencyStats>,
    pub totals: Totals,
    /// One per injected fault, in `RunMeta::faults` order; empty without faults.
    /// Defaulted so summaries written before faults existed still load.
    #[serde(default)]
    pub faults: Vec<FaultImpact>,
    pub harness: HarnessResources,
    /// The spawned server processes' cost; absent when none ran as
    /// processes (external targets, in-process servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<ServerResources>,
    pub redis: String,
    /// Redis's cost; absent when its `INFO` could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_cost: Option<RedisResources>,
    pub targets: Vec<String>,
    pub stragglers: Vec<String>,
    pub run: RunShape,
    /// Scheduled sends never placed, and why. Defaulted (all zero) for
    /// summaries written before it was recorded.
    #[serde(default)]
    pub sends_skipped: SendsSkipped,
    /// What the `[intruders]` got, per kind; absent without intruders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intruders: Option<crate::intruders::IntruderSummary>,
}

impl Summary {
    pub fn thresholds_passed(&self) -> usize {
        self.thresholds
            .iter()
            .filter(|result| result.passed)
            .count()
    }
}

/// 1 when an invariant was violated (whatever else happened); 2 when the
/// verdict is unknown or a threshold was missed; 0 otherwise.
pub fn exit_code(summary: &Summary) -> u8 {
    match summary.verdict {
        Verdict::Invalid => EXIT_INVALID,
        Verdict::Unknown => EXIT_THRESHOLD_OR_UNKNOWN,
        Verdict::Valid if summary.thresholds.iter().all(|result| result.passed) => EXIT_VALID,
        Verdict::Valid => EXIT_THRESHOLD_OR_UNKNOWN,
    }
}

/// Every metric's numbers, keyed by metric (serialized by name).
pub fn latency_table(analysis: &Analysis) -> BTreeMap<LatencyMetric, LatencyStats> {
    LatencyMetric::ALL
        .iter()
        .map(|metric| (*metric, analysis.latency(*metric).stats()))
        .collect()
}

/// `cpu` per delivery in microseconds; `None` without deliveries.
fn per_delivery_us(cpu: Duration, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| cpu.as_secs_f64() * 1e6 / deliveries as f64)
}

/// `cpu` over the run's wall time, in percent of one core (0 for a
/// zero-length run: JSON has no NaN).
fn percent_of_one_core(cpu: Duration, facts: &RunFacts) -> f64 {
    let wall_seconds = facts.wall_duration.as_secs_f64();
    if wall_seconds > 0.0 {
        100.0 * cpu.as_secs_f64() / wall_seconds
    } else {
        0.0
    }
}

fn per_socket(rss_bytes: Option<u64>, facts: &RunFacts) -> Option<u64> {
    rss_bytes.and_then(|rss| rss.checked_div(facts.peak_sockets))
}

fn server_resources(facts: &RunFacts, deliveries: u64) -> Option<ServerResources> {
    let cost = facts.server_cost.as_ref()?;
    Some(ServerResources {
        processes: cost.processes,
        cpu_seconds: cost.cpu.as_secs_f64(),
        cpu_percent_of_one_core: percent_of_one_core(cost.cpu, facts),
        cpu_us_per_delivery: per_delivery_us(cost.cpu, deliveries),
        peak_rss_bytes: cost.peak_rss_bytes,
        rss_at_traffic_end_bytes: cost.rss_at_traffic_end_bytes,
        rss_bytes_per_socket_at_traffic_end: per_socket(cost.rss_at_traffic_end_bytes, facts),
    })
}

fn redis_resources(facts: &RunFacts, deliveries: u64) -> Option<RedisResources> {
    let cost = facts.redis_cost.as_ref()?;
    Some(RedisResources {
        cpu_seconds: cost.cpu.as_secs_f64(),
        cpu_percent_of_one_core: percent_of_one_core(cost.cpu, facts),
        cpu_us_per_delivery: per_delivery_us(cost.cpu, deliveries),
        peak_rss_bytes: cost.peak_rss_bytes,
        rss_at_traffic_end_bytes: cost.rss_at_traffic_end_bytes,
        rss_bytes_per_socket_at_traffic_end: per_socket(cost.rss_at_traffic_end_bytes, facts),
        restarts_seen: cost.restarts_seen,
    })
}

fn harness_resources(facts: &RunFacts, deliveries: u64) -> HarnessResources {
    let cpu_seconds = facts.harness_cpu.as_secs_f64();
    let wall_seconds = facts.wall_duration.as_secs_f64();
    HarnessResources {
        cpu_seconds,
        // JSON has no NaN: a zero-length run used no share of a core.
        cpu_percent_of_one_core: if wall_seconds > 0.0 {
            100.0 * cpu_seconds / wall_seconds
        } else {
            0.0
        },
        peak_rss_bytes: facts.harness_peak_rss_bytes,
        peak_sockets: facts.peak_sockets,
        rss_bytes_per_socket: facts.harness_peak_rss_bytes.checked_div(facts.peak_sockets),
        rss_at_traffic_end_bytes: facts.harness_rss_at_traffic_end_bytes,
        rss_bytes_per_socket_at_traffic_end: facts
            .harness_rss_at_traffic_end_bytes
            .and_then(|rss| rss.checked_div(facts.peak_sockets)),
        cpu_us_per_delivery: per_delivery_us(facts.harness_cpu, deliveries),
    }
}

pub fn build_summary(
    facts: &RunFacts,
    analysis: &Analysis,
    check: &CheckOutcome,
    thresholds: &[ThresholdResult],
) -> Summary {
    let mut summary = Summary {
        schema: SUMMARY_SCHEMA.to_string(),
        scenario: facts.scenario.name.clone(),
        seed: facts.seed,
        started_at_unix_ms: facts.started_at_unix_ms,
        started_at: format_unix_ms(facts.started_at_unix_ms),
        wall_duration_s: facts.wall_duration.as_secs_f64(),
        verdict: check.verdict,
        exit_code: EXIT_THRESHOLD_OR_UNKNOWN,
        drain_complete: facts.drain_complete,
        log_source: check.log_source,
        anomalies: check.anomalies.values().cloned().collect(),
        unknown_reasons: check.unknown_reasons.clone(),
        check_stats: check.stats.clone(),
        thresholds: thresholds.to_vec(),
        latency: latency_table(analysis),
        totals: analysis.totals.clone(),
        faults: analysis.faults.clone(),
        harness: harness_resources(facts, analysis.totals.deliveries()),
        servers: server_resources(facts, analysis.totals.deliveries()),
        redis: facts.redis_description.clone(),
        redis_cost: redis_resources(facts, analysis.totals.deliveries()),
        targets: facts.targets.clone(),
        stragglers: facts.stragglers.clone(),
        run: RunShape::of(&facts.scenario),
        sends_skipped: facts.sends_skipped.clone(),
        intruders: facts.intruders.clone(),
    };
    summary.exit_code = exit_code(&summary);
    summary
}

#[cfg(test)]
#[path = "summary_tests.rs"]
pub(crate) mod tests;
