//! The Socket.IO wire layer against the real peer (`peers/socketio`, Node):
//! connect, join, acked sends, an abrupt drop, and a reconnect with pid +
//! offset, on one instance and across two sharing Redis. Also pins the
//! peer's behaviour the adapter will be checked against: dedup by client
//! message id, expiry after maxDisconnectionDuration, and the injectable
//! flaw that drops a missed message while still claiming `recovered`.
//!
//! Needs `peers/socketio/node_modules` (`.ci/run` installs it with npm ci).

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::repo_root;
use harness::client::protocol::socketio::client::{auth, engine_url, Connected};
use harness::client::protocol::socketio::{Event, Resume, Session, SocketIoClient};
use serde_json::json;

const STEP: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);
/// How long the server may take to see a dropped TCP connection and
/// persist the session (it does so on `transport close`).
const NOTICE_DROP: Duration = Duration::from_secs(10);

/// One `node peers/socketio/server.js` process, killed on drop.
struct Peer {
    child: Child,
    base: String,
}

impl Peer {
    fn start(redis_url: &str, env: &[(&str, &str)]) -> Option<Peer> {
        let dir = repo_root().join("peers/socketio");
        if !dir.join("node_modules/socket.io").is_dir() {
            eprintln!(
                "SKIPPED: {} has no node_modules; run `npm ci` there (bash .ci/run does)",
                dir.display()
            );
            return None;
        }
        let mut child = Command::new("node")
            .args(["server.js", "--port", "0", "--redis", redis_url])
            .envs(env.iter().copied())
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts (Node.js 20 is needed for peers/socketio)");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                // The test may have stopped listening: nothing to do then.
                let _ = tx.send(line); // receiver gone after readiness
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the peer prints its readiness line within 20s");
        let addr = line
            .strip_prefix("socketio peer listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line from the peer: {line:?}"));
        println!("peer: {line}");
        Some(Peer {
            child,
            base: format!("ws://{addr}"),
        })
    }

    fn url(&self) -> String {
        engine_url(&self.base)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Best effort: the test is over either way.
        let _ = self.child.kill(); // already exited is fine
        let _ = self.child.wait(); // reap
    }
}

async fn redis() -> redis_provider::RedisHandle {
    redis_provider::start_redis(&redis_provider::ProviderOptions::default())
        .await
        .expect("a Redis for the peer")
}

/// Drops `client` abruptly and waits until the server has stored its
/// session for recovery (`sio:session:<pid>`), so that a loaded machine
/// cannot turn "reconnected before the server noticed" into a failure.
async fn drop_and_wait_for_session(redis_url: &str, client: SocketIoClient) -> Session {
    let pid = client.session().resume_state().expect("a resume state").pid;
    let session = client.drop_abruptly();
    let redis = redis::Client::open(redis_url).expect("redis url");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let key = format!("sio:session:{pid}");
    let deadline = tokio::time::Instant::now() + NOTICE_DROP;
    loop {
        let stored: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("EXISTS");
        if stored {
            return session;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the peer did not store {key} within {NOTICE_DROP:?} of the drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn device(peer: &Peer, name: &str, conv: &str) -> SocketIoClient {
    let session = Session::new("/", auth(&[("device", name)]), None);
    let (mut client, connected) = SocketIoClient::connect(&peer.url(), session, STEP)
        .await
        .expect("connects");
    assert!(!connected.recovered, "a first connect recovers nothing");
    let reply = client
        .call("join", vec![json!({ "conv": conv })], STEP)
        .await
        .expect("join acked");
    assert_eq!(reply, [json!({"ok": true})]);
    client
}

/// Sends and returns the ack's status and offset.
async fn send(client: &mut SocketIoClient, conv: &str, id: &str) -> (String, Option<String>) {
    let request = json!({ "conv": conv, "client_msg_id": id, "body": format!("body of {id}") });
    let reply = client
        .call("send", vec![request], STEP)
        .await
        .expect("send acked");
    assert_eq!(reply[0]["ok"], true, "{reply:?}");
    let status = reply[0]["status"].as_str().unwrap_or_default().to_string();
    (status, reply[0]["offset"].as_str().map(str::to_string))
}

/// The client message ids and offsets of the next `expected` events
/// (waiting up to `STEP` for each), then of any that follow within `QUIET`.
async fn receive(client: &mut SocketIoClient, expected: usize) -> Vec<(String, Option<String>)> {
    let mut seen = Vec::new();
    loop {
        let wait = if seen.len() < expected { STEP } else { QUIET };
        let Some(Event {
            name, args, offset, ..
        }) = client.next_event(wait).await.expect("events readable")
        else {
            return seen;
        };
        assert_eq!(name, "message");
        // Every send in these tests comes from alice; the peer stamps the
        // sender from the handshake, not from the request.
        assert_eq!(args[0]["sender"], "alice", "{args:?}");
        let id = args[0]["client_msg_id"].as_str().unwrap_or_default();
        seen.push((id.to_string(), offset));
    }
}

fn ids_and_offsets(pairs: &[(&str, &(String, Option<String>))]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(id, (_, offset))| (id.to_string(), offset.clone()))
        .collect()
}

async fn reconnect(peer: &Peer, session: Session) -> (SocketIoClient, Connected) {
    SocketIoClient::connect(&peer.url(), session, STEP)
        .await
        .expect("reconnects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_device_recovers_its_missed_messages_on_another_instance() {
    let redis = redis().await;
    let Some(first) = Peer::start(redis.url(), &[]) else {
        return;
    };
    let Some(second) = Peer::start(redis.url(), &[]) else {
        return;
    };
    let mut alice = device(&first, "alice", "c1").await;
    let mut bob = device(&first, "bob", "c1").await;

    let m1 = send(&mut alice, "c1", "m1").await;
    assert_eq!(m1.0, "accepted");
    assert_eq!(receive(&mut bob, 1).await, ids_and_offsets(&[("m1", &m1)]));
    let pid_before = bob.session().resume_state().expect("a resume state").pid;

    let bob_session = drop_and_wait_for_session(redis.url(), bob).await;
    let m2 = send(&mut alice, "c1", "m2").await;
    let m3 = send(&mut alice, "c1", "m3").await;

    let (mut bob, connected) = reconnect(&second, bob_session).await;
    assert!(connected.recovered, "{connected:?}");
    assert_eq!(connected.pid.as_deref(), Some(pid_before.as_str()));
    assert_eq!(
        receive(&mut bob, 2).await,
        ids_and_offsets(&[("m2", &m2), ("m3", &m3)]),
        "exactly the missed messages, in stream order"
    );

    // Live delivery goes on across instances after the recovery.
    let m4 = send(&mut alice, "c1", "m4").await;
    assert_eq!(receive(&mut bob, 1).await, ids_and_offsets(&[("m4", &m4)]));

    // A resend with the same client message id is acked as a duplicate,
    // with the first send's offset, and not delivered again.
    let again = send(&mut alice, "c1", "m2").await;
    assert_eq!(again, ("duplicate".to_string(), m2.1.clone()));
    assert_eq!(receive(&mut bob, 0).await, []);
    alice.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_expired_session_is_declared_not_recovered() {
    let redis = redis().await;
    let Some(peer) = Peer::start(redis.url(), &[("SIO_MAX_DISCONNECTION_MS", "2000")]) else {
        return;
    };
    let mut alice = device(&peer, "alice", "c1").await;
    let m1 = send(&mut alice, "c1", "m1").await;

    // A pid the server never issued.
    let bogus = Session::new(
        "/",
        auth(&[("device", "eve")]),
        Some(Resume {
            pid: "no-such-pid".into(),
            offset: m1.1.clone().expect("an offset"),
        }),
    );
    let (_eve, connected) = reconnect(&peer, bogus).await;
    assert!(!connected.recovered, "{connected:?}");
    assert_ne!(connected.pid.as_deref(), Some("no-such-pid"));

    // A session kept past maxDisconnectionDuration (2s here).
    let mut bob = device(&peer, "bob", "c1").await;
    let m2 = send(&mut alice, "c1", "m2").await;
    assert_eq!(receive(&mut bob, 1).await, ids_and_offsets(&[("m2", &m2)]));
    let bob_session = drop_and_wait_for_session(redis.url(), bob).await;
    send(&mut alice, "c1", "m3").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (mut bob, connected) = reconnect(&peer, bob_session).await;
    assert!(!connected.recovered, "expired after 2s: {connected:?}");
    // Not recovered: no missed messages, and no rooms (it must join again).
    assert_eq!(receive(&mut bob, 0).await, []);
    send(&mut alice, "c1", "m4").await;
    assert_eq!(
        receive(&mut bob, 0).await,
        [],
        "the failed recovery restored no room"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_flaw_drops_a_missed_message_but_claims_recovery() {
    let redis = redis().await;
    let Some(peer) = Peer::start(redis.url(), &[("SIO_FLAW", "drop_recovered_first")]) else {
        return;
    };
    let mut alice = device(&peer, "alice", "c1").await;
    let mut bob = device(&peer, "bob", "c1").await;
    let m1 = send(&mut alice, "c1", "m1").await;
    assert_eq!(receive(&mut bob, 1).await, ids_and_offsets(&[("m1", &m1)]));
    let bob_session = drop_and_wait_for_session(redis.url(), bob).await;
    send(&mut alice, "c1", "m2").await;
    let m3 = send(&mut alice, "c1", "m3").await;
    let (mut bob, connected) = reconnect(&peer, bob_session).await;
    assert!(connected.recovered, "the flaw still claims recovery");
    assert_eq!(
        receive(&mut bob, 1).await,
        ids_and_offsets(&[("m3", &m3)]),
        "m2 is silently missing"
    );
}

#[test]
fn the_peer_rejects_bad_configuration_clearly() {
    let dir = repo_root().join("peers/socketio");
    if !dir.join("node_modules/socket.io").is_dir() {
        eprintln!("SKIPPED: no node_modules in {}", dir.display());
        return;
    }
    for (env, expected) in [
        (("SIO_FLAW", "nope"), "unknown SIO_FLAW \"nope\""),
        (("PORT", "80x"), "invalid port \"80x\""),
    ] {
        let output = Command::new("node")
            .arg("server.js")
            .env(env.0, env.1)
            .current_dir(&dir)
            .output()
            .expect("node runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(expected), "{stderr}");
    }
}

/// The churn scenario's `[servers]` table, played by the harness's own
/// command spawner: the peer starts behind its HTTP readiness probe, the
/// Rust client connects to the URL the table names, and a kill and a
/// restart bring it back on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_churn_scenario_starts_the_peer_as_a_command_server() {
    use harness::runner::servers::{spawn, spawn_at, Launcher, SpawnSettings};
    use harness::scenario::{load_scenario, ReadyProbe, ServersSpec};

    let root = repo_root();
    if !root.join("peers/socketio/node_modules/socket.io").is_dir() {
        eprintln!("SKIPPED: no node_modules in peers/socketio");
        return;
    }
    let scenario = load_scenario(&root.join("scenarios/peers/socketio-churn.toml"))
        .expect("the churn scenario is valid");
    let ServersSpec::Spawn {
        count: 2,
        command: Some(mut command),
        ..
    } = scenario.servers
    else {
        panic!("two command servers: {:?}", scenario.servers);
    };
    assert_eq!(
        command.ready,
        ReadyProbe::Http {
            path: "/healthz".into()
        }
    );
    // The scenario is written for the repository root; tests run in harness/.
    for arg in &mut command.argv {
        if arg.starts_with("peers/") {
            *arg = root.join(&*arg).display().to_string();
        }
    }
    let redis = redis().await;
    let settings = SpawnSettings {
        command: Some(command),
        // The peer does not check tokens.
        jwt_secret: None,
        redis_url: redis.url().to_string(),
        sync_interval: Duration::from_secs(1),
        heartbeat_interval: Duration::from_secs(15),
        extra_args: Vec::new(),
    };
    let instance = spawn(&Launcher::InProcess, &settings)
        .await
        .expect("the peer starts");
    let url = instance.ws_url();
    assert!(
        url.ends_with("/socket.io/?EIO=4&transport=websocket"),
        "{url}"
    );
    let addr = instance.listen_addr().expect("a loopback address");
    let connect = || SocketIoClient::connect(&url, Session::new("/", auth(&[]), None), STEP);
    connect()
        .await
        .expect("the client connects to the spawned peer");

    instance.kill().await;
    assert!(connect().await.is_err(), "killed means gone");
    let instance = spawn_at(&Launcher::InProcess, &settings, Some(addr))
        .await
        .expect("the peer restarts on its port");
    assert_eq!(instance.ws_url(), url);
    connect()
        .await
        .expect("the client connects after the restart");
    instance.stop().await;
}
