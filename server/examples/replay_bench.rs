//! Measures how long a reconnecting device takes to receive N missed
//! messages: from the connect attempt to `caught_up`, release build.
//!
//!     cargo run --release -p server --example replay_bench -- [MESSAGES] [ROUNDS] [REDIS] [CLIENT]
//!
//! Starts its own Redis (redis-provider; REDIS = `auto` (default),
//! `local` or `testcontainers`) and an in-process server. A container's
//! port goes through Docker's userland proxy on loopback, which adds a hop
//! to every Redis round trip: `local` measures the server without it.
//!
//! The client runs in the same process, on its own thread with its own
//! current-thread runtime (as another process would be), and on the same
//! cores as the server, so its own cost is inside the measured time. CLIENT = `typed`
//! (default) reads each frame's `type` and `id` with a borrowed serde
//! struct; `value` parses every frame into `ServerFrame` through
//! `serde_json::Value`, as the harness's `ServerFrame::parse` does, which
//! measured about a quarter of the replay time (docs/performance.md).
//! Both parse every frame as JSON and check every message's id order and
//! the count.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use recovery_protocol::{ConnectParams, ServerFrame, StreamId};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// What the `typed` client reads of a frame (the rest is parsed as JSON
/// and skipped).
#[derive(serde::Deserialize)]
struct TypeAndId<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    id: Option<&'a str>,
}

enum FrameKind {
    Message,
    CaughtUp,
    Other,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let preference = match args.next().as_deref() {
        None | Some("auto") => redis_provider::Preference::Auto,
        Some("local") => redis_provider::Preference::Local,
        Some("testcontainers") => redis_provider::Preference::Testcontainers,
        Some(other) => {
            anyhow::bail!("REDIS must be auto, local or testcontainers, not {other:?}")
        }
    };
    let full_parse = match args.next().as_deref() {
        None | Some("typed") => false,
        Some("value") => true,
        Some(other) => anyhow::bail!("CLIENT must be typed or value, not {other:?}"),
    };
    let redis = redis_provider::start_redis(&redis_provider::ProviderOptions {
        preference,
        ..Default::default()
    })
    .await?;
    println!(
        "redis: {}; client parse: {}",
        redis.description(),
        if full_parse { "value" } else { "typed" }
    );
    let mut config = server::Config::for_tests(redis.url());
    // A benchmark of replay, not of authentication.
    config.auth.insecure_no_auth = true;
    let server = server::start(config).await?;
    let store = server::store::Store::connect(
        redis.url(),
        server::store::StoreSettings {
            retention: Duration::from_secs(86400),
            state_ttl: Duration::from_secs(86400),
            dedup_ttl: Duration::from_secs(86400),
            page_bytes: 1 << 20,
            max_messages: 0,
        },
    )
    .await?;
    let conversation = Uuid::new_v4();
    let sender = Uuid::new_v4();
    let body = "x".repeat(64);
    let first = store
        .append(conversation, sender, Uuid::new_v4(), &body)
        .await?
        .id;
    for _ in 0..messages {
        store
            .append(conversation, sender, Uuid::new_v4(), &body)
            .await?;
    }
    println!("appended {messages} messages after the device's cursor {first}");
    let mut timings = Vec::new();
    for round in 0..rounds {
        let params = ConnectParams {
            user_id: Uuid::new_v4(),
            conversation_id: conversation,
            client_id: Some(Uuid::new_v4()),
            last_id: Some(first),
            epoch: None,
        };
        let url = format!("{}?{}", server.ws_url(), params.to_query());
        // The client gets its own thread and current-thread runtime, as a
        // real client is another process. On the server's runtime its
        // socket was driven by the server's I/O driver: each of its
        // wake-ups went through a server worker first.
        let (received, elapsed) = tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(replay_once(&url, full_parse))
        })
        .await??;
        anyhow::ensure!(received == messages, "got {received} of {messages}");
        println!(
            "round {round}: {received} messages replayed in {:.1} ms",
            elapsed.as_secs_f64() * 1000.0
        );
        timings.push(elapsed);
    }
    timings.sort();
    let median = timings[timings.len() / 2];
    println!(
        "median {:.1} ms over {rounds} rounds ({:.0} messages/s)",
        median.as_secs_f64() * 1000.0,
        messages as f64 / median.as_secs_f64()
    );
    server.shutdown().await?;
    Ok(())
}

/// One reconnect: connect, read every frame up to `caught_up`, checking
/// ids in order. Returns the messages received and the time from the
/// connect attempt to `caught_up`.
async fn replay_once(url: &str, full_parse: bool) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let mut received = 0usize;
    let mut last = StreamId::ZERO;
    loop {
        let Some(frame) = ws.next().await else {
            anyhow::bail!("socket closed early")
        };
        let Message::Text(text) = frame? else {
            continue;
        };
        let (kind, id) = if full_parse {
            match ServerFrame::parse(text.as_str())? {
                ServerFrame::Message(m) => (FrameKind::Message, Some(m.id)),
                ServerFrame::CaughtUp { .. } => (FrameKind::CaughtUp, None),
                _ => (FrameKind::Other, None),
            }
        } else {
            let frame: TypeAndId = serde_json::from_str(text.as_str())?;
            let id = frame.id.map(str::parse::<StreamId>).transpose()?;
            match frame.kind {
                "message" => (FrameKind::Message, id),
                "caught_up" => (FrameKind::CaughtUp, None),
                _ => (FrameKind::Other, None),
            }
        };
        match kind {
            FrameKind::Message => {
                let id = id.ok_or_else(|| anyhow::anyhow!("message without an id"))?;
                anyhow::ensure!(id > last, "out of order: {id} after {last}");
                last = id;
                received += 1;
            }
            FrameKind::CaughtUp => break,
            FrameKind::Other => {}
        }
    }
    let elapsed = started.elapsed();
    // Closing is best effort; the measurement is done.
    let _ = ws.close(None).await; // error: already closed
    Ok((received, elapsed))
}
