//! What the shards agree on, through the servers' Redis (which every shard
//! reaches anyway, and which the merge reads): when the run starts, and
//! when every shard's sends have settled. Each is a Redis set the shards
//! add their index to (idempotent), polled until it holds all N; every
//! wait is bounded.
//!
//! Keys live under `harness:shards:{run_id}:` and expire on their own; the
//! merge deletes them.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{ShardError, ShardSpec};

/// How often a waiting shard looks again.
const POLL: Duration = Duration::from_millis(100);
/// The start is set this long after the last shard arrives, so every
/// shard (polling every 100 ms) reads it well before it comes.
const START_LEAD: Duration = Duration::from_secs(3);

/// One shard's handle on the run's coordination keys.
pub struct ShardSync {
    url: String,
    connection: MultiplexedConnection,
    run_id: String,
    spec: ShardSpec,
    /// Keys outlive the run by this much, then Redis drops them.
    ttl: Duration,
    /// The run's time origin once known: barrier keys carry it, so a
    /// rerun with the same run id never meets a previous run's barrier.
    origin_unix_ms: u64,
}

impl ShardSync {
    pub async fn connect(
        url: &str,
        run_id: &str,
        spec: ShardSpec,
        ttl: Duration,
    ) -> Result<ShardSync, ShardError> {
        let connection = connect(url).await?;
        Ok(ShardSync {
            url: url.to_string(),
            connection,
            run_id: run_id.to_string(),
            spec,
            ttl,
            origin_unix_ms: 0,
        })
    }

    /// Fixes the run's time origin (from the rendezvous or `--start-at`).
    pub fn set_origin(&mut self, start_at_unix_ms: u64) {
        self.origin_unix_ms = start_at_unix_ms;
    }

    fn key(&self, name: &str) -> String {
        key(&self.run_id, name)
    }

    fn redis_err(&self, source: redis::RedisError) -> ShardError {
        ShardError::Redis {
            url: self.url.clone(),
            source,
        }
    }

    /// Adds this shard to the set `name`; returns how many shards are in.
    async fn join(&self, name: &str) -> Result<u64, ShardError> {
        let key = self.key(name);
        let mut connection = self.connection.clone();
        let (_added, _expiry, present): (u64, u64, u64) = redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(&key)
            .arg(self.spec.index)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.ttl.as_secs().max(1))
            .cmd("SCARD")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .map_err(|e| self.redis_err(e))?;
        Ok(present)
    }

    async fn present(&self, name: &str) -> Result<u64, ShardError> {
        let mut connection = self.connection.clone();
        redis::cmd("SCARD")
            .arg(self.key(name))
            .query_async(&mut connection)
            .await
            .map_err(|e| self.redis_err(e))
    }

    /// The run's time origin: once all N shards have arrived, the first to
    /// see it sets it `START_LEAD` ahead (SET NX: one value wins) and every
    /// shard reads the same. A start older than `stale_after` is a previous
    /// run's with the same run id: refused rather than joined.
    pub async fn rendezvous(
        &self,
        timeout: Duration,
        stale_after: Duration,
    ) -> Result<u64, ShardError> {
        let waited = std::time::Instant::now();
        let start_key = self.key("start");
        let mut connection = self.connection.clone();
        let mut present = self.join("ready").await?;
        loop {
            let start: Option<u64> = redis::cmd("GET")
                .arg(&start_key)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.redis_err(e))?;
            if let Some(start_at_unix_ms) = start {
                let now = crate::runner::unix_ms();
                if start_at_unix_ms + (stale_after.as_millis() as u64) < now {
                    return Err(ShardError::StaleRendezvous {
                        run_id: self.run_id.clone(),
                        start_at_unix_ms,
                    });
                }
                return Ok(start_at_unix_ms);
            }
            if present >= u64::from(self.spec.count) {
                let start = crate::runner::unix_ms() + START_LEAD.as_millis() as u64;
                // Err-free outcome either way: whoever's SET NX won, the
                // next GET reads the one value every shard uses.
                let _won: Option<String> = redis::cmd("SET")
                    .arg(&start_key)
                    .arg(start)
                    .arg("NX")
                    .arg("EX")
                    .arg(self.ttl.as_secs().max(1))
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| self.redis_err(e))?;
                continue;
            }
            if waited.elapsed() >= timeout {
                return Err(ShardError::Timeout {
                    run_id: self.run_id.clone(),
                    what: "start",
                    waited_s: timeout.as_secs(),
                    present,
                    count: self.spec.count,
                });
            }
            tokio::time::sleep(POLL).await;
            present = self.present("ready").await?;
        }
    }

    /// Waits until every shard has reached the point `point` (e.g.
    /// "settled"), or until `deadline`.
    pub async fn barrier(
        &self,
        point: &'static str,
        deadline: tokio::time::Instant,
    ) -> Result<(), ShardError> {
        let started = tokio::time::Instant::now();
        let name = barrier_name(point, self.origin_unix_ms);
        let mut present = self.join(&name).await?;
        while present < u64::from(self.spec.count) {
            if tokio::time::Instant::now() >= deadline {
                return Err(ShardError::Timeout {
                    run_id: self.run_id.clone(),
                    what: point,
                    waited_s: started.elapsed().as_secs(),
                    present,
                    count: self.spec.count,
                });
            }
            tokio::time::sleep(POLL).await;
            present = self.present(&name).await?;
        }
        Ok(())
    }
}

fn barrier_name(point: &str, origin_unix_ms: u64) -> String {
    format!("{point}:{origin_unix_ms}")
}

fn key(run_id: &str, name: &str) -> String {
    format!("harness:shards:{run_id}:{name}")
}

/// A connection for the coordination keys; every reply is bounded.
async fn connect(url: &str) -> Result<MultiplexedConnection, ShardError> {
    let redis_err = |source| ShardError::Redis {
        url: url.to_string(),
        source,
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    redis::Client::open(url)
        .map_err(redis_err)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(redis_err)
}

/// The run's time origin once the shards have agreed it, polled until
/// `timeout` (`None`: not agreed by then). The parent of local workers
/// reads it to know when their traffic phase ends.
pub async fn wait_for_agreed_start(
    url: &str,
    run_id: &str,
    timeout: Duration,
) -> Result<Option<u64>, ShardError> {
    let redis_err = |source| ShardError::Redis {
        url: url.to_string(),
        source,
    };
    let mut connection = connect(url).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let start: Option<u64> = redis::cmd("GET")
            .arg(key(run_id, "start"))
            .query_async(&mut connection)
            .await
            .map_err(redis_err)?;
        if start.is_some() || tokio::time::Instant::now() >= deadline {
            return Ok(start);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Deletes a run's coordination keys (the merge does, once the shards are
/// done; they would expire anyway).
pub async fn forget_run(url: &str, run_id: &str, start_at_unix_ms: u64) -> Result<(), ShardError> {
    let redis_err = |source| ShardError::Redis {
        url: url.to_string(),
        source,
    };
    let mut connection = connect(url).await?;
    let _deleted: u64 = redis::cmd("DEL")
        .arg(key(run_id, "ready"))
        .arg(key(run_id, "start"))
        .arg(key(run_id, &barrier_name("settled", start_at_unix_ms)))
        .query_async(&mut connection)
        .await
        .map_err(redis_err)?;
    Ok(())
}
