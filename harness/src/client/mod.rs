//! The simulated devices: one lightweight task per socket (device x
//! conversation), thousands per process.
//!
//! - [`connection`]: opening a WebSocket with small buffers; dropping it
//!   cleanly, abruptly or with a TCP reset.
//! - [`protocol`]: the protocol seam: one codec per wire protocol (v1,
//!   Socket.IO), turning frames into protocol-neutral history events.
//! - [`socket`]: the task: connect, recover, receive, send, ack, churn.
//! - [`ack`]: when a socket acks (coalesced, cumulative).
//! - [`orders`]: the per-socket queue of send orders (light: sockets are
//!   many, orders few).
//! - [`traffic`]: the open-model send scheduler (Poisson arrivals).
//! - [`shape`]: the load shape: `[[stages]]` and reconnect storms.
//! - [`dist`]: sampling scenario distributions.
//! - [`live`]: latencies and anomalies visible while the run goes (for
//!   the progress line and the Prometheus endpoint).
//! - [`protocol`]: wire protocols of servers other than the reference
//!   server (Socket.IO).
//!
//! Tasks stream their events to the history writer thread
//! (`history::Recorder`, a lock-free channel; nothing kept per socket);
//! live progress goes through relaxed atomics only.

pub mod ack;
pub mod connection;
pub mod dist;
pub mod live;
pub mod orders;
pub mod protocol;
pub mod shape;
pub mod socket;
pub mod traffic;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::history::{ConversationIx, DeviceIx, Position, ResumeMode};
use crate::scenario::Churn;

/// The run's time origin; every event is stamped relative to it.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    origin: Instant,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock {
            origin: Instant::now(),
        }
    }

    /// A clock whose origin is the wall-clock instant `start_at_unix_ms`
    /// (past or future): shards on several machines that share this
    /// instant stamp their events on one time line, so a send due on one
    /// shard and its delivery on another give a meaningful latency (up to
    /// the machines' clock skew). Before the origin, `now_us` reads 0.
    pub fn at_unix_ms(start_at_unix_ms: u64) -> RunClock {
        let now = Instant::now();
        let now_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let origin = if start_at_unix_ms >= now_unix_ms {
            now + Duration::from_millis(start_at_unix_ms - now_unix_ms)
        } else {
            now.checked_sub(Duration::from_millis(now_unix_ms - start_at_unix_ms))
                .unwrap_or(now)
        };
        RunClock { origin }
    }

    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    pub fn instant_at(&self, at_us: u64) -> Instant {
        self.origin + Duration::from_micros(at_us)
    }
}

/// One socket the run simulates.
#[derive(Debug, Clone)]
pub struct SocketSpec {
    pub index: usize,
    pub device: DeviceIx,
    pub conversation: ConversationIx,
    pub user_id: Uuid,
    pub client_id: Uuid,
    pub conversation_id: Uuid,
    pub resume_mode: ResumeMode,
    /// Sent as `Authorization: Bearer` on every connect (none: no header).
    pub bearer: Option<crate::auth::Bearer>,
}

/// Where the run is. Sockets watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Traffic and churn.
    Running,
    /// Sends stopped; every device comes back and stays until it has
    /// everything up to the heads.
    Draining,
    /// Still draining, and `drain_heads` is set: a socket that has nothing
    /// more to receive learns here that it is already caught up (rather
    /// than every socket polling the heads on a timer).
    HeadsFixed,
    /// Close everything and hand the histories back.
    Done,
}

/// One send the scheduler assigns to a socket.
#[derive(Debug, Clone)]
pub struct SendOrder {
    pub client_msg_id: Uuid,
    pub body: String,
    /// When the open-model schedule wanted it sent (run clock).
    pub due_us: u64,
}

/// Live counters for the progress bar and the summary (relaxed atomics).
#[derive(Debug, Default)]
pub struct Counters {
    pub sockets_online: AtomicU64,
    pub peak_sockets_online: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub sends: AtomicU64,
    pub acks: AtomicU64,
    pub deliveries: AtomicU64,
    /// Sends written but not acked yet (including those waiting to be
    /// retried after a reconnect).
    pub outstanding_sends: AtomicU64,
    /// Orders the scheduler could not place (no socket online, queue full).
    pub sends_skipped: AtomicU64,
    /// Of `sends_skipped`: an online socket was found but every one tried
    /// had a full order queue (the client could not keep up).
    pub sends_skipped_queue_full: AtomicU64,
    /// Sockets that reached the drain target.
    pub drained: AtomicU64,
    /// Planned drops and lost connections (each leads to a reconnect).
    pub disconnects: AtomicU64,
}

impl Counters {
    pub fn socket_up(&self) {
        let now = self.sockets_online.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_sockets_online.fetch_max(now, Ordering::Relaxed);
    }

    pub fn socket_down(&self) {
        self.sockets_online.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every socket task shares with the runner.
pub struct ClientContext {
    /// The wire protocol every socket speaks.
    pub protocol: protocol::Protocol,
    pub clock: RunClock,
    pub targets: Vec<url::Url>,
    pub churn: Churn,
    pub phase: tokio::sync::watch::Receiver<Phase>,
    pub counters: Counters,
    /// Per socket: online and caught up, so the scheduler may send on it.
    pub online: Vec<AtomicBool>,
    /// Per socket: reached its conversation's drain head.
    pub drained: Vec<AtomicBool>,
    /// Per conversation: the stream head every member must reach during
    /// the drain; set once by the runner when sends have settled.
    pub drain_heads: OnceLock<Vec<Position>>,
    /// Per conversation: the highest acked id (the head when the target's
    /// Redis cannot be read). Touched once per ack, not per delivery.
    pub max_acked: Vec<Mutex<Position>>,
    pub connect_timeout: Duration,
    /// Devices offline when the drain begins come back within this
    /// (`dist::drain_return_spread`), not all at once.
    pub drain_return_spread: Duration,
    /// TLS configuration for `wss://` targets.
    pub tls: Option<tokio_tungstenite::Connector>,
    /// Live latencies and anomalies (progress line, Prometheus endpoint).
    pub live: std::sync::Arc<live::LiveStats>,
    /// Send rate and online target over time (`[[stages]]`).
    pub shape: shape::LoadShape,
    /// Reconnect storms ordered by the fault schedule.
    pub storms: std::sync::Arc<shape::StormControl>,
    /// Where every socket streams its events (`history.bin`).
    pub history: crate::history::Recorder,
}

impl ClientContext {
    pub fn note_acked(&self, conversation: ConversationIx, id: Position) {
        if let Some(slot) = self.max_acked.get(conversation as usize) {
            // A poisoned lock still holds a valid id.
            let mut max = slot.lock().unwrap_or_else(|p| p.into_inner());
            if id > *max {
                *max = id;
            }
        }
    }

    pub fn max_acked_ids(&self) -> Vec<Position> {
        self.max_acked
            .iter()
            .map(|slot| *slot.lock().unwrap_or_else(|p| p.into_inner()))
            .collect()
    }
}
