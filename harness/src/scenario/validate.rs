//! [`ScenarioFile`] (as written) -> validated [`Scenario`]: units parsed,
//! defaults filled in, and every rule that makes a scenario meaningless or
//! dangerous checked, so a run never starts with a file that would fail
//! half-way. Errors point at the value (or key) they are about.

use std::time::Duration;

use toml::de::DeTable;
use toml::Spanned;

use super::de::{key_span, path_of, Span};
use super::error::{Origin, ScenarioError};
use super::file::*;
use super::model::*;
use recovery_units::format_duration;

#[path = "validate_faults.rs"]
mod faults;
pub(crate) use faults::fault_keys_hint;

pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_BODY_BYTES: u32 = 64;
pub(crate) const DEFAULT_COMMAND_URL: &str = "ws://127.0.0.1:{port}/ws";
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_ONLINE_MEAN: Duration = Duration::from_secs(10);
const DEFAULT_OFFLINE_MEAN: Duration = Duration::from_secs(2);

/// The text being validated, to turn spans into errors with key paths.
pub(crate) struct Source<'a> {
    pub origin: Origin<'a>,
    pub document: &'a DeTable<'a>,
}

impl Source<'_> {
    pub fn error(
        &self,
        span: Span,
        key: &str,
        problem: impl Into<String>,
        hint: Option<String>,
    ) -> ScenarioError {
        self.origin.error(span, key, problem, hint)
    }

    /// An error about the value (or table) written at `at`.
    pub fn fail<T>(
        &self,
        at: &Spanned<T>,
        problem: impl Into<String>,
        hint: Option<String>,
    ) -> ScenarioError {
        let span = at.span();
        let path = path_of(self.document, &span);
        self.error(span, &path, problem, hint)
    }

    /// An error about `key` of the table written at `table`, at the key.
    pub fn fail_key(
        &self,
        table: &Span,
        key: &str,
        problem: impl Into<String>,
        hint: Option<String>,
    ) -> ScenarioError {
        let span = key_span(self.document, table, key).unwrap_or_else(|| table.clone());
        self.error(span, &self.child_path(table, key), problem, hint)
    }

    /// `key` of the table written at `table` is required and absent.
    pub fn missing(&self, table: &Span, key: &str) -> ScenarioError {
        self.error(
            table.clone(),
            &self.child_path(table, key),
            "required key is missing",
            None,
        )
    }

    fn child_path(&self, table: &Span, key: &str) -> String {
        match path_of(self.document, table) {
            parent if parent.is_empty() => key.to_string(),
            parent => format!("{parent}.{key}"),
        }
    }

    fn missing_table(&self, key: &str) -> ScenarioError {
        self.error(
            0..0,
            key,
            format!("required table [{key}] is missing"),
            Some(format!(
                "see docs/scenario-format.md for the keys of [{key}]"
            )),
        )
    }
}

pub(crate) fn scenario(source: &Source, file: &ScenarioFile) -> Result<Scenario, ScenarioError> {
    let duration = file.duration.0 .0;
    let ramp_up = file
        .ramp_up
        .as_ref()
        .map_or(Duration::ZERO, |text| text.get_ref().0);
    let redis = redis(source, file.redis.as_ref())?;
    let servers = servers(source, file.servers.as_ref())?;
    let expect = Expectations::from(file.expect.as_ref().unwrap_or(&ExpectFile::default()));
    let context = faults::FaultContext {
        traffic_end: ramp_up.saturating_add(duration),
        redis: &redis,
        servers: &servers,
        allow_lost_ack: expect.allow_lost_ack,
    };
    let protocol = file
        .servers
        .as_ref()
        .and_then(|table| table.get_ref().protocol)
        .unwrap_or_default();
    let intruders = super::intruders::intruders(
        source,
        file.intruders.as_ref(),
        protocol,
        ramp_up.saturating_add(duration),
    )?;
    Ok(Scenario {
        name: file.name.0.clone(),
        seed: file.seed,
        duration,
        ramp_up,
        drain_timeout: file
            .drain_timeout
            .as_ref()
            .map_or(DEFAULT_DRAIN_TIMEOUT, |text| text.0 .0),
        population: population(source, file.population.as_ref())?,
        traffic: traffic(source, file.traffic.as_ref())?,
        stages: stages(source, &file.stages, ramp_up.saturating_add(duration))?,
        churn: churn(source, file.churn.as_ref())?,
        thresholds: thresholds(source, file.thresholds.as_ref())?,
        faults: faults::faults(source, &file.faults, &context)?,
        redis,
        servers,
        protocol,
        expect,
        intruders,
    })
}

fn redis(source: &Source, file: Option<&RedisFile>) -> Result<RedisSpec, ScenarioError> {
    let Some(file) = file else {
        return Ok(RedisSpec {
            provider: RedisProviderChoice::Auto,
            url: None,
            image: None,
            persistence: Persistence::None,
        });
    };
    let provider = file
        .provider
        .as_ref()
        .map_or(RedisProviderChoice::Auto, |found| *found.get_ref());
    match (&file.provider, &file.url) {
        (Some(given), None) if provider == RedisProviderChoice::Url => {
            let path = path_of(source.document, &given.span()).replace("provider", "url");
            return Err(source.error(
                given.span(),
                &path,
                "required when provider = \"url\"",
                Some("add e.g. url = \"redis://127.0.0.1:6379\"".into()),
            ));
        }
        (_, Some(url)) if provider != RedisProviderChoice::Url => {
            let hint = Some("set provider = \"url\", or remove url".into());
            return Err(source.fail(url, "is only used with provider = \"url\"", hint));
        }
        _ => {}
    }
    Ok(RedisSpec {
        provider,
        url: file.url.as_ref().map(|url| url.get_ref().0.clone()),
        image: file.image.as_ref().map(|image| image.0.clone()),
        persistence: file.persistence.unwrap_or(Persistence::None),
    })
}

fn servers(
    source: &Source,
    file: Option<&Spanned<ServersFile>>,
) -> Result<ServersSpec, ScenarioError> {
    let interval =
        |given: &Option<Positive>, default| given.as_ref().map_or(default, |text| text.0 .0);
    let Some(table) = file else {
        return Ok(ServersSpec::Spawn {
            count: 1,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            extra_args: Vec::new(),
            command: None,
        });
    };
    let file = table.get_ref();
    if let Some(command) = &file.command {
        return command_servers(source, table, command);
    }
    reject_keys(
        source,
        table,
        &ServersFile::COMMAND_ONLY_KEYS,
        [
            file.instances.is_some(),
            file.url.is_some(),
            file.ready_http.is_some(),
            file.ready_timeout.is_some(),
        ],
        "only applies to servers started with command",
        "add command = [...], or remove it",
    )?;
    let Some(targets) = &file.targets else {
        return Ok(ServersSpec::Spawn {
            count: file.spawn.as_ref().map_or(1, |count| count.0),
            sync_interval: interval(&file.sync_interval, DEFAULT_SYNC_INTERVAL),
            heartbeat_interval: interval(&file.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL),
            extra_args: file.extra_args.clone().unwrap_or_default(),
            command: None,
        });
    };
    if file.spawn.is_some() {
        let hint =
            "spawn starts reference servers, targets names servers run by someone else: keep one";
        return Err(source.fail(targets, "cannot be combined with spawn", Some(hint.into())));
    }
    reject_keys(
        source,
        table,
        &ServersFile::SPAWN_ONLY_KEYS,
        spawn_only_given(file),
        "only applies to spawned servers, not to targets",
        "remove it, or use spawn instead of targets",
    )?;
    if targets.get_ref().is_empty() {
        let hint = Some("e.g. targets = [\"ws://127.0.0.1:9000/ws\"]".into());
        return Err(source.fail(targets, "must list at least one server", hint));
    }
    let mut urls: Vec<String> = Vec::new();
    for target in targets.get_ref() {
        let text = &target.get_ref().0;
        if urls.contains(text) {
            return Err(source.fail(target, format!("{text:?} is listed twice"), None));
        }
        urls.push(text.clone());
    }
    Ok(ServersSpec::External { targets: urls })
}

fn spawn_only_given(file: &ServersFile) -> [bool; 3] {
    [
        file.sync_interval.is_some(),
        file.heartbeat_interval.is_some(),
        file.extra_args.is_some(),
    ]
}

/// Fails on the first (in file order) of `keys` that is `given`.
fn reject_keys<const N: usize>(
    source: &Source,
    table: &Spanned<ServersFile>,
    keys: &[&str; N],
    given: [bool; N],
    problem: &str,
    hint: &str,
) -> Result<(), ScenarioError> {
    let present = keys.iter().zip(given).filter(|(_, given)| *given);
    match present
        .min_by_key(|(key, _)| key_span(source.document, &table.span(), key).map(|span| span.start))
    {
        Some((key, _)) => Err(source.fail_key(&table.span(), key, problem, Some(hint.into()))),
        None => Ok(()),
    }
}

/// `[servers] command = [...]`: any server, spawned per instance.
fn command_servers(
    source: &Source,
    table: &Spanned<ServersFile>,
    command: &Spanned<Vec<Spanned<String>>>,
) -> Result<ServersSpec, ScenarioError> {
    let file = table.get_ref();
    if let Some(targets) = &file.targets {
        let hint = "command starts servers, targets names servers run by someone else: keep one";
        return Err(source.fail(
            targets,
            "cannot be combined with command",
            Some(hint.into()),
        ));
    }
    if file.spawn.is_some() {
        return Err(source.fail_key(
            &table.span(),
            "spawn",
            "cannot be combined with command",
            Some("spawn counts reference servers; with command, write instances = N".into()),
        ));
    }
    reject_keys(
        source,
        table,
        &ServersFile::SPAWN_ONLY_KEYS,
        spawn_only_given(file),
        "only applies to the reference server, not to command",
        "put the server's own flags in command",
    )?;
    let placeholders = COMMAND_PLACEHOLDERS.map(|name| (name, name));
    let known = "known placeholders: {port}, {redis_url}";
    let Some(program) = command.get_ref().first() else {
        let hint =
            "e.g. command = [\"node\", \"peers/socketio/server.js\", \"--port\", \"{port}\"]";
        return Err(source.fail(command, "must name a program", Some(hint.into())));
    };
    if program.get_ref().trim().is_empty() {
        return Err(source.fail(program, "the program name is empty", None));
    }
    for arg in command.get_ref() {
        if let Err(bad) = fill_placeholders(arg.get_ref(), &placeholders) {
            return Err(source.fail(
                arg,
                format!("unknown placeholder {bad}"),
                Some(known.into()),
            ));
        }
    }
    let url = match &file.url {
        None => DEFAULT_COMMAND_URL.to_string(),
        Some(url) => {
            let text = url.get_ref();
            let with_port = fill_placeholders(text, &[("port", "1")]).map_err(|bad| {
                let hint = Some("the url knows one placeholder: {port}".into());
                source.fail(url, format!("unknown placeholder {bad}"), hint)
            })?;
            let ip_host = crate::target::parse_ws_target(&with_port)
                .ok()
                .is_some_and(|parsed| {
                    matches!(parsed.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
                });
            if !text.contains("{port}") || !ip_host {
                return Err(source.fail(
                    url,
                    format!("{text:?} is not a WebSocket URL on a loopback address with a {{port}} placeholder"),
                    Some(format!("e.g. url = {DEFAULT_COMMAND_URL:?}")),
                ));
            }
            text.clone()
        }
    };
    let ready = match &file.ready_http {
        None => ReadyProbe::Tcp,
        Some(path)
            if path.get_ref().starts_with('/') && !path.get_ref().contains(char::is_whitespace) =>
        {
            ReadyProbe::Http {
                path: path.get_ref().clone(),
            }
        }
        Some(path) => {
            return Err(source.fail(
                path,
                format!("{:?} is not an HTTP path", path.get_ref()),
                Some("write a path starting with '/', e.g. ready_http = \"/healthz\"".into()),
            ))
        }
    };
    Ok(ServersSpec::Spawn {
        count: file.instances.as_ref().map_or(1, |count| count.0),
        sync_interval: DEFAULT_SYNC_INTERVAL,
        heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
        extra_args: Vec::new(),
        command: Some(ServerCommand {
            argv: command
                .get_ref()
                .iter()
                .map(|arg| arg.get_ref().clone())
                .collect(),
            url,
            ready,
            ready_timeout: file
                .ready_timeout
                .as_ref()
                .map_or(DEFAULT_READY_TIMEOUT, |text| text.0 .0),
        }),
    })
}

fn population(
    source: &Source,
    file: Option<&Spanned<PopulationFile>>,
) -> Result<Population, ScenarioError> {
    let file = file
        .ok_or_else(|| source.missing_table("population"))?
        .get_ref();
    let (users, members) = (file.users.0, file.members_per_conversation.get_ref().0);
    if members > users {
        let hint = Some("a conversation's members are distinct users".into());
        return Err(source.fail(
            &file.members_per_conversation,
            format!("{members} is more than users ({users})"),
            hint,
        ));
    }
    Ok(Population {
        users,
        devices_per_user: file.devices_per_user.as_ref().map_or(1, |count| count.0),
        conversations: file.conversations.0,
        members_per_conversation: members,
    })
}

fn traffic(source: &Source, file: Option<&Spanned<TrafficFile>>) -> Result<Traffic, ScenarioError> {
    let file = file
        .ok_or_else(|| source.missing_table("traffic"))?
        .get_ref();
    Ok(Traffic {
        send_rate_per_s: file.send_rate.0 .0,
        body_bytes: file
            .body_size
            .as_ref()
            .map_or(DEFAULT_BODY_BYTES, |size| size.0 .0),
    })
}

/// `[[stages]]` run back to back from the run's start and must end by the
/// time traffic does: a stage past it would be silently cut short.
fn stages(
    source: &Source,
    items: &[Spanned<StageFile>],
    traffic_end: Duration,
) -> Result<Vec<Stage>, ScenarioError> {
    let mut ends_at = Duration::ZERO;
    let mut stages = Vec::with_capacity(items.len());
    for item in items {
        let file = item.get_ref();
        ends_at = ends_at.saturating_add(file.duration.0 .0);
        if ends_at > traffic_end {
            return Err(source.fail_key(
                &item.span(),
                "duration",
                format!(
                    "this stage ends at {}, after traffic ends (ramp_up + duration = {})",
                    format_duration(ends_at),
                    format_duration(traffic_end)
                ),
                Some("stages run back to back from the start: shorten them or lengthen duration (the last stage's values hold until the end)".into()),
            ));
        }
        stages.push(Stage {
            duration: file.duration.0 .0,
            send_rate_per_s: file.send_rate.map(|rate| rate.0),
            online_share: file.online.as_ref().map(|share| share.0),
        });
    }
    Ok(stages)
}

fn churn(source: &Source, file: Option<&ChurnFile>) -> Result<Churn, ScenarioError> {
    let exponential = |mean| DurationDist::Exponential { mean };
    let share = |share: &Option<Share>, default| share.as_ref().map_or(default, |share| share.0);
    let Some(file) = file else {
        return Ok(Churn {
            enabled: false,
            online: exponential(DEFAULT_ONLINE_MEAN),
            offline: exponential(DEFAULT_OFFLINE_MEAN),
            abrupt_share: 0.0,
            reset_share: 0.0,
            client_cursor_share: 1.0,
        });
    };
    let online = file
        .online
        .as_ref()
        .map(|dist| duration_dist(source, dist, false))
        .transpose()?;
    let offline = file
        .offline
        .as_ref()
        .map(|dist| duration_dist(source, dist, true))
        .transpose()?;
    Ok(Churn {
        enabled: file.enabled.unwrap_or(true),
        online: online.unwrap_or(exponential(DEFAULT_ONLINE_MEAN)),
        offline: offline.unwrap_or(exponential(DEFAULT_OFFLINE_MEAN)),
        abrupt_share: share(&file.abrupt_share, 0.0),
        reset_share: share(&file.reset_share, 0.0),
        client_cursor_share: share(&file.client_cursor_share, 1.0),
    })
}

/// `zero_allowed`: an offline time of 0 is a legitimate "reconnect at
/// once"; an online time of 0 would make a device flap without ever doing
/// anything.
fn duration_dist(
    source: &Source,
    table: &Spanned<DistFile>,
    zero_allowed: bool,
) -> Result<DurationDist, ScenarioError> {
    let file = table.get_ref();
    let kind = *file.dist.get_ref();
    let name = kind.name();
    let params = [
        ("value", &file.value),
        ("min", &file.min),
        ("max", &file.max),
        ("mean", &file.mean),
    ];
    if let Some((extra, _)) = params
        .iter()
        .find(|(key, given)| given.is_some() && !kind.keys().contains(key))
    {
        return Err(source.fail_key(
            &table.span(),
            extra,
            format!("does not apply to dist = {name:?}"),
            Some(format!("{name} takes: {}", kind.keys().join(", "))),
        ));
    }
    let param = |key: &str, given: &Option<Spanned<Dur>>, may_be_zero: bool| match given {
        None => Err(source.missing(&table.span(), key)),
        Some(text) if text.get_ref().0.is_zero() && !may_be_zero => {
            Err(source.fail(text, "must be greater than 0s", None))
        }
        Some(text) => Ok(text.get_ref().0),
    };
    Ok(match kind {
        DistName::Fixed => DurationDist::Fixed {
            value: param("value", &file.value, zero_allowed)?,
        },
        DistName::Uniform => {
            let min = param("min", &file.min, zero_allowed)?;
            let max = param("max", &file.max, true)?;
            if let (Some(text), true) = (&file.max, max < min) {
                return Err(source.fail(
                    text,
                    "is less than min",
                    Some("uniform needs min <= max".into()),
                ));
            }
            DurationDist::Uniform { min, max }
        }
        // A zero mean has no exponential distribution, offline or not.
        DistName::Exponential => DurationDist::Exponential {
            mean: param("mean", &file.mean, false)?,
        },
    })
}

fn thresholds(source: &Source, file: Option<&ThresholdsFile>) -> Result<Thresholds, ScenarioError> {
    let Some(file) = file else {
        return Ok(Thresholds::default());
    };
    let min_delivery_rate_per_s = file.min_delivery_rate.as_ref().map(|rate| rate.0 .0);
    let mut latency: Vec<LatencyThreshold> = Vec::new();
    for item in &file.latency {
        let threshold = item.get_ref();
        let percentile = threshold.percentile.get_ref().0;
        if !(percentile > 0.0 && percentile <= 100.0) {
            return Err(source.fail(
                &threshold.percentile,
                "must be above 0 and at most 100",
                Some("e.g. \"p50\", \"p99.9\" or \"max\"".into()),
            ));
        }
        let threshold = LatencyThreshold {
            metric: threshold.metric,
            percentile: Percentile(percentile),
            max: threshold.max.0 .0,
        };
        if let Some(earlier) = latency.iter().position(|seen| {
            seen.metric == threshold.metric && seen.percentile == threshold.percentile
        }) {
            let path = path_of(source.document, &item.span());
            let array = path
                .rsplit_once('[')
                .map_or(path.as_str(), |(array, _)| array);
            return Err(source.fail(
                item,
                format!("repeats the metric and percentile of {array}[{earlier}]"),
                None,
            ));
        }
        latency.push(threshold);
    }
    Ok(Thresholds {
        latency,
        min_delivery_rate_per_s,
    })
}

impl From<&ExpectFile> for Expectations {
    fn from(file: &ExpectFile) -> Self {
        Expectations {
            no_loss: file.no_loss.unwrap_or(true),
            no_duplicates: file.no_duplicates.unwrap_or(true),
            order: file.order.unwrap_or(true),
            allow_stored_cursor_redelivery: file.stored_cursor_redelivery
                != Some(Permission::Forbidden),
            allow_lost_ack: file.lost_ack == Some(Permission::Allowed),
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "validate_fault_tests.rs"]
mod fault_tests;

#[cfg(test)]
#[path = "validate_shape_tests.rs"]
mod shape_tests;

#[cfg(test)]
#[path = "validate_command_tests.rs"]
mod command_tests;
