//! `[[faults]]` -> validated [`FaultSpec`]s. A fault is only accepted when
//! the harness can actually inject it into this scenario (it controls the
//! Redis, the servers or the link), when it starts while traffic runs, and
//! when no other fault acts on the same target at the same time: two
//! overlapping faults on one target would make the timeline (and so the
//! report's attribution of findings to faults) ambiguous.

use std::time::Duration;

use serde::de::IntoDeserializer;
use serde::Deserialize;

use super::Source;
use crate::scenario::error::ScenarioError;
use crate::scenario::file::{FaultFile, FaultName};
use crate::scenario::model::*;
use crate::scenario::variant_name;
use recovery_units::format_duration;

/// What a fault needs to know about the rest of the scenario.
pub(super) struct FaultContext<'s> {
    /// `ramp_up + duration`: when sends stop and the drain begins.
    pub traffic_end: Duration,
    pub redis: &'s RedisSpec,
    pub servers: &'s ServersSpec,
    pub allow_lost_ack: bool,
}

/// The hint for a typo in a fault table whose `kind` is known: that
/// kind's keys, which are more useful than every fault key.
pub(crate) fn fault_keys_hint(kind: &str) -> Option<String> {
    let deserializer: serde::de::value::StrDeserializer<serde::de::value::Error> =
        kind.into_deserializer();
    let kind = FaultName::deserialize(deserializer).ok()?;
    Some(format!(
        "{} takes: {}",
        variant_name(kind),
        kind.keys().join(", ")
    ))
}

/// What a fault acts on; two faults on one target must not overlap.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Redis,
    Server(u32),
    Link(Link),
    /// The harness's own simulated clients (reconnect storms).
    Clients,
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::Redis => "Redis".to_string(),
            Target::Server(index) => format!("server {index}"),
            Target::Link(Link::Clients) => "the clients link".to_string(),
            Target::Link(Link::Redis) => "the redis link".to_string(),
            Target::Clients => "the clients".to_string(),
        }
    }
}

/// Half-open `[at, end)`; an instant fault occupies 1ns so that two
/// instant faults at the same moment on one target collide.
fn window(spec: &FaultSpec) -> (Duration, Duration) {
    let length = spec.duration.max(Duration::from_nanos(1));
    (spec.at, spec.at.saturating_add(length))
}

fn describe(spec: &FaultSpec) -> String {
    let (name, at) = (spec.kind.name(), format_duration(spec.at));
    if spec.duration.is_zero() {
        format!("{name} at {at}")
    } else {
        let end = format_duration(spec.at.saturating_add(spec.duration));
        format!("{name} from {at} to {end}")
    }
}

/// All `[[faults]]`, sorted by start time (stably: faults starting at the
/// same moment keep their file order).
pub(super) fn faults(
    source: &Source,
    items: &[FaultFile],
    context: &FaultContext,
) -> Result<Vec<FaultSpec>, ScenarioError> {
    let mut parsed: Vec<(FaultSpec, Target)> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("faults[{index}]");
        let (spec, target) = fault(source, &path, item, context)?;
        let (start, end) = window(&spec);
        let clash = parsed.iter().position(|(earlier, earlier_target)| {
            let (earlier_start, earlier_end) = window(earlier);
            *earlier_target == target && start < earlier_end && earlier_start < end
        });
        if let Some(earlier) = clash {
            return Err(source.fail(
                &path,
                format!(
                    "{} overlaps faults[{earlier}] ({}), both on {}",
                    describe(&spec),
                    describe(&parsed[earlier].0),
                    target.describe()
                ),
                Some(
                    "faults on one target must not overlap in time: start one after the other ends"
                        .into(),
                ),
            ));
        }
        parsed.push((spec, target));
    }
    let mut specs: Vec<FaultSpec> = parsed.into_iter().map(|(spec, _)| spec).collect();
    specs.sort_by_key(|spec| spec.at);
    Ok(specs)
}

fn fault(
    source: &Source,
    path: &str,
    file: &FaultFile,
    context: &FaultContext,
) -> Result<(FaultSpec, Target), ScenarioError> {
    let kind = file.kind;
    let at_path = |key: &str| format!("{path}.{key}");
    let name = variant_name(kind);
    let foreign = source
        .keys(path)
        .into_iter()
        .find(|key| !kind.keys().contains(key));
    if let Some(key) = foreign {
        return Err(source.fail_key(
            &at_path(key),
            format!("does not apply to kind = {name:?}"),
            fault_keys_hint(name),
        ));
    }
    check_controllable(source, path, kind, context)?;

    let at = file.at.ok_or_else(|| source.missing(path, "at"))?.0;
    if at >= context.traffic_end {
        return Err(source.fail(
            &at_path("at"),
            format!(
                "starts at {}, when traffic has ended (ramp_up + duration = {})",
                format_duration(at),
                format_duration(context.traffic_end)
            ),
            Some("a fault must start while traffic runs; the drain comes after (a fault may last into the drain)".into()),
        ));
    }
    let duration = match (file.duration.map(|text| text.0), kind) {
        (None, FaultName::Reset | FaultName::ReconnectStorm) => Duration::ZERO,
        // The window the dropped sockets come back in; 0 = all at once.
        (Some(window), FaultName::ReconnectStorm) => window,
        (None, _) => return Err(source.missing(path, "duration")),
        (Some(length), FaultName::Reset) if !length.is_zero() => {
            return Err(source.fail(
                &at_path("duration"),
                "a reset is instant: its duration must be \"0s\"",
                Some("remove duration (it defaults to \"0s\")".into()),
            ))
        }
        (Some(length), FaultName::Reset) => length,
        (Some(length), _) if length.is_zero() => {
            return Err(source.fail(&at_path("duration"), "must be greater than 0s", None))
        }
        (Some(length), _) => length,
    };
    let (fault_kind, target) = kind_params(source, path, file, context)?;

    let destroys_acked = match kind {
        FaultName::RedisWipe => Some("redis_wipe deletes acked messages"),
        FaultName::RedisRestart if context.redis.persistence == Persistence::None => {
            Some("redis_restart with redis.persistence = \"none\" loses acked messages")
        }
        _ => None,
    };
    if let (Some(problem), false) = (destroys_acked, context.allow_lost_ack) {
        return Err(source.fail(
            &at_path("kind"),
            problem,
            Some("this scenario destroys acked messages on purpose; set [expect] lost_ack = \"allowed\"".into()),
        ));
    }
    Ok((
        FaultSpec {
            kind: fault_kind,
            at,
            duration,
        },
        target,
    ))
}

/// Whether the harness controls what this kind of fault acts on.
fn check_controllable(
    source: &Source,
    path: &str,
    kind: FaultName,
    context: &FaultContext,
) -> Result<(), ScenarioError> {
    let kind_path = format!("{path}.kind");
    let is_redis = matches!(
        kind,
        FaultName::RedisRestart | FaultName::RedisPause | FaultName::RedisWipe
    );
    if is_redis && context.redis.provider == RedisProviderChoice::Url {
        return Err(source.fail(
            &kind_path,
            "redis faults need a Redis the harness starts (testcontainers or local), not a given URL",
            Some("set redis.provider = \"testcontainers\" or \"local\" (or \"auto\")".into()),
        ));
    }
    let is_server = matches!(kind, FaultName::ServerKill | FaultName::ServerRestart);
    if is_server && matches!(context.servers, ServersSpec::External { .. }) {
        return Err(source.fail(
            &kind_path,
            "server faults need spawned reference servers",
            Some(
                "servers.targets are run by someone else: use [servers] spawn \
                 (or command, for your own server) instead"
                    .into(),
            ),
        ));
    }
    Ok(())
}

fn kind_params(
    source: &Source,
    path: &str,
    file: &FaultFile,
    context: &FaultContext,
) -> Result<(FaultKind, Target), ScenarioError> {
    let at_path = |key: &str| format!("{path}.{key}");
    let link = || link(source, path, file, context);
    Ok(match file.kind {
        FaultName::RedisRestart => (FaultKind::RedisRestart, Target::Redis),
        FaultName::RedisPause => (FaultKind::RedisPause, Target::Redis),
        FaultName::RedisWipe => (FaultKind::RedisWipe, Target::Redis),
        FaultName::ServerKill => {
            let server = server_index(source, path, file, context)?;
            (FaultKind::ServerKill { server }, Target::Server(server))
        }
        FaultName::ServerRestart => {
            let server = server_index(source, path, file, context)?;
            (FaultKind::ServerRestart { server }, Target::Server(server))
        }
        FaultName::Latency => {
            let link = link()?;
            let latency = file
                .latency
                .as_ref()
                .ok_or_else(|| source.missing(path, "latency"))?;
            let latency = latency.0 .0;
            let jitter = match file.jitter {
                Some(text) => match text.0 {
                    jitter if jitter > latency => return Err(source.fail(
                        &at_path("jitter"),
                        format!("is more than latency ({})", format_duration(latency)),
                        Some(
                            "each packet is delayed by latency ± jitter, which must not go below 0"
                                .into(),
                        ),
                    )),
                    jitter => jitter,
                },
                None => Duration::ZERO,
            };
            (
                FaultKind::Latency {
                    link,
                    latency,
                    jitter,
                },
                Target::Link(link),
            )
        }
        FaultName::Bandwidth => {
            let link = link()?;
            let rate = file.rate.ok_or_else(|| source.missing(path, "rate"))?;
            let bytes_per_s = match rate.0 {
                0 => {
                    return Err(source.fail(
                        &at_path("rate"),
                        "must be greater than 0B/s",
                        Some("to pass nothing at all, use kind = \"blackhole\"".into()),
                    ))
                }
                rate => rate,
            };
            (
                FaultKind::Bandwidth { link, bytes_per_s },
                Target::Link(link),
            )
        }
        FaultName::Blackhole => {
            let link = link()?;
            (FaultKind::Blackhole { link }, Target::Link(link))
        }
        FaultName::Reset => {
            let link = link()?;
            (FaultKind::Reset { link }, Target::Link(link))
        }
        FaultName::ReconnectStorm => {
            let share = match &file.share {
                None => 1.0,
                Some(share) if share.0 == 0.0 => return Err(source.fail(
                    &at_path("share"),
                    "a storm that drops no socket does nothing",
                    Some(
                        "share is the part of the connected sockets that drop, e.g. 1.0 for all"
                            .into(),
                    ),
                )),
                Some(share) => share.0,
            };
            let drop = file.drop.unwrap_or(StormDrop::Abrupt);
            (FaultKind::ReconnectStorm { share, drop }, Target::Clients)
        }
    })
}

fn server_index(
    source: &Source,
    path: &str,
    file: &FaultFile,
    context: &FaultContext,
) -> Result<u32, ScenarioError> {
    let Some(index) = file.server else {
        return Ok(0);
    };
    // External servers were rejected in `check_controllable`.
    let (spawned, key) = match context.servers {
        ServersSpec::Spawn {
            count,
            command: None,
            ..
        } => (*count, "spawn"),
        ServersSpec::Spawn { count, .. } => (*count, "instances"),
        ServersSpec::External { .. } => (0, "spawn"),
    };
    if index >= spawned {
        return Err(source.fail(
            &format!("{path}.server"),
            format!("there is no server {index} (servers.{key} = {spawned})"),
            Some(format!(
                "servers are numbered from 0: use 0..={}",
                spawned.saturating_sub(1)
            )),
        ));
    }
    Ok(index)
}

fn link(
    source: &Source,
    path: &str,
    file: &FaultFile,
    context: &FaultContext,
) -> Result<Link, ScenarioError> {
    let link = file.link.ok_or_else(|| source.missing(path, "link"))?;
    if link == Link::Redis && matches!(context.servers, ServersSpec::External { .. }) {
        return Err(source.fail(
            &format!("{path}.link"),
            "link = \"redis\" needs spawned servers",
            Some(
                "the harness proxies the spawned servers' Redis connection; \
                 it cannot reach the Redis connection of servers.targets"
                    .into(),
            ),
        ));
    }
    Ok(link)
}
