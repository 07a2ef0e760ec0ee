//! A loopback TCP proxy the harness puts between clients and servers, and
//! between servers and Redis, to inject network faults at run time:
//! latency with jitter (never reordering bytes), a per-connection
//! bandwidth limit, a partition (blackhole) and connection resets.
//!
//! Written here rather than taken from crates.io: the crates that exist
//! are either clients for an external Toxiproxy server (a Go binary this
//! project cannot install) or stream adapters (`tokio-netem`) that still
//! need a proxy, a partition model and resets built around them.
//!
//! Faults model a network, not a broken peer:
//! - latency/jitter delay each chunk in each direction; a per-direction
//!   FIFO keeps byte order, and queued chunks follow setting changes;
//! - the bandwidth limit is a token bucket per connection per direction;
//! - a blackhole stops reading from both sides, so the bytes wait in TCP
//!   buffers (nothing is dropped) and connections stay open; clients that
//!   connect meanwhile are accepted but reach the upstream only once the
//!   partition is lifted;
//! - `reset_all` sends RST on both sockets of every open connection.
//!
//! Settings travel through `watch` channels: the data path reads them per
//! chunk and blocked pumps wake on a change, so changes reach existing
//! connections within a scheduler tick.

mod bucket;
mod connection;
mod settings;
#[cfg(test)]
mod tests;

pub use settings::FaultSettings;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use connection::{OpenGuard, Wiring};
use settings::Lifecycle;

/// How long `shutdown` lets connections close before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed accept (e.g. out of file descriptors) so the
/// accept loop does not spin while the condition lasts.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("fault proxy cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("fault proxy bound but cannot read its listen address: {source}")]
    LocalAddr { source: std::io::Error },
    #[error("fault proxy {role} address {addr} is not loopback; the proxy only works on loopback")]
    NotLoopback {
        role: &'static str,
        addr: SocketAddr,
    },
}

/// Counters shared by the accept loop and connection tasks.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    open: AtomicUsize,
    accepted: AtomicU64,
    connect_failures: AtomicU64,
}

/// Handle to a running proxy; clones control the same proxy. The proxy
/// stops on `shutdown` or when the last handle is dropped.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    listen_addr: SocketAddr,
    upstream: SocketAddr,
    settings: watch::Sender<FaultSettings>,
    lifecycle: watch::Sender<Lifecycle>,
    stats: Arc<Stats>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen_addr", &self.inner.listen_addr)
            .field("upstream", &self.inner.upstream)
            .field("settings", &self.settings())
            .field("connections", &self.connections())
            .finish()
    }
}

impl Proxy {
    /// Listens on an ephemeral loopback port.
    pub async fn start(upstream: SocketAddr) -> Result<Proxy, ProxyError> {
        Proxy::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), upstream).await
    }

    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> Result<Proxy, ProxyError> {
        for (role, addr) in [("listen", listen), ("upstream", upstream)] {
            if !addr.ip().is_loopback() {
                return Err(ProxyError::NotLoopback { role, addr });
            }
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: listen,
                source,
            })?;
        let listen_addr = listener
            .local_addr()
            .map_err(|source| ProxyError::LocalAddr { source })?;
        let (settings, settings_rx) = watch::channel(FaultSettings::default());
        let (lifecycle, lifecycle_rx) = watch::channel(Lifecycle::default());
        let stats = Arc::new(Stats::default());
        let accept_task = tokio::spawn(accept_loop(
            listener,
            upstream,
            settings_rx,
            lifecycle_rx,
            stats.clone(),
        ));
        Ok(Proxy {
            inner: Arc::new(Inner {
                listen_addr,
                upstream,
                settings,
                lifecycle,
                stats,
                accept_task: Mutex::new(Some(accept_task)),
            }),
        })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen_addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.inner.upstream
    }

    /// The faults in force now.
    pub fn settings(&self) -> FaultSettings {
        *self.inner.settings.borrow()
    }

    /// Every chunk, in each direction, is delivered `latency` plus a
    /// uniform share of `jitter` after it was read.
    pub fn set_latency(&self, latency: Duration, jitter: Duration) {
        self.update(|settings| {
            settings.latency = latency;
            settings.jitter = jitter;
        });
    }

    /// Per connection, per direction; `None` is unlimited, `Some(0)`
    /// stalls every direction until changed.
    pub fn set_bandwidth(&self, bytes_per_s: Option<u64>) {
        self.update(|settings| settings.bandwidth_bytes_per_s = bytes_per_s);
    }

    /// Partition on/off; see the module docs for what a partition holds.
    pub fn set_blackhole(&self, on: bool) {
        self.update(|settings| settings.blackhole = on);
    }

    /// Sends RST on both sockets of every connection open now; later
    /// connections are not affected.
    pub fn reset_all(&self) {
        self.inner
            .lifecycle
            .send_modify(|now| now.reset_round = now.reset_round.wrapping_add(1));
    }

    /// No latency, no bandwidth limit, no blackhole.
    pub fn clear(&self) {
        self.update(|settings| *settings = FaultSettings::default());
    }

    /// Connections accepted and not yet closed (including those waiting
    /// for a partition to lift).
    pub fn connections(&self) -> usize {
        self.inner.stats.open.load(Ordering::Relaxed)
    }

    /// Client connections accepted since start.
    pub fn accepted_total(&self) -> u64 {
        self.inner.stats.accepted.load(Ordering::Relaxed)
    }

    /// Client connections closed because the upstream could not be reached.
    pub fn connect_failures(&self) -> u64 {
        self.inner.stats.connect_failures.load(Ordering::Relaxed)
    }

    /// Stops listening and closes every connection (FIN), waiting up to a
    /// short grace period for them to go.
    pub async fn shutdown(self) {
        self.inner.lifecycle.send_modify(|now| now.shutdown = true);
        let accept_task = self
            .inner
            .accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(accept_task) = accept_task {
            if let Err(error) = accept_task.await {
                tracing::warn!(%error, "fault proxy accept loop ended abnormally");
            }
        }
    }

    /// Publishes only real changes, so idle pumps are not woken for nothing.
    fn update(&self, change: impl FnOnce(&mut FaultSettings)) {
        self.inner.settings.send_if_modified(|settings| {
            let before = *settings;
            change(settings);
            *settings != before
        });
    }
}

/// Also resolves once every handle is dropped (the sender is gone).
async fn shutdown_requested(lifecycle: &mut watch::Receiver<Lifecycle>) {
    // Either outcome means stop; the value itself is not needed.
    let _ = lifecycle.wait_for(|now| now.shutdown).await;
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    settings: watch::Receiver<FaultSettings>,
    mut lifecycle: watch::Receiver<Lifecycle>,
    stats: Arc<Stats>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown_requested(&mut lifecycle) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, _peer)) => {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    // Read now, not in the task: a reset_all right after this
                    // accept must still reset this connection.
                    let accepted_round = lifecycle.borrow().reset_round;
                    let open = OpenGuard::new(stats.clone());
                    if let Err(error) = client.set_nodelay(true) {
                        tracing::debug!(%error, "fault proxy: cannot set TCP_NODELAY");
                    }
                    let wiring = Wiring {
                        upstream,
                        settings: settings.clone(),
                        lifecycle: lifecycle.clone(),
                        accepted_round,
                        stats: stats.clone(),
                    };
                    connections.spawn(connection::serve(client, wiring, open));
                }
                Err(error) => {
                    tracing::warn!(%error, "fault proxy accept failed; retrying");
                    tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    // Connections saw the same shutdown and are closing; stragglers are
    // aborted when the set drops.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "fault proxy: connections still open after the shutdown grace; aborting them"
        );
    }
}
