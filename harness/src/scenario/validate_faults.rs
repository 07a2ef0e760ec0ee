//! `[[faults]]` -> validated [`FaultSpec`]s. A fault is only accepted when
//! the harness can actually inject it into this scenario (it controls the
//! Redis, the servers or the link), when it starts while traffic runs, and
//! when no other fault acts on the same target at the same time: two
//! overlapping faults on one target would make the timeline (and so the
//! report's attribution of findings to faults) ambiguous.

use std::time::Duration;

use super::{choice, positive};
use crate::scenario::error::ScenarioError;
use crate::scenario::model::*;
use crate::scenario::reader::{Found, Table};
use crate::scenario::units::format_duration;

/// What a fault needs to know about the rest of the scenario.
pub(super) struct FaultContext<'s> {
    /// `ramp_up + duration`: when sends stop and the drain begins.
    pub traffic_end: Duration,
    pub redis: &'s RedisSpec,
    pub servers: &'s ServersSpec,
    pub allow_lost_ack: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
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

const KINDS: [(&str, Kind); 9] = [
    ("redis_restart", Kind::RedisRestart),
    ("redis_pause", Kind::RedisPause),
    ("redis_wipe", Kind::RedisWipe),
    ("server_kill", Kind::ServerKill),
    ("server_restart", Kind::ServerRestart),
    ("latency", Kind::Latency),
    ("bandwidth", Kind::Bandwidth),
    ("blackhole", Kind::Blackhole),
    ("reset", Kind::Reset),
];

/// Every key some kind accepts; a key outside this list is a typo.
const ALL_FAULT_KEYS: &[&str] = &[
    "kind", "at", "duration", "server", "link", "latency", "jitter", "rate",
];

const LINKS: [(&str, Link); 2] = [("clients", Link::Clients), ("redis", Link::Redis)];

impl Kind {
    fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("", |(name, _)| name)
    }

    /// The keys this kind accepts, `kind` included.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::RedisRestart | Kind::RedisPause | Kind::RedisWipe => &["kind", "at", "duration"],
            Kind::ServerKill | Kind::ServerRestart => &["kind", "at", "duration", "server"],
            Kind::Latency => &["kind", "at", "duration", "link", "latency", "jitter"],
            Kind::Bandwidth => &["kind", "at", "duration", "link", "rate"],
            Kind::Blackhole | Kind::Reset => &["kind", "at", "duration", "link"],
        }
    }

    fn is_redis(self) -> bool {
        matches!(
            self,
            Kind::RedisRestart | Kind::RedisPause | Kind::RedisWipe
        )
    }

    fn is_server(self) -> bool {
        matches!(self, Kind::ServerKill | Kind::ServerRestart)
    }
}

/// What a fault acts on; two faults on one target must not overlap.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Redis,
    Server(u32),
    Link(Link),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::Redis => "Redis".to_string(),
            Target::Server(index) => format!("server {index}"),
            Target::Link(Link::Clients) => "the clients link".to_string(),
            Target::Link(Link::Redis) => "the redis link".to_string(),
        }
    }
}

struct Parsed {
    spec: FaultSpec,
    target: Target,
}

impl Parsed {
    /// Half-open `[at, end)`; an instant fault occupies 1ns so that two
    /// instant faults at the same moment on one target collide.
    fn window(&self) -> (Duration, Duration) {
        let length = self.spec.duration.max(Duration::from_nanos(1));
        (self.spec.at, self.spec.at.saturating_add(length))
    }

    fn describe(&self) -> String {
        let name = self.spec.kind.name();
        let at = format_duration(self.spec.at);
        if self.spec.duration.is_zero() {
            format!("{name} at {at}")
        } else {
            let end = format_duration(self.spec.at.saturating_add(self.spec.duration));
            format!("{name} from {at} to {end}")
        }
    }
}

/// All `[[faults]]`, sorted by start time (stably: faults starting at the
/// same moment keep their file order).
pub(super) fn faults(
    root: &Table,
    context: &FaultContext,
) -> Result<Vec<FaultSpec>, ScenarioError> {
    let Some(items) = root.array_of_tables("faults")? else {
        return Ok(Vec::new());
    };
    let mut parsed: Vec<Parsed> = Vec::with_capacity(items.value.len());
    for index in 0..items.value.len() {
        let item = root.element_table(&items, index)?;
        let fault = fault(&item, context)?;
        let (start, end) = fault.window();
        let clash = parsed.iter().position(|earlier| {
            let (earlier_start, earlier_end) = earlier.window();
            earlier.target == fault.target && start < earlier_end && earlier_start < end
        });
        if let Some(earlier) = clash {
            return Err(item.fail_table(
                format!(
                    "{} overlaps {}[{earlier}] ({}), both on {}",
                    fault.describe(),
                    items.key,
                    parsed[earlier].describe(),
                    fault.target.describe()
                ),
                Some(
                    "faults on one target must not overlap in time: start one after the other ends"
                        .into(),
                ),
            ));
        }
        parsed.push(fault);
    }
    let mut specs: Vec<FaultSpec> = parsed.into_iter().map(|fault| fault.spec).collect();
    specs.sort_by_key(|spec| spec.at);
    Ok(specs)
}

fn fault(item: &Table, context: &FaultContext) -> Result<Parsed, ScenarioError> {
    let kind = choice(item, "kind", &KINDS)?;
    if kind.is_none() {
        // Typos first: a misspelled `kind` is then reported as such,
        // not as a missing key.
        item.reject_unknown_keys(ALL_FAULT_KEYS)?;
    }
    let kind = item.require("kind", kind)?;
    reject_keys_of_other_kinds(item, kind.value)?;
    check_controllable(item, &kind, context)?;

    let at = item.require("at", item.duration("at")?)?;
    if at.value >= context.traffic_end {
        return Err(item.fail(
            &at,
            format!(
                "starts at {}, when traffic has ended (ramp_up + duration = {})",
                format_duration(at.value),
                format_duration(context.traffic_end)
            ),
            Some(
                "a fault must start while traffic runs; the drain comes after \
                 (a fault may last into the drain)"
                    .into(),
            ),
        ));
    }
    let duration = fault_duration(item, kind.value)?;
    let (fault_kind, target) = kind_params(item, kind.value, context)?;

    let destroys_acked = match kind.value {
        Kind::RedisWipe => Some("redis_wipe deletes acked messages"),
        Kind::RedisRestart if context.redis.persistence == Persistence::None => {
            Some("redis_restart with redis.persistence = \"none\" loses acked messages")
        }
        _ => None,
    };
    if let (Some(problem), false) = (destroys_acked, context.allow_lost_ack) {
        return Err(item.fail(
            &kind,
            problem,
            Some(
                "this scenario destroys acked messages on purpose; \
                 set [expect] lost_ack = \"allowed\""
                    .into(),
            ),
        ));
    }
    Ok(Parsed {
        spec: FaultSpec {
            kind: fault_kind,
            at: at.value,
            duration,
        },
        target,
    })
}

/// Rejects, in file order, the first key `kind` does not take: a key of
/// another kind gets its own path (`faults[2].latency`), a typo the
/// table's path, as unknown keys do everywhere else.
fn reject_keys_of_other_kinds(item: &Table, kind: Kind) -> Result<(), ScenarioError> {
    let allowed = kind.keys();
    let Some((key, span)) = item
        .keys()
        .into_iter()
        .find(|(key, _)| !allowed.contains(key))
    else {
        return Ok(());
    };
    let hint = Some(format!("{} takes: {}", kind.name(), allowed.join(", ")));
    if ALL_FAULT_KEYS.contains(&key) {
        Err(item.origin.error(
            span,
            &item.key_path(key),
            format!("does not apply to kind = {:?}", kind.name()),
            hint,
        ))
    } else {
        Err(item
            .origin
            .error(span, item.path(), format!("unknown key {key:?}"), hint))
    }
}

/// Whether the harness controls what this kind of fault acts on.
fn check_controllable(
    item: &Table,
    kind: &Found<Kind>,
    context: &FaultContext,
) -> Result<(), ScenarioError> {
    if kind.value.is_redis() && context.redis.provider == RedisProviderChoice::Url {
        return Err(item.fail(
            kind,
            "redis faults need a Redis the harness starts (testcontainers or local), not a given URL",
            Some("set redis.provider = \"testcontainers\" or \"local\" (or \"auto\")".into()),
        ));
    }
    if kind.value.is_server() && matches!(context.servers, ServersSpec::External { .. }) {
        return Err(item.fail(
            kind,
            "server faults need spawned reference servers",
            Some("servers.targets are run by someone else: use [servers] spawn instead".into()),
        ));
    }
    Ok(())
}

/// Downtime or impairment length: required and > 0, except for the
/// instant `reset`, where it defaults to and must be 0.
fn fault_duration(item: &Table, kind: Kind) -> Result<Duration, ScenarioError> {
    let duration = item.duration("duration")?;
    if kind != Kind::Reset {
        return positive(item, item.require("duration", duration)?);
    }
    match duration {
        Some(found) if !found.value.is_zero() => Err(item.fail(
            &found,
            "a reset is instant: its duration must be \"0s\"",
            Some("remove duration (it defaults to \"0s\")".into()),
        )),
        _ => Ok(Duration::ZERO),
    }
}

fn kind_params(
    item: &Table,
    kind: Kind,
    context: &FaultContext,
) -> Result<(FaultKind, Target), ScenarioError> {
    if kind.is_redis() {
        let fault_kind = match kind {
            Kind::RedisRestart => FaultKind::RedisRestart,
            Kind::RedisPause => FaultKind::RedisPause,
            _ => FaultKind::RedisWipe,
        };
        return Ok((fault_kind, Target::Redis));
    }
    if kind.is_server() {
        let server = server_index(item, context)?;
        let fault_kind = if kind == Kind::ServerKill {
            FaultKind::ServerKill { server }
        } else {
            FaultKind::ServerRestart { server }
        };
        return Ok((fault_kind, Target::Server(server)));
    }
    let link = link(item, context)?;
    let fault_kind = match kind {
        Kind::Latency => {
            let latency = item.require("latency", item.duration("latency")?)?;
            let latency = positive(item, latency)?;
            let jitter =
                match item.duration("jitter")? {
                    Some(jitter) if jitter.value > latency => return Err(item.fail(
                        &jitter,
                        format!("is more than latency ({})", format_duration(latency)),
                        Some(
                            "each packet is delayed by latency ± jitter, which must not go below 0"
                                .into(),
                        ),
                    )),
                    Some(jitter) => jitter.value,
                    None => Duration::ZERO,
                };
            FaultKind::Latency {
                link,
                latency,
                jitter,
            }
        }
        Kind::Bandwidth => {
            let rate = item.require("rate", item.byte_rate("rate")?)?;
            if rate.value == 0 {
                return Err(item.fail(
                    &rate,
                    "must be greater than 0B/s",
                    Some("to pass nothing at all, use kind = \"blackhole\"".into()),
                ));
            }
            FaultKind::Bandwidth {
                link,
                bytes_per_s: rate.value,
            }
        }
        Kind::Blackhole => FaultKind::Blackhole { link },
        _ => FaultKind::Reset { link },
    };
    Ok((fault_kind, Target::Link(link)))
}

fn server_index(item: &Table, context: &FaultContext) -> Result<u32, ScenarioError> {
    let Some(server) = item.count("server")? else {
        return Ok(0);
    };
    // External servers were rejected in `check_controllable`.
    let spawned = match context.servers {
        ServersSpec::Spawn { count, .. } => *count,
        ServersSpec::External { .. } => 0,
    };
    if server.value >= spawned {
        return Err(item.fail(
            &server,
            format!(
                "there is no server {} (servers.spawn = {spawned})",
                server.value
            ),
            Some(format!(
                "servers are numbered from 0: use 0..={}",
                spawned.saturating_sub(1)
            )),
        ));
    }
    Ok(server.value)
}

fn link(item: &Table, context: &FaultContext) -> Result<Link, ScenarioError> {
    let link = item.require("link", choice(item, "link", &LINKS)?)?;
    if link.value == Link::Redis && matches!(context.servers, ServersSpec::External { .. }) {
        return Err(item.fail(
            &link,
            "link = \"redis\" needs spawned servers",
            Some(
                "the harness proxies the spawned servers' Redis connection; \
                 it cannot reach the Redis connection of servers.targets"
                    .into(),
            ),
        ));
    }
    Ok(link.value)
}
