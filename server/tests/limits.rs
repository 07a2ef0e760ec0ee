//! Limits against hostile or stalled clients (docs/security.md, "Limits"):
//! each test is an attack from the review in issue 10, on loopback, with
//! bounded loops, and checks both that the server protects itself and
//! that no message is lost or delivered twice.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use recovery_protocol::{ClientFrame, ErrorCode, GapReason, ServerFrame, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Send rates high enough not to matter in tests about other limits.
fn unlimited_rates(config: &mut server::Config) {
    config.limits.send_rate_per_socket = 1_000_000.0;
    config.limits.send_rate_per_user = 1_000_000.0;
}

/// Waits (bounded) until the peer closes: `Ok(elapsed)` on EOF or reset.
async fn wait_closed(tcp: &mut TcpStream, within: Duration) -> Result<Duration, Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => continue, // e.g. a 408 before the close
            Err(_) => return Err(started.elapsed()),
        }
    }
}

fn metric_value(server: &server::RunningServer, line_start: &str) -> f64 {
    server
        .metrics()
        .render()
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn slowloris_and_silent_connections_are_closed_within_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let env = TestEnv::start(1, |config| config.limits.header_read_timeout = timeout).await;
    let addr = env.servers[0].local_addr();
    let conversation = Uuid::new_v4();
    let device = Device::new(Uuid::new_v4(), conversation);
    let head = format!(
        "GET /ws?{} HTTP/1.1\r\nHost: localhost\r\n",
        device.with_cursor().to_query()
    );
    // 20 connections that never send anything and 20 that trickle an
    // unfinished header one byte at a time.
    let mut silent = Vec::new();
    let mut trickling = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(head.as_bytes()).await.expect("write head");
        trickling.push(tcp);
    }
    let slack = Duration::from_secs(3);
    let started = Instant::now();
    // Trickle one byte per connection every 100 ms; a write fails once the
    // server has closed the connection (the first one after the close may
    // still succeed). A timeout that restarted with every byte would keep
    // them all open for as long as they trickle.
    let trickle = tokio::spawn(async move {
        let mut closed_after = vec![None; trickling.len()];
        while started.elapsed() < timeout + slack && closed_after.iter().any(Option::is_none) {
            for (i, tcp) in trickling.iter_mut().enumerate() {
                if closed_after[i].is_none() && tcp.write_all(b"X").await.is_err() {
                    closed_after[i] = Some(started.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        closed_after
    });
    for tcp in &mut silent {
        let waited = wait_closed(tcp, timeout + slack).await;
        assert!(
            waited.is_ok(),
            "a connection that sent nothing was still open after {:?}",
            waited.unwrap_err()
        );
    }
    let closed_after = trickle.await.expect("trickle task");
    for closed in closed_after {
        assert!(
            closed.is_some(),
            "a slowloris connection still took bytes {:?} after it began (timeout {timeout:?})",
            timeout + slack
        );
    }
    // Meanwhile and after, real clients are served.
    let conn = Conn::open(&env.url(0), &device.with_cursor()).await;
    assert!(conn.caught_up.is_some());
    conn.close().await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let env = TestEnv::start(1, |config| config.limits.max_header_bytes = 16 * 1024).await;
    let mut tcp = TcpStream::connect(env.servers[0].local_addr())
        .await
        .expect("connect");
    let padding = "a".repeat(40 * 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {padding}\r\n\r\n");
    // The server may stop reading (and close) before all of it is written.
    let _ = tcp.write_all(request.as_bytes()).await; // Err: closed early, which is fine
    let mut answer = Vec::new();
    let read = tokio::time::timeout(FRAME_TIMEOUT, tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was not closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "expected 431 or a close, got {answer:?}"
    );
    println!("oversized head answered: {:?}", answer.lines().next());
}

#[tokio::test]
async fn connections_past_the_maximum_get_503_and_later_ones_are_served() {
    let env = TestEnv::start(1, |config| config.limits.max_connections = 4).await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let mut open = Vec::new();
    for _ in 0..4 {
        let device = Device::new(Uuid::new_v4(), conversation);
        open.push(Conn::open(&url, &device.with_cursor()).await);
    }
    // WebSockets count as connections for as long as they are open.
    let extra = Device::new(Uuid::new_v4(), conversation);
    match connect_raw(&url, &extra.with_cursor()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        Err(other) => panic!("expected a 503, got {other}"),
        Ok(_) => panic!("a fifth connection was accepted with --max-connections 4"),
    }
    assert!(
        metric_value(
            &env.servers[0],
            "chat_limit_hits_total{limit=\"max_connections\"}"
        ) >= 1.0
    );
    // One leaves: a new client gets in (bounded retry while the server
    // notices the close).
    open.pop().expect("one").close().await;
    let started = Instant::now();
    loop {
        match connect_raw(&url, &extra.with_cursor()).await {
            Ok(ws) => {
                drop(ws);
                break;
            }
            Err(err) if started.elapsed() < Duration::from_secs(5) => {
                tracing::debug!(%err, "not yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("a connection slot never came free: {err}"),
        }
    }
    for conn in open {
        conn.close().await;
    }
}

#[tokio::test]
async fn sockets_per_user_past_the_limit_get_429() {
    let env = TestEnv::start(1, |config| config.limits.max_sockets_per_user = 2).await;
    let url = env.url(0);
    let user = Uuid::new_v4();
    let conversation = Uuid::new_v4();
    let first = Conn::open(&url, &Device::new(user, conversation).with_cursor()).await;
    let second = Conn::open(&url, &Device::new(user, conversation).with_cursor()).await;
    let third = Device::new(user, conversation);
    match connect_raw(&url, &third.with_cursor()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        Err(other) => panic!("expected a 429, got {other}"),
        Ok(_) => panic!("a third socket of one user was accepted with a limit of 2"),
    }
    // Another user is not affected.
    let other = Conn::open(
        &url,
        &Device::new(Uuid::new_v4(), conversation).with_cursor(),
    )
    .await;
    first.close().await;
    let started = Instant::now();
    let third = loop {
        match connect_raw(&url, &third.with_cursor()).await {
            Ok(ws) => break ws,
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("the user's socket count never went down: {err}"),
        }
    };
    drop(third);
    second.close().await;
    other.close().await;
}

/// Sends `count` frames at once, then reads until every one is answered.
async fn burst(conn: &mut Conn, ids: &[Uuid]) -> Vec<ServerFrame> {
    for id in ids {
        let frame = ClientFrame::Send {
            client_msg_id: *id,
            body: format!("b-{id}"),
        };
        conn.ws
            .feed(Message::Text(frame.to_json().into()))
            .await
            .expect("feed");
    }
    conn.ws.flush().await.expect("flush");
    let mut answers = Vec::new();
    while answers.len() < ids.len() {
        match next_frame(&mut conn.ws).await.expect("an answer per send") {
            ServerFrame::Message(message) => conn.messages.push(message),
            answer => answers.push(answer),
        }
    }
    answers
}

/// Ids of sends answered `rate_limited`, checking the frame's shape.
fn rate_limited(answers: &[ServerFrame]) -> Vec<(Uuid, u64)> {
    answers
        .iter()
        .filter_map(|answer| match answer {
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                client_msg_id,
                retry_after_ms,
                ..
            } => Some((
                client_msg_id.expect("rate_limited names the send"),
                retry_after_ms.expect("rate_limited says when to retry"),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn sends_past_the_socket_and_user_rates_are_refused_with_retry_after() {
    let env = TestEnv::start(1, |config| {
        config.limits.send_rate_per_socket = 5.0;
        config.limits.send_rate_per_user = 8.0;
    })
    .await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let user = Uuid::new_v4();
    let mut a = Conn::open(&url, &Device::new(user, conversation).with_cursor()).await;
    // The buckets refill in real time while the sends wait for Redis: on a
    // slow machine a burst takes long enough for a few more tokens, so the
    // bounds below count what the elapsed time refilled.
    let refilled = |rate: f64, since: std::time::Instant| {
        (rate * since.elapsed().as_secs_f64()).ceil() as usize
    };
    let started = std::time::Instant::now();
    // Socket rate: 5/s, bursts of 10; 30 sends at once.
    let ids: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
    let answers = burst(&mut a, &ids).await;
    let socket_refill = refilled(5.0, started);
    let refused = rate_limited(&answers);
    let acked = answers
        .iter()
        .filter(|answer| matches!(answer, ServerFrame::Ack { .. }))
        .count();
    assert!(
        (10..=10 + socket_refill).contains(&acked),
        "expected the burst (10) and at most {socket_refill} refilled acked, got {acked}: {answers:?}"
    );
    assert_eq!(
        acked + refused.len(),
        30,
        "one answer per send: {answers:?}"
    );
    assert!(refused
        .iter()
        .all(|(_, retry)| *retry > 0 && *retry <= 1000));
    // The user's other socket shares the user's rate (8/s, bursts of 16):
    // at most ~6 more tokens are left for it.
    let mut b = Conn::open(&url, &Device::new(user, conversation).with_cursor()).await;
    let more: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    let answers_b = burst(&mut b, &more).await;
    let acked_b = answers_b
        .iter()
        .filter(|answer| matches!(answer, ServerFrame::Ack { .. }))
        .count();
    let user_tokens_left = (16 + refilled(8.0, started)).saturating_sub(acked);
    assert!(
        acked_b <= user_tokens_left,
        "the user's rate was not shared: {acked_b} acked, {user_tokens_left} user tokens left"
    );
    if user_tokens_left < more.len() {
        assert!(!rate_limited(&answers_b).is_empty());
    } else {
        println!("slow run: {user_tokens_left} user tokens refilled for b's {} sends; its refusal is not checked", more.len());
    }
    // Refused sends were NOT appended: retried after the wait, each is a
    // new append (duplicate: false).
    let (retry_id, retry_after_ms) = refused[0];
    tokio::time::sleep(Duration::from_millis(retry_after_ms.max(500) + 1000)).await;
    let (_, duplicate) = a.send(retry_id, &format!("b-{retry_id}")).await;
    assert!(
        !duplicate,
        "a rate_limited send must not have been appended"
    );
    let mut redis = env.redis_conn().await;
    let length: usize = redis::cmd("XLEN")
        .arg(server::store::keys::stream(conversation))
        .query_async(&mut redis)
        .await
        .expect("XLEN");
    assert_eq!(length, acked + acked_b + 1);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn the_length_cap_holds_and_trimmed_history_is_declared_as_a_gap() {
    let cap = 100u64;
    let env = TestEnv::start(1, |config| {
        unlimited_rates(config);
        config.limits.max_messages_per_conversation = cap;
    })
    .await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conversation);
    let mut conn = Conn::open(&url, &sender.with_cursor()).await;
    let body = "x".repeat(64 * 1024 - 16);
    let mut ids = Vec::new();
    for _ in 0..1_500 {
        ids.push(conn.send(Uuid::new_v4(), &body).await.0);
    }
    conn.close().await;
    let mut redis = env.redis_conn().await;
    let key = server::store::keys::stream(conversation);
    let length: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("XLEN");
    // `MAXLEN ~` trims whole stream nodes: with 64 KiB entries a node holds
    // one, so the cap is nearly exact; allow one node of slack (100).
    assert!(
        length >= cap && length <= cap + 100,
        "1,500 sends left {length} entries with a cap of {cap}"
    );
    let memory: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("MEMORY USAGE");
    assert!(
        memory < (cap + 100) * 70 * 1024,
        "stream uses {memory} bytes"
    );
    // A device that saw only the first message is told what it missed.
    let mut reader = Device::new(Uuid::new_v4(), conversation);
    reader.last_id = Some(ids[0]);
    let conn = Conn::open(&url, &reader.with_cursor()).await;
    let (resume_from, first_available, reason) = conn.gap.expect("a gap for trimmed history");
    assert_eq!(reason, GapReason::Trimmed);
    assert_eq!(resume_from, ids[0]);
    let kept = &ids[ids.len() - length as usize..];
    assert_eq!(first_available, kept[0]);
    assert_eq!(conn.ids(), kept, "everything kept, once, in order");
    conn.close().await;
}

#[tokio::test]
async fn a_reader_that_stops_is_closed_and_resumes_without_loss_or_duplicates() {
    let deadline = Duration::from_secs(1);
    let budget = 1 << 20;
    let env = TestEnv::start(1, |config| {
        unlimited_rates(config);
        config.limits.write_deadline = deadline;
        config.limits.socket_queue_bytes = 256 << 10;
        config.limits.queue_budget_bytes = budget;
    })
    .await;
    let url = env.url(0);
    let server = &env.servers[0];
    let conversation = Uuid::new_v4();
    let mut stalled_device = Device::new(Uuid::new_v4(), conversation);
    let mut stalled = Conn::open(&url, &stalled_device.with_cursor()).await;
    // A healthy reader that keeps up, reading all along.
    let count = 400; // ~24 MiB: far past both kernel buffers
    let mut healthy = Conn::open(
        &url,
        &Device::new(Uuid::new_v4(), conversation).with_cursor(),
    )
    .await;
    let healthy = tokio::spawn(async move {
        healthy.read_until(count).await;
        healthy
    });
    // From here on `stalled` reads nothing: its kernel buffers fill, then
    // the server's writes to it block.
    let sender = Device::new(Uuid::new_v4(), conversation);
    let mut conn = Conn::open(&url, &sender.with_cursor()).await;
    let body = "y".repeat(60 * 1024);
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(conn.send(Uuid::new_v4(), &body).await.0);
    }
    let sent_at = Instant::now();
    let healthy = healthy.await.expect("healthy reader");
    assert_eq!(healthy.ids(), ids, "a reader that keeps up gets everything");
    // The stalled socket is closed within the deadline (plus slack for a
    // busy machine) of the last send.
    let closed = loop {
        let hits = metric_value(server, "chat_limit_hits_total{limit=\"write_deadline\"}");
        if hits >= 1.0 {
            break sent_at.elapsed();
        }
        assert!(
            sent_at.elapsed() < deadline + Duration::from_secs(10),
            "the stalled reader is still open {:?} after the last send (deadline {deadline:?})",
            sent_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("stalled reader closed {closed:?} after the last send");
    let peak = server.limits().budget.peak();
    println!("queue budget peak {peak} bytes of {budget}");
    assert!(
        peak <= budget,
        "queued {peak} bytes past a budget of {budget}"
    );
    // The client reads what reached it, then resumes from its own cursor.
    let drain_started = Instant::now();
    let mut close_code = None;
    while drain_started.elapsed() < Duration::from_secs(30) {
        match tokio::time::timeout(Duration::from_secs(5), stalled.ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if let Ok(ServerFrame::Message(message)) = ServerFrame::parse(text.as_str()) {
                    stalled.messages.push(message);
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                close_code = frame.map(|frame| u16::from(frame.code));
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    println!(
        "stalled reader had {} messages buffered; close code {close_code:?}",
        stalled.messages.len()
    );
    assert!(stalled.messages.len() < count, "it was not stalled at all");
    stalled.remember(&mut stalled_device);
    let resumed = Conn::open(&url, &stalled_device.with_cursor()).await;
    assert!(resumed.gap.is_none());
    let mut seen: Vec<StreamId> = stalled.ids();
    seen.extend(resumed.ids());
    let unique: HashSet<StreamId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a message was delivered twice");
    assert_eq!(seen, ids, "every message, once, in order");
    conn.close().await;
    healthy.close().await;
    resumed.close().await;
}
