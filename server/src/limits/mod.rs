//! Limits that protect the server from hostile or stalled clients without
//! losing or duplicating a message (docs/security.md, "Limits").
//!
//! - [`listener`]: our own accept loop over hyper: header-read timeout,
//!   header size, maximum connections (503 past it), TCP_NODELAY, and a
//!   write deadline on every accepted socket.
//! - [`budget`]: bytes queued for sockets, per socket and for the process.
//! - this file: the flags, per-user socket counts and send rate buckets.
//!
//! Every limit either refuses something that was never accepted (a
//! connection, a send answered `rate_limited`), or closes a socket whose
//! client then resumes from its cursor: the messages stay in Redis, so a
//! limit never costs a message.

pub mod budget;
pub mod listener;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

pub use budget::ByteBudget;

fn parse_duration(text: &str) -> Result<Duration, String> {
    recovery_units::parse_duration(text).map_err(|err| err.to_string())
}

fn parse_size(text: &str) -> Result<usize, String> {
    recovery_units::parse_size(text)
        .map(|bytes| bytes as usize)
        .map_err(|err| err.to_string())
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match recovery_units::parse_rate(text) {
        Ok(rate) if rate > 0.0 => Ok(rate),
        Ok(_) => Err("a rate must be above 0 (e.g. \"20/s\")".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// The limits' flags (flattened into [`crate::Config`]).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsConfig {
    /// A connection must send its complete HTTP request head within this
    /// time, or it is closed (slowloris, clients that send nothing).
    #[arg(long, env = "SERVER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Largest HTTP request head (request line and headers) in bytes; a
    /// larger one gets 431 and the connection is closed.
    #[arg(long, env = "SERVER_MAX_HEADER_BYTES", default_value = "32KiB", value_parser = parse_size)]
    pub max_header_bytes: usize,

    /// Open TCP connections (HTTP and WebSocket); past it a new connection
    /// gets 503 and is closed.
    #[arg(long, env = "SERVER_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// A write to a socket that makes no progress for this long fails, and
    /// the socket is closed (1008); its client resumes from its cursor.
    /// Twice the default heartbeat interval: a peer that reads nothing is
    /// dropped about when a silent one is, and a busy client is not cut.
    #[arg(long, env = "SERVER_WRITE_DEADLINE", default_value = "30s", value_parser = parse_duration)]
    pub write_deadline: Duration,

    /// Live-message bytes queued per socket; past it the socket re-reads
    /// from Redis instead (as when its queue is full).
    #[arg(long, env = "SERVER_SOCKET_QUEUE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub socket_queue_bytes: usize,

    /// Live-message bytes queued for all sockets of the process together;
    /// past it sockets re-read from Redis instead.
    #[arg(long, env = "SERVER_QUEUE_BUDGET_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub queue_budget_bytes: usize,

    /// Bytes per backlog page read from Redis (at least one message per
    /// page, so a page never exceeds this plus one message). A replaying
    /// socket holds up to two pages: the next is read while one is sent.
    #[arg(long, env = "SERVER_REPLAY_PAGE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub replay_page_bytes: usize,

    /// Sends per second per socket (bursts up to twice the rate); past it
    /// a send gets `error rate_limited` with `retry_after_ms`.
    #[arg(long, env = "SERVER_SEND_RATE_PER_SOCKET", default_value = "100/s", value_parser = parse_rate)]
    pub send_rate_per_socket: f64,

    /// Sends per second per user over all its sockets on this server
    /// (bursts up to twice the rate).
    #[arg(long, env = "SERVER_SEND_RATE_PER_USER", default_value = "200/s", value_parser = parse_rate)]
    pub send_rate_per_user: f64,

    /// Open WebSockets per user on this server; past it the upgrade gets 429.
    #[arg(long, env = "SERVER_MAX_SOCKETS_PER_USER", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sockets_per_user: u32,

    /// Messages kept per conversation besides the time retention (XADD
    /// MAXLEN ~); older ones are trimmed and reported as a `gap`. 0: no cap.
    #[arg(
        long,
        env = "SERVER_MAX_MESSAGES_PER_CONVERSATION",
        default_value_t = 100_000
    )]
    pub max_messages_per_conversation: u64,
}

/// A token bucket: `rate` tokens per second, holding up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket; bursts are twice the per-second rate (at least 1).
    pub fn new(rate_per_s: f64, now: Instant) -> TokenBucket {
        let burst = (rate_per_s * 2.0).max(1.0);
        TokenBucket {
            rate: rate_per_s,
            burst,
            tokens: burst,
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        self.refilled_at = now;
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Gives back a token taken by a send another bucket then refused.
    pub fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

struct UserEntry {
    sockets: u32,
    bucket: Arc<Mutex<TokenBucket>>,
}

/// Users with sockets (or a not yet refilled bucket) on this server.
#[derive(Default)]
struct UserTable {
    users: HashMap<Uuid, UserEntry>,
    admissions: u64,
}

/// A poisoned lock only means a panic mid-update of plain counters.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The limits' shared state, one per server.
pub struct Limits {
    pub config: LimitsConfig,
    pub budget: Arc<ByteBudget>,
    users: Arc<Mutex<UserTable>>,
}

/// Why a WebSocket was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("user {user_id} already has {open} open sockets on this server; the limit is {limit}")]
    TooManySockets {
        user_id: Uuid,
        open: u32,
        limit: u32,
    },
}

/// One admitted socket: counts against its user's sockets until dropped,
/// and carries the send rate limits.
pub struct Admission {
    user_id: Uuid,
    users: Arc<Mutex<UserTable>>,
    user_bucket: Arc<Mutex<TokenBucket>>,
    socket_bucket: TokenBucket,
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Limits {
        let budget = Arc::new(ByteBudget::new(config.queue_budget_bytes));
        Limits {
            config,
            budget,
            users: Arc::default(),
        }
    }

    /// Admits one more socket for `user_id`, or refuses it.
    pub fn admit(&self, user_id: Uuid) -> Result<Admission, AdmissionError> {
        let now = Instant::now();
        let limit = self.config.max_sockets_per_user;
        let mut table = lock(&self.users);
        table.admissions += 1;
        if table.admissions.is_multiple_of(1024) {
            // Forget users who left with a full bucket: keeps the table as
            // large as the set of recent users, not of all users ever.
            table
                .users
                .retain(|_, entry| entry.sockets > 0 || !lock(&entry.bucket).is_full(now));
        }
        let rate = self.config.send_rate_per_user;
        let entry = table.users.entry(user_id).or_insert_with(|| UserEntry {
            sockets: 0,
            bucket: Arc::new(Mutex::new(TokenBucket::new(rate, now))),
        });
        if entry.sockets >= limit {
            return Err(AdmissionError::TooManySockets {
                user_id,
                open: entry.sockets,
                limit,
            });
        }
        entry.sockets += 1;
        Ok(Admission {
            user_id,
            users: self.users.clone(),
            user_bucket: entry.bucket.clone(),
            socket_bucket: TokenBucket::new(self.config.send_rate_per_socket, now),
        })
    }
}

impl Admission {
    /// One send's worth of both buckets, or how long to wait.
    pub fn try_send(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.socket_bucket.try_take(now)?;
        if let Err(wait) = lock(&self.user_bucket).try_take(now) {
            self.socket_bucket.give_back();
            return Err(wait);
        }
        Ok(())
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut table = lock(&self.users);
        let now = Instant::now();
        if let Some(entry) = table.users.get_mut(&self.user_id) {
            entry.sockets = entry.sockets.saturating_sub(1);
            // A user's bucket outlives its sockets until it is full again,
            // so reconnecting does not reset the user's rate.
            if entry.sockets == 0 && lock(&entry.bucket).is_full(now) {
                table.users.remove(&self.user_id);
            }
        }
    }
}

/// Held for as long as an accepted connection (or the WebSocket it became)
/// is open: its share of `--max-connections`.
pub struct ConnectionSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn bucket_allows_bursts_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, start);
        for _ in 0..20 {
            assert!(bucket.try_take(start).is_ok());
        }
        let wait = bucket.try_take(start).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(bucket.try_take(start + Duration::from_millis(100)).is_ok());
        assert!(bucket.try_take(start + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn sockets_per_user_are_counted_until_dropped() {
        let mut config = crate::Config::parse_from(["server"]).limits;
        config.max_sockets_per_user = 2;
        let limits = Limits::new(config);
        let user = Uuid::new_v4();
        let first = limits.admit(user).unwrap();
        let _second = limits.admit(user).unwrap();
        assert!(limits.admit(user).is_err());
        assert!(limits.admit(Uuid::new_v4()).is_ok());
        drop(first);
        assert!(limits.admit(user).is_ok());
    }

    #[test]
    fn the_user_rate_is_shared_by_its_sockets() {
        let mut config = crate::Config::parse_from(["server"]).limits;
        config.send_rate_per_socket = 1000.0;
        config.send_rate_per_user = 5.0;
        let limits = Limits::new(config);
        let user = Uuid::new_v4();
        let mut a = limits.admit(user).unwrap();
        let mut b = limits.admit(user).unwrap();
        let started = std::time::Instant::now();
        let allowed = (0..20)
            .filter(|i| {
                if i % 2 == 0 {
                    a.try_send()
                } else {
                    b.try_send()
                }
                .is_ok()
            })
            .count();
        // The bucket refills in real time: a thread held up in the loop
        // (a loaded machine) earns a token per 200 ms.
        let refilled = (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;
        assert!(
            (10..=10 + refilled).contains(&allowed),
            "burst of twice the user's rate, shared: {allowed} allowed, {refilled} refilled"
        );
    }

    #[test]
    fn defaults_are_documented_ones() {
        let config = crate::Config::parse_from(["server"]).limits;
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.write_deadline, Duration::from_secs(30));
        assert_eq!(config.socket_queue_bytes, 1 << 20);
        assert_eq!(config.queue_budget_bytes, 256 << 20);
        assert_eq!(config.replay_page_bytes, 1 << 20);
        assert_eq!(config.send_rate_per_socket, 100.0);
        assert_eq!(config.send_rate_per_user, 200.0);
        assert_eq!(config.max_sockets_per_user, 32);
        assert_eq!(config.max_messages_per_conversation, 100_000);
        let err = crate::Config::try_parse_from(["server", "--send-rate-per-user", "0/s"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--send-rate-per-user"), "{err}");
    }
}
