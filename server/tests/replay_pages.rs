//! Replay pages: sized from the widest body the append script records
//! (one plain XRANGE per page), or bounded entry by entry in Redis for a
//! stream whose widest body is unknown. Either way a page stays within the
//! configured bytes and the replay is complete and in order.

mod common;

use std::time::Duration;

use common::*;
use rand::Rng;
use recovery_protocol::{keys, ConnectParams, StreamId};
use redis::AsyncCommands;
use server::store::{entries_within, Store, StoreSettings};
use uuid::Uuid;

fn settings(page_bytes: usize) -> StoreSettings {
    StoreSettings {
        retention: Duration::from_secs(86400),
        state_ttl: Duration::from_secs(86400),
        dedup_ttl: Duration::from_secs(86400),
        page_bytes,
        max_messages: 0,
    }
}

async fn widest_recorded(redis: &mut redis::aio::MultiplexedConnection, conv: Uuid) -> Option<u64> {
    redis
        .hget(keys::meta(conv), "widest_body")
        .await
        .expect("HGET widest_body")
}

/// A device seen for the first time, resuming after `first`.
fn new_device_after(conv: Uuid, first: StreamId) -> ConnectParams {
    ConnectParams {
        user_id: Uuid::new_v4(),
        conversation_id: conv,
        client_id: Some(Uuid::new_v4()),
        last_id: Some(first),
        epoch: None,
    }
}

/// Reads the whole stream after `after` page by page, as a replay does,
/// checking each page's size against the byte bound.
async fn read_all_pages(
    store: &Store,
    conv: Uuid,
    page_bytes: usize,
    widest_body: Option<usize>,
    until: StreamId,
) -> (Vec<(StreamId, usize)>, usize) {
    let mut after = StreamId::ZERO;
    let mut read = Vec::new();
    let mut pages = 0;
    // Bounded: one page holds at least one entry.
    for _ in 0..10_000 {
        let page = store
            .read_after(conv, after, until, 500, widest_body)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = last.message.id;
        pages += 1;
        // What the byte bound counts: the id and every field name and value.
        let bytes: usize = page
            .iter()
            .map(|entry| {
                let m = &entry.message;
                m.id.to_string().len() + 36 + 72 + m.sent_at_ms.to_string().len() + m.body.len()
            })
            .sum();
        assert!(
            page.len() == 1 || bytes <= page_bytes,
            "a page of {} entries holds {bytes} bytes; the bound is {page_bytes}",
            page.len()
        );
        read.extend(page.iter().map(|e| (e.message.id, e.message.body.len())));
        if after >= until {
            break;
        }
    }
    (read, pages)
}

#[tokio::test]
async fn the_append_script_records_the_widest_body_and_pages_keep_the_byte_bound() {
    init_tracing();
    let mut rng = seeded_rng("widest_body_pages");
    let redis = common::redis().await;
    let page_bytes = 8 * 1024;
    let store = Store::connect(redis.url(), settings(page_bytes))
        .await
        .expect("store");
    let mut conn = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let conv = Uuid::new_v4();
    let sender = Uuid::new_v4();
    let mut sizes = Vec::new();
    for index in 0..120 {
        // Small bodies, then a few wide ones, then small again: the width
        // only grows.
        let len = if (40..45).contains(&index) {
            rng.random_range(2_000..3_000)
        } else {
            rng.random_range(1..200)
        };
        store
            .append(conv, sender, Uuid::new_v4(), &"b".repeat(len))
            .await
            .expect("append");
        sizes.push(len);
        let widest = *sizes.iter().max().expect("one size");
        assert_eq!(
            widest_recorded(&mut conn, conv).await,
            Some(widest as u64),
            "after append {index}"
        );
    }
    let head = store.replay_head(conv).await.expect("head");
    let widest = *sizes.iter().max().expect("sizes");
    assert_eq!(head.widest_body, Some(widest));
    let (read, pages) = read_all_pages(&store, conv, page_bytes, head.widest_body, head.head).await;
    assert_eq!(
        read.iter().map(|(_, len)| *len).collect::<Vec<_>>(),
        sizes,
        "every entry once, in order"
    );
    let per_page = entries_within(page_bytes, widest, 500);
    assert_eq!(pages, sizes.len().div_ceil(per_page), "pages of {per_page}");
}

#[tokio::test]
async fn a_stream_without_a_recorded_width_is_paged_by_the_script() {
    init_tracing();
    let redis = common::redis().await;
    let page_bytes = 4 * 1024;
    let store = Store::connect(redis.url(), settings(page_bytes))
        .await
        .expect("store");
    let mut conn = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let conv = Uuid::new_v4();
    // Entries written before the server recorded widths (no meta field).
    let mut sizes = Vec::new();
    for index in 0..30usize {
        let len = if index % 7 == 3 { 3_000 } else { 50 };
        let _: String = redis::cmd("XADD")
            .arg(keys::stream(conv))
            .arg("*")
            .arg("sender_id")
            .arg(Uuid::new_v4().to_string())
            .arg("client_msg_id")
            .arg(Uuid::new_v4().to_string())
            .arg("body")
            .arg("l".repeat(len))
            .arg("sent_at_ms")
            .arg(1)
            .query_async(&mut conn)
            .await
            .expect("XADD");
        sizes.push(len);
    }
    // A later append through the server must not claim a width for a
    // stream whose older bodies it never saw.
    store
        .append(conv, Uuid::new_v4(), Uuid::new_v4(), "small")
        .await
        .expect("append");
    sizes.push(5);
    assert_eq!(widest_recorded(&mut conn, conv).await, None);
    let head = store.replay_head(conv).await.expect("head");
    assert_eq!(head.widest_body, None);
    let (read, pages) = read_all_pages(&store, conv, page_bytes, None, head.head).await;
    assert_eq!(read.iter().map(|(_, len)| *len).collect::<Vec<_>>(), sizes);
    assert!(pages > 1, "4 KiB pages over ~14 KiB of entries");
}

#[tokio::test]
async fn replay_with_small_pages_is_complete_and_ordered() {
    let env = TestEnv::start(1, |config| {
        config.limits.replay_page_bytes = 2 * 1024;
        config.backlog_page_size = 7;
    })
    .await;
    let conv = Uuid::new_v4();
    let sender = Device::new(Uuid::new_v4(), conv);
    let first = send_many(&env.url(0), &sender, 1, "first").await[0];
    let sent = send_many(&env.url(0), &sender, 60, "backlog").await;
    let params = new_device_after(conv, first);
    let conn = Conn::open(&env.url(0), &params).await;
    assert_eq!(conn.ids(), sent);
    assert_strictly_increasing(&conn.ids());
}

/// Pages read with a known width go over the replay connection, decoded
/// from the reply bytes (not through redis-rs's `Value`), and must be
/// exactly what the shared connection reads: bodies with CR LF, quotes,
/// non-ASCII and RESP-looking text included. One connection serves a whole
/// replay (pages are read one at a time) and stays open for the next.
#[tokio::test]
async fn replay_connection_pages_equal_the_shared_connections() {
    init_tracing();
    let mut rng = seeded_rng("replay_connection_pages");
    let redis = common::redis().await;
    let store = Store::connect(redis.url(), settings(1 << 20))
        .await
        .expect("store");
    let conv = Uuid::new_v4();
    let odd = [
        "a\r\nb",
        "*3\r\n$1\r\nx",
        "\"q\" \\ \u{e9}\u{1f600}",
        "",
        "+OK\r\n",
    ];
    for index in 0..700usize {
        let body = match rng.random_range(0..4) {
            0 => odd[index % odd.len()].to_string(),
            _ => "m".repeat(rng.random_range(1..300)),
        };
        store
            .append(conv, Uuid::new_v4(), Uuid::new_v4(), &body)
            .await
            .expect("append");
    }
    assert_eq!(store.replay_connections_open(), 0);
    let head = store.replay_head(conv).await.expect("head");
    let mut after = StreamId::ZERO;
    let mut pages = 0;
    for _ in 0..100 {
        let page = store
            .read_after(conv, after, head.head, 64, head.widest_body)
            .await
            .expect("page over the replay connection");
        let Some(last) = page.last() else { break };
        // The same range through the shared connection (`read_from` reads
        // ids >= its start through redis-rs).
        let first = page[0].message.id;
        let shared = store
            .read_from(conv, first, head.head, page.len())
            .await
            .expect("page over the shared connection");
        assert_eq!(page, shared, "page {pages} after {after}");
        after = last.message.id;
        pages += 1;
    }
    assert_eq!(after, head.head, "read up to the head");
    assert_eq!(pages, 700usize.div_ceil(64));
    assert_eq!(
        store.replay_connections_open(),
        1,
        "one replay connection, reused page after page"
    );
}

/// Redis's count of XRANGE calls so far (`INFO commandstats`).
async fn xrange_calls(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_xrange:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a call count"))
}

/// A counter from the server's `/metrics`.
async fn metric(server: &server::RunningServer, name: &str) -> u64 {
    let text = http_get(&format!("{}/metrics", server.http_url())).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().expect("a counter value"))
}

/// Replay reads the next page while it writes one (`session::replay`'s
/// prefetch), but never more than that one page ahead: a client that stops
/// reading stops the page reads too, instead of the whole backlog being
/// read into the server's memory. Checked from outside: Redis's XRANGE
/// count against the messages the server has written. When the client
/// reads on, it gets everything.
#[tokio::test]
async fn a_client_that_stops_reading_stops_the_page_reads() {
    const PAGE: u64 = 10;
    const BACKLOG: u64 = 4000;
    let env = TestEnv::start(1, |config| config.backlog_page_size = PAGE as u32).await;
    let store = Store::connect(env.redis.url(), settings(1 << 20))
        .await
        .expect("store");
    let conv = Uuid::new_v4();
    let append = || store.append(conv, Uuid::new_v4(), Uuid::new_v4(), "first");
    let first = append().await.expect("append").id;
    // 12 MB of backlog: far more than the socket buffers and the server's
    // write buffer take while the client reads nothing.
    let body = "b".repeat(3000);
    let mut sent = Vec::new();
    for _ in 0..BACKLOG {
        let appended = store
            .append(conv, Uuid::new_v4(), Uuid::new_v4(), &body)
            .await
            .expect("append");
        sent.push(appended.id);
    }
    let mut redis = env.redis_conn().await;
    let xrange_before = xrange_calls(&mut redis).await;
    let params = new_device_after(conv, first);
    let ws = connect_raw(&env.url(0), &params)
        .await
        .expect("websocket connects");
    // Read nothing until the server has stopped making progress (both
    // counts unchanged for a second; bounded: 30 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = (u64::MAX, u64::MAX);
    let mut unchanged_since = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // XRANGE first: `written` only grows, so reading it second can
        // only loosen the bound below, never fail it by a race.
        let xranges = xrange_calls(&mut redis).await - xrange_before;
        let written = metric(&env.servers[0], "chat_messages_replayed_total").await;
        if (xranges, written) != seen {
            seen = (xranges, written);
            unchanged_since = std::time::Instant::now();
        } else if unchanged_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replay to a client reading nothing never stopped: {xranges} XRANGEs, {written} messages written"
        );
    }
    let (xranges, written) = seen;
    println!("stalled: {xranges} XRANGE calls, {written} of {BACKLOG} messages written");
    assert!(
        written + 5 * PAGE < BACKLOG,
        "the stalled client was written {written} of {BACKLOG} messages: the buffers took the backlog, so this checks nothing"
    );
    // Pages the session has taken: those written, and the one being
    // written. Reads started: at most one more (the prefetch). One more
    // XRANGE for the connect's cursor check (`entry_exists`).
    let taken = written / PAGE + 1;
    assert!(
        xranges <= taken + 1 + 1,
        "{xranges} pages read for {written} messages written ({taken} pages taken): the reads ran ahead of the writes"
    );
    let conn = Conn::after_connect(ws).await;
    assert_eq!(
        conn.ids(),
        sent,
        "the whole backlog once the client reads on"
    );
}
