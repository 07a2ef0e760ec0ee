//! [`ScenarioFile`] (as read) -> validated [`Scenario`]: defaults filled in
//! and every rule that spans more than one value checked, so a run never
//! starts with a file that would fail half-way. (Rules on a single value
//! are checked as it is read: `file.rs`.) Errors point at the value or key
//! they are about, found by its key path in the document.

use std::fmt::Display;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::de::{join, Hint, Span};
use super::error::{line_column, ScenarioError};
use super::file::*;
use super::model::*;
use super::variant_name;
use recovery_units::format_duration;

pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The text being validated, to turn key paths into errors with positions.
pub(crate) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub document: &'a DeTable<'a>,
}

impl Source<'_> {
    /// An error about what is written at `span`.
    pub fn at(&self, span: Span, key: &str, problem: impl Display, hint: Hint) -> ScenarioError {
        let (line, column) = line_column(self.text, span.start);
        let (file, key, problem) = (self.file.into(), key.into(), problem.to_string());
        ScenarioError::Invalid {
            file,
            line,
            column,
            key,
            problem,
            hint,
        }
    }

    /// Where the key and the value at `path` (`faults[2].link`) are
    /// written; an array element's key is the element.
    fn find(&self, path: &str) -> Option<(Span, &Spanned<DeValue<'_>>)> {
        let mut found: Option<(Span, &Spanned<DeValue<'_>>)> = None;
        for part in path.split('.') {
            let mut pieces = part.split('[');
            let table = match found.map(|(_, value)| value.get_ref()) {
                None => self.document,
                Some(DeValue::Table(table)) => table,
                Some(_) => return None,
            };
            let (key, value) = table.get_key_value(pieces.next()?)?;
            found = Some((key.span(), value));
            for index in pieces {
                let index: usize = index.trim_end_matches(']').parse().ok()?;
                let DeValue::Array(items) = found?.1.get_ref() else {
                    return None;
                };
                let item = items.get(index)?;
                found = Some((item.span(), item));
            }
        }
        found
    }

    pub fn value_span(&self, path: &str) -> Span {
        self.find(path).map_or(0..0, |(_, value)| value.span())
    }

    pub fn is_table(&self, path: &str) -> bool {
        let value = self.find(path).map(|(_, value)| value.get_ref());
        matches!(value, Some(DeValue::Table(_)))
    }

    /// An error about the value (or table) at `path`.
    pub fn fail(&self, path: &str, problem: impl Display, hint: Hint) -> ScenarioError {
        self.at(self.value_span(path), path, problem, hint)
    }

    /// An error about the key at `path`, pointing at the key.
    pub fn fail_key(&self, path: &str, problem: impl Display, hint: Hint) -> ScenarioError {
        self.at(
            self.find(path).map_or(0..0, |(key, _)| key),
            path,
            problem,
            hint,
        )
    }

    /// The keys written in the table at `table`, in file order.
    pub fn keys(&self, table: &str) -> Vec<&str> {
        let table = match self.find(table).map(|(_, value)| value.get_ref()) {
            Some(DeValue::Table(table)) => table,
            _ => return Vec::new(),
        };
        let mut keys: Vec<_> = table.keys().collect();
        keys.sort_by_key(|key| key.span().start);
        keys.into_iter().map(|key| key.get_ref().as_ref()).collect()
    }

    fn missing_table(&self, key: &str) -> ScenarioError {
        let hint = format!("see docs/scenario-format.md for the keys of [{key}]");
        self.at(
            0..0,
            key,
            format!("required table [{key}] is missing"),
            Some(hint),
        )
    }
}

pub(crate) fn scenario(source: &Source, file: ScenarioFile) -> Result<Scenario, ScenarioError> {
    let duration = file.duration.0 .0;
    let ramp_up = file.ramp_up.map_or(Duration::ZERO, |d| d.0);
    let traffic_end = ramp_up.saturating_add(duration);
    redis(source, &file.redis)?;
    let servers = servers(source, &file.servers)?;
    let population = file
        .population
        .ok_or_else(|| source.missing_table("population"))?;
    let (users, members) = (population.users, population.members_per_conversation);
    if members > users {
        let hint = Some("a conversation's members are distinct users".into());
        let problem = format!("{members} is more than users ({users})");
        return Err(source.fail("population.members_per_conversation", problem, hint));
    }
    let traffic = file
        .traffic
        .ok_or_else(|| source.missing_table("traffic"))?;
    stages(source, &file.stages, traffic_end)?;
    let churn = file.churn.unwrap_or(Churn {
        enabled: false,
        ..Churn::default()
    });
    duration_dist(source, "churn.online", &churn.online, false)?;
    duration_dist(source, "churn.offline", &churn.offline, true)?;
    thresholds(source, &file.thresholds)?;
    let (protocol, intruders) = (file.servers.protocol.unwrap_or_default(), file.intruders);
    let intruders = intruders.unwrap_or_default();
    super::intruders::check(source, &intruders, protocol, traffic_end)?;
    let context = FaultContext {
        traffic_end,
        redis: &file.redis,
        servers: &servers,
        allow_lost_ack: file.expect.allow_lost_ack,
    };
    let drain_timeout = file.drain_timeout.map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.0 .0);
    Ok(Scenario {
        name: file.name.0,
        seed: file.seed,
        duration,
        ramp_up,
        drain_timeout,
        faults: faults(source, &file.faults, &context)?,
        population,
        traffic,
        stages: file.stages,
        churn,
        thresholds: file.thresholds,
        redis: file.redis,
        servers,
        protocol,
        expect: file.expect,
        intruders,
    })
}

fn redis(source: &Source, redis: &RedisSpec) -> Result<(), ScenarioError> {
    match (redis.provider == RedisProviderChoice::Url, &redis.url) {
        (true, None) => Err(source.at(
            source.value_span("redis.provider"),
            "redis.url",
            "required when provider = \"url\"",
            Some("add e.g. url = \"redis://127.0.0.1:6379\"".into()),
        )),
        (false, Some(_)) => Err(source.fail(
            "redis.url",
            "is only used with provider = \"url\"",
            Some("set provider = \"url\", or remove url".into()),
        )),
        _ => Ok(()),
    }
}

/// `[servers]`: reference servers (`spawn`), servers run by someone else
/// (`targets`) or any server started per instance (`command`).
fn servers(source: &Source, file: &ServersFile) -> Result<ServersSpec, ScenarioError> {
    let (command, targets) = (&file.command, &file.targets);
    let (with_command, with_targets) = (command.is_some(), targets.is_some());
    let with_spawn = file.spawn.is_some();
    // Keys that do not go with the servers given: (whether the rule applies,
    // its keys, problem, hint). The first rule's first key written is named.
    let (command_only, spawn_only) = (ServersFile::COMMAND_ONLY_KEYS, ServersFile::SPAWN_ONLY_KEYS);
    let rules: [(bool, &[&str], &str, &str); 6] = [
        (
            !with_command,
            &command_only,
            "only applies to servers started with command",
            "add command = [...], or remove it",
        ),
        (
            with_command,
            &["targets"],
            "cannot be combined with command",
            "command starts servers, targets names servers run by someone else: keep one",
        ),
        (
            with_command,
            &["spawn"],
            "cannot be combined with command",
            "spawn counts reference servers; with command, write instances = N",
        ),
        (
            with_targets && with_spawn,
            &["targets"],
            "cannot be combined with spawn",
            "spawn starts reference servers, targets names servers run by someone else: keep one",
        ),
        (
            with_command,
            &spawn_only,
            "only applies to the reference server, not to command",
            "put the server's own flags in command",
        ),
        (
            with_targets,
            &spawn_only,
            "only applies to spawned servers, not to targets",
            "remove it, or use spawn instead of targets",
        ),
    ];
    let written = source.keys("servers");
    for (_, keys, problem, hint) in rules.into_iter().filter(|rule| rule.0) {
        if let Some(key) = written.iter().find(|key| keys.contains(key)) {
            return Err(source.fail_key(&join("servers", key), problem, Some(hint.into())));
        }
    }
    let given = |text: &Option<Positive>, default| text.as_ref().map_or(default, |text| text.0 .0);
    let count = |given: &Option<Count>| given.as_ref().map_or(1, |count| count.0);
    let command = match (targets, command) {
        (Some(targets), _) => return external_targets(source, targets),
        (None, None) => {
            return Ok(ServersSpec::Spawn {
                count: count(&file.spawn),
                sync_interval: given(&file.sync_interval, DEFAULT_SYNC_INTERVAL),
                heartbeat_interval: given(&file.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL),
                extra_args: file.extra_args.clone().unwrap_or_default(),
                command: None,
            })
        }
        (None, Some(command)) => command,
    };
    let argv: Vec<String> = command.iter().map(|arg| arg.0.clone()).collect();
    match argv.first() {
        None => {
            let hint =
                "e.g. command = [\"node\", \"peers/socketio/server.js\", \"--port\", \"{port}\"]";
            return Err(source.fail("servers.command", "must name a program", Some(hint.into())));
        }
        Some(program) if program.trim().is_empty() => {
            return Err(source.fail("servers.command[0]", "the program name is empty", None))
        }
        Some(_) => {}
    }
    let url = file.url.as_ref().map_or(DEFAULT_COMMAND_URL, |url| &url.0);
    let ready = file
        .ready_http
        .as_ref()
        .map_or(ReadyProbe::Tcp, |path| ReadyProbe::Http {
            path: path.0.clone(),
        });
    Ok(ServersSpec::Spawn {
        count: count(&file.instances),
        sync_interval: DEFAULT_SYNC_INTERVAL,
        heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
        extra_args: Vec::new(),
        command: Some(ServerCommand {
            argv,
            url: url.to_string(),
            ready,
            ready_timeout: given(&file.ready_timeout, DEFAULT_READY_TIMEOUT),
        }),
    })
}

/// `targets`: at least one, none twice.
fn external_targets(source: &Source, targets: &[WsUrl]) -> Result<ServersSpec, ScenarioError> {
    if targets.is_empty() {
        let hint = Some("e.g. targets = [\"ws://127.0.0.1:9000/ws\"]".into());
        return Err(source.fail("servers.targets", "must list at least one server", hint));
    }
    let urls: Vec<String> = targets.iter().map(|url| url.0.clone()).collect();
    if let Some(index) = (1..urls.len()).find(|&index| urls[..index].contains(&urls[index])) {
        let problem = format!("{:?} is listed twice", urls[index]);
        return Err(source.fail(&format!("servers.targets[{index}]"), problem, None));
    }
    Ok(ServersSpec::External { targets: urls })
}

/// `[[stages]]` run back to back from the run's start and must end by the
/// time traffic does: a stage past it would be silently cut short.
fn stages(source: &Source, stages: &[Stage], traffic_end: Duration) -> Result<(), ScenarioError> {
    let mut ends_at = Duration::ZERO;
    for (index, stage) in stages.iter().enumerate() {
        ends_at = ends_at.saturating_add(stage.duration);
        if ends_at > traffic_end {
            return Err(source.fail_key(
                &format!("stages[{index}].duration"),
                format!(
                    "this stage ends at {}, after traffic ends (ramp_up + duration = {})",
                    format_duration(ends_at),
                    format_duration(traffic_end)
                ),
                Some("stages run back to back from the start: shorten them or lengthen duration (the last stage's values hold until the end)".into()),
            ));
        }
    }
    Ok(())
}

/// A table tagged by one of its values (a fault's `kind`, a distribution's
/// `dist`): a key of another variant is reported as such, a missing one
/// as missing. An absent table (a default) is not checked.
fn tagged(
    source: &Source,
    path: &str,
    tag: &str,
    name: &str,
    takes: &[&str],
    optional: &[&str],
) -> Result<(), ScenarioError> {
    let written = source.keys(path);
    let hint = || Some(format!("{name} takes: {}", takes.join(", ")));
    if let Some(key) = written
        .iter()
        .find(|key| **key != tag && !takes.contains(key))
    {
        let problem = format!("does not apply to {tag} = {name:?}");
        return Err(source.fail_key(&join(path, key), problem, hint()));
    }
    let required = |key: &&&str| !optional.contains(key) && !written.contains(key);
    match takes.iter().find(required) {
        Some(absent) if !written.is_empty() => {
            let span = source.value_span(path);
            Err(source.at(span, &join(path, absent), "required key is missing", hint()))
        }
        _ => Ok(()),
    }
}

/// A distribution's keys and values.
/// `zero_allowed`: an offline time of 0 is a legitimate "reconnect at
/// once"; an online time of 0 would make a device flap without ever doing
/// anything. A zero mean has no exponential distribution, offline or not.
fn duration_dist(
    source: &Source,
    path: &str,
    dist: &DurationDist,
    zero_allowed: bool,
) -> Result<(), ScenarioError> {
    let name = DistFile::from(dist.clone()).dist;
    tagged(source, path, "dist", variant_name(name), name.keys(), &[])?;
    let zero = |key| (key, "must be greater than 0s", None);
    let (key, problem, hint) = match *dist {
        DurationDist::Fixed { value } if value.is_zero() && !zero_allowed => zero("value"),
        DurationDist::Uniform { min, .. } if min.is_zero() && !zero_allowed => zero("min"),
        DurationDist::Exponential { mean } if mean.is_zero() => zero("mean"),
        DurationDist::Uniform { min, max } if max < min => (
            "max",
            "is less than min",
            Some("uniform needs min <= max".into()),
        ),
        _ => return Ok(()),
    };
    Err(source.fail(&join(path, key), problem, hint))
}

/// No two latency thresholds on one metric and percentile.
fn thresholds(source: &Source, thresholds: &Thresholds) -> Result<(), ScenarioError> {
    let latency = &thresholds.latency;
    for (index, threshold) in latency.iter().enumerate() {
        let key = (threshold.metric, threshold.percentile);
        let same = |seen: &LatencyThreshold| (seen.metric, seen.percentile) == key;
        if let Some(earlier) = latency[..index].iter().position(same) {
            let problem =
                format!("repeats the metric and percentile of thresholds.latency[{earlier}]");
            return Err(source.fail(&format!("thresholds.latency[{index}]"), problem, None));
        }
    }
    Ok(())
}

/// What a fault needs to know about the rest of the scenario.
struct FaultContext<'s> {
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

/// `[[faults]]`, sorted by start (stably: ties keep their file order). A
/// fault is accepted only when the harness can inject it into this scenario
/// (it controls the Redis, the servers or the link), when it starts while
/// traffic runs, and when no other fault acts on the same target meanwhile:
/// overlaps would make the timeline (and the report's attribution of
/// findings to faults) ambiguous.
fn faults(
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
    // A reset is instant; a storm's duration is the window its sockets
    // come back in (0: all at once).
    let optional = ["kind", "server", "jitter", "share", "drop", "duration"];
    let optional = &optional[..5 + usize::from(matches!(kind, Reset | ReconnectStorm))];
    tagged(
        source,
        path,
        "kind",
        variant_name(kind),
        kind.keys(),
        optional,
    )?;
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
