//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis_provider::{docker_available, start_redis, Preference, ProviderError, ProviderOptions};

pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

pub fn init_tracing() {
    // Several tests in one binary call this; only the first install succeeds.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("redis_provider=debug,info")
        .with_test_writer()
        .try_init();
}

/// On CI a missing prerequisite is a failure (a skipped test would hide a
/// broken .ci/run); on a developer machine it is a printed skip.
pub fn ci_requires(reason: &str) {
    let on_ci = std::env::var("CI")
        .map(|value| !value.is_empty() && value != "false" && value != "0")
        .unwrap_or(false);
    if on_ci {
        panic!("CI is set, so this test must run, but: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// Starts a local redis-server handle, or `None` (after `ci_requires`) when
/// redis-server is not installed.
pub async fn local_or_skip(options: ProviderOptions) -> Option<redis_provider::RedisHandle> {
    let options = ProviderOptions {
        preference: Preference::Local,
        ..options
    };
    match start_redis(&options).await {
        Ok(handle) => Some(handle),
        Err(ProviderError::RedisServerNotFound) => {
            ci_requires("redis-server is not on PATH (apt-get install redis-server)");
            None
        }
        Err(error) => panic!("local redis-server failed to start: {error}"),
    }
}

/// Starts a container handle, or `None` (after `ci_requires`) without Docker.
pub async fn container_or_skip(options: ProviderOptions) -> Option<redis_provider::RedisHandle> {
    if !docker_available(Duration::from_secs(2)).await {
        ci_requires("Docker is not available (no answer to GET /_ping); start dockerd");
        return None;
    }
    let options = ProviderOptions {
        preference: Preference::Testcontainers,
        ..options
    };
    match start_redis(&options).await {
        Ok(handle) => Some(handle),
        Err(error) => {
            panic!("testcontainers Redis failed to start although Docker answers: {error}")
        }
    }
}

pub async fn connect(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    tokio::time::timeout(IO_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .expect("connecting timed out")
        .expect("connecting failed")
}

/// PING on `connection`, giving up after `timeout`.
pub async fn ping_within(
    connection: &mut MultiplexedConnection,
    timeout: Duration,
) -> Result<String, String> {
    match tokio::time::timeout(
        timeout,
        redis::cmd("PING").query_async::<String>(connection),
    )
    .await
    {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

pub async fn set(url: &str, key: &str, value: &str) {
    let mut connection = connect(url).await;
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
}

pub async fn get(url: &str, key: &str) -> Option<String> {
    let mut connection = connect(url).await;
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<String>>(&mut connection)
        .await
        .unwrap()
}

pub async fn server_version(url: &str) -> String {
    let mut connection = connect(url).await;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .expect("INFO server lists redis_version")
        .trim()
        .to_string()
}

/// Numeric `major.minor` comparison (string order would put 10.0 before 6.2).
pub fn version_at_least(version: &str, minimum: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap());
    let major = parts.next().unwrap();
    let minor = parts.next().unwrap();
    (major, minor) >= minimum
}

/// Stop/start cycle: data written before `stop` must be there after `start`
/// exactly when `expect_kept`, and the URL must not change.
pub async fn check_stop_start(handle: &mut redis_provider::RedisHandle, expect_kept: bool) {
    let url_before = handle.url().to_string();
    set(&url_before, "survivor", "still here").await;
    handle.stop().await.unwrap();
    let client = redis::Client::open(url_before.as_str()).unwrap();
    let stopped_answer =
        tokio::time::timeout(IO_TIMEOUT, client.get_multiplexed_async_connection()).await;
    assert!(
        !matches!(stopped_answer, Ok(Ok(_))),
        "a stopped Redis must not accept connections"
    );
    handle.start().await.unwrap();
    assert_eq!(handle.url(), url_before, "the URL must survive a restart");
    let value = get(handle.url(), "survivor").await;
    if expect_kept {
        assert_eq!(value.as_deref(), Some("still here"));
    } else {
        assert_eq!(value, None);
    }
}

/// Pause must make PING time out on an open connection; resume restores it.
pub async fn check_pause_resume(handle: &mut redis_provider::RedisHandle) {
    let mut connection = connect(handle.url()).await;
    assert_eq!(
        ping_within(&mut connection, IO_TIMEOUT).await.as_deref(),
        Ok("PONG")
    );
    handle.pause().await.unwrap();
    let paused_answer = ping_within(&mut connection, Duration::from_millis(800)).await;
    assert!(
        paused_answer.is_err(),
        "a paused Redis answered PING: {paused_answer:?}"
    );
    handle.resume().await.unwrap();
    let mut fresh = connect(handle.url()).await;
    assert_eq!(
        ping_within(&mut fresh, IO_TIMEOUT).await.as_deref(),
        Ok("PONG")
    );
}

/// After the handle is dropped nothing may answer on its URL.
pub async fn check_gone_after_drop(handle: redis_provider::RedisHandle) {
    let url = handle.url().to_string();
    drop(handle);
    let client = redis::Client::open(url.as_str()).unwrap();
    let answer = tokio::time::timeout(IO_TIMEOUT, client.get_multiplexed_async_connection()).await;
    assert!(
        !matches!(answer, Ok(Ok(_))),
        "something still answers on {url} after the handle was dropped"
    );
}
