//! Live delivery across instances, races between reconnects and a flood,
//! lagging sockets, heartbeats, health and shutdown.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use rand::Rng;
use recovery_protocol::{ServerFrame, StreamId};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

#[tokio::test]
async fn two_instances_deliver_live_across_instances_in_order() {
    let env = TestEnv::start(2, |_| {}).await;
    let conversation = Uuid::new_v4();
    let on_b = Device::new(Uuid::new_v4(), conversation);
    let mut listener = Conn::open(&env.url(1), &on_b.with_cursor()).await;
    // Appended through instance A only.
    let sent = send_many(
        &env.url(0),
        &Device::new(Uuid::new_v4(), conversation),
        50,
        "a",
    )
    .await;
    listener.read_until(50).await;
    assert_eq!(
        listener.ids(),
        sent,
        "instance B's socket got A's messages live, in id order"
    );
    listener.close().await;
}

#[tokio::test]
async fn flood_while_reconnecting_with_cursor_loses_and_repeats_nothing() {
    let mut rng = seeded_rng("flood_while_reconnecting");
    let env = TestEnv::start(2, |_| {}).await;
    let conversation = Uuid::new_v4();
    let total = 600usize;
    let publisher_url = env.url(0);
    let publisher = tokio::spawn(async move {
        let sender = Device::new(Uuid::new_v4(), conversation);
        let mut conn = Conn::open(&publisher_url, &sender.with_cursor()).await;
        let mut ids = Vec::new();
        for i in 0..total {
            ids.push(conn.send(Uuid::new_v4(), &format!("flood-{i}")).await.0);
        }
        conn.close().await;
        ids
    });

    let mut device = Device::new(Uuid::new_v4(), conversation);
    let mut received: Vec<StreamId> = Vec::new();
    let mut reconnects = 0;
    // Reconnect over and over (alternating instances, sometimes abruptly)
    // while the flood runs; bounded in count.
    while !publisher.is_finished() && reconnects < 200 {
        let url = env.url(reconnects % 2);
        let mut conn = Conn::open(&url, &device.with_cursor()).await;
        let extra = rng.random_range(0..30);
        let target = conn.messages.len() + extra;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        while conn.messages.len() < target && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(50), conn.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    if let Ok(ServerFrame::Message(m)) = ServerFrame::parse(text.as_str()) {
                        conn.messages.push(m);
                    }
                }
                Ok(_) => break,
                Err(_) => {}
            }
        }
        assert_strictly_increasing(&conn.ids());
        if let (Some(last), Some(first)) = (received.last(), conn.ids().first()) {
            assert!(
                first > last,
                "socket {reconnects} repeated or reordered: {first} after {last}"
            );
        }
        received.extend(conn.ids());
        conn.remember(&mut device);
        if rng.random_bool(0.5) {
            conn.close().await;
        } else {
            drop(conn); // abrupt: no close frame
        }
        reconnects += 1;
    }
    let sent = publisher.await.expect("publisher finished");
    // Final catch-up.
    let conn = Conn::open(&env.url(0), &device.with_cursor()).await;
    received.extend(conn.ids());
    conn.close().await;
    assert!(
        reconnects >= 3,
        "the race needs reconnects during the flood, got {reconnects}"
    );
    assert_strictly_increasing(&received);
    let unique: HashSet<_> = received.iter().collect();
    assert_eq!(unique.len(), received.len(), "nothing delivered twice");
    assert_eq!(
        received, sent,
        "nothing lost across {reconnects} reconnects"
    );
}

#[tokio::test]
async fn a_lagging_socket_rereads_instead_of_dropping() {
    // A live queue of 4 overflows at once under a burst.
    let env = TestEnv::start(1, |config| config.live_queue_capacity = 4).await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let mut slow = Conn::open(
        &url,
        &Device::new(Uuid::new_v4(), conversation).with_cursor(),
    )
    .await;
    let sent = send_many(
        &url,
        &Device::new(Uuid::new_v4(), conversation),
        300,
        "burst",
    )
    .await;
    slow.read_until(300).await;
    assert_eq!(slow.ids(), sent);
    slow.close().await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_two_missed_heartbeats() {
    // A whole second per beat: the client and the server share this test's
    // thread, so a held-up thread must not look like a silent client (a
    // 200 ms beat dropped an answering client after a 250 ms stall).
    let env = TestEnv::start(1, |config| {
        config.heartbeat_interval = Duration::from_secs(1)
    })
    .await;
    let device = Device::new(Uuid::new_v4(), Uuid::new_v4());
    let mut conn = Conn::open(&env.url(0), &device.with_cursor()).await;
    // Not reading means not answering pings.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut closed = false;
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(2), conn.ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => continue,
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                closed = true;
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Err(_) => break,
        }
    }
    assert!(closed, "the server should have dropped the silent socket");
    // An attentive client (tungstenite answers pings while reading) stays.
    let mut attentive = Conn::open(&env.url(0), &device.with_cursor()).await;
    let stay = async { while let Some(Ok(_)) = attentive.ws.next().await {} };
    assert!(
        tokio::time::timeout(Duration::from_millis(3500), stay)
            .await
            .is_err(),
        "a client answering pings must not be dropped"
    );
}

#[tokio::test]
async fn healthz_and_metrics() {
    let env = TestEnv::one().await;
    let base = env.servers[0].http_url();
    let health = http_get(&format!("{base}/healthz")).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    send_many(
        &env.url(0),
        &Device::new(Uuid::new_v4(), Uuid::new_v4()),
        2,
        "m",
    )
    .await;
    let metrics = http_get(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains("chat_messages_appended_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("chat_sockets_open"), "{metrics}");
    assert!(
        metrics.contains("chat_recovery_duration_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test]
async fn graceful_shutdown_closes_with_1001_and_saves_cursors() {
    let mut env =
        TestEnv::start(1, |config| config.sync_interval = Duration::from_secs(3600)).await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let device = Device::new(Uuid::new_v4(), conversation);
    let ids = send_many(&url, &Device::new(Uuid::new_v4(), conversation), 3, "m").await;
    let mut conn = Conn::open(&url, &device.stored_only()).await;
    conn.ack(ids[2]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = env.servers.remove(0);
    let shutdown = tokio::spawn(server.shutdown());
    let code = loop {
        match tokio::time::timeout(FRAME_TIMEOUT, conn.ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected close 1001, got {other:?}"),
        }
    };
    assert_eq!(code, Some(1001));
    shutdown.await.unwrap().expect("clean shutdown");
    let restarted = server::start(test_config(env.redis.url())).await.unwrap();
    let back = Conn::open(&restarted.ws_url(), &device.stored_only()).await;
    assert_eq!(back.resume_from(), ids[2], "cursor saved during shutdown");
    back.close().await;
}

/// Every append leaves a hint naming its stream in the appended-signals
/// stream: the tailers block on that one key (not on every tailed stream)
/// and read only the streams it names.
#[tokio::test]
async fn every_append_leaves_a_hint_naming_its_stream() {
    let env = TestEnv::one().await;
    let conversation = Uuid::new_v4();
    let sent = send_many(
        &env.url(0),
        &Device::new(Uuid::new_v4(), conversation),
        3,
        "hinted",
    )
    .await;
    assert_eq!(sent.len(), 3);
    let hints = appended_signals(&env).await;
    let stream = recovery_protocol::keys::stream(conversation);
    let naming_it = hints
        .iter()
        .filter(|(_, fields)| fields.iter().any(|(k, v)| k == "stream" && *v == stream))
        .count();
    assert_eq!(naming_it, 3, "one hint per append, each naming {stream}");
}

/// A message written into a stream without a hint (another writer, or a
/// server from before hints on the same Redis) still reaches a live
/// socket: the tailer sweeps every tailed stream once a second.
#[tokio::test]
async fn an_entry_appended_without_a_hint_is_still_delivered_live() {
    let env = TestEnv::one().await;
    let conversation = Uuid::new_v4();
    let listener_device = Device::new(Uuid::new_v4(), conversation);
    let mut listener = Conn::open(&env.url(0), &listener_device.with_cursor()).await;
    // One hinted message first: once it arrived, the tailer has read the
    // newly tailed stream, and only a sweep can find what comes next.
    let mut sent = send_many(
        &env.url(0),
        &Device::new(Uuid::new_v4(), conversation),
        1,
        "hinted",
    )
    .await;
    listener.read_until(1).await;
    let mut redis = env.redis_conn().await;
    let sender = Uuid::new_v4();
    let id: String = redis::cmd("XADD")
        .arg(recovery_protocol::keys::stream(conversation))
        .arg("*")
        .arg("sender_id")
        .arg(sender.to_string())
        .arg("client_msg_id")
        .arg(Uuid::new_v4().to_string())
        .arg("body")
        .arg("unhinted")
        .arg("sent_at_ms")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("XADD without a hint");
    sent.push(id.parse::<StreamId>().expect("an id"));
    listener.read_until(2).await;
    assert_eq!(
        listener.ids(),
        sent,
        "the sweep delivered the unhinted entry"
    );
    listener.close().await;
}

/// Adds a signal carrying an entry that is NOT in the conversation stream
/// (a white-box probe: only the signal can deliver it), right after `last`.
async fn add_carrying_signal(
    env: &TestEnv,
    conversation: Uuid,
    prev: StreamId,
    last: StreamId,
    body: &str,
) -> StreamId {
    let id = StreamId {
        ms: last.ms,
        seq: last.seq + 1,
    };
    let mut redis = env.redis_conn().await;
    let _: String = redis::cmd("XADD")
        .arg(recovery_protocol::keys::APPENDED_SIGNALS)
        .arg("*")
        .arg("stream")
        .arg(recovery_protocol::keys::stream(conversation))
        .arg("prev")
        .arg(prev.to_string())
        .arg("id")
        .arg(id.to_string())
        .arg("sender_id")
        .arg(Uuid::new_v4().to_string())
        .arg("client_msg_id")
        .arg(Uuid::new_v4().to_string())
        .arg("body")
        .arg(body)
        .arg("sent_at_ms")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("XADD of a signal");
    id
}

/// A listener on a new conversation, then one message from another
/// device that the listener has read live: the tailer's cursor is that
/// message, which it dispatched itself.
async fn listening_then_first_sent(env: &TestEnv) -> (Conn, Device, Vec<StreamId>) {
    let conversation = Uuid::new_v4();
    let mut listener = Conn::open(
        &env.url(0),
        &Device::new(Uuid::new_v4(), conversation).with_cursor(),
    )
    .await;
    let sender = Device::new(Uuid::new_v4(), conversation);
    let sent = send_many(&env.url(0), &sender, 1, "first").await;
    listener.read_until(1).await;
    (listener, sender, sent)
}

#[tokio::test]
async fn a_signal_carrying_its_entry_is_dispatched_without_reading_the_stream() {
    let env = TestEnv::one().await;
    let (mut listener, sender, mut sent) = listening_then_first_sent(&env).await;
    let conversation = sender.conversation_id;
    // The tailer's cursor is now `sent[0]`: a signal whose `prev` is that
    // cursor is dispatched as it is. The stream never holds this entry,
    // so a tailer that read the stream instead would never deliver it.
    let carried = add_carrying_signal(&env, conversation, sent[0], sent[0], "carried").await;
    sent.push(carried);
    listener.read_until(2).await;
    assert_eq!(listener.ids(), sent);
    listener.close().await;
}

#[tokio::test]
async fn a_signal_whose_prev_is_not_the_cursor_is_not_dispatched_from_the_signal() {
    let env = TestEnv::one().await;
    let (listener, sender, sent) = listening_then_first_sent(&env).await;
    // `prev` is not the cursor: entries between them may exist, so the
    // carried entry must not be written; the stream is read instead (it
    // does not hold this one, so it is never delivered).
    let (prev, last) = (StreamId::ZERO, sent[0]);
    only_the_stream_arrives(&env, listener, &sender, sent, prev, last).await;
}

#[tokio::test]
async fn a_signal_chaining_from_a_subscribers_head_is_not_dispatched_from_the_signal() {
    let env = TestEnv::one().await;
    let conversation = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conversation);
    let sent = send_many(&env.url(0), &sender, 1, "first").await;
    // The listener's subscription starts the tailer's cursor at the head,
    // `sent[0]`, which the tailer never dispatched: a head can be `0-0` of
    // a deleted stream or what an XDEL left, and signals written before
    // (read late by an idle tailer) would chain from it. So a signal whose
    // `prev` is that head must not be trusted: the stream is read instead
    // (it does not hold this entry, so it is never delivered).
    let mut listener = Conn::open(
        &env.url(0),
        &Device::new(Uuid::new_v4(), conversation).with_cursor(),
    )
    .await;
    listener.read_until(1).await;
    let (prev, last) = (sent[0], sent[0]);
    only_the_stream_arrives(&env, listener, &sender, sent, prev, last).await;
}

/// Adds a signal carrying an entry the stream does not hold (`prev`,
/// right after `last`), then a real append, and checks that the listener
/// (which has read `sent`) gets only the stream's entries: the carried one
/// must not be dispatched.
async fn only_the_stream_arrives(
    env: &TestEnv,
    mut listener: Conn,
    sender: &Device,
    mut sent: Vec<StreamId>,
    prev: StreamId,
    last: StreamId,
) {
    let conversation = sender.conversation_id;
    add_carrying_signal(env, conversation, prev, last, "must not arrive").await;
    sent.extend(send_many(&env.url(0), sender, 1, "second").await);
    listener.read_until(sent.len()).await;
    assert_eq!(listener.ids(), sent, "only the stream's entries, in order");
    listener.close().await;
}

#[tokio::test]
async fn a_small_append_signal_carries_its_entry_and_the_previous_id() {
    let env = TestEnv::one().await;
    let conversation = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conversation);
    let mut conn = Conn::open(&env.url(0), &sender.with_cursor()).await;
    let (first, _) = conn.send(Uuid::new_v4(), "small").await;
    let large = "L".repeat(server::store::SIGNAL_BODY_MAX_BYTES + 1);
    let (second, _) = conn.send(Uuid::new_v4(), &large).await;
    let (third, _) = conn.send(Uuid::new_v4(), "small again").await;
    conn.close().await;
    let signals = appended_signals(&env).await;
    let stream = recovery_protocol::keys::stream(conversation);
    let field = |fields: &[(String, String)], name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let ours: Vec<&Vec<(String, String)>> = signals
        .iter()
        .map(|(_, fields)| fields)
        .filter(|fields| field(fields, "stream").as_deref() == Some(stream.as_str()))
        .collect();
    assert_eq!(ours.len(), 3, "one signal per append");
    assert_eq!(field(ours[0], "prev").as_deref(), Some("0-0"));
    assert_eq!(field(ours[0], "id"), Some(first.to_string()));
    assert_eq!(field(ours[0], "body").as_deref(), Some("small"));
    assert_eq!(field(ours[1], "body"), None, "a large body is not carried");
    assert_eq!(field(ours[1], "id"), None);
    assert_eq!(field(ours[2], "prev"), Some(second.to_string()));
    assert_eq!(field(ours[2], "id"), Some(third.to_string()));
    assert_eq!(field(ours[2], "body").as_deref(), Some("small again"));
}

/// Every entry of the appended-signals stream, oldest first.
async fn appended_signals(env: &TestEnv) -> Vec<(String, Vec<(String, String)>)> {
    let mut redis = env.redis_conn().await;
    redis::cmd("XRANGE")
        .arg(recovery_protocol::keys::APPENDED_SIGNALS)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .expect("XRANGE of the appended signals")
}
