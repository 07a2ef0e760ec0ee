//! The seed project's four recovery tests, now run against a real Redis
//! and asserting exact delivery sets.

mod common;

use std::time::Duration;

use common::*;
use recovery_protocol::{CursorSource, StreamId};
use uuid::Uuid;

#[tokio::test]
async fn test_offline_message_recovery_basic_flow() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conversation);
    let mut reader = Device::new(Uuid::new_v4(), conversation);

    // Online: reader sees the first 5 live.
    let mut online = Conn::open(&url, &reader.with_cursor()).await;
    let before = send_many(&url, &sender, 5, "before").await;
    online.read_until(5).await;
    assert_eq!(online.ids(), before);
    online.remember(&mut reader);
    online.close().await;

    // Offline: others send N.
    let missed = send_many(&url, &sender, 37, "missed").await;

    // Back with its cursor: exactly those N, in order, nothing else.
    let back = Conn::open(&url, &reader.with_cursor()).await;
    assert_eq!(back.cursor_source(), CursorSource::Client);
    assert_eq!(back.resume_from(), *before.last().unwrap());
    assert!(back.gap.is_none());
    assert_eq!(back.ids(), missed, "exactly the missed messages, in order");
    assert_eq!(
        back.caught_up,
        Some((*missed.last().unwrap(), missed.len() as u64))
    );
    let bodies: Vec<_> = back.messages.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies[0], "missed-0");
    assert!(back
        .messages
        .iter()
        .all(|m| m.sender_id == sender.user_id && m.conversation_id == conversation));
    back.close().await;
}

#[tokio::test]
async fn test_offline_message_recovery_with_no_previous_state() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conversation);
    let history = send_many(&url, &sender, 12, "history").await;

    // A brand-new device (no client_id, no cursor) gets the whole retained
    // history and a client_id to keep.
    let params = recovery_protocol::ConnectParams {
        user_id: Uuid::new_v4(),
        conversation_id: conversation,
        client_id: None,
        last_id: None,
        epoch: None,
    };
    let fresh = Conn::open(&url, &params).await;
    assert_eq!(fresh.cursor_source(), CursorSource::None);
    assert_eq!(fresh.resume_from(), StreamId::ZERO);
    assert!(!fresh.client_id().is_nil());
    assert_eq!(fresh.ids(), history);
    fresh.close().await;

    // An empty conversation: hello, then caught_up at 0 with nothing replayed.
    let empty = Device::new(Uuid::new_v4(), Uuid::new_v4());
    let conn = Conn::open(&url, &empty.with_cursor()).await;
    assert_eq!(conn.caught_up, Some((StreamId::ZERO, 0)));
    conn.close().await;
}

#[tokio::test]
async fn test_multiple_clients_same_conversation_independent_recovery() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let alice = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conversation);
    let mut phone = Device::new(alice, conversation);
    let mut laptop = Device::new(alice, conversation);
    let mut bob = Device::new(Uuid::new_v4(), conversation);

    let mut all = Vec::new();
    // All three online for the first batch.
    let mut phone_conn = Conn::open(&url, &phone.with_cursor()).await;
    let mut laptop_conn = Conn::open(&url, &laptop.with_cursor()).await;
    let mut bob_conn = Conn::open(&url, &bob.with_cursor()).await;
    all.extend(send_many(&url, &sender, 4, "a").await);
    phone_conn.read_until(4).await;
    phone_conn.remember(&mut phone);
    phone_conn.close().await; // the phone leaves first

    all.extend(send_many(&url, &sender, 6, "b").await);
    laptop_conn.read_until(10).await;
    laptop_conn.remember(&mut laptop);
    laptop_conn.close().await; // then the laptop

    all.extend(send_many(&url, &sender, 5, "c").await);
    bob_conn.read_until(15).await;
    bob_conn.remember(&mut bob);
    bob_conn.close().await; // bob last

    all.extend(send_many(&url, &sender, 3, "d").await);

    // Each device gets exactly its own missing set, even though the phone
    // and laptop are the same user.
    let phone_back = Conn::open(&url, &phone.with_cursor()).await;
    assert_eq!(phone_back.ids(), all[4..].to_vec());
    let laptop_back = Conn::open(&url, &laptop.with_cursor()).await;
    assert_eq!(laptop_back.ids(), all[10..].to_vec());
    let bob_back = Conn::open(&url, &bob.with_cursor()).await;
    assert_eq!(bob_back.ids(), all[15..].to_vec());
    for conn in [phone_back, laptop_back, bob_back] {
        conn.close().await;
    }
}

#[tokio::test]
async fn test_client_sync_state_persistence_and_ttl() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let mut device = Device::new(Uuid::new_v4(), conversation);
    let sender = Device::new(Uuid::new_v4(), conversation);
    let ids = send_many(&url, &sender, 10, "m").await;

    // Receive all 10 but ack only up to the 6th; also send messages from
    // this device (sends alone must never advance the stored cursor).
    let mut conn = Conn::open(&url, &device.stored_only()).await;
    assert_eq!(conn.ids(), ids);
    conn.ack(ids[5]).await;
    let own = conn.send(Uuid::new_v4(), "my own").await.0;
    conn.read_until(11).await;
    let key = format!(
        "client:sync:{}:{}:{}",
        device.user_id, device.client_id, conversation
    );
    let mut redis = env.redis_conn().await;
    // Saved by the next sync tick (every 100 ms here): polled, not slept
    // for, so a slow machine only makes it take longer. Bounded: 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let state = loop {
        let stored: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("GET sync state");
        let state: Option<serde_json::Value> =
            stored.map(|text| serde_json::from_str(&text).expect("stored state is JSON"));
        match state {
            Some(state) if state["last_message_id"] == ids[5].to_string() => break state,
            state => assert!(
                std::time::Instant::now() < deadline,
                "the acked cursor {} was not saved while online: {state:?}",
                ids[5]
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(state["client_id"], device.client_id.to_string());
    assert_eq!(state["user_id"], device.user_id.to_string());
    assert_eq!(state["conversation_id"], conversation.to_string());
    assert!(state["last_sync_at"].as_u64().unwrap() > 0);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let thirty_days = 30 * 24 * 3600;
    assert!(
        ttl > thirty_days - 60 && ttl <= thirty_days,
        "TTL {ttl}s is not ~30 days"
    );
    conn.close().await;

    // Reconnect without last_id: resumes from the stored (acked) cursor, so
    // the unacked tail and our own message come again (at-least-once).
    device.last_id = None;
    let back = Conn::open(&url, &device.stored_only()).await;
    assert_eq!(back.cursor_source(), CursorSource::Stored);
    assert_eq!(back.resume_from(), ids[5]);
    let mut expected = ids[6..].to_vec();
    expected.push(own);
    assert_eq!(back.ids(), expected);
    back.close().await;

    // A device that only sends never gets a stored cursor.
    let talker = Device::new(Uuid::new_v4(), conversation);
    let mut talk = Conn::open(&url, &talker.stored_only()).await;
    talk.send(Uuid::new_v4(), "just talking").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    talk.close().await;
    let key = format!(
        "client:sync:{}:{}:{}",
        talker.user_id, talker.client_id, conversation
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists, "sends must not create or advance a stored cursor");
}

#[tokio::test]
async fn stored_cursor_saved_on_disconnect_even_before_sync_tick() {
    let env = TestEnv::start(1, |config| config.sync_interval = Duration::from_secs(3600)).await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let device = Device::new(Uuid::new_v4(), conversation);
    let ids = send_many(&url, &Device::new(Uuid::new_v4(), conversation), 3, "x").await;
    let mut conn = Conn::open(&url, &device.stored_only()).await;
    conn.ack(ids[1]).await;
    conn.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let back = Conn::open(&url, &device.stored_only()).await;
    assert_eq!(
        back.resume_from(),
        ids[1],
        "final cursor saved at disconnect (step 7)"
    );
    assert_eq!(back.ids(), vec![ids[2]]);
    back.close().await;
}

#[tokio::test]
async fn cursors_are_per_conversation() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let user = Uuid::new_v4();
    let client_id = Uuid::new_v4();
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let mut in_first = Device::new(user, first);
    in_first.client_id = client_id;
    let mut in_second = Device::new(user, second);
    in_second.client_id = client_id;
    let second_ids = send_many(&url, &Device::new(Uuid::new_v4(), second), 3, "s").await;
    // Make the first conversation's ids newer than the second's.
    let first_ids = send_many(&url, &Device::new(Uuid::new_v4(), first), 3, "f").await;
    let mut conn = Conn::open(&url, &in_first.stored_only()).await;
    conn.ack(first_ids[2]).await;
    conn.close().await;
    // The same device in the other conversation has no stored cursor there.
    let other = Conn::open(&url, &in_second.stored_only()).await;
    assert_eq!(other.cursor_source(), CursorSource::None);
    assert_eq!(other.ids(), second_ids);
    other.close().await;
}
