//! The scenario file's schema, as written: the one place where keys, their
//! TOML types, which are required and the names of choices are defined
//! (serde derives; `docs/scenario-format.md` is the human-facing copy).
//! Values with units stay text here; `validate.rs` parses them, applies
//! defaults and the rules, and builds the typed [`Scenario`]. Rendering
//! goes the other way through the same structs.
//!
//! [`Scenario`]: super::model::Scenario

use std::time::Duration;

use recovery_units::*;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::model::{LatencyMetric, Link, Persistence, RedisProviderChoice, StormDrop};
use crate::client::protocol::Protocol;

/// A value with a unit: text in the file, in the grammar shared with the
/// server's flags (`recovery-units`). The serde name tells `de.rs` which
/// unit it is, to check the text with a precise error and to suggest the
/// unit for a bare number.
macro_rules! unit_value {
    ($name:ident($type:ty), $unit:literal, $parse:path, $format:path) => {
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub(crate) struct $name(pub $type);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&$format(self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text =
                    deserializer.deserialize_newtype_struct(concat!("$unit:", $unit), UnitText)?;
                $parse(&text).map($name).map_err(serde::de::Error::custom)
            }
        }
    };
}
unit_value!(Dur(Duration), "s", parse_duration, format_duration);
unit_value!(Rate(f64), "/s", parse_rate, format_rate);
unit_value!(Size(u32), "B", parse_size, format_size);
unit_value!(ByteRate(u64), "B/s", parse_byte_rate, format_byte_rate);
unit_value!(Pct(f64), "p", parse_percentile, format_percentile);

/// The text of a value with a unit.
struct UnitText;

impl<'de> serde::de::Visitor<'de> for UnitText {
    type Value = String;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a string with a unit")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<String, E> {
        Ok(text.to_string())
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        inner: D,
    ) -> Result<String, D::Error> {
        String::deserialize(inner)
    }
}

pub(crate) type Text<T> = Option<Spanned<T>>;

/// A value checked as soon as it is read, so that the error points at it
/// (`de.rs` gives errors raised here the value's place). `$check` gives
/// the problem, if any, with its hint in parentheses.
macro_rules! checked {
    ($name:ident($inner:ty), |$value:ident| $check:expr) => {
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(transparent)]
        pub(crate) struct $name(pub $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let $value = <$inner>::deserialize(deserializer)?;
                let problem: Option<String> = $check;
                problem.map_or(Ok($name($value)), |problem| {
                    Err(serde::de::Error::custom(problem))
                })
            }
        }
    };
}
checked!(Positive(Dur), |value| value
    .0
    .is_zero()
    .then(|| "must be greater than 0s".into()));
checked!(PositiveRate(Rate), |value| (value.0 <= 0.0)
    .then(|| "must be greater than 0/s".into()));
checked!(Count(u32), |value| (value == 0)
    .then(|| "must be at least 1".into()));
checked!(Share(f64), |value| (!(0.0..=1.0).contains(&value)).then(
    || format!("{value} is not a share between 0 and 1 (e.g. 0.3 for 30%)")
));
checked!(BodySize(Size), |value| match value.0 {
    0 => Some("must be at least 1B".into()),
    bytes if bytes > MAX_BODY_BYTES => Some("must be at most 64KiB".into()),
    _ => None,
});
checked!(DirName(String), |value| dir_name_problem(&value));
checked!(ImageName(String), |value| (value.is_empty()
    || value.contains(char::is_whitespace))
.then(|| format!(
    "{value:?} is not a container image name (write name:tag, e.g. \"redis:7.2\")"
)));
checked!(RedisUrl(String), |value| {
    let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
    (!schemes.iter().any(|scheme| value.starts_with(scheme))).then(|| {
        format!(
            "{value:?} is not a Redis URL (it starts with one of: {})",
            schemes.join(", ")
        )
    })
});
checked!(WsUrl(String), |value| {
    let host = ["ws://", "wss://"]
        .iter()
        .find_map(|scheme| value.strip_prefix(scheme));
    host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')).then(|| {
        format!("{value:?} is not a WebSocket URL (targets are full URLs like \"ws://127.0.0.1:9000/ws\" (ws:// or wss://))")
    })
});

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

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScenarioFile {
    pub name: DirName,
    pub seed: Option<u64>,
    pub duration: Positive,
    pub ramp_up: Text<Dur>,
    pub drain_timeout: Option<Positive>,
    pub redis: Option<RedisFile>,
    pub servers: Option<Spanned<ServersFile>>,
    pub population: Option<Spanned<PopulationFile>>,
    pub traffic: Option<Spanned<TrafficFile>>,
    pub churn: Option<ChurnFile>,
    pub thresholds: Option<ThresholdsFile>,
    pub expect: Option<ExpectFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intruders: Option<Spanned<super::intruders::IntrudersFile>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Spanned<StageFile>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Spanned<FaultFile>>,
}

/// One `[[stages]]` entry: where the send rate and the online share are
/// at the end of `duration`, reached linearly from the previous stage's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StageFile {
    pub duration: Positive,
    pub send_rate: Option<Rate>,
    pub online: Option<Share>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisFile {
    pub provider: Option<Spanned<RedisProviderChoice>>,
    pub url: Option<Spanned<RedisUrl>>,
    pub image: Option<ImageName>,
    pub persistence: Option<Persistence>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServersFile {
    /// The wire protocol the servers speak (`client::protocol`); v1 when
    /// absent.
    pub protocol: Option<Protocol>,
    pub spawn: Option<Count>,
    pub targets: Option<Spanned<Vec<Spanned<WsUrl>>>>,
    pub sync_interval: Option<Positive>,
    pub heartbeat_interval: Option<Positive>,
    pub extra_args: Option<Vec<String>>,
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    pub instances: Option<Count>,
    pub url: Option<Spanned<String>>,
    pub ready_http: Option<Spanned<String>>,
    pub ready_timeout: Option<Positive>,
}

impl ServersFile {
    /// Keys that only mean something for spawned servers.
    pub const SPAWN_ONLY_KEYS: [&str; 3] = ["sync_interval", "heartbeat_interval", "extra_args"];
    /// Keys that only mean something with `command`.
    pub const COMMAND_ONLY_KEYS: [&str; 4] = ["instances", "url", "ready_http", "ready_timeout"];
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PopulationFile {
    pub users: Count,
    pub devices_per_user: Option<Count>,
    pub conversations: Count,
    pub members_per_conversation: Spanned<Count>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrafficFile {
    pub send_rate: PositiveRate,
    pub body_size: Option<BodySize>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChurnFile {
    pub enabled: Option<bool>,
    pub online: Option<Spanned<DistFile>>,
    pub offline: Option<Spanned<DistFile>>,
    pub abrupt_share: Option<Share>,
    pub reset_share: Option<Share>,
    pub client_cursor_share: Option<Share>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DistName {
    Fixed,
    Uniform,
    Exponential,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DistFile {
    pub dist: Spanned<DistName>,
    pub value: Text<Dur>,
    pub min: Text<Dur>,
    pub max: Text<Dur>,
    pub mean: Text<Dur>,
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

    pub fn name(self) -> &'static str {
        super::names::variant_name(&self)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThresholdsFile {
    pub min_delivery_rate: Option<PositiveRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<Spanned<LatencyFile>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LatencyFile {
    pub metric: LatencyMetric,
    pub percentile: Spanned<Pct>,
    pub max: Positive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Permission {
    Allowed,
    Forbidden,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectFile {
    pub no_loss: Option<bool>,
    pub no_duplicates: Option<bool>,
    pub order: Option<bool>,
    pub stored_cursor_redelivery: Option<Permission>,
    pub lost_ack: Option<Permission>,
}

/// A fault's `kind`; which keys each takes is [`FaultName::keys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultName {
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

/// Every key is optional here, so that a key of another kind is reported
/// as such before a missing one (`validate_faults.rs`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultFile {
    pub kind: Spanned<FaultName>,
    pub at: Text<Dur>,
    pub duration: Text<Dur>,
    pub server: Option<Spanned<u32>>,
    pub link: Option<Spanned<Link>>,
    pub latency: Option<Positive>,
    pub jitter: Text<Dur>,
    pub rate: Text<ByteRate>,
    pub share: Option<Spanned<Share>>,
    pub drop: Option<StormDrop>,
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

    pub fn name(self) -> &'static str {
        super::names::variant_name(&self)
    }
}
