//! `[[faults]]` -> validated [`FaultSpec`]s, sorted by start (stably: ties
//! keep their file order). A fault is accepted only when the harness can
//! inject it into this scenario (it controls the Redis, the servers or the
//! link), when it starts while traffic runs, and when no other fault acts
//! on the same target meanwhile: overlaps would make the timeline (and the
//! report's attribution of findings to faults) ambiguous. Which keys each
//! kind takes was checked as the table was read (`file::tagged_keys`).

use std::time::Duration;

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

/// What a fault acts on (as named in errors) and when: half-open
/// `[at, end)`, where an instant fault takes 1ns so that two instant
/// faults at one moment on one target collide.
fn target(spec: &FaultSpec) -> (String, Duration, Duration) {
    let on = match &spec.kind {
        FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
            format!("server {server}")
        }
        FaultKind::ReconnectStorm { .. } => "the clients".into(),
        kind => kind.link().map_or("Redis".into(), |link| {
            format!("the {} link", variant_name(link))
        }),
    };
    let length = spec.duration.max(Duration::from_nanos(1));
    (on, spec.at, spec.at.saturating_add(length))
}

fn describe(spec: &FaultSpec) -> String {
    let (name, at) = (spec.kind.name(), format_duration(spec.at));
    match format_duration(spec.at.saturating_add(spec.duration)) {
        _ if spec.duration.is_zero() => format!("{name} at {at}"),
        end => format!("{name} from {at} to {end}"),
    }
}

pub(super) fn faults(
    source: &Source,
    items: &[FaultFile],
    context: &FaultContext,
) -> Result<Vec<FaultSpec>, ScenarioError> {
    let mut specs: Vec<FaultSpec> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("faults[{index}]");
        let spec = fault(source, &path, item, context)?;
        let (on, start, end) = target(&spec);
        let clash = specs.iter().position(|earlier| {
            let (earlier_on, earlier_start, earlier_end) = target(earlier);
            earlier_on == on && start < earlier_end && earlier_start < end
        });
        if let Some(earlier) = clash {
            let (this, that) = (describe(&spec), describe(&specs[earlier]));
            let problem = format!("{this} overlaps faults[{earlier}] ({that}), both on {on}");
            let hint =
                "faults on one target must not overlap in time: start one after the other ends";
            return Err(source.fail(&path, problem, Some(hint.into())));
        }
        specs.push(spec);
    }
    specs.sort_by_key(|spec| spec.at);
    Ok(specs)
}

fn fault(
    source: &Source,
    path: &str,
    file: &FaultFile,
    context: &FaultContext,
) -> Result<FaultSpec, ScenarioError> {
    use FaultName::*;
    let fail = |key: &str, problem: &str, hint: &str| {
        let hint = (!hint.is_empty()).then(|| hint.to_string());
        Err(source.fail(&format!("{path}.{key}"), problem, hint))
    };
    // Whether the harness controls what this kind of fault acts on.
    let external = matches!(context.servers, ServersSpec::External { .. });
    let kind = file.kind;
    if matches!(kind, RedisRestart | RedisPause | RedisWipe)
        && context.redis.provider == RedisProviderChoice::Url
    {
        return fail(
            "kind",
            "redis faults need a Redis the harness starts (testcontainers or local), not a given URL",
            "set redis.provider = \"testcontainers\" or \"local\" (or \"auto\")",
        );
    }
    if matches!(kind, ServerKill | ServerRestart) && external {
        return fail(
            "kind",
            "server faults need spawned reference servers",
            "servers.targets are run by someone else: use [servers] spawn \
             (or command, for your own server) instead",
        );
    }
    let latency = file.latency.as_ref().map(|latency| latency.0);
    let [at, duration, latency, jitter] = [file.at, file.duration, latency, file.jitter]
        .map(|given| given.map_or(Duration::ZERO, |text| text.0));
    if at >= context.traffic_end {
        let (at, end) = (format_duration(at), format_duration(context.traffic_end));
        let problem =
            format!("starts at {at}, when traffic has ended (ramp_up + duration = {end})");
        return fail("at", &problem, "a fault must start while traffic runs; the drain comes after (a fault may last into the drain)");
    }
    if kind == Reset && !duration.is_zero() {
        let problem = "a reset is instant: its duration must be \"0s\"";
        return fail(
            "duration",
            problem,
            "remove duration (it defaults to \"0s\")",
        );
    }
    if !matches!(kind, Reset | ReconnectStorm) && duration.is_zero() {
        return fail("duration", "must be greater than 0s", "");
    }
    let (server, link) = (file.server.unwrap_or(0), file.link.unwrap_or(Link::Clients));
    let kind = match kind {
        RedisRestart => FaultKind::RedisRestart,
        RedisPause => FaultKind::RedisPause,
        RedisWipe => FaultKind::RedisWipe,
        ServerKill => FaultKind::ServerKill { server },
        ServerRestart => FaultKind::ServerRestart { server },
        Latency => FaultKind::Latency {
            link,
            latency,
            jitter,
        },
        Bandwidth => FaultKind::Bandwidth {
            link,
            bytes_per_s: file.rate.as_ref().map_or(0, |rate| rate.0 .0),
        },
        Blackhole => FaultKind::Blackhole { link },
        Reset => FaultKind::Reset { link },
        ReconnectStorm => FaultKind::ReconnectStorm {
            share: file.share.as_ref().map_or(1.0, |share| share.0 .0),
            drop: file.drop.unwrap_or(StormDrop::Abrupt),
        },
    };
    if let (ServerKill | ServerRestart, ServersSpec::Spawn { count, command, .. }) =
        (file.kind, context.servers)
    {
        let key = if command.is_some() {
            "instances"
        } else {
            "spawn"
        };
        if server >= *count {
            let problem = format!("there is no server {server} (servers.{key} = {count})");
            let hint = format!("servers are numbered from 0: use 0..={}", count - 1);
            return fail("server", &problem, &hint);
        }
    }
    if kind.link() == Some(Link::Redis) && external {
        return fail(
            "link",
            "link = \"redis\" needs spawned servers",
            "the harness proxies the spawned servers' Redis connection; \
             it cannot reach the Redis connection of servers.targets",
        );
    }
    if jitter > latency {
        let problem = format!("is more than latency ({})", format_duration(latency));
        let hint = "each packet is delayed by latency ± jitter, which must not go below 0";
        return fail("jitter", &problem, hint);
    }
    let destroys_acked = match file.kind {
        RedisWipe => "redis_wipe deletes acked messages",
        RedisRestart if context.redis.persistence == Persistence::None => {
            "redis_restart with redis.persistence = \"none\" loses acked messages"
        }
        _ => "",
    };
    if !destroys_acked.is_empty() && !context.allow_lost_ack {
        let hint =
            "this scenario destroys acked messages on purpose; set [expect] lost_ack = \"allowed\"";
        return fail("kind", destroys_acked, hint);
    }
    Ok(FaultSpec { kind, at, duration })
}
