//! By-hand probe of the Socket.IO peer's connection state recovery: starts
//! two `peers/socketio` instances on one Redis, then
//!
//! 1. drops a device abruptly for each of several durations, reconnects it
//!    to the other instance with pid + offset, and prints whether the
//!    server claimed `recovered` and how many of the missed messages came;
//! 2. sends concurrently from both instances into one conversation and
//!    counts, per receiver, events that arrive with an offset lower than
//!    one it already got (live order differing from the stream order that
//!    recovery resumes from);
//! 3. does the same while a receiver keeps dropping abruptly and resuming
//!    (alternating instances), then compares what it got with every acked
//!    send: missing and repeated messages under `recovered: true`.
//!
//! cargo run -p harness --example socketio_probe -- --redis redis://127.0.0.1:6379
//! (needs `npm ci` in peers/socketio and a Redis it may write to).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use harness::client::protocol::socketio::client::{auth, engine_url};
use harness::client::protocol::socketio::{Session, SocketIoClient};
use serde_json::json;

const STEP: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(500);

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    #[arg(long, default_value = "peers/socketio")]
    peer_dir: String,
    /// The peers' maxDisconnectionDuration.
    #[arg(long, default_value_t = 2000)]
    max_disconnection_ms: u64,
    /// Disconnect durations to try, in milliseconds.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,300,1000,1900,2500,5000"
    )]
    offline_ms: Vec<u64>,
    /// Messages missed during each disconnect.
    #[arg(long, default_value_t = 5)]
    missed: usize,
    /// Messages each of the two senders sends in the ordering experiment.
    #[arg(long, default_value_t = 300)]
    concurrent_sends: usize,
}

struct Peer {
    child: Child,
    base: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Best effort on the way out.
        let _ = self.child.kill(); // already exited is fine
        let _ = self.child.wait(); // reap
    }
}

fn start_peer(args: &Args) -> anyhow::Result<Peer> {
    let mut child = Command::new("node")
        .args(["server.js", "--port", "0", "--redis", &args.redis])
        .env(
            "SIO_MAX_DISCONNECTION_MS",
            args.max_disconnection_ms.to_string(),
        )
        .current_dir(&args.peer_dir)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting node (is Node.js 20 installed?)")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines.next().context("the peer exited")??;
    std::thread::spawn(move || for _ in lines {});
    let Some(addr) = line.strip_prefix("socketio peer listening on ") else {
        bail!("unexpected peer output {line:?}");
    };
    println!("started: {line}");
    Ok(Peer {
        child,
        base: format!("ws://{addr}"),
    })
}

async fn device(peer: &Peer, name: &str, conv: &str) -> anyhow::Result<SocketIoClient> {
    let session = Session::new("/", auth(&[("device", name)]), None);
    let (mut client, _) = SocketIoClient::connect(&engine_url(&peer.base), session, STEP).await?;
    client
        .call("join", vec![json!({ "conv": conv })], STEP)
        .await?;
    Ok(client)
}

async fn send(client: &mut SocketIoClient, conv: &str, id: &str) -> anyhow::Result<String> {
    let request = json!({ "conv": conv, "client_msg_id": id, "body": id });
    let reply = client.call("send", vec![request], STEP).await?;
    reply[0]["offset"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("send {id} not accepted: {reply:?}"))
}

/// Client message ids of the events that arrive until `QUIET`.
async fn drain(client: &mut SocketIoClient) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut seen = Vec::new();
    while let Some(event) = client.next_event(QUIET).await? {
        let id = event.args[0]["client_msg_id"].as_str().unwrap_or_default();
        seen.push((id.to_string(), event.offset));
    }
    Ok(seen)
}

/// Stream ids compare as (milliseconds, sequence).
fn stream_id(offset: &str) -> (u64, u64) {
    let (ms, seq) = offset.split_once('-').unwrap_or((offset, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

async fn disconnect_durations(args: &Args, a: &Peer, b: &Peer) -> anyhow::Result<()> {
    println!(
        "\n1. abrupt drop on instance A, reconnect to instance B (maxDisconnectionDuration {} ms)",
        args.max_disconnection_ms
    );
    println!("   offline_ms  recovered  missed_sent  missed_received  extra");
    for (round, offline_ms) in args.offline_ms.iter().enumerate() {
        let conv = format!("probe-{}-{round}", std::process::id());
        let mut alice = device(a, "alice", &conv).await?;
        let mut bob = device(a, "bob", &conv).await?;
        send(&mut alice, &conv, "warmup").await?;
        drain(&mut bob).await?;
        let bob_session = bob.drop_abruptly();
        let dropped = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut missed = Vec::new();
        for i in 0..args.missed {
            missed.push(format!("r{round}-m{i}"));
            send(&mut alice, &conv, &missed[i]).await?;
        }
        let offline = Duration::from_millis(*offline_ms);
        tokio::time::sleep(offline.saturating_sub(dropped.elapsed())).await;
        let offline_actual = dropped.elapsed();
        let (mut bob, connected) =
            SocketIoClient::connect(&engine_url(&b.base), bob_session, STEP).await?;
        let got = drain(&mut bob).await?;
        let received = got.iter().filter(|(id, _)| missed.contains(id)).count();
        let extra = got.len() - received;
        println!(
            "   {:>10}  {:>9}  {:>11}  {:>15}  {:>5}",
            offline_actual.as_millis(),
            connected.recovered,
            missed.len(),
            received,
            extra
        );
    }
    Ok(())
}

async fn concurrent_order(args: &Args, a: &Peer, b: &Peer) -> anyhow::Result<()> {
    println!(
        "\n2. {} sends from each instance at once into one conversation: live order vs stream order",
        args.concurrent_sends
    );
    let conv = format!("probe-order-{}", std::process::id());
    let mut receivers = Vec::new();
    for (name, peer) in [("bob@A", a), ("dave@B", b)] {
        let mut client = device(peer, name, &conv).await?;
        receivers.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            while let Some(event) = client.next_event(Duration::from_secs(2)).await? {
                offsets.push(event.offset.unwrap_or_default());
            }
            anyhow::Ok(offsets)
        }));
    }
    let mut senders = Vec::new();
    for (name, peer) in [("alice@A", a), ("carol@B", b)] {
        let mut client = device(peer, name, &conv).await?;
        let (conv, count) = (conv.clone(), args.concurrent_sends);
        senders.push(tokio::spawn(async move {
            for i in 0..count {
                send(&mut client, &conv, &format!("{}-{i}", &name[..1])).await?;
            }
            anyhow::Ok(())
        }));
    }
    for sender in senders {
        sender.await??;
    }
    for (name, receiver) in ["bob@A", "dave@B"].iter().zip(receivers) {
        let offsets = receiver.await??;
        let mut highest = (0, 0);
        let mut behind = 0;
        for offset in &offsets {
            let id = stream_id(offset);
            if id < highest {
                behind += 1;
            }
            highest = highest.max(id);
        }
        println!(
            "   {name}: {} events, {behind} arrived after a higher offset \
             (lost for good if the device drops in between and resumes from the higher one)",
            offsets.len()
        );
    }
    Ok(())
}

/// What a churning receiver saw.
#[derive(Default)]
struct ChurnTally {
    received: Vec<String>,
    recovered: usize,
    not_recovered: usize,
}

async fn churning_receiver(args: &Args, a: &Peer, b: &Peer) -> anyhow::Result<()> {
    println!(
        "\n3. {} sends from each instance while a receiver drops abruptly every ~200 ms \
         and resumes on the other instance",
        args.concurrent_sends
    );
    let conv = format!("probe-churn-{}", std::process::id());
    let urls = [engine_url(&a.base), engine_url(&b.base)];
    let mut receiver = device(a, "bob", &conv).await?;
    let mut senders = Vec::new();
    for (name, peer) in [("alice", a), ("carol", b)] {
        let mut client = device(peer, name, &conv).await?;
        let (conv, count) = (conv.clone(), args.concurrent_sends);
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..count {
                let id = format!("{}-{i}", &name[..1]);
                send(&mut client, &conv, &id).await?;
                acked.push(id);
            }
            anyhow::Ok(acked)
        }));
    }
    let mut tally = ChurnTally::default();
    let mut round = 0usize;
    while senders.iter().any(|sender| !sender.is_finished()) && round < 10_000 {
        // Receive for a while, then drop without a goodbye.
        let until = Instant::now() + Duration::from_millis(100 + (round as u64 * 37) % 200);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match receiver.next_event(left).await? {
                Some(event) => tally.received.push(
                    event.args[0]["client_msg_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
                None => break,
            }
        }
        let session = receiver.drop_abruptly();
        tokio::time::sleep(Duration::from_millis(50)).await;
        round += 1;
        let (next, connected) = SocketIoClient::connect(&urls[round % 2], session, STEP).await?;
        receiver = next;
        if connected.recovered {
            tally.recovered += 1;
        } else {
            tally.not_recovered += 1;
            receiver
                .call("join", vec![json!({ "conv": conv })], STEP)
                .await?;
        }
    }
    let mut acked = Vec::new();
    for sender in senders {
        acked.extend(sender.await??);
    }
    while let Some(event) = receiver.next_event(Duration::from_secs(1)).await? {
        tally.received.push(
            event.args[0]["client_msg_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let received: std::collections::HashSet<&String> = tally.received.iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !received.contains(id)).collect();
    let repeated = tally.received.len() - received.len();
    println!(
        "   {} reconnects: {} recovered, {} not; {} acked sends, {} received, \
         {} missing, {} received twice",
        tally.recovered + tally.not_recovered,
        tally.recovered,
        tally.not_recovered,
        acked.len(),
        received.len(),
        missing.len(),
        repeated
    );
    if !missing.is_empty() {
        println!(
            "   missing (first 10): {:?}",
            missing.iter().take(10).collect::<Vec<_>>()
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let a = start_peer(&args)?;
    let b = start_peer(&args)?;
    disconnect_durations(&args, &a, &b).await?;
    concurrent_order(&args, &a, &b).await?;
    churning_receiver(&args, &a, &b).await?;
    Ok(())
}
