//! Everything that can go wrong while providing Redis, with enough context
//! in each message to fix it without reading this crate.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::options::ProviderKind;

/// What one provider said when `Preference::Auto` tried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAttempt {
    pub kind: ProviderKind,
    /// Why this provider was skipped or failed.
    pub reason: String,
}

/// testcontainers errors are boxed: unboxed they make every `Result` here ~800 bytes.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "Docker is not available ({reason}); start the Docker daemon (or point DOCKER_HOST at one) \
         to use the testcontainers provider, or choose Preference::Local / Preference::Url"
    )]
    DockerUnavailable { reason: String },

    #[error("invalid Redis image reference {image:?}: {reason}")]
    InvalidImage { image: String, reason: &'static str },

    #[error(
        "could not start a container from image {image}: {source} (without network access, \
         set REDIS_IMAGE to a local image, e.g. one built by .ci/build-redis-image.sh)"
    )]
    ContainerStart {
        image: String,
        #[source]
        source: Box<testcontainers::TestcontainersError>,
    },

    #[error("container {operation} failed for image {image}: {source}")]
    ContainerOperation {
        operation: &'static str,
        image: String,
        #[source]
        source: Box<testcontainers::TestcontainersError>,
    },

    #[error("no executable `redis-server` found on PATH; install it (e.g. `apt-get install redis-server`)")]
    RedisServerNotFound,

    #[error("could not find a free TCP port on 127.0.0.1: {source}")]
    FreePort {
        #[source]
        source: std::io::Error,
    },

    #[error("could not create a temporary data directory for redis-server: {source}")]
    TempDir {
        #[source]
        source: std::io::Error,
    },

    #[error("could not spawn {binary}: {source}", binary = binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "redis-server on port {port} exited during startup ({status}); last log lines:\n{log_tail}"
    )]
    LocalExited {
        port: u16,
        status: String,
        log_tail: String,
    },

    #[error("could not send {signal} to redis-server pid {pid}: {source}")]
    Signal {
        signal: &'static str,
        pid: u32,
        #[source]
        source: std::io::Error,
    },

    #[error("waiting for redis-server pid {pid} failed: {source}")]
    Wait {
        pid: u32,
        #[source]
        source: std::io::Error,
    },

    #[error("redis-server pid {pid} did not exit within {waited:?} after SIGTERM, so it was killed; data may be lost")]
    StopTimeout { pid: u32, waited: Duration },

    #[error("Redis at {url} did not answer PING within {waited:?}; last error: {last_error}")]
    NotReady {
        url: String,
        waited: Duration,
        last_error: String,
    },

    #[error(
        "Redis at {url} is version {found}, but 6.2 or newer is required \
         (exclusive XRANGE bounds and XTRIM MINID)"
    )]
    VersionTooOld { url: String, found: String },

    #[error("could not read redis_version from INFO server at {url}: {reason}")]
    VersionUnknown { url: String, reason: String },

    #[error("REDIS_URL is not set (or empty); set it to e.g. redis://127.0.0.1:6379")]
    UrlNotSet,

    #[error("invalid Redis URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: redis::RedisError,
    },

    #[error("{operation} is not supported for the {kind} provider: it does not own the server")]
    Unsupported {
        operation: &'static str,
        kind: ProviderKind,
    },

    #[error("cannot {operation}: Redis is {state}")]
    InvalidState {
        operation: &'static str,
        state: &'static str,
    },

    #[error("{}", describe_no_provider(attempts))]
    NoProvider { attempts: Vec<ProviderAttempt> },
}

impl ProviderError {
    /// The error `Preference::Auto` returns when every provider failed; kept
    /// as a constructor so the message can be checked without the environment.
    pub fn no_provider(attempts: Vec<ProviderAttempt>) -> Self {
        ProviderError::NoProvider { attempts }
    }
}

fn describe_no_provider(attempts: &[ProviderAttempt]) -> String {
    let mut text = String::from(
        "no Redis available. Fix it in one of three ways:\n  \
         1. start Docker (the daemon must answer on DOCKER_HOST or /var/run/docker.sock), or\n  \
         2. install redis-server 6.2+ on PATH (e.g. `apt-get install redis-server`), or\n  \
         3. set REDIS_URL to a running Redis 6.2+ (e.g. REDIS_URL=redis://127.0.0.1:6379).\n\
         What each attempt said:",
    );
    if attempts.is_empty() {
        text.push_str("\n  (nothing was attempted)");
    }
    for attempt in attempts {
        // Writing into a String cannot fail.
        let _ = write!(text, "\n  - {}: {}", attempt.kind, attempt.reason);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_provider_message_lists_all_three_fixes_and_every_attempt() {
        let error = ProviderError::no_provider(vec![
            ProviderAttempt {
                kind: ProviderKind::Testcontainers,
                reason: "socket /nowhere: connection refused".into(),
            },
            ProviderAttempt {
                kind: ProviderKind::Local,
                reason: "no redis-server on PATH".into(),
            },
            ProviderAttempt {
                kind: ProviderKind::Url,
                reason: "REDIS_URL is not set".into(),
            },
        ]);
        let text = error.to_string();
        assert!(text.contains("start Docker"), "{text}");
        assert!(text.contains("install redis-server"), "{text}");
        assert!(text.contains("set REDIS_URL"), "{text}");
        assert!(
            text.contains("testcontainers: socket /nowhere: connection refused"),
            "{text}"
        );
        assert!(
            text.contains("local redis-server: no redis-server on PATH"),
            "{text}"
        );
        assert!(text.contains("REDIS_URL: REDIS_URL is not set"), "{text}");
    }
}
