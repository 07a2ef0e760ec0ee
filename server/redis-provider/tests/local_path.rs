//! The local `redis-server` provider. With `CI` set a missing redis-server
//! fails these tests instead of skipping them.

mod common;

use common::*;
use redis_provider::{Persistence, ProviderError, ProviderKind, ProviderOptions};

#[tokio::test]
async fn local_redis_server_answers_ping_and_is_new_enough() {
    init_tracing();
    let Some(handle) = local_or_skip(ProviderOptions::default()).await else {
        return;
    };
    assert_eq!(handle.kind(), ProviderKind::Local);
    assert!(
        handle.url().starts_with("redis://127.0.0.1:"),
        "{}",
        handle.url()
    );
    let mut connection = connect(handle.url()).await;
    assert_eq!(
        ping_within(&mut connection, IO_TIMEOUT).await.as_deref(),
        Ok("PONG")
    );
    let version = server_version(handle.url()).await;
    assert!(
        handle.description().contains(&version),
        "description {:?} should name version {version}",
        handle.description()
    );
    assert!(version_at_least(&version, (6, 2)), "version {version}");
}

#[tokio::test]
async fn each_call_gives_a_fresh_empty_redis() {
    init_tracing();
    let Some(first) = local_or_skip(ProviderOptions::default()).await else {
        return;
    };
    let Some(second) = local_or_skip(ProviderOptions::default()).await else {
        return;
    };
    assert_ne!(first.url(), second.url());
    set(first.url(), "only-in-first", "1").await;
    assert_eq!(get(second.url(), "only-in-first").await, None);
}

#[tokio::test]
async fn local_stop_start_keeps_aof_always_data() {
    init_tracing();
    let options = ProviderOptions {
        persistence: Persistence::AofAlways,
        ..ProviderOptions::default()
    };
    let Some(mut handle) = local_or_skip(options).await else {
        return;
    };
    check_stop_start(&mut handle, true).await;
    // A second cycle proves the restarted process is managed like the first.
    check_stop_start(&mut handle, true).await;
}

#[tokio::test]
async fn local_stop_start_without_persistence_comes_back_empty() {
    init_tracing();
    let Some(mut handle) = local_or_skip(ProviderOptions::default()).await else {
        return;
    };
    check_stop_start(&mut handle, false).await;
}

#[tokio::test]
async fn local_pause_blocks_ping_until_resume() {
    init_tracing();
    let Some(mut handle) = local_or_skip(ProviderOptions::default()).await else {
        return;
    };
    check_pause_resume(&mut handle).await;
}

#[tokio::test]
async fn lifecycle_calls_in_the_wrong_state_are_rejected() {
    init_tracing();
    let Some(mut handle) = local_or_skip(ProviderOptions::default()).await else {
        return;
    };
    let error = handle.start().await.unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::InvalidState {
                state: "running",
                ..
            }
        ),
        "{error}"
    );
    let error = handle.resume().await.unwrap_err();
    assert!(
        matches!(error, ProviderError::InvalidState { .. }),
        "{error}"
    );
    handle.stop().await.unwrap();
    let error = handle.pause().await.unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::InvalidState {
                state: "stopped",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn stopping_a_paused_server_works() {
    init_tracing();
    let options = ProviderOptions {
        persistence: Persistence::AofAlways,
        ..ProviderOptions::default()
    };
    let Some(mut handle) = local_or_skip(options).await else {
        return;
    };
    set(handle.url(), "k", "v").await;
    handle.pause().await.unwrap();
    handle.stop().await.unwrap();
    handle.start().await.unwrap();
    assert_eq!(get(handle.url(), "k").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn dropped_local_server_is_gone() {
    init_tracing();
    let Some(mut handle) = local_or_skip(ProviderOptions::default()).await else {
        return;
    };
    handle.pause().await.unwrap();
    check_gone_after_drop(handle).await;
}
