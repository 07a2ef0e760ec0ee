//! Gaps, epochs, idempotent sends and bad input.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use recovery_protocol::{ConnectParams, ErrorCode, GapReason, ServerFrame, StreamId};
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

#[tokio::test]
async fn gap_is_declared_when_retention_trimmed_the_missed_messages() {
    // Retention of 1 s: every append trims what is older (MINID).
    let env = TestEnv::start(1, |config| config.retention = Duration::from_secs(1)).await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conversation);
    let mut reader = Device::new(Uuid::new_v4(), conversation);
    let old = send_many(&url, &sender, 4, "old").await;
    reader.last_id = Some(old[0]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let fresh = send_many(&url, &sender, 2, "fresh").await; // trims the old ones

    let conn = Conn::open(&url, &reader.with_cursor()).await;
    let (resume_from, first_available, reason) = conn.gap.expect("a declared gap");
    assert_eq!(reason, GapReason::Trimmed);
    assert_eq!(resume_from, old[0]);
    assert_eq!(first_available, fresh[0]);
    assert_eq!(conn.ids(), fresh, "replay restarts at first_available");
    conn.close().await;

    // A cursor at the newest message needs no gap even though older
    // entries were trimmed.
    reader.last_id = Some(fresh[1]);
    let conn = Conn::open(&url, &reader.with_cursor()).await;
    assert!(conn.gap.is_none());
    assert!(conn.messages.is_empty());
    conn.close().await;
}

#[tokio::test]
async fn epoch_changes_when_the_stream_is_deleted_and_recreated() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conversation);
    let mut reader = Device::new(Uuid::new_v4(), conversation);
    send_many(&url, &sender, 3, "before").await;
    let conn = Conn::open(&url, &reader.with_cursor()).await;
    conn.remember(&mut reader);
    let old_epoch = conn.epoch();
    conn.close().await;

    // The stream is lost (its meta hash survives, as documented).
    let mut redis = env.redis_conn().await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("stream:conversation:{conversation}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let after = send_many(&url, &sender, 2, "after").await;

    let conn = Conn::open(&url, &reader.with_cursor()).await;
    assert_ne!(
        conn.epoch(),
        old_epoch,
        "a recreated stream has a new epoch"
    );
    let (_, first_available, reason) = conn.gap.expect("epoch change is declared");
    assert_eq!(reason, GapReason::EpochChanged);
    assert_eq!(first_available, after[0]);
    assert_eq!(conn.ids(), after);
    conn.close().await;
}

#[tokio::test]
async fn retried_send_returns_the_original_id_and_appends_once() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let device = Device::new(Uuid::new_v4(), conversation);
    let client_msg_id = Uuid::new_v4();
    let mut conn = Conn::open(&url, &device.with_cursor()).await;
    let (first, duplicate) = conn.send(client_msg_id, "once").await;
    assert!(!duplicate);
    conn.close().await;
    // Retry on a new socket, as after a drop before the ack arrived.
    let mut conn = Conn::open(&url, &device.with_cursor()).await;
    let (again, duplicate) = conn.send(client_msg_id, "once").await;
    assert!(duplicate);
    assert_eq!(again, first);
    conn.close().await;
    let mut redis = env.redis_conn().await;
    let length: u64 = redis::cmd("XLEN")
        .arg(format!("stream:conversation:{conversation}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(length, 1);
}

async fn http_400(url: &str, query: &str) -> (u16, serde_json::Value) {
    match tokio_tungstenite::connect_async(format!("{url}?{query}")).await {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body).expect("JSON error body");
            (response.status().as_u16(), json)
        }
        Ok(_) => panic!("query {query:?} was accepted"),
        Err(other) => panic!("unexpected error for {query:?}: {other}"),
    }
}

#[tokio::test]
async fn bad_query_gets_400_naming_the_parameter_and_writes_nothing() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let user = Uuid::new_v4();
    let conversation = Uuid::new_v4();
    let cases = [
        (format!("conversation_id={conversation}"), "user_id"),
        (format!("user_id={user}"), "conversation_id"),
        (
            format!("user_id=abc&conversation_id={conversation}"),
            "user_id",
        ),
        (
            format!("user_id={user}&conversation_id={conversation}&client_id=1"),
            "client_id",
        ),
        (
            format!("user_id={user}&conversation_id={conversation}&last_id=5-x"),
            "last_id",
        ),
        (
            format!("user_id={user}&conversation_id={conversation}&last_id=-1"),
            "last_id",
        ),
        (
            format!("user_id={user}&conversation_id={conversation}&epoch="),
            "epoch",
        ),
    ];
    for (query, parameter) in cases {
        let (status, body) = http_400(&url, &query).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(parameter),
            "{query}: {body}"
        );
    }
    let mut redis = env.redis_conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(keys.is_empty(), "rejected requests wrote {keys:?}");
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays_usable() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let device = Device::new(Uuid::new_v4(), Uuid::new_v4());
    let mut conn = Conn::open(&url, &device.with_cursor()).await;
    let bad = [
        "not json".to_string(),
        r#"{"no_type":1}"#.to_string(),
        r#"{"type":"subscribe"}"#.to_string(),
        r#"{"type":"send","client_msg_id":"nope","body":"x"}"#.to_string(),
        r#"{"type":"ack","id":"99999999999999-0"}"#.to_string(),
    ];
    for text in bad {
        conn.send_text(text.clone()).await;
        match conn.next_control().await {
            Some(ServerFrame::Error { code, message, .. }) => {
                assert_eq!(code, ErrorCode::BadFrame, "{text}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{text}: expected error bad_frame, got {other:?}"),
        }
    }
    conn.ws
        .send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert!(matches!(
        conn.next_control().await,
        Some(ServerFrame::Error {
            code: ErrorCode::BadFrame,
            ..
        })
    ));
    // Still usable.
    let (id, _) = conn.send(Uuid::new_v4(), "still here").await;
    assert!(id > StreamId::ZERO);
    conn.close().await;
}

#[tokio::test]
async fn oversize_body_is_too_large_and_oversize_frame_closes_1009() {
    let env = TestEnv::start(1, |config| {
        config.max_body_bytes = 1000;
        config.max_frame_bytes = 4096;
    })
    .await;
    let url = env.url(0);
    let device = Device::new(Uuid::new_v4(), Uuid::new_v4());
    let mut conn = Conn::open(&url, &device.with_cursor()).await;
    let client_msg_id = Uuid::new_v4();
    let body = "x".repeat(1001);
    conn.send_text(
        recovery_protocol::ClientFrame::Send {
            client_msg_id,
            body,
        }
        .to_json(),
    )
    .await;
    match conn.next_control().await {
        Some(ServerFrame::Error {
            code,
            client_msg_id: Some(id),
            ..
        }) => {
            assert_eq!(code, ErrorCode::TooLarge);
            assert_eq!(id, client_msg_id);
        }
        other => panic!("expected too_large, got {other:?}"),
    }
    // A frame over the frame limit closes the socket with 1009.
    conn.send_text("y".repeat(10_000)).await;
    let close_code = loop {
        match tokio::time::timeout(FRAME_TIMEOUT, conn.ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close_code, Some(1009));
}

#[tokio::test]
async fn client_id_is_issued_once_and_kept() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let params = ConnectParams {
        user_id: Uuid::new_v4(),
        conversation_id: Uuid::new_v4(),
        client_id: None,
        last_id: None,
        epoch: None,
    };
    let conn = Conn::open(&url, &params).await;
    let issued = conn.client_id();
    conn.close().await;
    let again = Conn::open(
        &url,
        &ConnectParams {
            client_id: Some(issued),
            ..params
        },
    )
    .await;
    assert_eq!(again.client_id(), issued);
    again.close().await;
}

#[tokio::test]
async fn cursor_newer_than_the_stream_without_epoch_is_declared_not_skipped() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let sent = send_many(&url, &Device::new(Uuid::new_v4(), conversation), 3, "m").await;
    let mut stale = Device::new(Uuid::new_v4(), conversation);
    stale.last_id = Some(StreamId::new(99_999_999_999_999, 0)); // from an older incarnation
    let conn = Conn::open(&url, &stale.with_cursor()).await;
    let (_, first_available, reason) = conn.gap.expect("declared");
    assert_eq!(reason, GapReason::EpochChanged);
    assert_eq!(first_available, sent[0]);
    assert_eq!(conn.ids(), sent);
    conn.close().await;
}

/// Reads until the server's close frame; `None` if the connection ended
/// without one (what a client reports as 1006).
async fn close_code_from_server(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(FRAME_TIMEOUT, ws.next())
            .await
            .expect("the server answers in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Protocol errors fail the connection with the close code RFC 6455 asks
/// for (before issue 10 the server dropped TCP: the client saw 1006).
#[tokio::test]
async fn protocol_errors_close_with_1007_or_1002_not_a_dropped_connection() {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;
    let env = TestEnv::one().await;
    let url = env.url(0);
    let invalid_utf8 =
        || Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    let reserved_bits = || {
        let mut frame = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
        frame.header_mut().rsv1 = true;
        frame
    };
    let reserved_opcode = || Frame::message(b"{}".to_vec(), OpCode::Data(Data::Reserved(3)), true);
    let cases: [(&str, Frame, u16); 3] = [
        ("invalid UTF-8 in a text frame", invalid_utf8(), 1007),
        ("RSV1 set without an extension", reserved_bits(), 1002),
        ("reserved opcode 3", reserved_opcode(), 1002),
    ];
    for (what, frame, expected) in cases {
        let device = Device::new(Uuid::new_v4(), Uuid::new_v4());
        let mut conn = Conn::open(&url, &device.with_cursor()).await;
        conn.ws.send(Message::Frame(frame)).await.unwrap();
        let code = close_code_from_server(&mut conn.ws).await;
        assert_eq!(code, Some(expected), "{what}");
    }
}

/// A client's close is answered with a close frame (the closing
/// handshake), not by dropping the connection, and only after the final
/// cursor save: a reconnect right after the handshake finds the cursor.
#[tokio::test]
async fn a_client_close_is_answered() {
    let env = TestEnv::start(1, |config| config.sync_interval = Duration::from_secs(60)).await;
    let device = Device::new(Uuid::new_v4(), Uuid::new_v4());
    let mut conn = Conn::open(&env.url(0), &device.stored_only()).await;
    let (id, _) = conn.send(Uuid::new_v4(), "mine").await;
    conn.read_until(1).await;
    conn.ack(id).await;
    conn.ws
        .close(Some(tungstenite::protocol::CloseFrame {
            code: 1000u16.into(),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    assert_eq!(close_code_from_server(&mut conn.ws).await, Some(1000));
    let again = Conn::open(&env.url(0), &device.stored_only()).await;
    assert_eq!(
        (again.cursor_source(), again.resume_from()),
        (recovery_protocol::CursorSource::Stored, id),
        "the cursor was saved before the close was answered"
    );
    again.close().await;
}

/// One spelling of ids everywhere: the query string and `send` frames
/// accept the hyphenated form (either case) and reject braced, URN and
/// simple forms; bad percent-encoding is a `query` error, not text.
#[tokio::test]
async fn ids_have_one_spelling_and_bad_percent_encoding_is_rejected() {
    let env = TestEnv::one().await;
    let url = env.url(0);
    let user = Uuid::new_v4();
    let conversation = Uuid::new_v4();
    for query in [
        format!("user_id=%G1&conversation_id={conversation}"),
        format!("user_id={user}&conversation_id={conversation}&epoch=%"),
        format!("user_id={user}&conversation_id={conversation}&epoch=%FF"),
    ] {
        let (status, body) = http_400(&url, &query).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["parameter"], "query", "{query}: {body}");
    }
    let braced = format!("{{{user}}}");
    let (status, body) = http_400(
        &url,
        &format!("user_id={braced}&conversation_id={conversation}"),
    )
    .await;
    assert_eq!((status, body["parameter"].as_str()), (400, Some("user_id")));

    let mut conn = Conn::open(&url, &Device::new(user, conversation).with_cursor()).await;
    let id = Uuid::new_v4();
    for spelling in [
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.simple().to_string(),
    ] {
        let text = format!(r#"{{"type":"send","client_msg_id":"{spelling}","body":"x"}}"#);
        conn.send_text(text).await;
        match conn.next_control().await {
            Some(ServerFrame::Error { code, message, .. }) => {
                assert_eq!(code, ErrorCode::BadFrame, "{spelling}: {message}");
                assert!(message.contains("hyphenated"), "{spelling}: {message}");
            }
            other => panic!("{spelling}: expected bad_frame, got {other:?}"),
        }
    }
    // The uppercase hyphenated form is the same id, as in the query string.
    let upper = id.hyphenated().to_string().to_uppercase();
    conn.send_text(format!(
        r#"{{"type":"send","client_msg_id":"{upper}","body":"x"}}"#
    ))
    .await;
    let first = match conn.next_control().await {
        Some(ServerFrame::Ack {
            id: at, duplicate, ..
        }) => {
            assert!(!duplicate);
            at
        }
        other => panic!("uppercase hyphenated id: expected an ack, got {other:?}"),
    };
    let (again, duplicate) = conn.send(id, "x").await;
    assert_eq!((again, duplicate), (first, true), "one id, one key");
    conn.close().await;
}
