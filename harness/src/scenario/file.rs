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

use super::model::{LatencyMetric, Link, Persistence, RedisProviderChoice};

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

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScenarioFile {
    pub name: Spanned<String>,
    pub seed: Option<u64>,
    pub duration: Spanned<Dur>,
    pub ramp_up: Text<Dur>,
    pub drain_timeout: Text<Dur>,
    pub redis: Option<RedisFile>,
    pub servers: Option<Spanned<ServersFile>>,
    pub population: Option<Spanned<PopulationFile>>,
    pub traffic: Option<Spanned<TrafficFile>>,
    pub churn: Option<ChurnFile>,
    pub thresholds: Option<ThresholdsFile>,
    pub expect: Option<ExpectFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Spanned<FaultFile>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisFile {
    pub provider: Option<Spanned<RedisProviderChoice>>,
    pub url: Option<Spanned<String>>,
    pub image: Option<Spanned<String>>,
    pub persistence: Option<Persistence>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServersFile {
    pub spawn: Option<Spanned<u32>>,
    pub targets: Option<Spanned<Vec<Spanned<String>>>>,
    pub sync_interval: Text<Dur>,
    pub heartbeat_interval: Text<Dur>,
    pub extra_args: Option<Vec<String>>,
}

impl ServersFile {
    /// Keys that only mean something for spawned servers.
    pub const SPAWN_ONLY_KEYS: [&str; 3] = ["sync_interval", "heartbeat_interval", "extra_args"];
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PopulationFile {
    pub users: Spanned<u32>,
    pub devices_per_user: Option<Spanned<u32>>,
    pub conversations: Spanned<u32>,
    pub members_per_conversation: Spanned<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrafficFile {
    pub send_rate: Spanned<Rate>,
    pub body_size: Text<Size>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChurnFile {
    pub enabled: Option<bool>,
    pub online: Option<Spanned<DistFile>>,
    pub offline: Option<Spanned<DistFile>>,
    pub abrupt_share: Option<Spanned<f64>>,
    pub reset_share: Option<Spanned<f64>>,
    pub client_cursor_share: Option<Spanned<f64>>,
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
    pub min_delivery_rate: Text<Rate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<Spanned<LatencyFile>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LatencyFile {
    pub metric: LatencyMetric,
    pub percentile: Spanned<Pct>,
    pub max: Spanned<Dur>,
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
    pub latency: Text<Dur>,
    pub jitter: Text<Dur>,
    pub rate: Text<ByteRate>,
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
        }
    }

    pub fn name(self) -> &'static str {
        super::names::variant_name(&self)
    }
}
