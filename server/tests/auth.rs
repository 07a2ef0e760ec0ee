//! Who may connect: every request is refused before the upgrade unless it
//! carries a valid token for a conversation the token grants, the refusal
//! writes nothing to Redis, and a user cannot act as another (sender,
//! stored cursor, dedup keys). The cursor test also runs against
//! `--insecure-no-auth` to show it catches the attack it is about.

mod common;

use common::*;
use recovery_protocol::{ConnectParams, CursorSource, ServerFrame, StreamId};
use redis::AsyncCommands;
use server::Config;
use tokio_tungstenite::tungstenite;
use uuid::Uuid;

const SECRET: &str = "test-secret-test-secret-test-secret-0123";

fn now_s() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing cannot fail with an HMAC key")
}

/// A valid token for `user` granting `conversations`.
fn token(user: Uuid, conversations: &[Uuid]) -> String {
    sign(
        &serde_json::json!({ "sub": user, "exp": now_s() + 600, "conversations": conversations }),
        SECRET,
    )
}

fn secured(config: &mut Config) {
    config.auth.insecure_no_auth = false;
    config.auth.jwt_secret = Some(SECRET.to_string());
}

fn query(conversation: Uuid, client: Uuid) -> String {
    format!("conversation_id={conversation}&client_id={client}")
}

/// The HTTP status and JSON body of a refused upgrade.
async fn refused(url: &str, query: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    match connect_authorized(url, query, bearer).await {
        Ok(_) => panic!("the upgrade was accepted (query {query:?})"),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body).unwrap_or_else(|err| {
                panic!(
                    "body is not JSON ({err}): {}",
                    String::from_utf8_lossy(&body)
                )
            });
            (response.status().as_u16(), json)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
    }
}

async fn key_count(env: &TestEnv) -> u64 {
    let mut redis = env.redis_conn().await;
    redis::cmd("DBSIZE")
        .query_async(&mut redis)
        .await
        .expect("DBSIZE")
}

#[tokio::test]
async fn starting_without_a_key_is_refused() {
    init_tracing();
    let redis = redis().await;
    let err = server::start(Config::for_tests(redis.url()))
        .await
        .err()
        .expect("no key: no server");
    let text = err.to_string();
    assert!(text.contains("--insecure-no-auth"), "{text}");
}

#[tokio::test]
async fn refusals_come_before_the_upgrade_and_write_nothing() {
    let env = TestEnv::start(1, secured).await;
    let url = env.url(0);
    let (alice, conversation, other_conversation) =
        (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    // A conversation with data, so a leak would have something to show.
    let good = token(alice, &[conversation]);
    let ws = connect_authorized(&url, &query(conversation, Uuid::new_v4()), Some(&good))
        .await
        .expect("a valid token connects");
    let mut conn = Conn::after_connect(ws).await;
    conn.send(Uuid::new_v4(), "hello").await;
    conn.close().await;
    let before = key_count(&env).await;
    let q = query(conversation, Uuid::new_v4());

    let (status, body) = refused(&url, &q, None).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("missing_token"))
    );
    // The seed's way in: a made-up user_id and nothing else.
    let (status, _) = refused(&url, &format!("{q}&user_id={alice}"), None).await;
    assert_eq!(status, 401);

    let forged = sign(
        &serde_json::json!({ "sub": alice, "exp": now_s() + 600, "conversations": [conversation] }),
        "not-the-server-secret-not-the-server-secret",
    );
    let (status, body) = refused(&url, &q, Some(&forged)).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("bad_signature"))
    );

    let expired = sign(
        &serde_json::json!({ "sub": alice, "exp": now_s() - 3600, "conversations": [conversation] }),
        SECRET,
    );
    let (status, body) = refused(&url, &q, Some(&expired)).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("expired")));
    // The same through the query parameter.
    let (status, body) = refused(&url, &format!("{q}&token={expired}"), None).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("expired")));

    let outsider = token(Uuid::new_v4(), &[other_conversation]);
    let (status, body) = refused(&url, &q, Some(&outsider)).await;
    assert_eq!((status, body["reason"].as_str()), (403, Some("not_member")));

    let (status, body) = refused(
        &url,
        &format!("{q}&user_id={}", Uuid::new_v4()),
        Some(&good),
    )
    .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("user_mismatch"))
    );

    assert_eq!(
        key_count(&env).await,
        before,
        "a refused request wrote to Redis"
    );
    // Every refusal above is counted, by class.
    let metrics = env.servers[0].metrics().render();
    for (class, count) in [
        ("missing", 2),
        ("invalid", 1),
        ("expired", 2),
        ("forbidden", 2),
    ] {
        let line = format!("chat_auth_refusals_total{{reason=\"{class}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn the_sender_is_the_token_subject() {
    let env = TestEnv::start(1, secured).await;
    let url = env.url(0);
    let (alice, conversation) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = token(alice, &[conversation]);
    // Through the query parameter, with the matching user_id spelled out.
    let q = format!(
        "{}&user_id={alice}&token={alice_token}",
        query(conversation, Uuid::new_v4())
    );
    let ws = connect_authorized(&url, &q, None).await.expect("connects");
    let mut conn = Conn::after_connect(ws).await;
    let (id, _) = conn.send(Uuid::new_v4(), "from alice").await;
    conn.read_until(1).await;
    assert_eq!(conn.messages[0].id, id);
    assert_eq!(conn.messages[0].sender_id, alice);
    conn.close().await;
    // Stored in Redis under alice too.
    let mut redis = env.redis_conn().await;
    let stream = server::store::keys::stream(conversation);
    let entries: redis::streams::StreamRangeReply = redis.xrange_all(&stream).await.unwrap();
    let sender: String = entries.ids[0].get("sender_id").unwrap();
    assert_eq!(sender, alice.to_string());
}

/// Victim device (alice, client X) has a stored cursor at m1 of 3; then
/// an intruder with their own valid credentials reuses client X, looks at
/// the cursor and acks the head. Returns what the victim's next
/// reconnect without `last_id` replays (it should be m2, m3, m4).
async fn intrude(
    env: &TestEnv,
    secure: bool,
) -> (Vec<StreamId>, Vec<StreamId>, Option<CursorSource>) {
    let url = env.url(0);
    let (alice, mallory, sender, conversation) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let victim_client = Uuid::new_v4();
    let bearer = |user: Uuid| secure.then(|| token(user, &[conversation]));
    let open = |user: Uuid, client: Uuid| {
        let bearer = bearer(user);
        let url = url.clone();
        async move {
            // With auth the identity is the token's; without it, the query's
            // user_id is all there is, and the intruder simply claims alice's.
            let claimed = if user == mallory && !secure {
                alice
            } else {
                user
            };
            let params = ConnectParams {
                user_id: claimed,
                conversation_id: conversation,
                client_id: Some(client),
                last_id: None,
                epoch: None,
            };
            let q = if secure {
                query(conversation, client)
            } else {
                params.to_query()
            };
            let ws = connect_authorized(&url, &q, bearer.as_deref())
                .await
                .expect("connects");
            Conn::after_connect(ws).await
        }
    };
    let mut sending = open(sender, Uuid::new_v4()).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(sending.send(Uuid::new_v4(), &format!("m{i}")).await.0);
    }
    let mut victim = open(alice, victim_client).await;
    assert_eq!(victim.ids(), sent);
    victim.ack(sent[0]).await;
    victim.close().await;

    sent.push(sending.send(Uuid::new_v4(), "m3").await.0);
    sending.close().await;

    let mut intruder = open(mallory, victim_client).await;
    let seen_cursor = match intruder.hello {
        ServerFrame::Hello { cursor, .. } => Some(cursor),
        _ => None,
    };
    intruder.ack(*sent.last().unwrap()).await;
    intruder.close().await;

    let victim = open(alice, victim_client).await;
    let replayed = victim.ids();
    victim.close().await;
    (sent, replayed, seen_cursor)
}

#[tokio::test]
async fn another_user_cannot_read_or_move_a_device_cursor() {
    let env = TestEnv::start(1, secured).await;
    let (sent, replayed, intruder_cursor) = intrude(&env, true).await;
    assert_eq!(
        intruder_cursor,
        Some(CursorSource::None),
        "the intruder was shown a stored cursor"
    );
    assert_eq!(
        replayed,
        sent[1..],
        "the victim's unread messages were skipped"
    );
}

#[tokio::test]
async fn without_auth_the_cursor_attack_works() {
    // The control: the same moves against --insecure-no-auth (today's
    // behaviour) skip the victim's unread messages, so the test above can fail.
    let env = TestEnv::one().await;
    let (_sent, replayed, intruder_cursor) = intrude(&env, false).await;
    assert_eq!(intruder_cursor, Some(CursorSource::Stored));
    assert!(replayed.is_empty(), "expected the skip, got {replayed:?}");
}

#[tokio::test]
async fn dedup_keys_belong_to_their_sender() {
    let env = TestEnv::start(1, secured).await;
    let url = env.url(0);
    let (alice, mallory, conversation) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let connect = |user: Uuid| {
        let url = url.clone();
        async move {
            let ws = connect_authorized(
                &url,
                &query(conversation, Uuid::new_v4()),
                Some(&token(user, &[conversation])),
            )
            .await
            .expect("connects");
            Conn::after_connect(ws).await
        }
    };
    let client_msg_id = Uuid::new_v4();
    let mut a = connect(alice).await;
    let (first, duplicate) = a.send(client_msg_id, "alice's").await;
    assert!(!duplicate);
    // Another member reusing alice's client_msg_id neither learns alice's
    // message id nor has their own message dropped.
    let mut m = connect(mallory).await;
    let (theirs, duplicate) = m.send(client_msg_id, "mallory's").await;
    assert!(!duplicate, "mallory read alice's dedup key");
    assert_ne!(theirs, first);
    // Alice's retry is still recognised.
    assert_eq!(a.send(client_msg_id, "alice's").await, (first, true));
    a.close().await;
    m.close().await;
}
