//! The scenario file's schema with the model's serde derives (`model.rs`):
//! the one place where keys, types, defaults and the names of choices are
//! defined (`docs/scenario-format.md` is the human-facing copy). Here:
//! values with units and checked values (read and written with `FromInto`),
//! and the tables shaped differently in the model (`[servers]`, a
//! distribution, a fault), which `validate.rs` maps in, `render.rs` out.

use std::time::Duration;

use recovery_units::*;
use serde::{Deserialize, Serialize};

use super::intruders::{MAX_ATTEMPTS, MAX_INTRUDERS_PER_KIND};
use super::model::COMMAND_PLACEHOLDERS;
use super::model::{fill_placeholders, DurationDist, Link, StormDrop};
use crate::client::protocol::Protocol;

/// A value with a unit: text in the file, in the grammar shared with the
/// server's flags (`recovery-units`); a bare number gets the quoted form
/// with the unit as a hint (`de::with_unit`).
macro_rules! unit_value {
    ($(#[$doc:meta])* $vis:vis $name:ident($type:ty), $unit:literal, $parse:path, $format:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        $vis struct $name(pub $type);

        impl From<$type> for $name {
            fn from(value: $type) -> Self {
                $name(value)
            }
        }

        impl From<$name> for $type {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&$format(self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                super::de::with_unit(deserializer, $unit, $parse).map($name)
            }
        }
    };
}
unit_value!(pub(crate) Dur(Duration), "s", parse_duration, format_duration);
unit_value!(pub(crate) Rate(f64), "/s", parse_rate, format_rate);
unit_value!(pub(crate) Size(u32), "B", parse_size, format_size);
unit_value!(pub(crate) ByteRate(u64), "B/s", parse_byte_rate, format_byte_rate);
unit_value!(
    /// A percentile in (0, 100]; 100 means max (the model's type).
    pub Percentile(f64), "p", parse_percentile, format_percentile
);

/// Values checked as soon as they are read, so that the error points at
/// them (toml gives errors raised here the value's place): each is read
/// as its `$inner` form of the model's `$model` type (`FromInto` in the
/// model's serde attributes), and `$check` gives the problem, if any, with
/// its hint in parentheses.
macro_rules! checked {
    ($($name:ident($inner:ty) as $model:ty: |$value:ident| $check:expr;)*) => {$(
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(transparent)]
        pub(crate) struct $name(pub $inner);

        impl From<$model> for $name {
            fn from(value: $model) -> Self {
                $name(value.into())
            }
        }

        impl From<$name> for $model {
            fn from(value: $name) -> Self {
                value.0.into()
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let $value = <$inner>::deserialize(deserializer)?;
                let problem: Option<String> = $check;
                problem.map_or(Ok($name($value)), |problem| Err(serde::de::Error::custom(problem)))
            }
        }
    )*};
}

checked! {
    Positive(Dur) as Duration: |value| value.0.is_zero().then(|| "must be greater than 0s".into());
    PositiveRate(Rate) as f64: |value| (value.0 <= 0.0).then(|| "must be greater than 0/s".into());
    Count(u32) as u32: |value| (value == 0).then(|| "must be at least 1".into());
    Share(f64) as f64: |value| (!(0.0..=1.0).contains(&value))
        .then(|| format!("{value} is not a share between 0 and 1 (e.g. 0.3 for 30%)"));
    StormShare(Share) as f64: |value| (value.0 == 0.0).then(|| "a storm that drops no socket does \
        nothing (share is the part of the connected sockets that drop, e.g. 1.0 for all)".into());
    PositiveByteRate(ByteRate) as u64: |value| (value.0 == 0).then(|| "must be greater than 0B/s \
        (to pass nothing at all, use kind = \"blackhole\")".into());
    Pct(Percentile) as Percentile: |value| (!(value.0 > 0.0 && value.0 <= 100.0))
        .then(|| "must be above 0 and at most 100 (e.g. \"p50\", \"p99.9\" or \"max\")".into());
    BodySize(Size) as u32: |value| match value.0 {
        0 => Some("must be at least 1B".into()),
        bytes if bytes > MAX_BODY_BYTES => Some("must be at most 64KiB".into()),
        _ => None,
    };
    IntruderCount(u32) as u32: |value| (value > MAX_INTRUDERS_PER_KIND).then(|| format!("at most \
        {MAX_INTRUDERS_PER_KIND} intruders of one kind (intruders probe the server's defences; a \
        few of each kind is enough)"));
    Attempts(u32) as u32: |value| (!(1..=MAX_ATTEMPTS).contains(&value))
        .then(|| format!("must be between 1 and {MAX_ATTEMPTS}"));
    DirName(String) as String: |value| dir_name_problem(&value);
    ImageName(String) as String: |value| (value.is_empty() || value.contains(char::is_whitespace))
        .then(|| format!("{value:?} is not a container image name (write name:tag, e.g. \"redis:7.2\")"));
    RedisUrl(String) as String: |value| {
        let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
        let known = schemes.iter().any(|scheme| value.starts_with(scheme));
        (!known).then(|| format!("{value:?} is not a Redis URL (it starts with one of: {})", schemes.join(", ")))
    };
    WsUrl(String) as String: |value| {
        let host = ["ws://", "wss://"].iter().find_map(|scheme| value.strip_prefix(scheme));
        host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')).then(|| format!("{value:?} is not \
            a WebSocket URL (targets are full URLs like \"ws://127.0.0.1:9000/ws\" (ws:// or wss://))"))
    };
    CommandArg(String) as String: |value| {
        let placeholders = COMMAND_PLACEHOLDERS.map(|name| (name, name));
        fill_placeholders(&value, &placeholders).err().map(|bad| {
            format!("unknown placeholder {bad} (known placeholders: {{port}}, {{redis_url}})")
        })
    };
    CommandUrl(String) as String: |value| match fill_placeholders(&value, &[("port", "1")]) {
        Err(bad) => Some(format!("unknown placeholder {bad} (the url knows one placeholder: {{port}})")),
        Ok(with_port) => {
            let host = crate::target::parse_ws_target(&with_port).ok();
            let ip_host = host.is_some_and(|parsed| {
                matches!(parsed.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
            });
            (!value.contains("{port}") || !ip_host).then(|| format!("{value:?} is not a WebSocket URL on \
                a loopback address with a {{port}} placeholder (e.g. url = {DEFAULT_COMMAND_URL:?})"))
        }
    };
    HttpPath(String) as String: |value| (!value.starts_with('/') || value.contains(char::is_whitespace))
        .then(|| format!("{value:?} is not an HTTP path (write a path starting with '/', e.g. \
            ready_http = \"/healthz\")"));
}

pub(crate) const DEFAULT_COMMAND_URL: &str = "ws://127.0.0.1:{port}/ws";

/// Longest accepted `name`; it becomes a directory name in report paths.
const MAX_NAME_CHARS: usize = 100;
pub(crate) const MAX_BODY_BYTES: u32 = 64 * 1024;

fn dir_name_problem(name: &str) -> Option<String> {
    let hint = "(use letters, digits, '.', '_' and '-' (it names the report directory))";
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() {
        Some(format!("must not be empty {hint}"))
    } else if let Some(bad) = name.chars().find(|c| !safe(*c)) {
        Some(format!(
            "{name:?} contains {bad:?}, which is not safe in a directory name {hint}"
        ))
    } else if name == "." || name == ".." {
        Some(format!("{name:?} is not a usable directory name {hint}"))
    } else {
        (name.chars().count() > MAX_NAME_CHARS)
            .then(|| format!("is longer than {MAX_NAME_CHARS} characters"))
    }
}

/// The file as written. `population` and `traffic` are required tables
/// (checked in `validate.rs`, for an error that says "table").
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct ScenarioFile {
    pub name: DirName,
    pub seed: Option<u64>,
    pub duration: Positive,
    pub ramp_up: Option<Dur>,
    pub drain_timeout: Option<Positive>,
    #[serde(default)]
    pub redis: super::model::RedisSpec,
    #[serde(default)]
    pub servers: ServersFile,
    pub population: Option<super::model::Population>,
    pub traffic: Option<super::model::Traffic>,
    pub churn: Option<super::model::Churn>,
    #[serde(default)]
    pub thresholds: super::model::Thresholds,
    #[serde(default)]
    pub expect: super::model::Expectations,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intruders: Option<super::intruders::Intruders>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<super::model::Stage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultFile>,
}

/// `[servers]`: reference servers (`spawn`), servers run by someone else
/// (`targets`) or any server started per instance (`command`); which keys
/// go with which is checked in `validate.rs`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct ServersFile {
    /// The wire protocol the servers speak (`client::protocol`); v1 when
    /// absent.
    pub protocol: Option<Protocol>,
    pub spawn: Option<Count>,
    pub targets: Option<Vec<WsUrl>>,
    pub sync_interval: Option<Positive>,
    pub heartbeat_interval: Option<Positive>,
    pub extra_args: Option<Vec<String>>,
    pub command: Option<Vec<CommandArg>>,
    pub instances: Option<Count>,
    pub url: Option<CommandUrl>,
    pub ready_http: Option<HttpPath>,
    pub ready_timeout: Option<Positive>,
}

impl ServersFile {
    /// Keys that only mean something for spawned servers.
    pub const SPAWN_ONLY_KEYS: [&str; 3] = ["sync_interval", "heartbeat_interval", "extra_args"];
    /// Keys that only mean something with `command`.
    pub const COMMAND_ONLY_KEYS: [&str; 4] = ["instances", "url", "ready_http", "ready_timeout"];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DistName {
    Fixed,
    Uniform,
    Exponential,
}

impl DistName {
    /// The parameters this distribution takes, in `DistFile` order.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            DistName::Fixed => &["value"],
            DistName::Uniform => &["min", "max"],
            DistName::Exponential => &["mean"],
        }
    }
}

/// A [`DurationDist`] as written; `validate.rs` checks its keys against
/// its `dist` (unknown keys included, for a hint with this `dist`'s keys).
#[derive(Debug, Serialize, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct DistFile {
    pub dist: DistName,
    pub value: Option<Dur>,
    pub min: Option<Dur>,
    pub max: Option<Dur>,
    pub mean: Option<Dur>,
}

impl From<DistFile> for DurationDist {
    fn from(file: DistFile) -> Self {
        let [value, min, max, mean] = [file.value, file.min, file.max, file.mean]
            .map(|given| given.map_or(Duration::ZERO, |dur| dur.0));
        match file.dist {
            DistName::Fixed => DurationDist::Fixed { value },
            DistName::Uniform => DurationDist::Uniform { min, max },
            DistName::Exponential => DurationDist::Exponential { mean },
        }
    }
}

impl From<DurationDist> for DistFile {
    fn from(dist: DurationDist) -> Self {
        let (dist, [value, min, max, mean]) = match dist {
            DurationDist::Fixed { value } => (DistName::Fixed, [Some(value), None, None, None]),
            DurationDist::Uniform { min, max } => {
                (DistName::Uniform, [None, Some(min), Some(max), None])
            }
            DurationDist::Exponential { mean } => {
                (DistName::Exponential, [None, None, None, Some(mean)])
            }
        };
        let [value, min, max, mean] = [value, min, max, mean].map(|given| given.map(Dur));
        DistFile {
            dist,
            value,
            min,
            max,
            mean,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Permission {
    Allowed,
    Forbidden,
}

impl From<Permission> for bool {
    fn from(permission: Permission) -> bool {
        permission == Permission::Allowed
    }
}

impl From<bool> for Permission {
    fn from(allowed: bool) -> Self {
        [Permission::Forbidden, Permission::Allowed][usize::from(allowed)]
    }
}

/// A fault's `kind`; which keys each takes is [`FaultName::keys`]. (The
/// default is only for `FaultFile::default()`, which `render.rs` fills.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultName {
    #[default]
    RedisRestart,
    RedisPause,
    RedisWipe,
    ServerKill,
    ServerRestart,
    Latency,
    Bandwidth,
    Blackhole,
    Reset,
    ReconnectStorm,
}

impl FaultName {
    /// The keys this kind takes, `kind` included, in `FaultFile` order.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Self::RedisRestart | Self::RedisPause | Self::RedisWipe => &["kind", "at", "duration"],
            Self::ServerKill | Self::ServerRestart => &["kind", "at", "duration", "server"],
            Self::Latency => &["kind", "at", "duration", "link", "latency", "jitter"],
            Self::Bandwidth => &["kind", "at", "duration", "link", "rate"],
            Self::Blackhole | Self::Reset => &["kind", "at", "duration", "link"],
            Self::ReconnectStorm => &["kind", "at", "duration", "share", "drop"],
        }
    }
}

/// Every key is optional here: `validate.rs` checks them against the
/// `kind` (unknown keys included), to answer with this kind's keys.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct FaultFile {
    pub kind: FaultName,
    pub at: Option<Dur>,
    pub duration: Option<Dur>,
    pub server: Option<u32>,
    pub link: Option<Link>,
    pub latency: Option<Positive>,
    pub jitter: Option<Dur>,
    pub rate: Option<PositiveByteRate>,
    pub share: Option<StormShare>,
    pub drop: Option<StormDrop>,
}
