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
use crate::scenario::file::{Dur, FaultFile, FaultName};
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
    let read = IntoDeserializer::<serde::de::value::Error>::into_deserializer(kind);
    let kind = FaultName::deserialize(read).ok()?;
    Some(format!(
        "{} takes: {}",
        variant_name(kind),
        kind.keys().join(", ")
    ))
}

/// What a fault acts on, as named in errors; two faults on one target
/// must not overlap.
fn target(kind: &FaultKind) -> String {
    match kind {
        FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
            format!("server {server}")
        }
        FaultKind::ReconnectStorm { .. } => "the clients".into(),
        _ => kind.link().map_or("Redis".into(), |link| {
            format!("the {} link", crate::scenario::variant_name(link))
        }),
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
    let mut parsed: Vec<(FaultSpec, String)> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("faults[{index}]");
        let spec = fault(source, &path, item, context)?;
        let on = target(&spec.kind);
        let (start, end) = window(&spec);
        let clash = parsed.iter().position(|(earlier, earlier_target)| {
            let (earlier_start, earlier_end) = window(earlier);
            *earlier_target == on && start < earlier_end && earlier_start < end
        });
        if let Some(earlier) = clash {
            return Err(source.fail(
                &path,
                format!(
                    "{} overlaps faults[{earlier}] ({}), both on {}",
                    describe(&spec),
                    describe(&parsed[earlier].0),
                    on
                ),
                Some(
                    "faults on one target must not overlap in time: start one after the other ends"
                        .into(),
                ),
            ));
        }
        parsed.push((spec, on));
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
) -> Result<FaultSpec, ScenarioError> {
    let kind = file.kind;
    let (name, keys) = (variant_name(kind), source.keys(path));
    let key_path = |key: &str| format!("{path}.{key}");
    let fail = |key: &str, problem: String, hint: &str| {
        let hint = (!hint.is_empty()).then(|| hint.to_string());
        Err(source.fail(&key_path(key), problem, hint))
    };
    if let Some(key) = keys.iter().find(|key| !kind.keys().contains(key)) {
        let problem = format!("does not apply to kind = {name:?}");
        return Err(source.fail_key(&key_path(key), problem, fault_keys_hint(name)));
    }
    // Whether the harness controls what this kind of fault acts on.
    let external = matches!(context.servers, ServersSpec::External { .. });
    let uncontrolled = match kind {
        FaultName::RedisRestart | FaultName::RedisPause | FaultName::RedisWipe
            if context.redis.provider == RedisProviderChoice::Url => Some((
            "redis faults need a Redis the harness starts (testcontainers or local), not a given URL",
            "set redis.provider = \"testcontainers\" or \"local\" (or \"auto\")",
        )),
        FaultName::ServerKill | FaultName::ServerRestart if external => Some((
            "server faults need spawned reference servers",
            "servers.targets are run by someone else: use [servers] spawn \
             (or command, for your own server) instead",
        )),
        _ => None,
    };
    if let Some((problem, hint)) = uncontrolled {
        return fail("kind", problem.into(), hint);
    }
    // A reset is instant; a storm's duration is the window its sockets
    // come back in (0: all at once).
    let instant = matches!(kind, FaultName::Reset | FaultName::ReconnectStorm);
    let optional = ["kind", "server", "jitter", "share", "drop"];
    let required = kind.keys().iter().filter(|key| !optional.contains(key));
    if let Some(absent) = required
        .filter(|key| !(instant && **key == "duration"))
        .find(|key| !keys.contains(key))
    {
        return Err(source.missing(path, absent));
    }
    let duration_of = |given: Option<Dur>| given.map_or(Duration::ZERO, |text| text.0);
    let (at, duration) = (duration_of(file.at), duration_of(file.duration));
    if at >= context.traffic_end {
        let (at, end) = (format_duration(at), format_duration(context.traffic_end));
        let problem =
            format!("starts at {at}, when traffic has ended (ramp_up + duration = {end})");
        return fail("at", problem, "a fault must start while traffic runs; the drain comes after (a fault may last into the drain)");
    }
    if kind == FaultName::Reset && !duration.is_zero() {
        let problem = "a reset is instant: its duration must be \"0s\"".into();
        return fail(
            "duration",
            problem,
            "remove duration (it defaults to \"0s\")",
        );
    }
    if !instant && duration.is_zero() {
        return fail("duration", "must be greater than 0s".into(), "");
    }
    let (server, link) = (file.server.unwrap_or(0), file.link.unwrap_or(Link::Clients));
    let latency = file
        .latency
        .as_ref()
        .map_or(Duration::ZERO, |text| text.0 .0);
    let jitter = duration_of(file.jitter);
    let kind = match kind {
        FaultName::RedisRestart => FaultKind::RedisRestart,
        FaultName::RedisPause => FaultKind::RedisPause,
        FaultName::RedisWipe => FaultKind::RedisWipe,
        FaultName::ServerKill => FaultKind::ServerKill { server },
        FaultName::ServerRestart => FaultKind::ServerRestart { server },
        FaultName::Latency => FaultKind::Latency {
            link,
            latency,
            jitter,
        },
        FaultName::Bandwidth => FaultKind::Bandwidth {
            link,
            bytes_per_s: file.rate.as_ref().map_or(0, |rate| rate.0 .0),
        },
        FaultName::Blackhole => FaultKind::Blackhole { link },
        FaultName::Reset => FaultKind::Reset { link },
        FaultName::ReconnectStorm => FaultKind::ReconnectStorm {
            share: file.share.as_ref().map_or(1.0, |share| share.0 .0),
            drop: file.drop.unwrap_or(StormDrop::Abrupt),
        },
    };
    if let (
        FaultKind::ServerKill { .. } | FaultKind::ServerRestart { .. },
        ServersSpec::Spawn { count, command, .. },
    ) = (&kind, context.servers)
    {
        let key = if command.is_some() {
            "instances"
        } else {
            "spawn"
        };
        if server >= *count {
            let problem = format!("there is no server {server} (servers.{key} = {count})");
            let hint = format!(
                "servers are numbered from 0: use 0..={}",
                count.saturating_sub(1)
            );
            return fail("server", problem, &hint);
        }
    }
    if kind.link() == Some(Link::Redis) && external {
        return fail(
            "link",
            "link = \"redis\" needs spawned servers".into(),
            "the harness proxies the spawned servers' Redis connection; \
                 it cannot reach the Redis connection of servers.targets",
        );
    }
    if jitter > latency {
        let problem = format!("is more than latency ({})", format_duration(latency));
        return fail(
            "jitter",
            problem,
            "each packet is delayed by latency ± jitter, which must not go below 0",
        );
    }
    let destroys_acked = match file.kind {
        FaultName::RedisWipe => Some("redis_wipe deletes acked messages"),
        FaultName::RedisRestart if context.redis.persistence == Persistence::None => {
            Some("redis_restart with redis.persistence = \"none\" loses acked messages")
        }
        _ => None,
    };
    if let (Some(problem), false) = (destroys_acked, context.allow_lost_ack) {
        return fail(
            "kind",
            problem.into(),
            "this scenario destroys acked messages on purpose; set [expect] lost_ack = \"allowed\"",
        );
    }
    Ok(FaultSpec { kind, at, duration })
}
