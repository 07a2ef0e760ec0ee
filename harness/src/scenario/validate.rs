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

#[path = "validate_faults.rs"]
mod faults;
pub(crate) use faults::fault_keys_hint;

/// Longest accepted `name`; it becomes a directory name in report paths.
const MAX_NAME_CHARS: usize = 100;
pub(crate) const MAX_BODY_BYTES: u32 = 64 * 1024;

pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_BODY_BYTES: u32 = 64;
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

    /// A duration that must not be zero.
    pub fn positive(&self, text: &Spanned<Dur>) -> Result<Duration, ScenarioError> {
        match text.get_ref().0 {
            zero if zero.is_zero() => Err(self.fail(text, "must be greater than 0s", None)),
            duration => Ok(duration),
        }
    }

    fn positive_rate(&self, text: &Spanned<Rate>) -> Result<f64, ScenarioError> {
        match text.get_ref().0 {
            rate if rate <= 0.0 => Err(self.fail(text, "must be greater than 0/s", None)),
            rate => Ok(rate),
        }
    }

    fn at_least_one(&self, count: &Spanned<u32>) -> Result<u32, ScenarioError> {
        match *count.get_ref() {
            0 => Err(self.fail(count, "must be at least 1", None)),
            count => Ok(count),
        }
    }

    /// A share of something: a number in 0..=1.
    fn share(&self, share: &Option<Spanned<f64>>, default: f64) -> Result<f64, ScenarioError> {
        match share {
            None => Ok(default),
            Some(found) if (0.0..=1.0).contains(found.get_ref()) => Ok(*found.get_ref()),
            Some(found) => Err(self.fail(
                found,
                format!("{} is not a share between 0 and 1", found.get_ref()),
                Some("e.g. 0.3 for 30%".into()),
            )),
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
    let name = name(source, &file.name)?;
    let duration = source.positive(&file.duration)?;
    let ramp_up = match &file.ramp_up {
        Some(text) => text.get_ref().0,
        None => Duration::ZERO,
    };
    let drain_timeout = match &file.drain_timeout {
        Some(text) => source.positive(text)?,
        None => DEFAULT_DRAIN_TIMEOUT,
    };
    let redis = redis(source, file.redis.as_ref())?;
    let servers = servers(source, file.servers.as_ref())?;
    let population = population(source, file.population.as_ref())?;
    let traffic = traffic(source, file.traffic.as_ref())?;
    let churn = churn(source, file.churn.as_ref())?;
    let thresholds = thresholds(source, file.thresholds.as_ref())?;
    let expect = Expectations::from(file.expect.as_ref().unwrap_or(&ExpectFile::default()));
    let context = faults::FaultContext {
        traffic_end: ramp_up.saturating_add(duration),
        redis: &redis,
        servers: &servers,
        allow_lost_ack: expect.allow_lost_ack,
    };
    let faults = faults::faults(source, &file.faults, &context)?;
    Ok(Scenario {
        name,
        seed: file.seed,
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

fn name(source: &Source, name: &Spanned<String>) -> Result<String, ScenarioError> {
    let text = name.get_ref();
    let hint =
        || Some("use letters, digits, '.', '_' and '-' (it names the report directory)".into());
    if text.is_empty() {
        return Err(source.fail(name, "must not be empty", hint()));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let problem = format!("{text:?} contains {bad:?}, which is not safe in a directory name");
        return Err(source.fail(name, problem, hint()));
    }
    if text == "." || text == ".." {
        return Err(source.fail(
            name,
            format!("{text:?} is not a usable directory name"),
            hint(),
        ));
    }
    if text.chars().count() > MAX_NAME_CHARS {
        return Err(source.fail(
            name,
            format!("is longer than {MAX_NAME_CHARS} characters"),
            None,
        ));
    }
    Ok(text.clone())
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
    let url = match (&file.provider, &file.url) {
        (Some(given), None) if provider == RedisProviderChoice::Url => {
            let path = path_of(source.document, &given.span()).replace("provider", "url");
            return Err(source.error(
                given.span(),
                &path,
                "required when provider = \"url\"",
                Some("add e.g. url = \"redis://127.0.0.1:6379\"".into()),
            ));
        }
        (_, None) => None,
        (_, Some(url)) if provider != RedisProviderChoice::Url => {
            return Err(source.fail(
                url,
                "is only used with provider = \"url\"",
                Some("set provider = \"url\", or remove url".into()),
            ))
        }
        (_, Some(url)) => {
            let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
            if !schemes
                .iter()
                .any(|scheme| url.get_ref().starts_with(scheme))
            {
                return Err(source.fail(
                    url,
                    format!("{:?} is not a Redis URL", url.get_ref()),
                    Some(format!("it starts with one of: {}", schemes.join(", "))),
                ));
            }
            Some(url.get_ref().clone())
        }
    };
    let image = match &file.image {
        Some(image)
            if image.get_ref().is_empty() || image.get_ref().contains(char::is_whitespace) =>
        {
            return Err(source.fail(
                image,
                format!("{:?} is not a container image name", image.get_ref()),
                Some("write name:tag, e.g. \"redis:7.2\"".into()),
            ))
        }
        image => image.as_ref().map(|image| image.get_ref().clone()),
    };
    Ok(RedisSpec {
        provider,
        url,
        image,
        persistence: file.persistence.unwrap_or(Persistence::None),
    })
}

fn servers(
    source: &Source,
    file: Option<&Spanned<ServersFile>>,
) -> Result<ServersSpec, ScenarioError> {
    let Some(table) = file else {
        return Ok(ServersSpec::Spawn {
            count: 1,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            extra_args: Vec::new(),
        });
    };
    let file = table.get_ref();
    let interval = |text: &Option<Spanned<Dur>>, default| {
        text.as_ref()
            .map_or(Ok(default), |text| source.positive(text))
    };
    let Some(targets) = &file.targets else {
        return Ok(ServersSpec::Spawn {
            count: file
                .spawn
                .as_ref()
                .map_or(Ok(1), |spawn| source.at_least_one(spawn))?,
            sync_interval: interval(&file.sync_interval, DEFAULT_SYNC_INTERVAL)?,
            heartbeat_interval: interval(&file.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL)?,
            extra_args: file.extra_args.clone().unwrap_or_default(),
        });
    };
    if file.spawn.is_some() {
        return Err(source.fail(
            targets,
            "cannot be combined with spawn",
            Some("spawn starts reference servers, targets names servers run by someone else: keep one".into()),
        ));
    }
    let spawn_only = [
        file.sync_interval.is_some(),
        file.heartbeat_interval.is_some(),
        file.extra_args.is_some(),
    ];
    if let Some((key, _)) = ServersFile::SPAWN_ONLY_KEYS
        .iter()
        .zip(spawn_only)
        .filter(|(_, given)| *given)
        .min_by_key(|(key, _)| key_span(source.document, &table.span(), key).map(|span| span.start))
    {
        return Err(source.fail_key(
            &table.span(),
            key,
            "only applies to spawned servers, not to targets",
            Some("remove it, or use spawn instead of targets".into()),
        ));
    }
    if targets.get_ref().is_empty() {
        return Err(source.fail(
            targets,
            "must list at least one server",
            Some("e.g. targets = [\"ws://127.0.0.1:9000/ws\"]".into()),
        ));
    }
    let mut urls: Vec<String> = Vec::new();
    for target in targets.get_ref() {
        let text = target.get_ref();
        let host = ["ws://", "wss://"]
            .iter()
            .find_map(|scheme| text.strip_prefix(scheme));
        if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            return Err(source.fail(
                target,
                format!("{text:?} is not a WebSocket URL"),
                Some(
                    "targets are full URLs like \"ws://127.0.0.1:9000/ws\" (ws:// or wss://)"
                        .into(),
                ),
            ));
        }
        if urls.contains(text) {
            return Err(source.fail(target, format!("{text:?} is listed twice"), None));
        }
        urls.push(text.clone());
    }
    Ok(ServersSpec::External { targets: urls })
}

fn population(
    source: &Source,
    file: Option<&Spanned<PopulationFile>>,
) -> Result<Population, ScenarioError> {
    let file = file
        .ok_or_else(|| source.missing_table("population"))?
        .get_ref();
    let users = source.at_least_one(&file.users)?;
    let conversations = source.at_least_one(&file.conversations)?;
    let members = source.at_least_one(&file.members_per_conversation)?;
    let devices_per_user = file
        .devices_per_user
        .as_ref()
        .map_or(Ok(1), |count| source.at_least_one(count))?;
    if members > users {
        return Err(source.fail(
            &file.members_per_conversation,
            format!("{members} is more than users ({users})"),
            Some("a conversation's members are distinct users".into()),
        ));
    }
    Ok(Population {
        users,
        devices_per_user,
        conversations,
        members_per_conversation: members,
    })
}

fn traffic(source: &Source, file: Option<&Spanned<TrafficFile>>) -> Result<Traffic, ScenarioError> {
    let file = file
        .ok_or_else(|| source.missing_table("traffic"))?
        .get_ref();
    let send_rate_per_s = source.positive_rate(&file.send_rate)?;
    let body_bytes = match &file.body_size {
        None => DEFAULT_BODY_BYTES,
        Some(text) => match text.get_ref().0 {
            0 => return Err(source.fail(text, "must be at least 1B", None)),
            bytes if bytes > MAX_BODY_BYTES => {
                return Err(source.fail(text, "must be at most 64KiB", None))
            }
            bytes => bytes,
        },
    };
    Ok(Traffic {
        send_rate_per_s,
        body_bytes,
    })
}

fn churn(source: &Source, file: Option<&ChurnFile>) -> Result<Churn, ScenarioError> {
    let exponential = |mean| DurationDist::Exponential { mean };
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
        abrupt_share: source.share(&file.abrupt_share, 0.0)?,
        reset_share: source.share(&file.reset_share, 0.0)?,
        client_cursor_share: source.share(&file.client_cursor_share, 1.0)?,
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
        Some(text) if may_be_zero => Ok(text.get_ref().0),
        Some(text) => source.positive(text),
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
    let min_delivery_rate_per_s = file
        .min_delivery_rate
        .as_ref()
        .map(|rate| source.positive_rate(rate))
        .transpose()?;
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
            max: source.positive(&threshold.max)?,
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
