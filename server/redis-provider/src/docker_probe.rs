//! Cheap "is Docker there?" check: one HTTP `GET /_ping` to the daemon, so
//! `Preference::Auto` does not wait for testcontainers' own long timeouts.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Environment variable naming the Docker daemon (`unix://PATH` or `tcp://HOST:PORT`).
pub const DOCKER_HOST_ENV: &str = "DOCKER_HOST";
const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// A `/_ping` answer is a few hundred bytes; anything longer is not Docker.
const MAX_PING_RESPONSE_BYTES: u64 = 16 * 1024;

/// Where the Docker daemon listens, as parsed from `DOCKER_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerEndpoint {
    Unix(String),
    Tcp(String),
}

impl DockerEndpoint {
    /// Parses a `DOCKER_HOST` value; `None` or empty means the default socket.
    pub(crate) fn parse(docker_host: Option<&str>) -> Result<Self, String> {
        let value = docker_host.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Ok(DockerEndpoint::Unix(DEFAULT_DOCKER_SOCKET.to_string()));
        }
        if let Some(path) = value.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(format!("{DOCKER_HOST_ENV}={value:?} has no socket path"));
            }
            return Ok(DockerEndpoint::Unix(path.to_string()));
        }
        for scheme in ["tcp://", "http://"] {
            if let Some(address) = value.strip_prefix(scheme) {
                let address = address.trim_end_matches('/');
                if address.is_empty() {
                    return Err(format!("{DOCKER_HOST_ENV}={value:?} has no address"));
                }
                return Ok(DockerEndpoint::Tcp(address.to_string()));
            }
        }
        Err(format!(
            "{DOCKER_HOST_ENV}={value:?} is neither unix:// nor tcp://"
        ))
    }

    pub(crate) fn from_env() -> Result<Self, String> {
        Self::parse(std::env::var(DOCKER_HOST_ENV).ok().as_deref())
    }

    /// Whether containers publish ports on this machine, so a host port we
    /// pick by binding 127.0.0.1 locally is meaningful to the daemon too.
    pub(crate) fn is_local(&self) -> bool {
        match self {
            DockerEndpoint::Unix(_) => true,
            DockerEndpoint::Tcp(address) => {
                let host = address
                    .rsplit_once(':')
                    .map_or(address.as_str(), |(host, _)| host);
                matches!(host, "127.0.0.1" | "localhost" | "[::1]")
            }
        }
    }
}

impl std::fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerEndpoint::Unix(path) => write!(f, "unix://{path}"),
            DockerEndpoint::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

/// True when the Docker daemon answers `GET /_ping` with 200 within `timeout`.
pub async fn docker_available(timeout: Duration) -> bool {
    match probe_docker(timeout).await {
        Ok(()) => true,
        Err(reason) => {
            tracing::debug!("Docker unavailable: {reason}");
            false
        }
    }
}

/// Like [`docker_available`] but says why Docker is unusable.
pub(crate) async fn probe_docker(timeout: Duration) -> Result<(), String> {
    let endpoint = DockerEndpoint::from_env()?;
    match tokio::time::timeout(timeout, ping(&endpoint)).await {
        Ok(result) => result.map_err(|reason| format!("{endpoint}: {reason}")),
        Err(_) => Err(format!(
            "{endpoint}: no answer to GET /_ping within {timeout:?}"
        )),
    }
}

async fn ping(endpoint: &DockerEndpoint) -> Result<(), String> {
    match endpoint {
        DockerEndpoint::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|error| format!("cannot connect: {error}"))?;
            ping_over(stream).await
        }
        DockerEndpoint::Tcp(address) => {
            let stream = tokio::net::TcpStream::connect(address.as_str())
                .await
                .map_err(|error| format!("cannot connect: {error}"))?;
            ping_over(stream).await
        }
    }
}

async fn ping_over<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> Result<(), String> {
    // HTTP/1.0 makes the daemon close the connection after answering, so
    // reading to EOF gives the whole response without parsing lengths.
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .await
        .map_err(|error| format!("cannot send GET /_ping: {error}"))?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_PING_RESPONSE_BYTES)
        .read_to_end(&mut response)
        .await
        .map_err(|error| format!("cannot read the /_ping answer: {error}"))?;
    check_ping_response(&response)
}

fn check_ping_response(response: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(response);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let protocol = parts.next().unwrap_or_default();
    let status = parts.next().unwrap_or_default();
    if !protocol.starts_with("HTTP/") {
        return Err(format!("not an HTTP answer: {status_line:?}"));
    }
    if status != "200" {
        return Err(format!("GET /_ping answered {status_line:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_defaults_to_the_standard_socket() {
        for value in [None, Some(""), Some("  ")] {
            assert_eq!(
                DockerEndpoint::parse(value),
                Ok(DockerEndpoint::Unix("/var/run/docker.sock".into()))
            );
        }
    }

    #[test]
    fn docker_host_unix_and_tcp_forms_parse() {
        assert_eq!(
            DockerEndpoint::parse(Some("unix:///run/user/1000/docker.sock")),
            Ok(DockerEndpoint::Unix("/run/user/1000/docker.sock".into()))
        );
        assert_eq!(
            DockerEndpoint::parse(Some("tcp://127.0.0.1:2375")),
            Ok(DockerEndpoint::Tcp("127.0.0.1:2375".into()))
        );
    }

    #[test]
    fn docker_host_rejects_unknown_schemes_and_empty_parts() {
        for value in [
            "ssh://me@box",
            "npipe:////./pipe/docker",
            "unix://",
            "tcp://",
        ] {
            let error = DockerEndpoint::parse(Some(value)).unwrap_err();
            assert!(error.contains(value), "{error}");
        }
    }

    #[test]
    fn only_loopback_endpoints_are_local() {
        assert!(DockerEndpoint::Unix("/x".into()).is_local());
        assert!(DockerEndpoint::Tcp("127.0.0.1:2375".into()).is_local());
        assert!(DockerEndpoint::Tcp("localhost:2375".into()).is_local());
        assert!(!DockerEndpoint::Tcp("10.0.0.5:2375".into()).is_local());
    }

    #[test]
    fn ping_response_needs_http_200() {
        assert_eq!(
            check_ping_response(b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\n\r\nOK"),
            Ok(())
        );
        assert!(check_ping_response(b"HTTP/1.1 500 Internal Server Error\r\n\r\n").is_err());
        assert!(check_ping_response(b"-ERR unknown command\r\n").is_err());
        assert!(check_ping_response(b"").is_err());
    }

    #[tokio::test]
    async fn ping_over_a_fake_daemon_checks_the_status() {
        let (client, mut server) = tokio::io::duplex(1024);
        let fake_daemon = tokio::spawn(async move {
            let mut request = [0u8; 64];
            let read = server.read(&mut request).await.unwrap();
            assert!(request[..read].starts_with(b"GET /_ping HTTP/1.0"));
            server
                .write_all(b"HTTP/1.0 200 OK\r\n\r\nOK")
                .await
                .unwrap();
        });
        assert_eq!(ping_over(client).await, Ok(()));
        fake_daemon.await.unwrap();
    }
}
