//! Measures the server's resident memory per idle socket: one server
//! process, WARMUP sockets first (so allocator arenas, the tailer and the
//! pools exist), then IDLE more sockets that connect, read to `caught_up`
//! and stay open without traffic; prints
//! `(RSS after - RSS before) / IDLE` from `/proc/<pid>/status` (`VmRSS`).
//!
//!     cargo build --release -p server --bins --examples
//!     target/release/examples/idle_rss [IDLE] [WARMUP] [CONVERSATIONS] [SERVER_BINARY]
//!
//! Defaults: 2,000 idle sockets, 200 warm-up sockets, 100 conversations
//! (sockets spread over them round-robin, like churn-1k), and the `server`
//! binary next to this example's directory (`target/release/server`).
//! The server runs as its own process (the client's sockets must not count
//! against it) on a local `redis-server` from `PATH` (redis-provider),
//! with `--insecure-no-auth`. Linux only (`/proc`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use recovery_protocol::ConnectParams;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one socket may take to reach `caught_up`.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// Sockets opened at once (bounded so the accept backlog never overflows).
const CONNECT_BATCH: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let idle: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let warmup: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let conversations: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    anyhow::ensure!(
        idle > 0 && conversations > 0,
        "IDLE and CONVERSATIONS must be > 0"
    );
    let binary = match args.next() {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .context("cannot locate the target directory")?
            .join("server"),
    };
    let redis = redis_provider::start_redis(&redis_provider::ProviderOptions {
        preference: redis_provider::Preference::Local,
        ..Default::default()
    })
    .await?;
    let mut child = tokio::process::Command::new(&binary)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--redis-url",
        ])
        .arg(redis.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id().context("server exited at once")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ws_url = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("LISTENING ") {
                return Ok(url.to_string());
            }
        }
        anyhow::bail!("server exited before listening")
    })
    .await
    .context("server did not print LISTENING within 10 s")??;
    println!(
        "server pid {pid} at {ws_url}, redis {}",
        redis.description()
    );

    let conversation_ids: Vec<Uuid> = (0..conversations).map(|_| Uuid::new_v4()).collect();
    let mut sockets = Vec::with_capacity(warmup + idle);
    open(&ws_url, &conversation_ids, warmup, &mut sockets).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(pid)?;
    open(&ws_url, &conversation_ids, idle, &mut sockets).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(pid)?;
    println!(
        "RSS before {before} B ({warmup} sockets), after {after} B ({} sockets)",
        sockets.len()
    );
    println!(
        "RSS per idle socket: {:.0} B",
        (after as f64 - before as f64) / idle as f64
    );
    drop(sockets);
    // The child is killed on drop; the measurement is taken.
    let _ = child.kill().await; // error: already exited
    Ok(())
}

/// Opens `count` sockets, each read up to its `caught_up`.
async fn open(
    ws_url: &str,
    conversation_ids: &[Uuid],
    count: usize,
    sockets: &mut Vec<Socket>,
) -> anyhow::Result<()> {
    let mut left = count;
    while left > 0 {
        let batch = left.min(CONNECT_BATCH);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let index = sockets.len() + tasks.len();
            let params = ConnectParams {
                user_id: Uuid::new_v4(),
                conversation_id: conversation_ids[index % conversation_ids.len()],
                client_id: Some(Uuid::new_v4()),
                last_id: None,
                epoch: None,
            };
            let url = format!("{ws_url}?{}", params.to_query());
            tasks.spawn(async move { tokio::time::timeout(CATCH_UP_TIMEOUT, connect(url)).await });
        }
        while let Some(done) = tasks.join_next().await {
            sockets.push(done?.context("no caught_up within 10 s")??);
        }
        left -= batch;
    }
    Ok(())
}

async fn connect(url: String) -> anyhow::Result<Socket> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    while let Some(frame) = ws.next().await {
        if let Message::Text(text) = frame? {
            if text.as_str().contains("\"caught_up\"") {
                return Ok(ws);
            }
        }
    }
    anyhow::bail!("socket closed before caught_up")
}

/// Resident set size of `pid`: `VmRSS` of `/proc/<pid>/status` (the
/// same figure as `statm`'s second field, already in bytes' units of KiB,
/// so no page size is assumed).
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS in /proc/<pid>/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}
