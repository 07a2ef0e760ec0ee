//! Reference chat server: WebSocket over Redis Streams with the full
//! offline-recovery flow of `docs/protocol.md`, done right.
//!
//! Layout:
//! - [`config`]: flags and environment.
//! - [`app`]: HTTP routes (`/ws`, `/healthz`, `/metrics`) and shared state.
//! - [`auth`]: JWT authentication and membership, checked before the upgrade.
//! - [`session`]: one socket's life: the 7 recovery steps.
//! - [`fanout`]: per-process XREAD tailer feeding bounded per-socket queues.
//! - [`store`]: Redis keys, Lua scripts and typed reads/writes.
//! - [`limits`]: connection, socket, byte and rate limits; the accept loop.
//! - [`metrics`]: Prometheus metrics.
//! - [`tls`]: `wss://` with rustls, as a wrapper around the TCP listener.
//! - [`flaws`]: deliberate recovery bugs for testing the harness (off by default).
//!
//! [`start`] runs a server in-process (tests, the harness); `main.rs` is a
//! thin wrapper around it.

pub mod app;
pub mod auth;
pub mod config;
pub mod fanout;
pub mod flaws;
pub mod limits;
pub mod metrics;
pub mod session;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Auth(#[from] auth::AuthConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A server running in this process.
pub struct RunningServer {
    local_addr: SocketAddr,
    tls: bool,
    shutdown: watch::Sender<bool>,
    state: Arc<app::AppState>,
    serve: JoinHandle<Result<(), std::io::Error>>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://host:port/ws`, or `wss://` when serving TLS.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!(
            "{scheme}://{}{}",
            self.local_addr,
            recovery_protocol::WS_PATH
        )
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    pub fn metrics(&self) -> &metrics::Metrics {
        &self.state.metrics
    }

    /// The limits in force, and the queue budget's use (tests, operators).
    pub fn limits(&self) -> &limits::Limits {
        &self.state.limits
    }

    /// Graceful shutdown: stop accepting, tell every socket to close with
    /// 1001 after saving its cursor, wait up to the grace period.
    pub async fn shutdown(self) -> Result<(), std::io::Error> {
        // Receivers live as long as the state; sending cannot fail here.
        let _ = self.shutdown.send(true); // Err only if no receiver is left, then nobody needs telling.
        let grace = self.state.config.shutdown_grace;
        if !self.state.sessions.wait_idle(grace).await {
            tracing::warn!(
                active = self.state.sessions.active(),
                "sessions still open after the grace period"
            );
        }
        match tokio::time::timeout(grace, self.serve).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => Ok(()),
        }
    }

    /// Runs until the server stops by itself (it does not, unless the
    /// listener fails).
    pub async fn wait(&mut self) -> Result<(), std::io::Error> {
        match (&mut self.serve).await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}

/// Connects to Redis, binds `config.listen`, and serves in the background.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let auth = auth::Authenticator::from_config(&config.auth)?;
    let tls = config.tls.acceptor()?;
    if auth.is_insecure() {
        tracing::warn!("!!! --insecure-no-auth: NO AUTHENTICATION, anyone can read and write every conversation as any user (development only) !!!");
    }
    let settings = store::StoreSettings {
        retention: config.retention,
        state_ttl: config.state_ttl,
        dedup_ttl: config.dedup_ttl,
        page_bytes: config.limits.replay_page_bytes,
        max_messages: config.limits.max_messages_per_conversation,
    };
    let flaws = flaws::Flaws::new(&config.inject_flaws);
    if !flaws.is_empty() {
        tracing::warn!(flaws = ?flaws.names(), "!!! INJECTED FLAWS ON: this server LOSES OR DUPLICATES MESSAGES on purpose (testing aid) !!!");
    }
    let mut store = store::Store::connect(&config.redis_url, settings).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let metrics = Arc::new(metrics::Metrics::new());
    let limits = limits::Limits::new(config.limits.clone());
    let fanout = fanout::Fanout::start(
        store.clone(),
        metrics.clone(),
        fanout::QueueBounds {
            messages: config.live_queue_capacity as usize,
            bytes: config.limits.socket_queue_bytes,
            budget: limits.budget.clone(),
        },
        shutdown_rx.clone(),
    );
    // Testing aid: a no-op unless a flaw is injected (docs/flaws.md).
    flaws.inject_at_start(&mut store, &fanout);
    let state = Arc::new(app::AppState {
        config,
        auth,
        store,
        fanout,
        metrics,
        flaws,
        shutdown: shutdown_rx.clone(),
        sessions: app::SessionCounter::default(),
        limits,
    });
    // Testing aid: the router is unchanged unless a flaw is injected.
    let router = state.flaws.wrap_router(app::router(state.clone()));
    let serving_tls = tls.is_some();
    let serve = tokio::spawn(limits::listener::serve(
        listener,
        router,
        tls,
        state.config.limits.clone(),
        state.metrics.clone(),
        shutdown_rx,
    ));
    tracing::info!(%local_addr, tls = serving_tls, "listening");
    Ok(RunningServer {
        local_addr,
        tls: serving_tls,
        shutdown: shutdown_tx,
        state,
        serve,
    })
}
