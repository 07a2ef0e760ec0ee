//! Behaviour that depends on the environment (DOCKER_HOST, PATH, REDIS_URL).
//! Environment changes are process-wide, so this binary holds exactly one
//! test that touches them, run as sequential steps.

mod common;

use redis_provider::{
    start_redis, Preference, ProviderAttempt, ProviderError, ProviderKind, ProviderOptions,
};

#[test]
fn no_provider_error_text_lists_all_three_fixes() {
    let error = ProviderError::no_provider(vec![
        ProviderAttempt {
            kind: ProviderKind::Testcontainers,
            reason: "Docker unavailable: connection refused".into(),
        },
        ProviderAttempt {
            kind: ProviderKind::Local,
            reason: "no executable `redis-server` found on PATH".into(),
        },
        ProviderAttempt {
            kind: ProviderKind::Url,
            reason: "REDIS_URL is not set".into(),
        },
    ]);
    let text = error.to_string();
    for needle in [
        "start Docker",
        "install redis-server",
        "set REDIS_URL",
        "connection refused",
        "no executable `redis-server` found on PATH",
        "REDIS_URL is not set",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[tokio::test]
async fn environment_decides_fallbacks() {
    common::init_tracing();
    let local = common::local_or_skip(ProviderOptions::default()).await;
    let empty_path_dir = tempfile::tempdir().unwrap();
    // Safe here: no other test in this binary reads these variables.
    std::env::set_var("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    std::env::set_var("PATH", empty_path_dir.path());
    std::env::remove_var("REDIS_URL");

    // Nothing works: the error lists every fix and every attempt.
    let error = start_redis(&ProviderOptions::default()).await.unwrap_err();
    let ProviderError::NoProvider { attempts } = &error else {
        panic!("expected NoProvider, got {error}");
    };
    let kinds: Vec<_> = attempts.iter().map(|attempt| attempt.kind).collect();
    assert_eq!(
        kinds,
        [
            ProviderKind::Testcontainers,
            ProviderKind::Local,
            ProviderKind::Url
        ]
    );
    let text = error.to_string();
    assert!(text.contains("start Docker"), "{text}");
    assert!(text.contains("install redis-server"), "{text}");
    assert!(text.contains("set REDIS_URL"), "{text}");
    assert!(text.contains("/nonexistent/docker.sock"), "{text}");

    // An explicit Testcontainers preference never falls back.
    let explicit = ProviderOptions {
        preference: Preference::Testcontainers,
        ..ProviderOptions::default()
    };
    let error = start_redis(&explicit).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::DockerUnavailable { .. }),
        "{error}"
    );

    // With REDIS_URL set, Auto ends at the URL provider.
    let Some(local) = local else {
        return;
    };
    std::env::set_var("REDIS_URL", local.url());
    let handle = start_redis(&ProviderOptions::default()).await.unwrap();
    assert_eq!(handle.kind(), ProviderKind::Url);
    assert_eq!(handle.url(), local.url());
    let url_none = ProviderOptions {
        preference: Preference::Url(None),
        ..ProviderOptions::default()
    };
    let handle = start_redis(&url_none).await.unwrap();
    assert_eq!(handle.url(), local.url());
}
