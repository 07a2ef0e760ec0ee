//! Scenario document (spanned TOML tree) -> validated [`Scenario`].
//! Defaults are filled in here; every rule that makes a scenario
//! meaningless or dangerous is checked here, so a run never starts with a
//! file that would fail half-way. The schema itself is documented in
//! `parse.rs` and `docs/scenario-format.md`.

use std::time::Duration;

use super::error::ScenarioError;
use super::model::*;
use super::reader::{Found, Table};
use faults::{faults, FaultContext};

#[path = "validate_faults.rs"]
mod faults;

const TOP_KEYS: &[&str] = &[
    "name",
    "seed",
    "duration",
    "ramp_up",
    "drain_timeout",
    "redis",
    "servers",
    "population",
    "traffic",
    "churn",
    "thresholds",
    "expect",
    "faults",
];
const REDIS_KEYS: &[&str] = &["provider", "url", "image", "persistence"];
const SERVER_KEYS: &[&str] = &[
    "spawn",
    "targets",
    "sync_interval",
    "heartbeat_interval",
    "extra_args",
];
const SPAWN_ONLY_KEYS: &[&str] = &["sync_interval", "heartbeat_interval", "extra_args"];
const POPULATION_KEYS: &[&str] = &[
    "users",
    "devices_per_user",
    "conversations",
    "members_per_conversation",
];
const TRAFFIC_KEYS: &[&str] = &["send_rate", "body_size"];
const CHURN_KEYS: &[&str] = &[
    "enabled",
    "online",
    "offline",
    "abrupt_share",
    "reset_share",
    "client_cursor_share",
];
const DIST_KEYS: &[&str] = &["dist", "value", "min", "max", "mean"];
const THRESHOLD_KEYS: &[&str] = &["min_delivery_rate", "latency"];
const LATENCY_KEYS: &[&str] = &["metric", "percentile", "max"];
const EXPECT_KEYS: &[&str] = &[
    "no_loss",
    "no_duplicates",
    "order",
    "stored_cursor_redelivery",
    "lost_ack",
];

/// Longest accepted `name`; it becomes a directory name in report paths.
const MAX_NAME_CHARS: usize = 100;
pub(crate) const MAX_BODY_BYTES: u32 = 64 * 1024;

pub(crate) const DEFAULT_RAMP_UP: Duration = Duration::ZERO;
pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_BODY_BYTES: u32 = 64;

pub(crate) fn default_online() -> DurationDist {
    DurationDist::Exponential {
        mean: Duration::from_secs(10),
    }
}

pub(crate) fn default_offline() -> DurationDist {
    DurationDist::Exponential {
        mean: Duration::from_secs(2),
    }
}

pub(crate) fn scenario_from_root(root: &Table) -> Result<Scenario, ScenarioError> {
    root.reject_unknown_keys(TOP_KEYS)?;
    let name = name(root)?;
    let seed = root.unsigned("seed")?.map(|found| found.value);
    let duration = root.duration("duration")?;
    let duration = positive(root, root.require("duration", duration)?)?;
    let ramp_up = root
        .duration("ramp_up")?
        .map_or(DEFAULT_RAMP_UP, |found| found.value);
    let drain_timeout = match root.duration("drain_timeout")? {
        Some(found) => positive(root, found)?,
        None => DEFAULT_DRAIN_TIMEOUT,
    };
    let redis = redis(root)?;
    let servers = servers(root)?;
    let population = population(root)?;
    let traffic = traffic(root)?;
    let churn = churn(root)?;
    let thresholds = thresholds(root)?;
    let expect = expectations(root)?;
    let faults = faults(
        root,
        &FaultContext {
            traffic_end: ramp_up.saturating_add(duration),
            redis: &redis,
            servers: &servers,
            allow_lost_ack: expect.allow_lost_ack,
        },
    )?;
    Ok(Scenario {
        name,
        seed,
        duration,
        ramp_up,
        drain_timeout,
        redis,
        servers,
        population,
        traffic,
        churn,
        thresholds,
        expect,
        faults,
    })
}

fn name(root: &Table) -> Result<String, ScenarioError> {
    let name = root.string("name")?;
    let name = root.require("name", name)?;
    let hint = Some("use letters, digits, '.', '_' and '-' (it names the report directory)".into());
    if name.value.is_empty() {
        return Err(root.fail(&name, "must not be empty", hint));
    }
    if let Some(bad) = name
        .value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let problem = format!(
            "{:?} contains {bad:?}, which is not safe in a directory name",
            name.value
        );
        return Err(root.fail(&name, problem, hint));
    }
    if name.value == "." || name.value == ".." {
        return Err(root.fail(
            &name,
            format!("{:?} is not a usable directory name", name.value),
            hint,
        ));
    }
    if name.value.chars().count() > MAX_NAME_CHARS {
        return Err(root.fail(
            &name,
            format!("is longer than {MAX_NAME_CHARS} characters"),
            None,
        ));
    }
    Ok(name.value.to_string())
}

fn redis(root: &Table) -> Result<RedisSpec, ScenarioError> {
    let Some(table) = root.table("redis")? else {
        return Ok(RedisSpec {
            provider: RedisProviderChoice::Auto,
            url: None,
            image: None,
            persistence: Persistence::None,
        });
    };
    table.reject_unknown_keys(REDIS_KEYS)?;
    let providers = [
        ("auto", RedisProviderChoice::Auto),
        ("testcontainers", RedisProviderChoice::Testcontainers),
        ("local", RedisProviderChoice::Local),
        ("url", RedisProviderChoice::Url),
    ];
    let provider = choice(&table, "provider", &providers)?;
    let url = table.string("url")?;
    let url = match (&provider, url) {
        (Some(provider), None) if provider.value == RedisProviderChoice::Url => {
            return Err(table.origin.error(
                provider.span.clone(),
                &table.key_path("url"),
                "required when provider = \"url\"",
                Some("add e.g. url = \"redis://127.0.0.1:6379\"".into()),
            ))
        }
        (_, None) => None,
        (provider, Some(url)) => {
            if provider.as_ref().map(|found| found.value) != Some(RedisProviderChoice::Url) {
                return Err(table.fail(
                    &url,
                    "is only used with provider = \"url\"",
                    Some("set provider = \"url\", or remove url".into()),
                ));
            }
            let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
            if !schemes.iter().any(|scheme| url.value.starts_with(scheme)) {
                return Err(table.fail(
                    &url,
                    format!("{:?} is not a Redis URL", url.value),
                    Some(format!("it starts with one of: {}", schemes.join(", "))),
                ));
            }
            Some(url.value.to_string())
        }
    };
    let image = match table.string("image")? {
        None => None,
        Some(image) if image.value.is_empty() || image.value.contains(char::is_whitespace) => {
            return Err(table.fail(
                &image,
                format!("{:?} is not a container image name", image.value),
                Some("write name:tag, e.g. \"redis:7.2\"".into()),
            ))
        }
        Some(image) => Some(image.value.to_string()),
    };
    let persistences = [
        ("none", Persistence::None),
        ("aof-everysec", Persistence::AofEverysec),
        ("aof-always", Persistence::AofAlways),
    ];
    let persistence = choice(&table, "persistence", &persistences)?;
    Ok(RedisSpec {
        provider: provider.map_or(RedisProviderChoice::Auto, |found| found.value),
        url,
        image,
        persistence: persistence.map_or(Persistence::None, |found| found.value),
    })
}

fn servers(root: &Table) -> Result<ServersSpec, ScenarioError> {
    let Some(table) = root.table("servers")? else {
        return Ok(ServersSpec::Spawn {
            count: 1,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            extra_args: Vec::new(),
        });
    };
    table.reject_unknown_keys(SERVER_KEYS)?;
    let spawn = table.count("spawn")?;
    let Some(targets) = table.array("targets")? else {
        let count = match spawn {
            Some(found) => at_least_one(&table, found)?,
            None => 1,
        };
        let sync_interval = match table.duration("sync_interval")? {
            Some(found) => positive(&table, found)?,
            None => DEFAULT_SYNC_INTERVAL,
        };
        let heartbeat_interval = match table.duration("heartbeat_interval")? {
            Some(found) => positive(&table, found)?,
            None => DEFAULT_HEARTBEAT_INTERVAL,
        };
        let mut extra_args = Vec::new();
        if let Some(args) = table.array("extra_args")? {
            for index in 0..args.value.len() {
                extra_args.push(table.element_string(&args, index)?.value.to_string());
            }
        }
        return Ok(ServersSpec::Spawn {
            count,
            sync_interval,
            heartbeat_interval,
            extra_args,
        });
    };
    if spawn.is_some() {
        return Err(table.fail(
            &targets,
            "cannot be combined with spawn",
            Some("spawn starts reference servers, targets names servers run by someone else: keep one".into()),
        ));
    }
    if let Some((key, span)) = SPAWN_ONLY_KEYS
        .iter()
        .find_map(|key| table.key_span(key).map(|span| (key, span)))
    {
        return Err(table.origin.error(
            span,
            &table.key_path(key),
            "only applies to spawned servers, not to targets",
            Some("remove it, or use spawn instead of targets".into()),
        ));
    }
    if targets.value.is_empty() {
        return Err(table.fail(
            &targets,
            "must list at least one server",
            Some("e.g. targets = [\"ws://127.0.0.1:9000/ws\"]".into()),
        ));
    }
    let mut urls: Vec<String> = Vec::new();
    for index in 0..targets.value.len() {
        let target = table.element_string(&targets, index)?;
        let host = ["ws://", "wss://"]
            .iter()
            .find_map(|scheme| target.value.strip_prefix(scheme));
        if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            return Err(table.fail(
                &target,
                format!("{:?} is not a WebSocket URL", target.value),
                Some(
                    "targets are full URLs like \"ws://127.0.0.1:9000/ws\" (ws:// or wss://)"
                        .into(),
                ),
            ));
        }
        if urls.iter().any(|url| url == target.value) {
            return Err(table.fail(&target, format!("{:?} is listed twice", target.value), None));
        }
        urls.push(target.value.to_string());
    }
    Ok(ServersSpec::External { targets: urls })
}

fn population(root: &Table) -> Result<Population, ScenarioError> {
    let table = root
        .table("population")?
        .ok_or_else(|| missing_table(root, "population"))?;
    table.reject_unknown_keys(POPULATION_KEYS)?;
    let required_count = |key: &str| -> Result<Found<u32>, ScenarioError> {
        let found = table.count(key)?;
        let found = table.require(key, found)?;
        at_least_one(&table, found.clone())?;
        Ok(found)
    };
    let users = required_count("users")?;
    let conversations = required_count("conversations")?;
    let members = required_count("members_per_conversation")?;
    let devices_per_user = match table.count("devices_per_user")? {
        Some(found) => at_least_one(&table, found)?,
        None => 1,
    };
    if members.value > users.value {
        return Err(table.fail(
            &members,
            format!("{} is more than users ({})", members.value, users.value),
            Some("a conversation's members are distinct users".into()),
        ));
    }
    Ok(Population {
        users: users.value,
        devices_per_user,
        conversations: conversations.value,
        members_per_conversation: members.value,
    })
}

fn traffic(root: &Table) -> Result<Traffic, ScenarioError> {
    let table = root
        .table("traffic")?
        .ok_or_else(|| missing_table(root, "traffic"))?;
    table.reject_unknown_keys(TRAFFIC_KEYS)?;
    let send_rate = table.rate("send_rate")?;
    let send_rate = table.require("send_rate", send_rate)?;
    let send_rate_per_s = positive_rate(&table, send_rate)?;
    let body_bytes = match table.size("body_size")? {
        None => DEFAULT_BODY_BYTES,
        Some(found) if found.value == 0 => {
            return Err(table.fail(&found, "must be at least 1B", None))
        }
        Some(found) if found.value > MAX_BODY_BYTES => {
            return Err(table.fail(&found, "must be at most 64KiB", None))
        }
        Some(found) => found.value,
    };
    Ok(Traffic {
        send_rate_per_s,
        body_bytes,
    })
}

fn churn(root: &Table) -> Result<Churn, ScenarioError> {
    let Some(table) = root.table("churn")? else {
        return Ok(Churn {
            enabled: false,
            online: default_online(),
            offline: default_offline(),
            abrupt_share: 0.0,
            reset_share: 0.0,
            client_cursor_share: 1.0,
        });
    };
    table.reject_unknown_keys(CHURN_KEYS)?;
    Ok(Churn {
        enabled: table.bool("enabled")?.is_none_or(|found| found.value),
        online: duration_dist(&table, "online", Zero::Rejected)?.unwrap_or_else(default_online),
        offline: duration_dist(&table, "offline", Zero::Allowed)?.unwrap_or_else(default_offline),
        abrupt_share: share(&table, "abrupt_share", 0.0)?,
        reset_share: share(&table, "reset_share", 0.0)?,
        client_cursor_share: share(&table, "client_cursor_share", 1.0)?,
    })
}

/// Whether a random duration may come out as zero: an offline time of 0
/// is a legitimate "reconnect at once"; an online time of 0 would make a
/// device flap without ever doing anything.
#[derive(Clone, Copy, PartialEq)]
enum Zero {
    Allowed,
    Rejected,
}

#[derive(Clone, Copy, PartialEq)]
enum DistKind {
    Fixed,
    Uniform,
    Exponential,
}

fn duration_dist(
    parent: &Table,
    key: &str,
    zero: Zero,
) -> Result<Option<DurationDist>, ScenarioError> {
    let Some(table) = parent.table(key)? else {
        return Ok(None);
    };
    table.reject_unknown_keys(DIST_KEYS)?;
    let kinds = [
        ("fixed", DistKind::Fixed),
        ("uniform", DistKind::Uniform),
        ("exponential", DistKind::Exponential),
    ];
    let kind = choice(&table, "dist", &kinds)?;
    let kind = table.require("dist", kind)?;
    let kind_name = kinds
        .iter()
        .find(|(_, candidate)| *candidate == kind.value)
        .map_or("", |(name, _)| *name);
    let params: &[&str] = match kind.value {
        DistKind::Fixed => &["value"],
        DistKind::Uniform => &["min", "max"],
        DistKind::Exponential => &["mean"],
    };
    if let Some((extra, span)) = DIST_KEYS
        .iter()
        .filter(|param| **param != "dist" && !params.contains(param))
        .find_map(|param| table.key_span(param).map(|span| (param, span)))
    {
        return Err(table.origin.error(
            span,
            &table.key_path(extra),
            format!("does not apply to dist = {kind_name:?}"),
            Some(format!("{kind_name} takes: {}", params.join(", "))),
        ));
    }
    let param = |name: &str, may_be_zero: bool| -> Result<Duration, ScenarioError> {
        let found = table.duration(name)?;
        let found = table.require(name, found)?;
        if may_be_zero {
            Ok(found.value)
        } else {
            positive(&table, found)
        }
    };
    let zero_ok = zero == Zero::Allowed;
    let dist = match kind.value {
        DistKind::Fixed => DurationDist::Fixed {
            value: param("value", zero_ok)?,
        },
        DistKind::Uniform => {
            let min = param("min", zero_ok)?;
            let max = table.require("max", table.duration("max")?)?;
            if max.value < min {
                return Err(table.fail(
                    &max,
                    "is less than min",
                    Some("uniform needs min <= max".into()),
                ));
            }
            DurationDist::Uniform {
                min,
                max: max.value,
            }
        }
        // A zero mean has no exponential distribution, offline or not.
        DistKind::Exponential => DurationDist::Exponential {
            mean: param("mean", false)?,
        },
    };
    Ok(Some(dist))
}

fn thresholds(root: &Table) -> Result<Thresholds, ScenarioError> {
    let Some(table) = root.table("thresholds")? else {
        return Ok(Thresholds::default());
    };
    table.reject_unknown_keys(THRESHOLD_KEYS)?;
    let min_delivery_rate_per_s = match table.rate("min_delivery_rate")? {
        Some(found) => Some(positive_rate(&table, found)?),
        None => None,
    };
    let mut latency: Vec<LatencyThreshold> = Vec::new();
    if let Some(items) = table.array("latency")? {
        let metrics = LatencyMetric::ALL.map(|metric| (metric.name(), metric));
        for index in 0..items.value.len() {
            let item = table.element_table(&items, index)?;
            item.reject_unknown_keys(LATENCY_KEYS)?;
            let metric = item.require("metric", choice(&item, "metric", &metrics)?)?;
            let percentile = item.require("percentile", item.percentile("percentile")?)?;
            if !(percentile.value > 0.0 && percentile.value <= 100.0) {
                return Err(item.fail(
                    &percentile,
                    "must be above 0 and at most 100",
                    Some("e.g. \"p50\", \"p99.9\" or \"max\"".into()),
                ));
            }
            let max = item.require("max", item.duration("max")?)?;
            let threshold = LatencyThreshold {
                metric: metric.value,
                percentile: Percentile(percentile.value),
                max: positive(&item, max)?,
            };
            if let Some(earlier) = latency.iter().position(|seen| {
                seen.metric == threshold.metric && seen.percentile == threshold.percentile
            }) {
                return Err(item.fail_table(
                    format!(
                        "repeats the metric and percentile of {}[{earlier}]",
                        items.key
                    ),
                    None,
                ));
            }
            latency.push(threshold);
        }
    }
    Ok(Thresholds {
        latency,
        min_delivery_rate_per_s,
    })
}

fn expectations(root: &Table) -> Result<Expectations, ScenarioError> {
    let Some(table) = root.table("expect")? else {
        return Ok(Expectations {
            allow_lost_ack: false,
            no_loss: true,
            no_duplicates: true,
            order: true,
            allow_stored_cursor_redelivery: true,
        });
    };
    table.reject_unknown_keys(EXPECT_KEYS)?;
    let flag = |key: &str| -> Result<bool, ScenarioError> {
        Ok(table.bool(key)?.is_none_or(|found| found.value))
    };
    let redelivery = choice(
        &table,
        "stored_cursor_redelivery",
        &[("allowed", true), ("forbidden", false)],
    )?;
    let lost_ack = choice(
        &table,
        "lost_ack",
        &[("allowed", true), ("forbidden", false)],
    )?;
    Ok(Expectations {
        allow_lost_ack: lost_ack.is_some_and(|found| found.value),
        no_loss: flag("no_loss")?,
        no_duplicates: flag("no_duplicates")?,
        order: flag("order")?,
        allow_stored_cursor_redelivery: redelivery.is_none_or(|found| found.value),
    })
}

fn missing_table(root: &Table, key: &str) -> ScenarioError {
    root.origin.error(
        0..0,
        key,
        format!("required table [{key}] is missing"),
        Some(format!(
            "see docs/scenario-format.md for the keys of [{key}]"
        )),
    )
}

/// A string key whose value is one of `options`.
fn choice<T: Copy>(
    table: &Table,
    key: &str,
    options: &[(&str, T)],
) -> Result<Option<Found<T>>, ScenarioError> {
    let Some(found) = table.string(key)? else {
        return Ok(None);
    };
    match options.iter().find(|(name, _)| *name == found.value) {
        Some(&(_, value)) => Ok(Some(found.map(|_| value))),
        None => {
            let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
            Err(table.fail(
                &found,
                format!("unknown value {:?}", found.value),
                Some(format!("expected one of: {}", names.join(", "))),
            ))
        }
    }
}

fn positive(table: &Table, found: Found<Duration>) -> Result<Duration, ScenarioError> {
    if found.value.is_zero() {
        return Err(table.fail(&found, "must be greater than 0s", None));
    }
    Ok(found.value)
}

fn positive_rate(table: &Table, found: Found<f64>) -> Result<f64, ScenarioError> {
    if found.value <= 0.0 {
        return Err(table.fail(&found, "must be greater than 0/s", None));
    }
    Ok(found.value)
}

fn at_least_one(table: &Table, found: Found<u32>) -> Result<u32, ScenarioError> {
    if found.value == 0 {
        return Err(table.fail(&found, "must be at least 1", None));
    }
    Ok(found.value)
}

/// A share of something: a number in 0..=1.
fn share(table: &Table, key: &str, default: f64) -> Result<f64, ScenarioError> {
    match table.number(key)? {
        None => Ok(default),
        Some(found) if (0.0..=1.0).contains(&found.value) => Ok(found.value),
        Some(found) => Err(table.fail(
            &found,
            format!("{} is not a share between 0 and 1", found.value),
            Some("e.g. 0.3 for 30%".into()),
        )),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "validate_fault_tests.rs"]
mod fault_tests;
