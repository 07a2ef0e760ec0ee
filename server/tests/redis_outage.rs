//! Redis goes away and comes back: sends get `error unavailable` (never a
//! false ack), /healthz turns unhealthy, and live fan-out resumes without
//! losing or repeating anything. Redis stalls longer than the server's
//! timeout: a send caught by the stall is `indeterminate`, never "not
//! appended", because it is appended when Redis resumes.

mod common;

use std::time::Duration;

use common::*;
use recovery_protocol::{ClientFrame, ErrorCode, ServerFrame, StreamId};
use redis_provider::{Persistence, ProviderOptions};
use uuid::Uuid;

async fn health(env: &TestEnv) -> u16 {
    let response = http_get(&format!("{}/healthz", env.servers[0].http_url())).await;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn redis_restart_gives_unavailable_then_live_delivery_resumes_exactly() {
    let options = ProviderOptions {
        persistence: Persistence::AofAlways,
        ..ProviderOptions::default()
    };
    let mut env = TestEnv::start_with(&options, 1, |_| {}).await;
    let url = env.url(0);
    let conversation = Uuid::new_v4();
    let mut listener = Conn::open(
        &url,
        &Device::new(Uuid::new_v4(), conversation).with_cursor(),
    )
    .await;
    let mut sender = Conn::open(
        &url,
        &Device::new(Uuid::new_v4(), conversation).with_cursor(),
    )
    .await;
    let mut acked: Vec<StreamId> = Vec::new();
    for i in 0..3 {
        acked.push(sender.send(Uuid::new_v4(), &format!("before-{i}")).await.0);
    }
    assert_eq!(health(&env).await, 200);

    env.redis.stop().await.expect("redis stops");
    let retry_id = Uuid::new_v4();
    sender
        .send_text(
            ClientFrame::Send {
                client_msg_id: retry_id,
                body: "during".into(),
            }
            .to_json(),
        )
        .await;
    match sender.next_control().await {
        Some(ServerFrame::Error {
            code,
            client_msg_id,
            ..
        }) => {
            // Usually `unavailable` (the reconnect was refused: never
            // sent); `indeterminate` if the send raced the dropped
            // connection. Never an ack.
            assert!(
                matches!(code, ErrorCode::Unavailable | ErrorCode::Indeterminate),
                "{code:?}"
            );
            assert_eq!(client_msg_id, Some(retry_id));
        }
        other => panic!("a send while Redis is down must get error unavailable, got {other:?}"),
    }
    assert_eq!(
        health(&env).await,
        503,
        "/healthz is unhealthy during the outage"
    );

    env.redis.start().await.expect("redis starts again");
    let mut healthy = false;
    for _ in 0..100 {
        if health(&env).await == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "/healthz recovers once Redis is back");
    // The retry with the same client_msg_id is appended exactly once.
    let (id, _duplicate) = sender.send(retry_id, "during").await;
    acked.push(id);
    for i in 0..3 {
        acked.push(sender.send(Uuid::new_v4(), &format!("after-{i}")).await.0);
    }
    // The socket that stayed open through the outage gets everything live,
    // once, in order (the tailer reconnected and kept its cursor).
    listener.read_until(acked.len()).await;
    assert_eq!(listener.ids(), acked);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.next_control())
            .await
            .is_err(),
        "nothing more (no repeats) arrives"
    );
    assert_eq!(listener.messages.len(), acked.len());
}

/// Issue 10's "broken contract": Redis frozen (SIGSTOP / docker pause)
/// past the server's 3 s response timeout. The append script was already
/// written to Redis, which runs it when it resumes; so the server must not
/// promise "not appended" (`unavailable`, as it did before) but say
/// `indeterminate`, and the retry with the same client_msg_id must find
/// the message appended once (`duplicate: true`).
#[tokio::test]
async fn redis_stall_past_the_timeout_is_indeterminate_not_unavailable() {
    let mut env = TestEnv::one().await;
    let conversation = Uuid::new_v4();
    let mut sender = Conn::open(
        &env.url(0),
        &Device::new(Uuid::new_v4(), conversation).with_cursor(),
    )
    .await;
    sender.send(Uuid::new_v4(), "before").await;

    env.redis.pause().await.expect("redis pauses");
    let stalled_id = Uuid::new_v4();
    sender
        .send_text(
            ClientFrame::Send {
                client_msg_id: stalled_id,
                body: "stalled".into(),
            }
            .to_json(),
        )
        .await;
    let answer = tokio::time::timeout(Duration::from_secs(10), sender.next_control()).await;
    env.redis.resume().await.expect("redis resumes");
    match answer {
        Ok(Some(ServerFrame::Error {
            code,
            client_msg_id,
            message,
            ..
        })) => {
            assert_eq!(
                code,
                ErrorCode::Indeterminate,
                "a timed-out append may have run: {message}"
            );
            assert_eq!(client_msg_id, Some(stalled_id));
            assert!(message.contains("may have been appended"), "{message}");
        }
        other => panic!("a send stalled past the timeout must get an error, got {other:?}"),
    }
    // Redis ran the stalled script when it resumed: the retry finds it.
    let mut outcome = None;
    for _ in 0..50 {
        sender
            .send_text(
                ClientFrame::Send {
                    client_msg_id: stalled_id,
                    body: "stalled".into(),
                }
                .to_json(),
            )
            .await;
        match sender.next_control().await {
            Some(ServerFrame::Ack { duplicate, id, .. }) => {
                outcome = Some((id, duplicate));
                break;
            }
            Some(ServerFrame::Error { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected answer to the retry: {other:?}"),
        }
    }
    let (id, duplicate) = outcome.expect("the retry is acked once Redis is back");
    assert!(
        duplicate,
        "the stalled send had been appended (at {id}); the retry must say so"
    );
}
