//! One run, start to verdict: Redis, servers, the cast of devices, ramp-up,
//! traffic and churn, the drain, then check and report.
//!
//! - [`population`]: users, devices, conversations, memberships (seeded).
//! - [`servers`]: reference servers started by the harness, or targets.
//! - [`log`]: the message log and stream heads read back from Redis.
//! - [`progress`]: the live progress line.
//! - [`resources`]: the harness's own CPU time and memory.

pub mod faults;
pub mod log;
pub mod population;
pub mod progress;
pub mod resources;
pub mod servers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recovery_protocol::StreamId;
use tokio::sync::{mpsc, watch};

use crate::checker::{check, rebuild_log, CheckInput, CheckOutcome};
use crate::client::live::LiveStats;
use crate::client::socket::SocketTask;
use crate::client::traffic::run_scheduler;
use crate::client::{ClientContext, Counters, Phase, RunClock, SendOrder};
use crate::history::{write_history, History, MessageLog, RunMeta};
use crate::proxy::{Proxy, ProxyError};
use crate::report::{self, RunFacts, Summary};
use crate::scenario::{
    render_scenario, FaultKind, Link, Persistence, RedisProviderChoice, Scenario, ServersSpec,
};

pub use servers::Launcher;

/// Queue of send orders per socket; the scheduler skips a socket whose
/// queue is full rather than waiting (open model).
const ORDER_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
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
    #[error("cannot put a proxy in front of {0:?}: not a host:port address")]
    ProxyTarget(String),
    #[error("the scenario has external targets but no Redis URL; pass --redis-url (or the verdict is checked against a log rebuilt from acks)")]
    NoTargets,
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
    /// Show a live progress line (only when stdout is a terminal).
    pub progress: bool,
    /// Appended to every spawned server's arguments (e.g. injected flaws).
    pub extra_server_args: Vec<String>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub summary: Summary,
    pub exit_code: u8,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run_dir_name(scenario: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs()),
    )
    .to_string()
    .replace([':', '-'], "")
    .replace('T', "-")
    .trim_end_matches('Z')
    .to_string();
    format!("{stamp}-{scenario}")
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

/// Plays a scenario and writes its report directory.
pub async fn run(options: RunOptions) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let started_at_unix_ms = unix_ms();
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
    let run_dir = options.out_root.join(run_dir_name(&scenario.name));
    std::fs::create_dir_all(&run_dir).map_err(|source| RunError::OutDir {
        path: run_dir.clone(),
        source,
    })?;

    // Redis: needed to start reference servers, and (when reachable) to
    // read the log back. External targets without a URL are checked
    // against the log rebuilt from acks and receipts.
    let needs_redis =
        matches!(scenario.servers, ServersSpec::Spawn { .. }) || options.redis_url.is_some();
    let redis = if needs_redis {
        let handle =
            redis_provider::start_redis(&provider_options(&scenario, options.redis_url.as_deref()))
                .await?;
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
    let redis_url = redis.as_ref().map(|r| r.url().to_string());
    let redis_description = redis.as_ref().map_or_else(
        || "not reachable (log rebuilt from acks)".to_string(),
        |r| r.description(),
    );

    // Network faults need the harness's proxies on the link: one in front
    // of Redis for the servers, one in front of each server for clients.
    let needs_link = |link: Link| scenario.faults.iter().any(|f| f.kind.link() == Some(link));
    let redis_proxy = match (&redis_url, needs_link(Link::Redis)) {
        (Some(url), true) => Some(Proxy::start(host_port_of(url)?).await?),
        _ => None,
    };
    let servers_redis_url = match (&redis_proxy, &redis_url) {
        (Some(proxy), _) => Some(format!("redis://{}", proxy.listen_addr())),
        (None, url) => url.clone(),
    };

    let mut instances = Vec::new();
    let mut spawn = None;
    let server_targets = match &scenario.servers {
        ServersSpec::External { targets } => targets.clone(),
        ServersSpec::Spawn {
            count,
            sync_interval,
            heartbeat_interval,
            extra_args,
        } => {
            let settings = servers::SpawnSettings {
                redis_url: servers_redis_url.clone().ok_or(RunError::NoTargets)?,
                sync_interval: *sync_interval,
                heartbeat_interval: *heartbeat_interval,
                extra_args: extra_args
                    .iter()
                    .chain(&options.extra_server_args)
                    .cloned()
                    .collect(),
            };
            for _ in 0..*count {
                instances.push(servers::spawn(&options.launcher, &settings).await?);
            }
            spawn = Some((options.launcher.clone(), settings));
            instances.iter().map(|i| i.ws_url()).collect()
        }
    };
    let mut client_proxies = Vec::new();
    let mut targets = Vec::new();
    for target in &server_targets {
        if needs_link(Link::Clients) {
            let (addr, path) = split_ws_url(target)?;
            let proxy = Proxy::start(addr).await?;
            targets.push(format!("ws://{}{}", proxy.listen_addr(), path));
            client_proxies.push(proxy);
        } else {
            targets.push(target.clone());
        }
    }
    println!("targets: {}", targets.join(", "));
    let rig = faults::Rig {
        redis,
        redis_url: redis_url.clone(),
        server_addrs: instances.iter().filter_map(|i| i.listen_addr()).collect(),
        servers: instances.into_iter().map(Some).collect(),
        spawn,
        client_proxies,
        redis_proxy,
    };
    let rig = Arc::new(tokio::sync::Mutex::new(rig));

    let played = play(
        &scenario,
        seed,
        &targets,
        redis_url.as_deref(),
        options.progress,
        rig.clone(),
    )
    .await;
    // The fault tasks have ended (play waited for them); the rig is ours.
    // Dropped at the end of the run: removes the container or process.
    let _redis_alive = match Arc::try_unwrap(rig) {
        Ok(rig) => rig.into_inner().stop_all().await,
        Err(_) => None,
    };
    let played = played?;

    let history_path = run_dir.join("history.jsonl");
    write_history(&history_path, &played.history)?;
    write_json(&run_dir.join("log.json"), &played.log)?;
    let scenario_path = run_dir.join("scenario.toml");
    std::fs::write(&scenario_path, render_scenario(&scenario)).map_err(|source| {
        RunError::Write {
            path: scenario_path,
            source,
        }
    })?;

    let check = check_history(
        &played.history,
        &played.log,
        &scenario,
        played.drain_complete,
        played.unknown_reasons.clone(),
    );
    let analysis = report::analyze(&played.history);
    let wall = started.elapsed();
    let thresholds = report::evaluate_thresholds(
        &scenario.thresholds,
        &analysis,
        scenario.duration.as_secs_f64(),
    );
    let usage = resources::harness_usage();
    let facts = RunFacts {
        scenario: scenario.clone(),
        seed,
        started_at_unix_ms,
        wall_duration: wall,
        harness_cpu: usage.cpu,
        harness_peak_rss_bytes: usage.peak_rss_bytes,
        harness_rss_at_traffic_end_bytes: played.rss_at_traffic_end_bytes,
        peak_sockets: played.peak_sockets,
        drain_complete: played.drain_complete,
        redis_description,
        targets: targets.clone(),
        stragglers: played.stragglers.clone(),
        sends_skipped: played.sends_skipped.clone(),
    };
    let summary = report::build_summary(&facts, &analysis, &check, &thresholds);
    report::write_reports(&run_dir, &summary, &analysis)?;
    let exit_code = report::exit_code(&summary);
    Ok(RunOutcome {
        run_dir,
        summary,
        exit_code,
    })
}

/// `redis://host:port[/db]` -> host:port.
fn host_port_of(url: &str) -> Result<std::net::SocketAddr, RunError> {
    url.split_once("://")
        .map(|(_, rest)| rest.rsplit('@').next().unwrap_or(rest))
        .and_then(|rest| rest.split('/').next())
        .and_then(|host| host.parse().ok())
        .ok_or_else(|| RunError::ProxyTarget(url.to_string()))
}

/// `ws://host:port/path` -> (host:port, /path).
fn split_ws_url(url: &str) -> Result<(std::net::SocketAddr, String), RunError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| RunError::ProxyTarget(url.to_string()))?;
    let (host, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], rest[slash..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr = host
        .parse()
        .map_err(|_| RunError::ProxyTarget(url.to_string()))?;
    Ok((addr, path))
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let text = serde_json::to_string(value).map_err(|e| RunError::Write {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    std::fs::write(path, text).map_err(|source| RunError::Write {
        path: path.to_path_buf(),
        source,
    })
}

pub fn check_history(
    history: &History,
    log: &MessageLog,
    scenario: &Scenario,
    drain_complete: bool,
    unknown_reasons: Vec<String>,
) -> CheckOutcome {
    check(&CheckInput {
        history,
        log,
        expect: &scenario.expect,
        drain_complete,
        unknown_reasons,
    })
}

/// What playing the scenario produced, before checking.
pub struct Played {
    pub history: History,
    pub log: MessageLog,
    pub drain_complete: bool,
    pub stragglers: Vec<String>,
    pub unknown_reasons: Vec<String>,
    pub peak_sockets: u64,
    /// Harness resident memory when the traffic phase ended.
    pub rss_at_traffic_end_bytes: Option<u64>,
    pub sends_skipped: report::SendsSkipped,
}

/// Runs the devices against `targets`: ramp-up, traffic and churn for the
/// scenario's duration, then the drain. Bounded in time by ramp-up +
/// duration + drain timeout (+ a few seconds to close).
pub async fn play(
    scenario: &Scenario,
    seed: u64,
    targets: &[String],
    redis_url: Option<&str>,
    show_progress: bool,
    rig: Arc<tokio::sync::Mutex<faults::Rig>>,
) -> Result<Played, RunError> {
    if targets.is_empty() {
        return Err(RunError::NoTargets);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let cast = population::build(
        &scenario.population,
        scenario.churn.client_cursor_share,
        &mut rng,
    );
    let conversation_ids: Vec<_> = cast
        .conversations
        .iter()
        .map(|c| c.conversation_id)
        .collect();
    let socket_count = cast.sockets.len();
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let clock = RunClock::start();
    let live = Arc::new(LiveStats::default());
    let fault_schedule = tokio::spawn(faults::run_schedule(
        scenario.faults.clone(),
        rig,
        clock,
        live.clone(),
    ));
    let ctx = Arc::new(ClientContext {
        clock,
        targets: targets.to_vec(),
        churn: scenario.churn.clone(),
        phase: phase_rx,
        counters: Counters::default(),
        online: (0..socket_count).map(|_| AtomicBool::new(false)).collect(),
        drained: (0..socket_count).map(|_| AtomicBool::new(false)).collect(),
        drain_heads: OnceLock::new(),
        max_acked: (0..cast.conversations.len())
            .map(|_| Mutex::new(StreamId::ZERO))
            .collect(),
        connect_timeout: Duration::from_secs(10),
        live,
    });

    let mut order_senders: Vec<mpsc::Sender<SendOrder>> = Vec::with_capacity(socket_count);
    let mut tasks = Vec::with_capacity(socket_count);
    let ramp_us = scenario.ramp_up.as_micros() as u64;
    let start = tokio::time::Instant::now();
    for spec in &cast.sockets {
        let (tx, rx) = mpsc::channel(ORDER_QUEUE);
        order_senders.push(tx);
        // Spread connects evenly over the ramp.
        let offset_us = if socket_count > 1 {
            ramp_us * spec.index as u64 / socket_count as u64
        } else {
            0
        };
        let task = SocketTask::new(
            spec.clone(),
            ctx.clone(),
            StdRng::seed_from_u64(rng.random()),
            rx,
        );
        tasks.push(tokio::spawn(
            task.run(start + Duration::from_micros(offset_us)),
        ));
    }
    let traffic_end_us = ramp_us + scenario.duration.as_micros() as u64;
    let scheduler = tokio::spawn(run_scheduler(
        ctx.clone(),
        order_senders,
        scenario.traffic.send_rate_per_s,
        scenario.traffic.body_bytes as usize,
        0,
        traffic_end_us,
        StdRng::seed_from_u64(rng.random()),
    ));
    let progress = progress::Progress::start(ctx.clone(), show_progress, socket_count as u64);

    tokio::time::sleep_until(start + Duration::from_micros(traffic_end_us)).await;
    let rss_at_traffic_end_bytes = resources::current_rss_bytes();
    progress.set_phase("draining");
    // Sends stop; devices come back at once and stay.
    let _ = phase_tx.send(Phase::Draining); // Err only when no socket task is left: nothing to tell
    let placed = scheduler.await.unwrap_or(0);
    tracing::info!(placed, "traffic phase over");
    let skipped = ctx.counters.sends_skipped.load(Ordering::Relaxed);
    let queue_full = ctx
        .counters
        .sends_skipped_queue_full
        .load(Ordering::Relaxed);
    let sends_skipped = report::SendsSkipped {
        scheduled: placed + skipped,
        skipped,
        no_socket_online: skipped.saturating_sub(queue_full),
        queue_full,
    };

    let mut unknown_reasons = Vec::new();
    // Every fault is lifted before the drain reads the heads (a fault may
    // outlast the traffic; each ends after its own bounded duration).
    let fault_windows = match fault_schedule.await {
        Ok(windows) => windows,
        Err(join) => {
            unknown_reasons.push(format!("the fault schedule failed: {join}"));
            Vec::new()
        }
    };
    let drain_deadline = tokio::time::Instant::now() + scenario.drain_timeout;
    // Let in-flight sends settle (acked, or retried after reconnect) so the
    // heads below include them.
    while ctx.counters.outstanding_sends.load(Ordering::Relaxed) > 0
        && tokio::time::Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outstanding = ctx.counters.outstanding_sends.load(Ordering::Relaxed);
    if outstanding > 0 {
        unknown_reasons.push(format!(
            "{outstanding} sends were never acked before the drain timeout"
        ));
    }
    // The acked maximum also covers a target whose Redis layout differs
    // from ours (its streams read back empty).
    let acked_heads = ctx.max_acked_ids();
    let heads: Vec<StreamId> = match redis_url {
        Some(url) => log::read_heads(url, &conversation_ids)
            .await?
            .into_iter()
            .zip(&acked_heads)
            .map(|(head, acked)| head.max(*acked))
            .collect(),
        None => acked_heads,
    };
    // Set once, here; the sockets only read it.
    let _ = ctx.drain_heads.set(heads.clone()); // Err only if already set, which nothing else does
    while ctx.counters.drained.load(Ordering::Relaxed) < socket_count as u64
        && tokio::time::Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stragglers = Vec::new();
    for spec in &cast.sockets {
        if !ctx.drained[spec.index].load(Ordering::Relaxed) {
            stragglers.push(format!(
                "device {} (user {}, client {}) in conversation {} ({}): not caught up to {}",
                spec.device,
                spec.user_id,
                spec.client_id,
                spec.conversation,
                spec.conversation_id,
                heads[spec.conversation as usize]
            ));
        }
    }
    let drain_complete = stragglers.is_empty();
    if !drain_complete {
        unknown_reasons.push(format!(
            "{} of {socket_count} sockets did not catch up within the drain timeout",
            stragglers.len()
        ));
    }
    let _ = phase_tx.send(Phase::Done); // Err only when no socket task is left
    progress.set_phase("closing");

    let mut events = Vec::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(15), task).await {
            Ok(Ok(mut socket_events)) => events.append(&mut socket_events),
            Ok(Err(join)) => unknown_reasons.push(format!("a socket task failed: {join}")),
            Err(_) => unknown_reasons
                .push("a socket task did not finish within 15s of the run end".into()),
        }
    }
    progress.finish();
    // Stable: each socket's own events keep their order on equal stamps.
    events.sort_by_key(|event| event.at_us);
    let history = History {
        meta: RunMeta {
            scenario_name: scenario.name.clone(),
            seed,
            started_at_unix_ms: unix_ms().saturating_sub(clock.now_us() / 1000),
            devices: cast.devices,
            conversations: cast.conversations,
            faults: fault_windows,
        },
        events,
    };
    let log = match redis_url {
        Some(url) => {
            let log = log::read_log(url, &conversation_ids).await?;
            let entries: usize = log.conversations.iter().map(Vec::len).sum();
            let acks = ctx.counters.acks.load(Ordering::Relaxed);
            if entries == 0 && acks > 0 {
                // Messages were acked but no stream holds any: the target
                // does not keep them under `stream:conversation:{id}`.
                // Checking against an empty log would call every delivery
                // a phantom; the rebuilt log is the honest fallback.
                tracing::warn!(acks, "no conversation stream found in the given Redis; checking against the log rebuilt from acks and receipts");
                println!(
                    "note: the Redis at {url} holds no `stream:conversation:{{id}}` entries although {acks} sends were acked; checking against the log rebuilt from acks and receipts"
                );
                rebuild_log(&history)
            } else {
                log
            }
        }
        None => rebuild_log(&history),
    };
    Ok(Played {
        history,
        log,
        drain_complete,
        stragglers,
        unknown_reasons,
        peak_sockets: ctx.counters.peak_sockets_online.load(Ordering::Relaxed),
        rss_at_traffic_end_bytes,
        sends_skipped,
    })
}
