//! Shared fixture for the server's integration tests: a real Redis per
//! test (via `redis-provider`), in-process servers, and a small protocol
//! client that records what it saw.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recovery_protocol::{
    ClientFrame, ConnectParams, CursorSource, GapReason, MessageFrame, ServerFrame, StreamId,
};
use redis_provider::{start_redis, ProviderOptions, RedisHandle};
use server::{Config, RunningServer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// How long any single expected frame may take before a test fails.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs at `RUST_LOG` level (default: warnings) into the test output.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Several tests in one binary call this; only the first install wins.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init(); // Err: already installed
}

/// A seeded RNG; the seed is printed so a failing run can be replayed with
/// `TEST_SEED=<n>`.
pub fn seeded_rng(test: &str) -> StdRng {
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("{test}: seed {seed} (replay with TEST_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

pub struct TestEnv {
    pub redis: RedisHandle,
    pub servers: Vec<RunningServer>,
}

/// Test-friendly defaults: fast cursor sync, everything else as shipped.
pub fn test_config(redis_url: &str) -> Config {
    let mut config = Config::for_tests(redis_url);
    config.sync_interval = Duration::from_millis(100);
    config.shutdown_grace = Duration::from_secs(3);
    // These tests are about recovery; tests/auth.rs is about who may connect.
    config.auth.insecure_no_auth = true;
    // Tests flood on purpose; the rate limits have their own tests
    // (limits.rs), which set the rates they check.
    config.limits.send_rate_per_socket = 1_000_000.0;
    config.limits.send_rate_per_user = 1_000_000.0;
    config
}

pub async fn redis() -> RedisHandle {
    redis_with(&ProviderOptions::default()).await
}

pub async fn redis_with(options: &ProviderOptions) -> RedisHandle {
    match start_redis(options).await {
        Ok(handle) => {
            println!("redis: {}", handle.description());
            handle
        }
        Err(err) => panic!("no Redis for the test: {err}"),
    }
}

impl TestEnv {
    /// One Redis and `servers` instances on it, with `tweak` applied to
    /// each server's config.
    pub async fn start(servers: usize, tweak: impl Fn(&mut Config)) -> TestEnv {
        TestEnv::start_with(&ProviderOptions::default(), servers, tweak).await
    }

    pub async fn start_with(
        options: &ProviderOptions,
        servers: usize,
        tweak: impl Fn(&mut Config),
    ) -> TestEnv {
        init_tracing();
        let redis = redis_with(options).await;
        let mut running = Vec::new();
        for _ in 0..servers {
            let mut config = test_config(redis.url());
            tweak(&mut config);
            running.push(server::start(config).await.expect("server starts"));
        }
        TestEnv {
            redis,
            servers: running,
        }
    }

    pub async fn one() -> TestEnv {
        TestEnv::start(1, |_| {}).await
    }

    pub fn url(&self, index: usize) -> String {
        self.servers[index].ws_url()
    }

    pub async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }
}

/// A device: its identity and own cursor, kept across reconnects.
#[derive(Debug, Clone)]
pub struct Device {
    pub user_id: Uuid,
    pub client_id: Uuid,
    pub conversation_id: Uuid,
    pub last_id: Option<StreamId>,
    pub epoch: Option<String>,
}

impl Device {
    pub fn new(user_id: Uuid, conversation_id: Uuid) -> Device {
        Device {
            user_id,
            client_id: Uuid::new_v4(),
            conversation_id,
            last_id: None,
            epoch: None,
        }
    }

    /// Connection parameters resuming with the device's own cursor.
    pub fn with_cursor(&self) -> ConnectParams {
        ConnectParams {
            user_id: self.user_id,
            conversation_id: self.conversation_id,
            client_id: Some(self.client_id),
            last_id: self.last_id,
            epoch: self.epoch.clone(),
        }
    }

    /// Connection parameters relying on the server's stored cursor.
    pub fn stored_only(&self) -> ConnectParams {
        ConnectParams {
            last_id: None,
            epoch: None,
            ..self.with_cursor()
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One open socket and what it saw up to `caught_up`.
pub struct Conn {
    pub ws: Ws,
    pub hello: ServerFrame,
    pub gap: Option<(StreamId, StreamId, GapReason)>,
    /// Messages received before `caught_up`, and live ones read later.
    pub messages: Vec<MessageFrame>,
    pub caught_up: Option<(StreamId, u64)>,
    /// Frames that were neither messages nor the awaited reply.
    pub other: Vec<ServerFrame>,
}

pub async fn connect_raw(
    url: &str,
    params: &ConnectParams,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let full = format!("{url}?{}", params.to_query());
    let (ws, _response) = tokio_tungstenite::connect_async(full).await?;
    Ok(ws)
}

pub async fn next_frame(ws: &mut Ws) -> Option<ServerFrame> {
    loop {
        let message = tokio::time::timeout(FRAME_TIMEOUT, ws.next())
            .await
            .expect("a frame within the timeout")?;
        match message {
            Ok(Message::Text(text)) => {
                return Some(ServerFrame::parse(text.as_str()).expect("server sends valid frames"))
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Connects with a raw query string and, when given, an
/// `Authorization: Bearer` header (tests/auth.rs).
pub async fn connect_authorized(
    url: &str,
    query: &str,
    bearer: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{url}?{query}").into_client_request()?;
    if let Some(token) = bearer {
        let value = format!("Bearer {token}")
            .parse()
            .expect("a token is a valid header value");
        request.headers_mut().insert("authorization", value);
    }
    let (ws, _response) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

impl Conn {
    /// Connects and reads `hello`, an optional `gap`, the replay and
    /// `caught_up`.
    pub async fn open(url: &str, params: &ConnectParams) -> Conn {
        let ws = connect_raw(url, params).await.expect("websocket connects");
        Conn::after_connect(ws).await
    }

    /// Reads `hello` .. `caught_up` on a socket that just connected.
    pub async fn after_connect(mut ws: Ws) -> Conn {
        let hello = next_frame(&mut ws).await.expect("hello");
        assert!(
            matches!(hello, ServerFrame::Hello { .. }),
            "first frame must be hello, got {hello:?}"
        );
        let mut conn = Conn {
            ws,
            hello,
            gap: None,
            messages: Vec::new(),
            caught_up: None,
            other: Vec::new(),
        };
        loop {
            match next_frame(&mut conn.ws)
                .await
                .expect("frames until caught_up")
            {
                ServerFrame::Gap {
                    resume_from,
                    first_available,
                    reason,
                } => conn.gap = Some((resume_from, first_available, reason)),
                ServerFrame::Message(message) => conn.messages.push(message),
                ServerFrame::CaughtUp { last_id, replayed } => {
                    conn.caught_up = Some((last_id, replayed));
                    break;
                }
                other => conn.other.push(other),
            }
        }
        conn
    }

    pub fn cursor_source(&self) -> CursorSource {
        match &self.hello {
            ServerFrame::Hello { cursor, .. } => *cursor,
            _ => unreachable!("checked in open"),
        }
    }

    pub fn resume_from(&self) -> StreamId {
        match &self.hello {
            ServerFrame::Hello { resume_from, .. } => *resume_from,
            _ => unreachable!("checked in open"),
        }
    }

    pub fn epoch(&self) -> String {
        match &self.hello {
            ServerFrame::Hello { epoch, .. } => epoch.clone(),
            _ => unreachable!("checked in open"),
        }
    }

    pub fn client_id(&self) -> Uuid {
        match &self.hello {
            ServerFrame::Hello { client_id, .. } => *client_id,
            _ => unreachable!("checked in open"),
        }
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send frame");
    }

    /// Sends a message and waits for its ack (messages arriving meanwhile
    /// are kept). Returns (id, duplicate).
    pub async fn send(&mut self, client_msg_id: Uuid, body: &str) -> (StreamId, bool) {
        let frame = ClientFrame::Send {
            client_msg_id,
            body: body.to_string(),
        };
        self.send_text(frame.to_json()).await;
        loop {
            match next_frame(&mut self.ws).await.expect("ack") {
                ServerFrame::Ack {
                    client_msg_id: acked,
                    id,
                    duplicate,
                } if acked == client_msg_id => return (id, duplicate),
                ServerFrame::Message(message) => self.messages.push(message),
                other => panic!("expected ack for {client_msg_id}, got {other:?}"),
            }
        }
    }

    /// Next non-message frame (messages are kept).
    pub async fn next_control(&mut self) -> Option<ServerFrame> {
        loop {
            match next_frame(&mut self.ws).await? {
                ServerFrame::Message(message) => self.messages.push(message),
                other => return Some(other),
            }
        }
    }

    /// Reads live messages until `count` have been received in total.
    pub async fn read_until(&mut self, count: usize) {
        while self.messages.len() < count {
            match next_frame(&mut self.ws).await {
                Some(ServerFrame::Message(message)) => self.messages.push(message),
                Some(other) => self.other.push(other),
                None => panic!(
                    "socket closed after {} of {count} messages",
                    self.messages.len()
                ),
            }
        }
    }

    pub async fn ack(&mut self, id: StreamId) {
        self.send_text(ClientFrame::Ack { id }.to_json()).await;
    }

    pub fn ids(&self) -> Vec<StreamId> {
        self.messages.iter().map(|m| m.id).collect()
    }

    /// Updates the device's cursor and epoch from what this socket saw.
    pub fn remember(&self, device: &mut Device) {
        if let Some(last) = self.messages.last() {
            device.last_id = Some(last.id);
        }
        device.epoch = Some(self.epoch());
    }

    pub async fn close(mut self) {
        // The server may already have closed; either way the socket is done.
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: 1000u16.into(),
                reason: "bye".into(),
            }))
            .await; // an error only means it was already closed
                    // Read until the server's close so it has processed everything.
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await; // bounded wait
    }
}

/// Sends `count` messages from a sender device, returning their ids.
pub async fn send_many(url: &str, sender: &Device, count: usize, tag: &str) -> Vec<StreamId> {
    let mut conn = Conn::open(url, &sender.with_cursor()).await;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let (id, duplicate) = conn.send(Uuid::new_v4(), &format!("{tag}-{i}")).await;
        assert!(!duplicate);
        ids.push(id);
    }
    conn.close().await;
    ids
}

pub fn assert_strictly_increasing(ids: &[StreamId]) {
    for pair in ids.windows(2) {
        assert!(
            pair[0] < pair[1],
            "ids not strictly increasing: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

/// A plain HTTP/1.1 GET over a raw socket (no HTTP client dependency),
/// for `/healthz` and `/metrics`: the whole response.
pub async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    response
}
