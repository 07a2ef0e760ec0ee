//! Fuzz driver (not part of `cargo test`): sends mutated client frames to a
//! live server on loopback and checks that
//! - every frame gets exactly one answer (`ack` or `error`), none twice,
//!   and the sockets stay open;
//! - the server's RSS stays flat (sampled from /proc every 500 ms);
//! - other sockets keep their guarantees meanwhile: a guard conversation's
//!   receiver gets every acked message once, in order.
//!
//! The server runs as its own process (the `server` binary next to this
//! example), so its RSS is its own:
//!
//! ```sh
//! cargo build --release -p server --bins --examples
//! target/release/examples/fuzz_frames --frames 1000000 --sockets 4
//! ```
//!
//! Frames that parse locally as a valid `ack` are not sent: the server
//! answers a valid ack with nothing (or `bad_frame`, depending on what the
//! socket was sent), so "one answer per frame" could not be checked.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recovery_protocol::{ClientFrame, ConnectParams, ServerFrame, StreamId};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// Mutated frames to send in total.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// Fuzzing sockets (each in its own conversation).
    #[arg(long, default_value_t = 4)]
    sockets: u64,
    /// Frames in flight per socket.
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// Seed (random when absent; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Server binary (default: `server` next to this example's directory).
    #[arg(long)]
    server_bin: Option<std::path::PathBuf>,
}

/// The longest a frame may wait for its answer before the run fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

struct ServerProcess {
    child: Child,
    ws_url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // The child is ours; if it already exited, kill fails harmlessly.
        if let Err(err) = self.child.kill() {
            eprintln!("server process: {err}");
        }
        let _ = self.child.wait(); // reaps it; an error means it is gone already
    }
}

fn spawn_server(bin: &std::path::Path, redis_url: &str) -> anyhow::Result<ServerProcess> {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--redis-url", redis_url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let ws_url = loop {
        match lines.next() {
            Some(line) => {
                let line = line?;
                if let Some(url) = line.strip_prefix("LISTENING ") {
                    break url.to_string();
                }
            }
            None => bail!("the server exited before printing LISTENING"),
        }
    };
    Ok(ServerProcess { child, ws_url })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A base frame: valid send, valid ack, or something frame-like.
fn base_frame(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=5 => {
            let body_len = rng.random_range(0..64);
            let body: String = (0..body_len)
                .map(|_| rng.random_range(b' '..=b'~') as char)
                .collect();
            ClientFrame::Send {
                client_msg_id: Uuid::from_u128(rng.random()),
                body,
            }
            .to_json()
        }
        6..=7 => ClientFrame::Ack {
            id: StreamId::new(rng.random_range(0..u64::MAX / 2), rng.random_range(0..8)),
        }
        .to_json(),
        8 => r#"{"type":"send","client_msg_id":"6F1C2D3E-4A5B-4C6D-8E7F-0A1B2C3D4E5F","body":1}"#
            .into(),
        _ => r#"{"type":"hello","x":[1,2,{"y":null}],"body":"\u00e9\\\""}"#.into(),
    }
}

const INTERESTING: &[char] = &[
    '"', '{', '}', '[', ']', ':', ',', '\\', '-', '0', '9', 'e', 'é', '\u{0}', '\u{7f}', '€', '😀',
];

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..=4) {
        let len = chars.len();
        let pick = |rng: &mut StdRng| -> char {
            if rng.random_bool(0.7) {
                INTERESTING[rng.random_range(0..INTERESTING.len())]
            } else {
                rng.random::<char>()
            }
        };
        match rng.random_range(0..5) {
            0 if len > 0 => {
                chars.remove(rng.random_range(0..len));
            }
            1 => {
                let c = pick(rng);
                chars.insert(rng.random_range(0..=len), c);
            }
            2 if len > 0 => {
                let c = pick(rng);
                chars[rng.random_range(0..len)] = c;
            }
            3 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = (start + rng.random_range(1..16)).min(len);
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
            _ if len > 0 => chars.truncate(rng.random_range(0..len)),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    skipped_valid_acks: AtomicU64,
    binary: AtomicU64,
    acks: AtomicU64,
    errors: AtomicU64,
}

async fn fuzz_socket(
    url: String,
    frames: u64,
    window: usize,
    seed: u64,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let params = ConnectParams {
        user_id: Uuid::new_v4(),
        conversation_id: Uuid::new_v4(),
        client_id: Some(Uuid::new_v4()),
        last_id: None,
        epoch: None,
    };
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}?{}", params.to_query())).await?;
    let (mut sink, mut stream) = ws.split();
    // Wait for caught_up before fuzzing.
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                if matches!(
                    ServerFrame::parse(text.as_str()),
                    Ok(ServerFrame::CaughtUp { .. })
                ) {
                    break;
                }
            }
            other => bail!("socket ended before caught_up: {other:?}"),
        }
    }
    let window_permits = Arc::new(Semaphore::new(window));
    let answered = Arc::new(AtomicU64::new(0));
    let reader = {
        let window_permits = window_permits.clone();
        let answered = answered.clone();
        let tally = tally.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::time::timeout(ANSWER_TIMEOUT, stream.next()).await;
                let message = match next {
                    Err(_) => return Err(anyhow::anyhow!("no answer for {ANSWER_TIMEOUT:?}")),
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(err))) => return Err(anyhow::anyhow!("socket failed: {err}")),
                    Ok(Some(Ok(message))) => message,
                };
                match message {
                    Message::Text(text) => match ServerFrame::parse(text.as_str()) {
                        Ok(ServerFrame::Ack { .. }) => {
                            tally.acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(ServerFrame::Error { .. }) => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => continue, // live copies of our own sends
                        Err(err) => return Err(anyhow::anyhow!("unparseable answer: {err}")),
                    },
                    Message::Close(frame) => {
                        return Err(anyhow::anyhow!("server closed the socket: {frame:?}"))
                    }
                    _ => continue,
                }
                answered.fetch_add(1, Ordering::AcqRel);
                window_permits.add_permits(1);
            }
        })
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sent = 0u64;
    while sent < frames {
        let permit = window_permits.acquire().await?;
        permit.forget();
        let message = if rng.random_bool(0.01) {
            tally.binary.fetch_add(1, Ordering::Relaxed);
            let bytes: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            Message::Binary(bytes.into())
        } else {
            let base = base_frame(&mut rng);
            let text = mutate(&mut rng, &base);
            if matches!(ClientFrame::parse(&text), Ok(ClientFrame::Ack { .. })) {
                tally.skipped_valid_acks.fetch_add(1, Ordering::Relaxed);
                window_permits.add_permits(1);
                continue;
            }
            Message::Text(text.into())
        };
        // Flush when the window is used up (or at the end): one write per
        // batch instead of one per frame.
        sink.feed(message).await?;
        sent += 1;
        tally.sent.fetch_add(1, Ordering::Relaxed);
        if window_permits.available_permits() == 0 || sent == frames {
            sink.flush().await?;
        }
    }
    sink.flush().await?;
    // Every frame answered, then nothing more.
    let started = Instant::now();
    while answered.load(Ordering::Acquire) < sent {
        if started.elapsed() > ANSWER_TIMEOUT || reader.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = answered.load(Ordering::Acquire);
    if reader.is_finished() {
        reader.await??;
        bail!("the reader stopped early");
    }
    reader.abort();
    if got != sent {
        bail!("{sent} frames sent, {got} answers");
    }
    sink.send(Message::Close(None)).await?;
    Ok(())
}

/// A sender and a receiver in their own conversation: the receiver must
/// get every acked message once, in order, while the fuzzers run.
async fn guard(url: String, stop: Arc<AtomicU64>) -> anyhow::Result<(u64, u64)> {
    let conversation_id = Uuid::new_v4();
    let params = |user: Uuid| ConnectParams {
        user_id: user,
        conversation_id,
        client_id: Some(Uuid::new_v4()),
        last_id: None,
        epoch: None,
    };
    let connect = |params: ConnectParams| {
        let url = url.clone();
        async move {
            let (mut ws, _) =
                tokio_tungstenite::connect_async(format!("{url}?{}", params.to_query())).await?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        if matches!(
                            ServerFrame::parse(text.as_str()),
                            Ok(ServerFrame::CaughtUp { .. })
                        ) {
                            return Ok::<_, anyhow::Error>(ws);
                        }
                    }
                    other => bail!("guard socket ended before caught_up: {other:?}"),
                }
            }
        }
    };
    let mut receiver = connect(params(Uuid::new_v4())).await?;
    // The receiver reads all along (a reader that stopped would be closed
    // by the heartbeat and the write deadline); `target` is set once the
    // sender is done.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let receiving = {
        let target = target.clone();
        tokio::spawn(async move {
            let mut received = Vec::new();
            let mut idle_since = Instant::now();
            while (received.len() as u64) < target.load(Ordering::Acquire) {
                if target.load(Ordering::Acquire) != u64::MAX
                    && idle_since.elapsed() > ANSWER_TIMEOUT
                {
                    bail!(
                        "guard receiver got {} of {} messages",
                        received.len(),
                        target.load(Ordering::Acquire)
                    );
                }
                let next =
                    match tokio::time::timeout(Duration::from_millis(200), receiver.next()).await {
                        Err(_) => continue,
                        Ok(next) => next,
                    };
                match next {
                    Some(Ok(Message::Text(text))) => {
                        if let ServerFrame::Message(message) = ServerFrame::parse(text.as_str())? {
                            received.push(message.id);
                            idle_since = Instant::now();
                        }
                    }
                    Some(Ok(_)) => {}
                    other => bail!("guard receiver lost: {other:?}"),
                }
            }
            Ok::<_, anyhow::Error>(received)
        })
    };
    let mut sender = connect(params(Uuid::new_v4())).await?;
    let mut acked = Vec::new();
    while stop.load(Ordering::Acquire) == 0 && acked.len() < 100_000 {
        let client_msg_id = Uuid::new_v4();
        let frame = ClientFrame::Send {
            client_msg_id,
            body: format!("guard-{}", acked.len()),
        };
        sender.send(Message::Text(frame.to_json().into())).await?;
        loop {
            let next = tokio::time::timeout(ANSWER_TIMEOUT, sender.next()).await?;
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => bail!("guard sender lost: {other:?}"),
            };
            match ServerFrame::parse(text.as_str())? {
                ServerFrame::Ack { id, .. } => {
                    acked.push(id);
                    break;
                }
                ServerFrame::Error { code, message, .. } => {
                    bail!("guard send refused: {code:?} {message}")
                }
                _ => continue,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    target.store(acked.len() as u64, Ordering::Release);
    let received = receiving.await??;
    if received != acked {
        bail!(
            "guard receiver got {} messages, not the {} acked in order",
            received.len(),
            acked.len()
        );
    }
    Ok((acked.len() as u64, received.len() as u64))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    println!("fuzz_frames: seed {seed} (replay with --seed {seed})");
    let bin = match args.server_bin {
        Some(bin) => bin,
        None => {
            let exe = std::env::current_exe()?;
            let profile_dir = exe
                .parent()
                .and_then(|examples| examples.parent())
                .context("cannot locate the target directory")?;
            profile_dir.join("server")
        }
    };
    if !bin.exists() {
        bail!(
            "no server binary at {} (cargo build -p server --bins, or --server-bin)",
            bin.display()
        );
    }
    let redis = redis_provider::start_redis(&redis_provider::ProviderOptions::default()).await?;
    println!("redis: {}", redis.description());
    let server = spawn_server(&bin, redis.url())?;
    let pid = server.child.id();
    let rss_start = rss_kib(pid).unwrap_or(0);
    let rss_max = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let rss_max = rss_max.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Some(rss) = rss_kib(pid) {
                    rss_max.fetch_max(rss, Ordering::Relaxed);
                }
            }
        })
    };
    let stop_guard = Arc::new(AtomicU64::new(0));
    let guard = tokio::spawn(guard(server.ws_url.clone(), stop_guard.clone()));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let per_socket = args.frames.div_ceil(args.sockets.max(1));
    let mut fuzzers = Vec::new();
    for i in 0..args.sockets.max(1) {
        fuzzers.push(tokio::spawn(fuzz_socket(
            server.ws_url.clone(),
            per_socket,
            args.window,
            seed.wrapping_add(i),
            tally.clone(),
        )));
    }
    let mut failures = Vec::new();
    for fuzzer in fuzzers {
        if let Err(err) = fuzzer.await? {
            failures.push(err.to_string());
        }
    }
    let elapsed = started.elapsed();
    stop_guard.store(1, Ordering::Release);
    let guard_result = guard.await?;
    sampler.abort();
    let rss_end = rss_kib(pid).unwrap_or(0);
    let sent = tally.sent.load(Ordering::Relaxed);
    println!(
        "frames sent {sent} ({} binary), skipped (valid acks) {}, answers: {} ack + {} error, in {:.1} s ({:.0} frames/s)",
        tally.binary.load(Ordering::Relaxed),
        tally.skipped_valid_acks.load(Ordering::Relaxed),
        tally.acks.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    println!(
        "server RSS: start {} MiB, max {} MiB, end {} MiB",
        rss_start / 1024,
        rss_max.load(Ordering::Relaxed) / 1024,
        rss_end / 1024
    );
    match &guard_result {
        Ok((acked, received)) => {
            println!("guard conversation: {acked} acked, {received} received once in order")
        }
        Err(err) => failures.push(format!("guard: {err}")),
    }
    drop(server);
    if failures.is_empty() {
        println!("OK: one answer per frame, server alive, guard intact");
        Ok(())
    } else {
        bail!("FAILED: {}", failures.join("; "))
    }
}
