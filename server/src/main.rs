//! `server`: the reference chat server. All logic lives in the library.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = server::Config::parse();
    let mut running = server::start(config).await.context("starting the server")?;
    // Printed on stdout so a parent process (the harness) can find the port.
    println!("LISTENING {}", running.ws_url());
    tokio::select! {
        result = running.wait() => return result.context("server stopped"),
        _ = shutdown_signal() => {}
    }
    tracing::info!("shutting down: saving cursors, closing sockets with 1001");
    running.shutdown().await.context("graceful shutdown")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops gracefully");
                    // Ctrl-C failing to install leaves nothing to wait for but it.
                    let _ = ctrl_c.await; // its error means no signal handling at all
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await; // its error means no signal handling at all
    }
}
