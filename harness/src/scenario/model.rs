//! A scenario after parsing and validation: plain typed values, units
//! resolved, defaults filled in; everything else in the harness reads only
//! these types. What each key means is documented once, for people, in
//! `docs/scenario-format.md` (fields carry the key's name, or say it).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::{serde_as, FromInto};

use crate::client::protocol::Protocol;

use super::file::{BodySize, Count, DistFile, FaultName, Pct, Permission};
use super::file::{ImageName, Positive, PositiveRate, Rate, RedisUrl, Share};
use super::variant_name;

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// `None`: the run picks one (and prints and records it).
    pub seed: Option<u64>,
    pub duration: Duration,
    pub ramp_up: Duration,
    pub drain_timeout: Duration,
    pub redis: RedisSpec,
    pub servers: ServersSpec,
    /// The wire protocol of the servers (`[servers] protocol`, default v1).
    pub protocol: Protocol,
    pub population: Population,
    pub traffic: Traffic,
    /// Empty: a constant load.
    pub stages: Vec<Stage>,
    pub churn: Churn,
    pub thresholds: Thresholds,
    pub expect: Expectations,
    /// In start order.
    pub faults: Vec<FaultSpec>,
    pub intruders: super::intruders::Intruders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisProviderChoice {
    #[default]
    Auto,
    Testcontainers,
    Local,
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

#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct RedisSpec {
    pub provider: RedisProviderChoice,
    #[serde_as(as = "Option<FromInto<RedisUrl>>")]
    pub url: Option<String>,
    /// `None`: the provider's default.
    #[serde_as(as = "Option<FromInto<ImageName>>")]
    pub image: Option<String>,
    pub persistence: Persistence,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServersSpec {
    /// `count` reference servers (`spawn`), or instances of `command`
    /// (`instances`; the reference-server settings do not apply then).
    Spawn {
        count: u32,
        sync_interval: Duration,
        heartbeat_interval: Duration,
        extra_args: Vec<String>,
        command: Option<ServerCommand>,
    },
    /// Servers someone else runs, as full URLs.
    External { targets: Vec<String> },
}

/// A server under test started from a command line (`[servers] command`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerCommand {
    /// With [`COMMAND_PLACEHOLDERS`]; `url` with `{port}`.
    pub argv: Vec<String>,
    pub url: String,
    pub ready: ReadyProbe,
    pub ready_timeout: Duration,
}

/// When a command-spawned server counts as started: a TCP connect to its
/// port succeeds, or `GET path` answers 2xx (`ready_http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyProbe {
    Tcp,
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

#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct Population {
    #[serde_as(as = "FromInto<Count>")]
    pub users: u32,
    #[serde(default = "one")]
    #[serde_as(as = "FromInto<Count>")]
    pub devices_per_user: u32,
    #[serde_as(as = "FromInto<Count>")]
    pub conversations: u32,
    /// Each member user's every device opens one socket in it.
    #[serde_as(as = "FromInto<Count>")]
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

/// One stage of the load shape: the send rate and online share at its end,
/// reached linearly from the previous stage's (`None`: the previous holds).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct Stage {
    #[serde_as(as = "FromInto<Positive>")]
    pub duration: Duration,
    #[serde(rename = "send_rate")]
    #[serde_as(as = "Option<FromInto<Rate>>")]
    pub send_rate_per_s: Option<f64>,
    #[serde(rename = "online")]
    #[serde_as(as = "Option<FromInto<Share>>")]
    pub online_share: Option<f64>,
}

/// How a reconnect storm drops its sockets: a close frame after a final
/// ack (a graceful deploy), vanishing without one, or a TCP reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StormDrop {
    Close,
    Abrupt,
    Reset,
}

#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct Traffic {
    /// Over all devices (open model: sends never wait for acks).
    #[serde(rename = "send_rate")]
    #[serde_as(as = "FromInto<PositiveRate>")]
    pub send_rate_per_s: f64,
    #[serde(rename = "body_size", default = "default_body")]
    #[serde_as(as = "FromInto<BodySize>")]
    pub body_bytes: u32,
}

fn default_body() -> u32 {
    64
}

/// A random duration; in the file, a table named by its `dist`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DistFile", into = "DistFile")]
pub enum DurationDist {
    Fixed { value: Duration },
    Uniform { min: Duration, max: Duration },
    Exponential { mean: Duration },
}

/// `Default` is an empty `[churn]` table; without one, churn is off.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct Churn {
    /// `false`: devices stay online for the whole run.
    pub enabled: bool,
    pub online: DurationDist,
    pub offline: DurationDist,
    #[serde_as(as = "FromInto<Share>")]
    pub abrupt_share: f64,
    #[serde_as(as = "FromInto<Share>")]
    pub reset_share: f64,
    #[serde_as(as = "FromInto<Share>")]
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
    LiveDelivery,
    Ack,
    ConnectToHello,
    Recovery,
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

#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct LatencyThreshold {
    pub metric: LatencyMetric,
    #[serde_as(as = "FromInto<Pct>")]
    pub percentile: Percentile,
    #[serde_as(as = "FromInto<Positive>")]
    pub max: Duration,
}

#[serde_as]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct Thresholds {
    #[serde(rename = "min_delivery_rate")]
    #[serde_as(as = "Option<FromInto<PositiveRate>>")]
    pub min_delivery_rate_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<LatencyThreshold>,
}

/// `[expect]`; the two permissions are written `"allowed"`/`"forbidden"`.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct Expectations {
    pub no_loss: bool,
    pub no_duplicates: bool,
    pub order: bool,
    #[serde(rename = "stored_cursor_redelivery")]
    #[serde_as(as = "FromInto<Permission>")]
    pub allow_stored_cursor_redelivery: bool,
    /// Acked messages may be missing from the log (still reported; their
    /// receipts are not phantoms).
    #[serde(rename = "lost_ack")]
    #[serde_as(as = "FromInto<Permission>")]
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
/// how long (0 for a reset; a storm's window to come back in).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub at: Duration,
    pub duration: Duration,
}

/// Which network link a proxy fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Between the simulated clients and the servers.
    Clients,
    /// Between the spawned servers and Redis.
    Redis,
}

/// What each kind does: docs/scenario-format.md, `[[faults]]`.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    RedisRestart,
    RedisPause,
    RedisWipe,
    ServerKill {
        server: u32,
    },
    ServerRestart {
        server: u32,
    },
    Latency {
        link: Link,
        latency: Duration,
        jitter: Duration,
    },
    /// Per connection, in each direction.
    Bandwidth {
        link: Link,
        bytes_per_s: u64,
    },
    Blackhole {
        link: Link,
    },
    Reset {
        link: Link,
    },
    ReconnectStorm {
        share: f64,
        drop: StormDrop,
    },
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
