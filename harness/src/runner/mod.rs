//! One run, start to verdict, in named stages: [`provision`] (Redis,
//! servers, proxies), [`play`] (the cast of devices, ramp-up, traffic,
//! churn and faults, the drain), [`collect`] (history, message log, files),
//! [`check_history`] and [`report_run`].
//!
//! - `play`: the cast placed and started, traffic, churn, faults, cost.
//! - `drain`: the end of play: sends settle, heads fixed, sockets catch up.
//! - [`population`]: users, devices, conversations, memberships (seeded).
//! - [`servers`]: reference servers started by the harness, or targets.
//! - [`log`]: the message log and stream heads read back from Redis.
//! - [`progress`]: the live progress line (or plain lines in logs).
//! - [`metrics`]: the Prometheus endpoint of `--metrics-listen`.
//! - [`resources`]: the harness's own CPU time and memory.

mod collect;
pub use collect::{collect, Collected, PlayedFacts};
pub mod cost;
mod drain;
mod play;
pub use play::{play, Played};
pub mod faults;
pub mod log;
pub mod metrics;
pub mod population;
pub mod progress;
pub mod resources;
pub mod servers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::auth::Credentials;
use crate::checker::{check, check_file, check_passes, CheckOptions, CheckOutcome};
use crate::history::{History, HistoryPasses, MessageLog, Recorder};
use crate::proxy::{Proxy, ProxyError};
use crate::report::{self, RunFacts, Summary};
use crate::scenario::{FaultKind, Link, Persistence, RedisProviderChoice, Scenario, ServersSpec};
use log::Store;

pub use servers::Launcher;

use metrics::{LiveSlot, MetricsServer};
use url::Url;

use crate::target::{self, TargetError};

/// Queue of send orders per socket; the scheduler skips a socket whose
/// queue is full rather than waiting (open model).
const ORDER_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}: run stopped; the servers and Redis it started were stopped, no verdict")]
    Interrupted(&'static str),
    #[error("no Redis for the run: {0}")]
    Redis(#[from] redis_provider::ProviderError),
    #[error(transparent)]
    Server(#[from] servers::ServerError),
    #[error("cannot create the report directory {path}: {source}")]
    OutDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the message log back failed: {0}")]
    Log(#[from] log::LogError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("the scenario restarts, pauses or wipes Redis, but Redis came from a URL the harness does not control; install Docker or redis-server (or drop --redis-url)")]
    UncontrolledRedis,
    #[error("bad target: {0}")]
    Target(#[from] TargetError),
    #[error(transparent)]
    MetricsListen(#[from] metrics::MetricsListenError),
    #[error("the scenario has external targets but no Redis URL; pass --redis-url (or the verdict is checked against a log rebuilt from acks)")]
    NoTargets,
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("devices' tokens: {0}")]
    Tokens(#[from] crate::auth::TokenError),
    #[error("--token-command is for --target servers; spawned servers get a fresh secret (or pass --jwt-secret)")]
    TokenCommandWithSpawnedServers,
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: Scenario,
    /// Replace the scenario's servers with these external targets.
    pub targets: Option<Vec<String>>,
    /// Redis to use (spawned servers) or to read the log from (targets).
    pub redis_url: Option<String>,
    /// Parent folder of the run directory (`reports/`).
    pub out_root: PathBuf,
    pub seed: Option<u64>,
    pub launcher: Launcher,
    /// Show progress: a live line on a terminal, plain lines otherwise.
    pub progress: bool,
    /// Appended to every spawned server's arguments (e.g. injected flaws).
    pub extra_server_args: Vec<String>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` during the run.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where the devices' tokens come from. Spawned servers get the given
    /// secret, or a fresh random one when this is `None`.
    pub credentials: Credentials,
    /// CA certificates (PEM) to trust for `wss://` targets instead of the
    /// system's roots.
    pub ca: Option<PathBuf>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub summary: Summary,
    pub exit_code: u8,
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `20261201-141804-smoke`: UTC start time, then the scenario name.
pub(crate) fn run_dir_name(scenario: &str) -> String {
    format!("{}-{scenario}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
}

fn provider_options(
    scenario: &Scenario,
    redis_url: Option<&str>,
) -> redis_provider::ProviderOptions {
    use redis_provider::{Persistence as P, Preference};
    let preference = match (redis_url, scenario.redis.provider) {
        (Some(url), _) => Preference::Url(Some(url.to_string())),
        (None, RedisProviderChoice::Auto) => Preference::Auto,
        (None, RedisProviderChoice::Testcontainers) => Preference::Testcontainers,
        (None, RedisProviderChoice::Local) => Preference::Local,
        (None, RedisProviderChoice::Url) => Preference::Url(scenario.redis.url.clone()),
    };
    redis_provider::ProviderOptions {
        preference,
        image: scenario.redis.image.clone(),
        persistence: match scenario.redis.persistence {
            Persistence::None => P::None,
            Persistence::AofEverysec => P::AofEverysec,
            Persistence::AofAlways => P::AofAlways,
        },
    }
}

/// Plays a scenario and writes its report directory, in named stages:
/// [`provision`] (Redis, servers, proxies), [`play`] (devices, traffic,
/// churn, faults, drain), [`collect`] (history, message log, files),
/// [`check_history`], and [`report_run`].
pub async fn run(options: RunOptions) -> Result<RunOutcome, RunError> {
    run_until(options, std::future::pending()).await
}

/// [`run`], stopped early when `interrupt` resolves (the binary passes
/// Ctrl-C / SIGTERM): servers, proxies and Redis are stopped before it
/// returns [`RunError::Interrupted`] naming the reason.
pub async fn run_until(
    options: RunOptions,
    interrupt: impl std::future::Future<Output = &'static str>,
) -> Result<RunOutcome, RunError> {
    let mut interrupt = std::pin::pin!(interrupt);
    let started = Instant::now();
    let started_at_unix_ms = unix_ms();
    let (scenario, seed) = settle_scenario(&options);
    let live_slot = LiveSlot::default();
    // Bound before any load: a busy port is an input error.
    let _metrics = match options.metrics_listen {
        Some(addr) => {
            let server = MetricsServer::start(addr, live_slot.clone()).await?;
            println!("metrics: http://{}/metrics", server.local_addr);
            Some(server)
        }
        None => None,
    };
    let run_dir = options.out_root.join(run_dir_name(&scenario.name));
    std::fs::create_dir_all(&run_dir).map_err(|source| RunError::OutDir {
        path: run_dir.clone(),
        source,
    })?;

    // Dropping a half-done provision drops what it started (children are
    // killed on drop, a container is removed).
    let provisioned = tokio::select! {
        provisioned = provision(&scenario, &options) => provisioned?,
        reason = &mut interrupt => return Err(RunError::Interrupted(reason)),
    };
    // Sockets stream their events here while the run goes.
    let recorder = Recorder::create(&run_dir.join(crate::history::HISTORY_FILE))?;
    let played = tokio::select! {
        played = play(&scenario, seed, &provisioned, options.progress, &live_slot, None, recorder) => played,
        reason = &mut interrupt => {
            // Tasks play spawned may still hold the rig: empty it in place.
            let redis = provisioned.rig.lock().await.stop_all_in_place().await;
            drop(redis);
            return Err(RunError::Interrupted(reason));
        }
    };
    let played = match played {
        Ok(played) => played,
        Err(err) => {
            // Play failed midway: tasks it spawned may still hold the rig.
            let redis = provisioned.rig.lock().await.stop_all_in_place().await;
            drop(redis);
            return Err(err);
        }
    };
    // The fault tasks have ended (play waited for them); the rig is ours.
    // Servers and proxies stop here; Redis stays up until the run ends
    // (dropping the handle removes the container or process).
    let _redis_alive = match Arc::try_unwrap(provisioned.rig) {
        Ok(rig) => rig.into_inner().stop_all().await,
        Err(_) => {
            // A task still holds the rig: its servers stop when that task
            // ends, and Redis may go with them before the log is read.
            tracing::error!(
                "the fault rig is still shared after play; servers and Redis may stop early"
            );
            None
        }
    };
    let collected = collect(
        &run_dir,
        &scenario,
        log_store(&scenario, provisioned.redis_url.as_deref()),
        played,
    )
    .await?;
    let check = check_collected(&collected, &scenario)?;
    let facts = facts_of(
        &collected,
        scenario.clone(),
        seed,
        started_at_unix_ms,
        provisioned.redis_description,
        provisioned.targets.iter().map(Url::to_string).collect(),
    );
    let summary = report_run(&run_dir, facts, started, &collected.history, &check)?;
    let exit_code = report::exit_code(&summary);
    Ok(RunOutcome {
        run_dir,
        summary,
        exit_code,
    })
}

/// The scenario as it will run: seed picked (and printed for replay),
/// external targets from the command line in place of its servers.
pub fn settle_scenario(options: &RunOptions) -> (Scenario, u64) {
    let mut scenario = options.scenario.clone();
    let seed = options
        .seed
        .or(scenario.seed)
        .unwrap_or_else(|| rand::rng().random_range(0..i64::MAX as u64));
    scenario.seed = Some(seed);
    println!(
        "scenario {} seed {seed} (replay with --seed {seed})",
        scenario.name
    );
    if let Some(targets) = &options.targets {
        scenario.servers = ServersSpec::External {
            targets: targets.clone(),
        };
    }
    (scenario, seed)
}

/// Everything the devices play against, set up before the first connect.
pub struct Provisioned {
    /// Redis, servers and proxies, shared with the fault schedule.
    pub rig: Arc<tokio::sync::Mutex<faults::Rig>>,
    /// Where the devices connect (through the client proxies, if any).
    pub targets: Vec<Url>,
    /// The Redis the harness reads the log from (never proxied).
    pub redis_url: Option<String>,
    pub redis_description: String,
    /// Where the devices' tokens come from (the spawned servers' secret).
    pub credentials: Credentials,
    /// TLS configuration for `wss://` targets (or with `--ca`).
    pub tls: Option<tokio_tungstenite::Connector>,
}

/// Stage 1: Redis, reference servers (or external targets) and, for
/// network faults, the proxies in front of them.
pub async fn provision(scenario: &Scenario, options: &RunOptions) -> Result<Provisioned, RunError> {
    let redis = provision_redis(scenario, options.redis_url.as_deref()).await?;
    let redis_url = redis.as_ref().map(|r| r.url().to_string());
    let redis_description = redis.as_ref().map_or_else(
        || "not reachable (log rebuilt from acks)".to_string(),
        |r| r.description(),
    );
    // Network faults need the harness's proxies on the link: one in front
    // of Redis for the servers, one in front of each server for clients.
    let needs_link = |link: Link| scenario.faults.iter().any(|f| f.kind.link() == Some(link));
    let (redis_proxy, servers_redis_url) = match &redis_url {
        Some(url) if needs_link(Link::Redis) => {
            let url = target::parse_redis_url(url)?;
            let proxy = Proxy::start(target::resolve(&url).await?).await?;
            let proxied = target::via(&url, proxy.listen_addr()).to_string();
            (Some(proxy), Some(proxied))
        }
        url => (None, url.clone()),
    };
    let (instances, spawn, server_targets, credentials) =
        provision_servers(scenario, options, servers_redis_url).await?;
    let mut client_proxies = Vec::new();
    let mut targets = Vec::new();
    for server in server_targets {
        if needs_link(Link::Clients) {
            let proxy = Proxy::start(target::resolve(&server).await?).await?;
            targets.push(target::via(&server, proxy.listen_addr()));
            client_proxies.push(proxy);
        } else {
            targets.push(server);
        }
    }
    println!(
        "targets: {}",
        targets
            .iter()
            .map(Url::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let tls = if options.ca.is_some() || targets.iter().any(|t| t.scheme() == "wss") {
        let config = crate::tls::client_config(options.ca.as_deref())?;
        Some(tokio_tungstenite::Connector::Rustls(config))
    } else {
        None
    };
    let rig = faults::Rig {
        redis,
        redis_url: redis_url.clone(),
        server_addrs: instances.iter().filter_map(|i| i.listen_addr()).collect(),
        servers: instances.into_iter().map(Some).collect(),
        spawn,
        client_proxies,
        redis_proxy,
    };
    Ok(Provisioned {
        rig: Arc::new(tokio::sync::Mutex::new(rig)),
        targets,
        redis_url,
        redis_description,
        credentials,
        tls,
    })
}

/// Redis: needed to start reference servers, and (when reachable) to
/// read the log back. External targets without a URL are checked
/// against the log rebuilt from acks and receipts.
async fn provision_redis(
    scenario: &Scenario,
    redis_url: Option<&str>,
) -> Result<Option<redis_provider::RedisHandle>, RunError> {
    let needs_redis = matches!(scenario.servers, ServersSpec::Spawn { .. }) || redis_url.is_some();
    let redis = if needs_redis {
        let handle = redis_provider::start_redis(&provider_options(scenario, redis_url)).await?;
        println!("redis: {}", handle.description());
        Some(handle)
    } else {
        None
    };
    let redis_faults = scenario.faults.iter().any(|f| {
        matches!(
            f.kind,
            FaultKind::RedisRestart | FaultKind::RedisPause | FaultKind::RedisWipe
        )
    });
    if redis_faults
        && redis
            .as_ref()
            .is_none_or(|r| r.kind() == redis_provider::ProviderKind::Url)
    {
        return Err(RunError::UncontrolledRedis);
    }
    Ok(redis)
}

type ProvisionedServers = (
    Vec<servers::ServerInstance>,
    Option<(Launcher, servers::SpawnSettings)>,
    Vec<Url>,
    Credentials,
);

/// The servers under test: spawned reference servers on `redis_url`, or
/// the scenario's external targets.
async fn provision_servers(
    scenario: &Scenario,
    options: &RunOptions,
    redis_url: Option<String>,
) -> Result<ProvisionedServers, RunError> {
    match &scenario.servers {
        ServersSpec::External { targets } => {
            let targets = targets
                .iter()
                .map(|text| target::parse_ws_target(text))
                .collect::<Result<_, _>>()?;
            Ok((Vec::new(), None, targets, options.credentials.clone()))
        }
        ServersSpec::Spawn {
            count,
            sync_interval,
            heartbeat_interval,
            extra_args,
            command,
        } => {
            // One secret per run: tokens of an earlier run do not open these servers.
            let secret = match &options.credentials {
                Credentials::Secret(secret) => secret.clone(),
                Credentials::None => crate::auth::random_secret(),
                Credentials::Command(_) => return Err(RunError::TokenCommandWithSpawnedServers),
            };
            let settings = servers::SpawnSettings {
                command: command.clone(),
                jwt_secret: Some(secret.clone()),
                redis_url: redis_url.ok_or(RunError::NoTargets)?,
                sync_interval: *sync_interval,
                heartbeat_interval: *heartbeat_interval,
                extra_args: extra_args
                    .iter()
                    .chain(&options.extra_server_args)
                    .cloned()
                    .collect(),
            };
            let mut instances = Vec::new();
            let mut targets = Vec::new();
            for _ in 0..*count {
                let instance = servers::spawn(&options.launcher, &settings).await?;
                targets.push(target::parse_ws_target(&instance.ws_url())?);
                instances.push(instance);
            }
            Ok((
                instances,
                Some((options.launcher.clone(), settings)),
                targets,
                Credentials::Secret(secret),
            ))
        }
    }
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let text = serde_json::to_string(value).map_err(|e| RunError::Write {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    std::fs::write(path, text).map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Stage 4 for a run just collected (single process or merged shards).
/// The history is read from its file streaming (two passes), never
/// loaded.
pub fn check_collected(
    collected: &Collected,
    scenario: &Scenario,
) -> Result<CheckOutcome, crate::history::HistoryError> {
    let played = &collected.played;
    check_passes(
        &collected.history,
        &CheckOptions {
            drain_complete: played.drain_complete,
            unknown_reasons: played.unknown_reasons.clone(),
            intruders: &played.intruders,
            // No retention, as in `check_history`.
            ..CheckOptions::new(&collected.log, &scenario.expect)
        },
    )
}

/// Stage 4: the checker's verdict on a history against a log.
pub fn check_history(
    history: &History,
    log: &MessageLog,
    scenario: &Scenario,
    drain_complete: bool,
    unknown_reasons: Vec<String>,
    intruders: &[crate::intruders::IntruderRecord],
) -> CheckOutcome {
    check(
        history,
        &CheckOptions {
            drain_complete,
            unknown_reasons,
            intruders,
            // The scenario has no retention key: judge `trimmed` gaps by
            // the protocol alone (spawned servers keep 30 days, far beyond
            // a run).
            ..CheckOptions::new(log, &scenario.expect)
        },
    )
}

/// Stage 4 for a history on disk (`harness check`): the file is read
/// streaming, so memory does not grow with the history.
pub fn check_history_file(
    path: &Path,
    log: &MessageLog,
    scenario: &Scenario,
    drain_complete: bool,
    intruders: &[crate::intruders::IntruderRecord],
) -> Result<CheckOutcome, crate::history::HistoryError> {
    check_file(
        path,
        &CheckOptions {
            drain_complete,
            intruders,
            // No retention, as in `check_history`.
            ..CheckOptions::new(log, &scenario.expect)
        },
    )
}

/// Where to read the authoritative log from: the servers' Redis, laid
/// out as their protocol stores it (no Redis: rebuilt from acks and
/// receipts).
pub(crate) fn log_store<'a>(scenario: &Scenario, redis_url: Option<&'a str>) -> Option<Store<'a>> {
    redis_url.map(|url| Store::new(scenario.protocol.store(), url))
}

/// The facts a report needs from a collected run (single process or
/// merged shards); the harness's own cost is filled in by the report.
pub fn facts_of(
    collected: &Collected,
    scenario: Scenario,
    seed: u64,
    started_at_unix_ms: u64,
    redis_description: String,
    targets: Vec<String>,
) -> RunFacts {
    let played = &collected.played;
    RunFacts {
        scenario,
        seed,
        started_at_unix_ms,
        wall_duration: Duration::ZERO,
        harness_cpu: Duration::ZERO,
        harness_peak_rss_bytes: 0,
        harness_rss_at_traffic_end_bytes: played.rss_at_traffic_end_bytes,
        peak_sockets: played.peak_sockets,
        drain_complete: played.drain_complete,
        redis_description,
        targets,
        stragglers: played.stragglers.clone(),
        sends_skipped: played.sends_skipped.clone(),
        server_cost: played.server_cost.clone(),
        redis_cost: played.redis_cost.clone(),
        intruders: (!played.intruders.is_empty())
            .then(|| crate::intruders::summarize(&played.intruders)),
    }
}

/// Stage 5: numbers, thresholds and every report file. `facts` arrives
/// without the wall time and the harness's own CPU and memory, measured
/// here after the analysis (so CPU and wall time cover the same span).
pub fn report_run(
    run_dir: &Path,
    facts: RunFacts,
    started: Instant,
    history: &HistoryPasses,
    check: &CheckOutcome,
) -> Result<Summary, RunError> {
    report_with_facts(run_dir, facts, history, check, |facts| {
        let usage = resources::harness_usage();
        facts.wall_duration = started.elapsed();
        facts.harness_cpu = usage.cpu;
        facts.harness_peak_rss_bytes = usage.peak_rss_bytes;
    })
}

/// Stage 5 with the last facts filled in by `measure` after the analysis
/// (so CPU and wall time cover it): this process's own usage for a run,
/// the shards' usage plus the merge's for a merged sharded run
/// (`crate::shard::merge`).
pub fn report_with_facts(
    run_dir: &Path,
    mut facts: RunFacts,
    history: &HistoryPasses,
    check: &CheckOutcome,
    measure: impl FnOnce(&mut RunFacts),
) -> Result<Summary, RunError> {
    let analysis = report::analyze_passes(history)?;
    let thresholds = report::evaluate_thresholds(
        &facts.scenario.thresholds,
        &analysis,
        facts.scenario.duration.as_secs_f64(),
    );
    measure(&mut facts);
    let summary = report::build_summary(&facts, &analysis, check, &thresholds);
    report::write_reports(run_dir, &summary, &analysis)?;
    Ok(summary)
}
