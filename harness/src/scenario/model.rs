//! A scenario after parsing and validation: plain typed values, units
//! resolved, defaults filled in. The file's syntax is `file.rs`; everything
//! else in the harness reads only these types.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::protocol::Protocol;

use super::file::{As, BodySize, Count, DistFile, FaultName, Pct, Permission};
use super::file::{ImageName, Positive, PositiveRate, Rate, RedisUrl, Share};
use super::variant_name;

// The tables that map one to one onto the file derive serde here, with the
// file's key names and the unit forms of `file.rs`; the others are built
// from `file.rs` structs by `validate.rs` and written back by `render.rs`.

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// `None`: the run picks one (and prints and records it).
    pub seed: Option<u64>,
    /// How long traffic and churn run (after ramp-up starts).
    pub duration: Duration,
    /// Devices connect spread evenly over this window.
    pub ramp_up: Duration,
    /// After `duration`: sends stop, every device comes back, and the run
    /// waits up to this long for each to have everything.
    pub drain_timeout: Duration,
    pub redis: RedisSpec,
    pub servers: ServersSpec,
    /// The wire protocol of the servers (`[servers] protocol`, default v1).
    pub protocol: Protocol,
    pub population: Population,
    pub traffic: Traffic,
    /// `[[stages]]`: the load shape over time (empty: constant).
    pub stages: Vec<Stage>,
    pub churn: Churn,
    pub thresholds: Thresholds,
    pub expect: Expectations,
    /// Faults injected during the run (`[[faults]]`), in start order.
    pub faults: Vec<FaultSpec>,
    /// `[intruders]`: devices without the right to a conversation.
    pub intruders: super::intruders::Intruders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisProviderChoice {
    #[default]
    /// testcontainers, else local redis-server, else `REDIS_URL`.
    Auto,
    Testcontainers,
    Local,
    /// The `url` given in the scenario (or `--redis-url`).
    Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Persistence {
    #[default]
    None,
    AofEverysec,
    AofAlways,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSpec {
    pub provider: RedisProviderChoice,
    #[serde(with = "As::<Option<RedisUrl>>")]
    pub url: Option<String>,
    /// Container image `name:tag`; `None` means the provider's default
    /// (env `REDIS_IMAGE`, else `redis:7.2`).
    #[serde(with = "As::<Option<ImageName>>")]
    pub image: Option<String>,
    pub persistence: Persistence,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServersSpec {
    /// Start `count` reference-server processes on loopback.
    Spawn {
        count: u32,
        sync_interval: Duration,
        heartbeat_interval: Duration,
        /// Extra command-line arguments for each spawned server.
        extra_args: Vec<String>,
        /// `Some`: each instance is this command instead of the reference
        /// server (the interval and extra-argument settings do not apply).
        command: Option<ServerCommand>,
    },
    /// Test servers someone else runs: full `ws://host:port/ws` URLs.
    External { targets: Vec<String> },
}

/// A server under test started from a command line (`[servers] command`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerCommand {
    /// Program and arguments, with `{port}` and `{redis_url}` placeholders
    /// (also passed as `PORT` and `REDIS_URL` in the environment).
    pub argv: Vec<String>,
    /// Where devices connect, with a `{port}` placeholder.
    pub url: String,
    pub ready: ReadyProbe,
    /// How long an instance may take to pass its readiness probe.
    pub ready_timeout: Duration,
}

/// When a command-spawned server counts as started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyProbe {
    /// A TCP connect to its port succeeds.
    Tcp,
    /// `GET path` on its port answers 2xx.
    Http { path: String },
}

/// The placeholders a server command and its URL may use.
pub const COMMAND_PLACEHOLDERS: [&str; 2] = ["port", "redis_url"];

/// `template` with `{name}` replaced by its value; the error is the first
/// placeholder that is not in `values` (or an unclosed `{`).
pub fn fill_placeholders(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("{{{after}"));
        };
        let name = &after[..close];
        match values.iter().find(|(known, _)| *known == name) {
            Some((_, value)) => out.push_str(value),
            None => return Err(format!("{{{name}}}")),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    #[serde(with = "As::<Count>")]
    pub users: u32,
    #[serde(default = "one", with = "As::<Count>")]
    pub devices_per_user: u32,
    #[serde(with = "As::<Count>")]
    pub conversations: u32,
    /// Users per conversation; each member user's every device opens one
    /// socket in the conversation.
    #[serde(with = "As::<Count>")]
    pub members_per_conversation: u32,
}

fn one() -> u32 {
    1
}

impl Population {
    /// Sockets when every device is online.
    pub fn total_sockets(&self) -> u64 {
        self.conversations as u64
            * self.members_per_conversation as u64
            * self.devices_per_user as u64
    }
}

/// One stage of the load shape: at its end the send rate and the target
/// online share are these, reached linearly from the previous stage's
/// (the first starts from `[traffic] send_rate` and everyone online).
/// Stages run back to back from the run's start; after the last one its
/// values hold until traffic ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(with = "As::<Positive>")]
    pub duration: Duration,
    /// `None`: the previous stage's rate holds.
    #[serde(rename = "send_rate", default, with = "As::<Option<Rate>>")]
    pub send_rate_per_s: Option<f64>,
    /// Share (0..=1) of sockets connected; `None`: the previous holds.
    #[serde(rename = "online", default, with = "As::<Option<Share>>")]
    pub online_share: Option<f64>,
}

/// How a reconnect storm drops its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StormDrop {
    /// A close frame, after a final cumulative ack (a deploy's graceful
    /// shutdown of every client, or an app update).
    Close,
    /// The TCP connection vanishes without a close frame.
    Abrupt,
    /// A TCP reset (RST).
    Reset,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Aggregate sends per second over all devices (open model, Poisson
    /// arrivals: sends never wait for acks).
    #[serde(rename = "send_rate", with = "As::<PositiveRate>")]
    pub send_rate_per_s: f64,
    #[serde(
        rename = "body_size",
        default = "default_body",
        with = "As::<BodySize>"
    )]
    pub body_bytes: u32,
}

fn default_body() -> u32 {
    64
}

/// A random duration; in the file, a table named by its `dist` (which
/// keys each takes and their rules: `validate.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DistFile", into = "DistFile")]
pub enum DurationDist {
    Fixed { value: Duration },
    Uniform { min: Duration, max: Duration },
    Exponential { mean: Duration },
}

/// `Default` is an empty `[churn]` table; without one, churn is off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Churn {
    /// `false`: devices stay online for the whole run.
    pub enabled: bool,
    pub online: DurationDist,
    pub offline: DurationDist,
    /// Share (0..=1) of drops with no close frame.
    #[serde(with = "As::<Share>")]
    pub abrupt_share: f64,
    /// Share (0..=1) of abrupt drops done as a TCP reset.
    #[serde(with = "As::<Share>")]
    pub reset_share: f64,
    /// Share (0..=1) of devices that resume with their own cursor; the rest
    /// rely on the stored cursor.
    #[serde(with = "As::<Share>")]
    pub client_cursor_share: f64,
}

impl Default for Churn {
    fn default() -> Self {
        let exponential = |secs| DurationDist::Exponential {
            mean: Duration::from_secs(secs),
        };
        Churn {
            enabled: true,
            online: exponential(10),
            offline: exponential(2),
            abrupt_share: 0.0,
            reset_share: 0.0,
            client_cursor_share: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyMetric {
    /// Live message: receipt minus the sender's intended send time.
    LiveDelivery,
    /// Ack received minus the intended send time.
    Ack,
    /// Connect attempt to `hello`.
    ConnectToHello,
    /// Reconnect attempt to `caught_up`.
    Recovery,
    /// Replayed message: receipt minus the sender's intended send time.
    ReplayStaleness,
}

impl LatencyMetric {
    pub const ALL: [LatencyMetric; 5] = [
        LatencyMetric::LiveDelivery,
        LatencyMetric::Ack,
        LatencyMetric::ConnectToHello,
        LatencyMetric::Recovery,
        LatencyMetric::ReplayStaleness,
    ];

    /// The name in scenario files and reports (`live_delivery`, ...).
    pub fn name(self) -> &'static str {
        variant_name(self)
    }
}

pub use super::file::Percentile;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyThreshold {
    pub metric: LatencyMetric,
    #[serde(with = "As::<Pct>")]
    pub percentile: Percentile,
    #[serde(with = "As::<Positive>")]
    pub max: Duration,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Minimum deliveries per second over the run (all devices).
    #[serde(rename = "min_delivery_rate", with = "As::<Option<PositiveRate>>")]
    pub min_delivery_rate_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<LatencyThreshold>,
}

/// `[expect]`; the two permissions are written `"allowed"`/`"forbidden"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Expectations {
    pub no_loss: bool,
    pub no_duplicates: bool,
    pub order: bool,
    /// Whether stored-cursor devices may get a message again after a
    /// reconnect (at-least-once).
    #[serde(rename = "stored_cursor_redelivery", with = "As::<Permission>")]
    pub allow_stored_cursor_redelivery: bool,
    /// Whether acked messages may be missing from the log (`lost_ack` not a
    /// violation): only where the scenario destroys Redis data on purpose
    /// (`redis_wipe`, or a restart without persistence). Every such loss is
    /// still reported; receipts of those messages are not phantoms.
    #[serde(rename = "lost_ack", with = "As::<Permission>")]
    pub allow_lost_ack: bool,
}

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            no_loss: true,
            no_duplicates: true,
            order: true,
            allow_stored_cursor_redelivery: true,
            allow_lost_ack: false,
        }
    }
}

/// One fault: what, when (from the run's start, ramp-up included) and for
/// how long.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub at: Duration,
    /// Downtime, freeze or impairment length; 0 for instant faults (reset).
    pub duration: Duration,
}

/// Which network link a proxy fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Between the simulated clients and the servers.
    Clients,
    /// Between the (spawned) servers and Redis.
    Redis,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Stop Redis and start it again after `duration`, keeping its data
    /// as far as the scenario's persistence allows.
    RedisRestart,
    /// Freeze Redis (SIGSTOP / docker pause) for `duration`.
    RedisPause,
    /// Restart Redis with its data gone.
    RedisWipe,
    /// SIGKILL spawned server `server` (index); restart it after `duration`.
    ServerKill { server: u32 },
    /// SIGTERM (graceful) spawned server `server`; restart after `duration`.
    ServerRestart { server: u32 },
    /// Add latency (± jitter) to every packet on the link.
    Latency {
        link: Link,
        latency: Duration,
        jitter: Duration,
    },
    /// Limit the link's throughput in each direction per connection.
    Bandwidth { link: Link, bytes_per_s: u64 },
    /// Partition: the link passes nothing (connections stay open).
    Blackhole { link: Link },
    /// Reset every connection on the link (TCP RST), once.
    Reset { link: Link },
    /// `share` of the connected sockets drop at once (`drop`), and each
    /// comes back at a random moment within `duration` (0: all at once),
    /// with whatever backlog piled up meanwhile.
    ReconnectStorm { share: f64, drop: StormDrop },
}

impl FaultKind {
    /// The `kind` in scenario files and reports (`redis_restart`, ...).
    pub fn name(&self) -> &'static str {
        variant_name(self.file_name())
    }

    pub(crate) fn file_name(&self) -> FaultName {
        match self {
            FaultKind::RedisRestart => FaultName::RedisRestart,
            FaultKind::RedisPause => FaultName::RedisPause,
            FaultKind::RedisWipe => FaultName::RedisWipe,
            FaultKind::ServerKill { .. } => FaultName::ServerKill,
            FaultKind::ServerRestart { .. } => FaultName::ServerRestart,
            FaultKind::Latency { .. } => FaultName::Latency,
            FaultKind::Bandwidth { .. } => FaultName::Bandwidth,
            FaultKind::Blackhole { .. } => FaultName::Blackhole,
            FaultKind::Reset { .. } => FaultName::Reset,
            FaultKind::ReconnectStorm { .. } => FaultName::ReconnectStorm,
        }
    }

    /// The network link a proxy fault uses, if it is one.
    pub fn link(&self) -> Option<Link> {
        match self {
            FaultKind::Latency { link, .. }
            | FaultKind::Bandwidth { link, .. }
            | FaultKind::Blackhole { link }
            | FaultKind::Reset { link } => Some(*link),
            _ => None,
        }
    }
}
