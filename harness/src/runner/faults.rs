//! The fault schedule: Redis restarts, pauses and wipes, server kills and
//! graceful restarts, and network faults through the harness's proxies,
//! each applied at its time and lifted after its duration, and recorded as
//! a `FaultWindow` on the run clock. Reconnect storms act on the harness's
//! own clients: their window lasts until every dropped socket caught up.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::servers::{self, Launcher, ServerInstance, SpawnSettings};

/// How long a storm waits, after its return window, for every socket it
/// dropped to catch up before it is recorded as over (with an error).
const STORM_CATCH_UP_LIMIT: Duration = Duration::from_secs(120);
const STORM_POLL: Duration = Duration::from_millis(20);
use crate::client::live::LiveStats;
use crate::client::shape::{StormControl, StormOrder};
use crate::client::RunClock;
use crate::history::FaultWindow;
use crate::proxy::Proxy;
use crate::scenario::{FaultKind, FaultSpec, Link};

/// Everything a fault can act on. Shared by the fault tasks; each holds
/// the lock only while applying or lifting, never while waiting.
pub struct Rig {
    pub redis: Option<redis_provider::RedisHandle>,
    /// The Redis URL the harness itself uses (never proxied).
    pub redis_url: Option<String>,
    pub servers: Vec<Option<ServerInstance>>,
    /// Where each spawned server listens; a restarted one comes back there
    /// so clients' targets stay valid.
    pub server_addrs: Vec<SocketAddr>,
    pub spawn: Option<(Launcher, SpawnSettings)>,
    pub client_proxies: Vec<Proxy>,
    pub redis_proxy: Option<Proxy>,
}

impl Rig {
    fn link_proxies(&self, link: Link) -> Vec<Proxy> {
        match link {
            Link::Clients => self.client_proxies.clone(),
            Link::Redis => self.redis_proxy.iter().cloned().collect(),
        }
    }

    /// Process ids of the servers running as child processes now.
    pub fn server_pids(&self) -> Vec<u32> {
        self.servers
            .iter()
            .flatten()
            .filter_map(ServerInstance::pid)
            .collect()
    }

    /// Stops servers and proxies; the Redis handle is returned to the
    /// caller (its Drop removes the container or process).
    pub async fn stop_all(mut self) -> Option<redis_provider::RedisHandle> {
        self.stop_all_in_place().await
    }

    /// [`Rig::stop_all`] through a shared reference: an interrupted run
    /// stops everything while tasks it no longer waits for still hold the
    /// rig (they find it empty).
    pub async fn stop_all_in_place(&mut self) -> Option<redis_provider::RedisHandle> {
        for server in self.servers.iter_mut().filter_map(Option::take) {
            server.stop().await;
        }
        for proxy in std::mem::take(&mut self.client_proxies) {
            proxy.shutdown().await;
        }
        if let Some(proxy) = self.redis_proxy.take() {
            proxy.shutdown().await;
        }
        self.spawn = None; // nothing may restart a server now
        self.redis.take()
    }
}

fn target_name(kind: &FaultKind) -> String {
    match kind {
        FaultKind::RedisRestart | FaultKind::RedisPause | FaultKind::RedisWipe => "redis".into(),
        FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
            format!("server {server}")
        }
        FaultKind::ReconnectStorm { .. } => "clients".into(),
        other => match other.link() {
            Some(Link::Clients) => "link clients->servers".into(),
            Some(Link::Redis) => "link servers->redis".into(),
            None => "?".into(),
        },
    }
}

/// Runs every fault at its time; returns the windows as they happened.
/// Bounded: each fault waits at most its `at` + `duration` (+ the time its
/// actions take, each bounded by the provider and server timeouts).
pub async fn run_schedule(
    faults: Vec<FaultSpec>,
    rig: Arc<Mutex<Rig>>,
    clock: RunClock,
    live: Arc<LiveStats>,
    storms: Arc<StormControl>,
) -> Vec<FaultWindow> {
    let tasks: Vec<_> = faults
        .into_iter()
        .map(|fault| {
            let rig = rig.clone();
            let live = live.clone();
            let storms = storms.clone();
            tokio::spawn(async move { run_one(fault, rig, clock, &live, &storms).await })
        })
        .collect();
    let mut windows = Vec::new();
    for task in tasks {
        match task.await {
            Ok(window) => windows.push(window),
            Err(join) => tracing::error!(%join, "a fault task failed"),
        }
    }
    windows.sort_by_key(|w| w.start_us);
    windows
}

async fn run_one(
    fault: FaultSpec,
    rig: Arc<Mutex<Rig>>,
    clock: RunClock,
    live: &LiveStats,
    storms: &StormControl,
) -> FaultWindow {
    let start_at = tokio::time::Instant::from_std(clock.instant_at(fault.at.as_micros() as u64));
    tokio::time::sleep_until(start_at).await;
    let mut errors = Vec::new();
    let storm = match fault.kind {
        FaultKind::ReconnectStorm { share, drop } => Some(StormOrder {
            share,
            drop,
            return_within: fault.duration,
        }),
        _ => None,
    };
    let mut dropped_before = 0;
    if let Some(order) = storm {
        dropped_before = storms.start(order);
    } else if let Err(err) = apply(&fault.kind, &rig).await {
        errors.push(format!("applying: {err}"));
    }
    // The window starts when the fault is in effect (stopping a container
    // or pausing it takes a moment), so "acked during the fault" means it.
    let start_us = clock.now_us();
    live.faults_active.fetch_add(1, Ordering::Relaxed);
    println!(
        "fault: {} on {} at {:.1}s for {:?}",
        fault.kind.name(),
        target_name(&fault.kind),
        start_us as f64 / 1e6,
        fault.duration
    );
    if !fault.duration.is_zero() {
        tokio::time::sleep(fault.duration).await;
    }
    if storm.is_some() {
        if let Err(err) = storm_settled(storms).await {
            errors.push(err);
        }
    } else if let Err(err) = lift(&fault.kind, &rig).await {
        errors.push(format!("lifting: {err}"));
    }
    let end_us = clock.now_us();
    live.faults_active.fetch_sub(1, Ordering::Relaxed);
    for error in &errors {
        tracing::warn!(fault = fault.kind.name(), %error, "fault injection problem");
    }
    FaultWindow {
        kind: fault.kind.name().to_string(),
        target: target_name(&fault.kind),
        start_us,
        end_us,
        error: if errors.is_empty() {
            None
        } else {
            Some(errors.join("; "))
        },
        sockets_dropped: storm.map(|_| storms.dropped().saturating_sub(dropped_before)),
    }
}

/// Waits (bounded) until every socket the storm dropped has caught up.
async fn storm_settled(storms: &StormControl) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + STORM_CATCH_UP_LIMIT;
    while storms.pending() > 0 {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{} dropped sockets had not caught up {} after the return window",
                storms.pending(),
                humantime::format_duration(STORM_CATCH_UP_LIMIT)
            ));
        }
        tokio::time::sleep(STORM_POLL).await;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum FaultError {
    #[error("the harness does not control this Redis (given by URL)")]
    NoRedis,
    #[error(transparent)]
    Provider(#[from] redis_provider::ProviderError),
    #[error("no spawned server {0}")]
    NoServer(u32),
    #[error("restarting server {index}: {source}")]
    Respawn {
        index: u32,
        source: servers::ServerError,
    },
    #[error("wiping Redis: {0}")]
    Wipe(redis::RedisError),
}

async fn apply(kind: &FaultKind, rig: &Mutex<Rig>) -> Result<(), FaultError> {
    let mut rig = rig.lock().await;
    match kind {
        FaultKind::RedisRestart | FaultKind::RedisWipe => {
            rig.redis
                .as_mut()
                .ok_or(FaultError::NoRedis)?
                .stop()
                .await?
        }
        FaultKind::RedisPause => {
            rig.redis
                .as_mut()
                .ok_or(FaultError::NoRedis)?
                .pause()
                .await?
        }
        FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
            let graceful = matches!(kind, FaultKind::ServerRestart { .. });
            let slot = rig
                .servers
                .get_mut(*server as usize)
                .ok_or(FaultError::NoServer(*server))?;
            let instance = slot.take().ok_or(FaultError::NoServer(*server))?;
            if graceful {
                instance.stop().await;
            } else {
                instance.kill().await;
            }
        }
        FaultKind::Latency {
            link,
            latency,
            jitter,
        } => {
            for proxy in rig.link_proxies(*link) {
                proxy.set_latency(*latency, *jitter);
            }
        }
        FaultKind::Bandwidth { link, bytes_per_s } => {
            for proxy in rig.link_proxies(*link) {
                proxy.set_bandwidth(Some(*bytes_per_s));
            }
        }
        FaultKind::Blackhole { link } => {
            for proxy in rig.link_proxies(*link) {
                proxy.set_blackhole(true);
            }
        }
        FaultKind::Reset { link } => {
            for proxy in rig.link_proxies(*link) {
                proxy.reset_all();
            }
        }
        // Ordered through the `StormControl` by `run_one`.
        FaultKind::ReconnectStorm { .. } => {}
    }
    Ok(())
}

async fn lift(kind: &FaultKind, rig: &Mutex<Rig>) -> Result<(), FaultError> {
    let mut rig = rig.lock().await;
    match kind {
        FaultKind::RedisRestart => {
            rig.redis
                .as_mut()
                .ok_or(FaultError::NoRedis)?
                .start()
                .await?
        }
        FaultKind::RedisWipe => {
            rig.redis
                .as_mut()
                .ok_or(FaultError::NoRedis)?
                .start()
                .await?;
            // Whatever persistence kept is destroyed now: the data is gone.
            let url = rig.redis_url.clone().ok_or(FaultError::NoRedis)?;
            let client = redis::Client::open(url.as_str()).map_err(FaultError::Wipe)?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(FaultError::Wipe)?;
            redis::cmd("FLUSHALL")
                .arg("SYNC")
                .query_async::<()>(&mut conn)
                .await
                .map_err(FaultError::Wipe)?;
        }
        FaultKind::RedisPause => {
            rig.redis
                .as_mut()
                .ok_or(FaultError::NoRedis)?
                .resume()
                .await?
        }
        FaultKind::ServerKill { server } | FaultKind::ServerRestart { server } => {
            let index = *server as usize;
            let (launcher, settings) = rig.spawn.clone().ok_or(FaultError::NoServer(*server))?;
            let addr = *rig
                .server_addrs
                .get(index)
                .ok_or(FaultError::NoServer(*server))?;
            let mut last_error = None;
            // The port can take a moment to be free again after a kill.
            for _ in 0..20 {
                match servers::spawn_at(&launcher, &settings, Some(addr)).await {
                    Ok(instance) => {
                        rig.servers[index] = Some(instance);
                        return Ok(());
                    }
                    Err(err) => last_error = Some(err),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if let Some(source) = last_error {
                return Err(FaultError::Respawn {
                    index: *server,
                    source,
                });
            }
        }
        FaultKind::Latency { link, .. }
        | FaultKind::Bandwidth { link, .. }
        | FaultKind::Blackhole { link } => {
            for proxy in rig.link_proxies(*link) {
                proxy.clear();
            }
        }
        FaultKind::Reset { .. } | FaultKind::ReconnectStorm { .. } => {}
    }
    Ok(())
}
