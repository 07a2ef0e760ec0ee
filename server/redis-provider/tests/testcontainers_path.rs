//! The testcontainers provider against a real Docker daemon. With `CI` set a
//! missing Docker fails these tests instead of skipping them.

mod common;

use common::*;
use redis_provider::{Persistence, ProviderKind, ProviderOptions};

#[tokio::test]
async fn testcontainers_path_really_runs() {
    init_tracing();
    let Some(handle) = container_or_skip(ProviderOptions::default()).await else {
        return;
    };
    assert_eq!(handle.kind(), ProviderKind::Testcontainers);
    assert!(handle.url().starts_with("redis://"), "{}", handle.url());
    assert!(
        handle.description().contains("testcontainers image"),
        "{}",
        handle.description()
    );
    eprintln!("running against {}", handle.description());
    let mut connection = connect(handle.url()).await;
    assert_eq!(
        ping_within(&mut connection, IO_TIMEOUT).await.as_deref(),
        Ok("PONG")
    );
    set(handle.url(), "greeting", "hello").await;
    assert_eq!(
        get(handle.url(), "greeting").await.as_deref(),
        Some("hello")
    );
    let version = server_version(handle.url()).await;
    assert!(version_at_least(&version, (6, 2)), "version {version}");
    check_gone_after_drop(handle).await;
}

#[tokio::test]
async fn container_stop_start_keeps_aof_always_data() {
    init_tracing();
    let options = ProviderOptions {
        persistence: Persistence::AofAlways,
        ..ProviderOptions::default()
    };
    let Some(mut handle) = container_or_skip(options).await else {
        return;
    };
    check_stop_start(&mut handle, true).await;
}

#[tokio::test]
async fn container_stop_start_without_persistence_comes_back_empty() {
    init_tracing();
    let Some(mut handle) = container_or_skip(ProviderOptions::default()).await else {
        return;
    };
    check_stop_start(&mut handle, false).await;
}

#[tokio::test]
async fn container_pause_blocks_ping_until_resume() {
    init_tracing();
    let Some(mut handle) = container_or_skip(ProviderOptions::default()).await else {
        return;
    };
    check_pause_resume(&mut handle).await;
}

#[tokio::test]
async fn paused_container_is_still_removed_on_drop() {
    init_tracing();
    let Some(mut handle) = container_or_skip(ProviderOptions::default()).await else {
        return;
    };
    handle.pause().await.unwrap();
    check_gone_after_drop(handle).await;
}

/// A handle may outlive the runtime that made it (a sync `main` holding it);
/// dropping it then must still remove the container.
#[test]
fn container_dropped_outside_any_runtime_is_removed() {
    init_tracing();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(handle) = runtime.block_on(container_or_skip(ProviderOptions::default())) else {
        return;
    };
    drop(runtime);
    let address = handle.url().trim_start_matches("redis://").to_string();
    drop(handle);
    let socket_address = address.parse().unwrap();
    let connected = std::net::TcpStream::connect_timeout(&socket_address, IO_TIMEOUT);
    assert!(
        connected.is_err(),
        "{address} still accepts connections after the handle was dropped"
    );
}
