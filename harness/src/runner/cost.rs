//! What the system under test cost while it ran: the spawned servers
//! (from `/proc`) and Redis (from its own `INFO`), sampled on one task
//! every 500 ms, plus one sample when the traffic phase ends (memory per
//! socket is read there, with every socket still connected).
//!
//! The single-process run and `harness run --workers` (whose parent owns
//! the servers and Redis while the workers play) use the same sampler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::faults::Rig;
use super::resources::{RedisCost, RedisInfoReader, ServerCost};
use crate::report::{RedisResourcesInput, ServerResourcesInput};

/// How often the servers' `/proc` and Redis's `INFO` are read.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

type SharedRig = Arc<tokio::sync::Mutex<Rig>>;

/// Samples until [`CostSampler::finish`].
pub struct CostSampler {
    rig: SharedRig,
    servers: Arc<Mutex<ServerCost>>,
    redis: Arc<Mutex<RedisCost>>,
    reader: Arc<tokio::sync::Mutex<Option<RedisInfoReader>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the system under test cost; `None` for what was never sampled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemCost {
    pub servers: Option<ServerResourcesInput>,
    pub redis: Option<RedisResourcesInput>,
}

/// Memory when the traffic phase ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct AtTrafficEnd {
    servers_rss_bytes: Option<u64>,
    redis_rss_bytes: Option<u64>,
}

impl CostSampler {
    /// Starts sampling; Redis is read only with a URL, and a Redis that
    /// cannot be reached leaves its cost out (said in the log) rather
    /// than failing the run.
    pub async fn start(rig: SharedRig, redis_url: Option<&str>) -> CostSampler {
        let reader = match redis_url {
            Some(url) => match RedisInfoReader::connect(url).await {
                Ok(reader) => Some(reader),
                Err(err) => {
                    tracing::warn!(%err, "cannot read Redis's INFO: its cost is left out of the summary");
                    None
                }
            },
            None => None,
        };
        let servers = Arc::default();
        let redis = Arc::default();
        let reader = Arc::new(tokio::sync::Mutex::new(reader));
        sample_once(&rig, &servers, &redis, &reader).await;
        let task = tokio::spawn(sample_forever(
            Arc::downgrade(&rig),
            servers.clone(),
            redis.clone(),
            reader.clone(),
        ));
        CostSampler {
            rig,
            servers,
            redis,
            reader,
            task,
        }
    }

    /// One sample now, kept as the traffic end's memory.
    pub async fn at_traffic_end(&self) -> AtTrafficEnd {
        sample_once(&self.rig, &self.servers, &self.redis, &self.reader).await;
        let servers = lock(&self.servers);
        let redis = lock(&self.redis);
        AtTrafficEnd {
            servers_rss_bytes: (servers.processes > 0).then_some(servers.rss_bytes_now),
            redis_rss_bytes: redis.sampled().then_some(redis.rss_bytes_now),
        }
    }

    /// Stops sampling (after one last sample) and returns what the
    /// servers and Redis cost.
    pub async fn finish(self, at_traffic_end: AtTrafficEnd) -> SystemCost {
        self.task.abort();
        // Wait until the task is really gone: it may be in a sample, holding
        // the rig, which the run must own alone afterwards to stop the servers.
        let _ = self.task.await; // Err(cancelled) is the expected outcome of the abort
        sample_once(&self.rig, &self.servers, &self.redis, &self.reader).await;
        let servers = lock(&self.servers).clone();
        let redis = lock(&self.redis).clone();
        let servers = (servers.processes > 0).then(|| ServerResourcesInput {
            processes: servers.processes,
            cpu: servers.cpu(),
            peak_rss_bytes: servers.peak_rss_bytes,
            rss_at_traffic_end_bytes: at_traffic_end.servers_rss_bytes,
        });
        let redis = redis.sampled().then(|| RedisResourcesInput {
            cpu: redis.cpu(),
            peak_rss_bytes: redis.peak_rss_bytes,
            rss_at_traffic_end_bytes: at_traffic_end.redis_rss_bytes,
            restarts_seen: redis.restarts_seen,
        });
        SystemCost { servers, redis }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn sample_once(
    rig: &SharedRig,
    servers: &Mutex<ServerCost>,
    redis: &Mutex<RedisCost>,
    reader: &tokio::sync::Mutex<Option<RedisInfoReader>>,
) {
    // The rig's lock is held only to list the pids.
    let pids = rig.lock().await.server_pids();
    lock(servers).sample(&pids);
    if let Some(reader) = reader.lock().await.as_mut() {
        if let Some(sample) = reader.sample().await {
            lock(redis).observe(sample);
        }
    }
}

/// Holds the rig weakly: a sampler dropped without `finish` (a run that
/// failed mid-play) must not keep the servers alive, nor stop the run from
/// owning the rig alone to stop them.
async fn sample_forever(
    rig: std::sync::Weak<tokio::sync::Mutex<Rig>>,
    servers: Arc<Mutex<ServerCost>>,
    redis: Arc<Mutex<RedisCost>>,
    reader: Arc<tokio::sync::Mutex<Option<RedisInfoReader>>>,
) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; `start` has just sampled.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(rig) = rig.upgrade() else {
            return;
        };
        sample_once(&rig, &servers, &redis, &reader).await;
    }
}
