//! Gives tests and the harness a real, fresh Redis 6.2+.
//!
//! [`start_redis`] with [`Preference::Auto`] tries, in order: a container
//! through testcontainers (only when Docker answers `/_ping` within 2 s), a
//! `redis-server` from `PATH` on a free loopback port, and finally the server
//! named by `REDIS_URL`. Explicit preferences never fall back.
//!
//! Environment read: `REDIS_IMAGE` (container image, default `redis:7.2`),
//! `REDIS_URL` (external server), `DOCKER_HOST` (daemon address, default
//! `unix:///var/run/docker.sock`; testcontainers reads it too), `PATH`.

mod container;
mod docker_probe;
mod error;
mod handle;
mod image_ref;
mod local;
mod options;
mod readiness;
mod state;

use std::time::Duration;

pub use docker_probe::{docker_available, DOCKER_HOST_ENV};
pub use error::{ProviderAttempt, ProviderError};
pub use handle::RedisHandle;
pub use options::{
    default_image, Persistence, Preference, ProviderKind, ProviderOptions, DEFAULT_IMAGE,
    REDIS_IMAGE_ENV, REDIS_URL_ENV,
};

use container::ContainerServer;
use handle::Backend;
use image_ref::ImageRef;
use local::LocalServer;

/// How long `Preference::Auto` waits for Docker to answer before moving on.
const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts (or connects to) a Redis as `options` ask and checks it answers
/// PING and is version 6.2+. Each call owning its server gives a fresh, empty
/// one; an external `REDIS_URL` server is shared and never flushed.
pub async fn start_redis(options: &ProviderOptions) -> Result<RedisHandle, ProviderError> {
    let handle = match &options.preference {
        Preference::Auto => start_auto(options).await,
        Preference::Testcontainers => {
            docker_probe::probe_docker(DOCKER_PROBE_TIMEOUT)
                .await
                .map_err(|reason| ProviderError::DockerUnavailable { reason })?;
            start_container(options).await
        }
        Preference::Local => start_local(options).await,
        Preference::Url(url) => start_url(url.as_deref()).await,
    }?;
    tracing::info!("Redis ready: {}", handle.description());
    Ok(handle)
}

async fn start_auto(options: &ProviderOptions) -> Result<RedisHandle, ProviderError> {
    let mut attempts = Vec::new();

    match docker_probe::probe_docker(DOCKER_PROBE_TIMEOUT).await {
        Ok(()) => match start_container(options).await {
            Ok(handle) => {
                tracing::info!("chose testcontainers: Docker answers");
                return Ok(handle);
            }
            Err(error) => {
                tracing::warn!("testcontainers failed although Docker answers: {error}");
                attempts.push(attempt(ProviderKind::Testcontainers, error.to_string()));
            }
        },
        Err(reason) => {
            tracing::info!("skipping testcontainers: Docker unavailable ({reason})");
            attempts.push(attempt(
                ProviderKind::Testcontainers,
                format!("Docker unavailable: {reason}"),
            ));
        }
    }

    match start_local(options).await {
        Ok(handle) => {
            tracing::info!(
                "chose local redis-server; skipped: {}",
                summarize(&attempts)
            );
            return Ok(handle);
        }
        Err(error) => {
            tracing::info!("skipping local redis-server: {error}");
            attempts.push(attempt(ProviderKind::Local, error.to_string()));
        }
    }

    match start_url(None).await {
        Ok(handle) => {
            tracing::info!("chose REDIS_URL; skipped: {}", summarize(&attempts));
            Ok(handle)
        }
        Err(error) => {
            attempts.push(attempt(ProviderKind::Url, error.to_string()));
            Err(ProviderError::no_provider(attempts))
        }
    }
}

fn attempt(kind: ProviderKind, reason: String) -> ProviderAttempt {
    ProviderAttempt { kind, reason }
}

fn summarize(attempts: &[ProviderAttempt]) -> String {
    attempts
        .iter()
        .map(|attempt| format!("{} ({})", attempt.kind, attempt.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn start_container(options: &ProviderOptions) -> Result<RedisHandle, ProviderError> {
    let image = ImageRef::parse(&options.image.clone().unwrap_or_else(default_image))?;
    let server = ContainerServer::start(image, options.persistence).await?;
    Ok(RedisHandle::new(
        server.url(),
        Backend::Container(Box::new(server)),
    ))
}

async fn start_local(options: &ProviderOptions) -> Result<RedisHandle, ProviderError> {
    let server = LocalServer::start(options.persistence).await?;
    Ok(RedisHandle::new(server.url(), Backend::Local(server)))
}

async fn start_url(url: Option<&str>) -> Result<RedisHandle, ProviderError> {
    let url = match url {
        Some(url) => url.trim().to_string(),
        None => std::env::var(REDIS_URL_ENV)
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    if url.is_empty() {
        return Err(ProviderError::UrlNotSet);
    }
    redis::Client::open(url.as_str()).map_err(|source| ProviderError::InvalidUrl {
        url: url.clone(),
        source,
    })?;
    readiness::wait_for_ping(&url, Duration::from_secs(2), || Ok(())).await?;
    let version = readiness::check_version(&url).await?;
    // Not flushed: it may be someone else's data. Tests must use unique keys.
    match readiness::key_count(&url).await {
        Ok(0) => {}
        Ok(keys) => tracing::warn!("Redis at {url} is not empty ({keys} keys); it is not flushed"),
        Err(error) => tracing::warn!("could not count keys at {url}: {error}"),
    }
    Ok(RedisHandle::new(url, Backend::External { version }))
}
