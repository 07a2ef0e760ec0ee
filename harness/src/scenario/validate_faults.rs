//! `[[faults]]` -> validated [`FaultSpec`]s. A fault is only accepted when
//! the harness can actually inject it into this scenario (it controls the
//! Redis, the servers or the link), when it starts while traffic runs, and
//! when no other fault acts on the same target at the same time: two
//! overlapping faults on one target would make the timeline (and so the
//! report's attribution of findings to faults) ambiguous.

use std::time::Duration;

use serde::de::IntoDeserializer;
use serde::Deserialize;
use toml::Spanned;

use super::Source;
use crate::scenario::error::ScenarioError;
use crate::scenario::file::{FaultFile, FaultName};
use crate::scenario::model::*;
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
    Some(format!("{} takes: {}", kind.name(), kind.keys().join(", ")))
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
    items: &[Spanned<FaultFile>],
    context: &FaultContext,
) -> Result<Vec<FaultSpec>, ScenarioError> {
    let mut parsed: Vec<(FaultSpec, Target)> = Vec::with_capacity(items.len());
    for item in items {
        let (spec, target) = fault(source, item, context)?;
        let (start, end) = window(&spec);
        let clash = parsed.iter().position(|(earlier, earlier_target)| {
            let (earlier_start, earlier_end) = window(earlier);
            *earlier_target == target && start < earlier_end && earlier_start < end
        });
        if let Some(earlier) = clash {
            let path = super::path_of(source.document, &item.span());
            let array = path
                .rsplit_once('[')
                .map_or(path.as_str(), |(array, _)| array);
            return Err(source.fail(
                item,
                format!(
                    "{} overlaps {array}[{earlier}] ({}), both on {}",
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
    item: &Spanned<FaultFile>,
    context: &FaultContext,
) -> Result<(FaultSpec, Target), ScenarioError> {
    let file = item.get_ref();
    let table = item.span();
    let kind = *file.kind.get_ref();
    reject_keys_of_other_kinds(source, item, kind)?;
    check_controllable(source, &file.kind, context)?;

    let at_text = file
        .at
        .as_ref()
        .ok_or_else(|| source.missing(&table, "at"))?;
    let at = at_text.get_ref().0;
    if at >= context.traffic_end {
        return Err(source.fail(
            at_text,
            format!(
                "starts at {}, when traffic has ended (ramp_up + duration = {})",
                format_duration(at),
                format_duration(context.traffic_end)
            ),
            Some("a fault must start while traffic runs; the drain comes after (a fault may last into the drain)".into()),
        ));
    }
    let duration = match (&file.duration, kind) {
        (None, FaultName::Reset | FaultName::ReconnectStorm) => Duration::ZERO,
        // The window the dropped sockets come back in; 0 = all at once.
        (Some(text), FaultName::ReconnectStorm) => text.get_ref().0,
        (None, _) => return Err(source.missing(&table, "duration")),
        (Some(text), FaultName::Reset) => match text.get_ref().0 {
            zero if zero.is_zero() => zero,
            _ => {
                return Err(source.fail(
                    text,
                    "a reset is instant: its duration must be \"0s\"",
                    Some("remove duration (it defaults to \"0s\")".into()),
                ))
            }
        },
        (Some(text), _) if text.get_ref().0.is_zero() => {
            return Err(source.fail(text, "must be greater than 0s", None))
        }
        (Some(text), _) => text.get_ref().0,
    };
    let (fault_kind, target) = kind_params(source, item, context)?;

    let destroys_acked = match kind {
        FaultName::RedisWipe => Some("redis_wipe deletes acked messages"),
        FaultName::RedisRestart if context.redis.persistence == Persistence::None => {
            Some("redis_restart with redis.persistence = \"none\" loses acked messages")
        }
        _ => None,
    };
    if let (Some(problem), false) = (destroys_acked, context.allow_lost_ack) {
        return Err(source.fail(
            &file.kind,
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

/// Rejects, in file order, the first key of another kind, naming the keys
/// this kind takes.
fn reject_keys_of_other_kinds(
    source: &Source,
    item: &Spanned<FaultFile>,
    kind: FaultName,
) -> Result<(), ScenarioError> {
    let file = item.get_ref();
    let given = [
        ("duration", file.duration.is_some()),
        ("server", file.server.is_some()),
        ("link", file.link.is_some()),
        ("latency", file.latency.is_some()),
        ("jitter", file.jitter.is_some()),
        ("rate", file.rate.is_some()),
        ("share", file.share.is_some()),
        ("drop", file.drop.is_some()),
    ];
    let foreign = given
        .iter()
        .filter(|(key, given)| *given && !kind.keys().contains(key))
        .min_by_key(|(key, _)| {
            super::key_span(source.document, &item.span(), key).map(|span| span.start)
        });
    match foreign {
        None => Ok(()),
        Some((key, _)) => Err(source.fail_key(
            &item.span(),
            key,
            format!("does not apply to kind = {:?}", kind.name()),
            fault_keys_hint(kind.name()),
        )),
    }
}

/// Whether the harness controls what this kind of fault acts on.
fn check_controllable(
    source: &Source,
    kind: &Spanned<FaultName>,
    context: &FaultContext,
) -> Result<(), ScenarioError> {
    let is_redis = matches!(
        kind.get_ref(),
        FaultName::RedisRestart | FaultName::RedisPause | FaultName::RedisWipe
    );
    if is_redis && context.redis.provider == RedisProviderChoice::Url {
        return Err(source.fail(
            kind,
            "redis faults need a Redis the harness starts (testcontainers or local), not a given URL",
            Some("set redis.provider = \"testcontainers\" or \"local\" (or \"auto\")".into()),
        ));
    }
    let is_server = matches!(
        kind.get_ref(),
        FaultName::ServerKill | FaultName::ServerRestart
    );
    if is_server && matches!(context.servers, ServersSpec::External { .. }) {
        return Err(source.fail(
            kind,
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
    item: &Spanned<FaultFile>,
    context: &FaultContext,
) -> Result<(FaultKind, Target), ScenarioError> {
    let file = item.get_ref();
    let table = item.span();
    let link = || link(source, item, context);
    Ok(match file.kind.get_ref() {
        FaultName::RedisRestart => (FaultKind::RedisRestart, Target::Redis),
        FaultName::RedisPause => (FaultKind::RedisPause, Target::Redis),
        FaultName::RedisWipe => (FaultKind::RedisWipe, Target::Redis),
        FaultName::ServerKill => {
            let server = server_index(source, file, context)?;
            (FaultKind::ServerKill { server }, Target::Server(server))
        }
        FaultName::ServerRestart => {
            let server = server_index(source, file, context)?;
            (FaultKind::ServerRestart { server }, Target::Server(server))
        }
        FaultName::Latency => {
            let link = link()?;
            let latency = file
                .latency
                .as_ref()
                .ok_or_else(|| source.missing(&table, "latency"))?;
            let latency = latency.0 .0;
            let jitter = match &file.jitter {
                Some(text) => match text.get_ref().0 {
                    jitter if jitter > latency => return Err(source.fail(
                        text,
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
            let text = file
                .rate
                .as_ref()
                .ok_or_else(|| source.missing(&table, "rate"))?;
            let bytes_per_s = match text.get_ref().0 {
                0 => {
                    return Err(source.fail(
                        text,
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
                Some(share) if share.get_ref().0 == 0.0 => return Err(source.fail(
                    share,
                    "a storm that drops no socket does nothing",
                    Some(
                        "share is the part of the connected sockets that drop, e.g. 1.0 for all"
                            .into(),
                    ),
                )),
                Some(share) => share.get_ref().0,
            };
            let drop = file.drop.unwrap_or(StormDrop::Abrupt);
            (FaultKind::ReconnectStorm { share, drop }, Target::Clients)
        }
    })
}

fn server_index(
    source: &Source,
    file: &FaultFile,
    context: &FaultContext,
) -> Result<u32, ScenarioError> {
    let Some(server) = &file.server else {
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
    let index = *server.get_ref();
    if index >= spawned {
        return Err(source.fail(
            server,
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
    item: &Spanned<FaultFile>,
    context: &FaultContext,
) -> Result<Link, ScenarioError> {
    let link = item
        .get_ref()
        .link
        .as_ref()
        .ok_or_else(|| source.missing(&item.span(), "link"))?;
    if *link.get_ref() == Link::Redis && matches!(context.servers, ServersSpec::External { .. }) {
        return Err(source.fail(
            link,
            "link = \"redis\" needs spawned servers",
            Some(
                "the harness proxies the spawned servers' Redis connection; \
                 it cannot reach the Redis connection of servers.targets"
                    .into(),
            ),
        ));
    }
    Ok(*link.get_ref())
}
