//! The URL provider, pointed at a local redis-server started for the test.

mod common;

use common::*;
use redis_provider::{start_redis, Preference, ProviderError, ProviderKind, ProviderOptions};

#[tokio::test]
async fn url_path_connects_to_the_given_server_and_owns_nothing() {
    init_tracing();
    let Some(local) = local_or_skip(ProviderOptions::default()).await else {
        return;
    };
    set(local.url(), "written-directly", "yes").await;
    let options = ProviderOptions {
        preference: Preference::Url(Some(local.url().to_string())),
        ..ProviderOptions::default()
    };
    let mut external = start_redis(&options).await.unwrap();
    assert_eq!(external.kind(), ProviderKind::Url);
    assert_eq!(external.url(), local.url());
    assert_eq!(
        get(external.url(), "written-directly").await.as_deref(),
        Some("yes")
    );
    for error in [
        external.stop().await.unwrap_err(),
        external.start().await.unwrap_err(),
        external.pause().await.unwrap_err(),
        external.resume().await.unwrap_err(),
    ] {
        assert!(
            matches!(
                error,
                ProviderError::Unsupported {
                    kind: ProviderKind::Url,
                    ..
                }
            ),
            "{error}"
        );
    }
    drop(external);
    // Dropping the URL handle must leave the server it merely used running.
    let mut connection = connect(local.url()).await;
    assert_eq!(
        ping_within(&mut connection, IO_TIMEOUT).await.as_deref(),
        Ok("PONG")
    );
}

#[tokio::test]
async fn url_path_rejects_garbage_and_dead_servers() {
    let garbage = ProviderOptions {
        preference: Preference::Url(Some("not a url".into())),
        ..ProviderOptions::default()
    };
    let error = start_redis(&garbage).await.unwrap_err();
    assert!(matches!(error, ProviderError::InvalidUrl { .. }), "{error}");

    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = ProviderOptions {
        preference: Preference::Url(Some(format!("redis://127.0.0.1:{free_port}"))),
        ..ProviderOptions::default()
    };
    let error = start_redis(&dead).await.unwrap_err();
    assert!(matches!(error, ProviderError::NotReady { .. }), "{error}");
}
