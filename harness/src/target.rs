//! Server targets (`ws://host:port/path`) and Redis URLs, as one type:
//! [`url::Url`]. Parsed once at the edge (the command line, the scenario's
//! targets); the clients, proxies and reports use the parsed form.
//!
//! Host names (`ws://localhost:8080/ws`) are resolved only where an
//! address is needed: the TCP proxies for network faults, which listen
//! and forward on loopback addresses.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

/// How long a resolved address may take to accept a probe connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{text:?} is not a URL: {source}")]
    Parse {
        text: String,
        source: url::ParseError,
    },
    #[error(
        "{url} must be a ws://host:port/path URL, or wss:// for TLS (scheme {scheme:?} is not supported)"
    )]
    Scheme { url: String, scheme: String },
    #[error("{0} has no host")]
    NoHost(String),
    #[error("cannot resolve {url}: {source}")]
    Resolve { url: String, source: std::io::Error },
    #[error("{0} resolves to no address")]
    NoAddress(String),
}

/// A WebSocket target: `ws://host[:port][/path]` (port 80 when omitted) or
/// `wss://` (TLS, port 443 when omitted).
pub fn parse_ws_target(text: &str) -> Result<Url, TargetError> {
    let url = Url::parse(text).map_err(|source| TargetError::Parse {
        text: text.to_string(),
        source,
    })?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(TargetError::Scheme {
            url: text.to_string(),
            scheme: url.scheme().to_string(),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NoHost(text.to_string()));
    }
    Ok(url)
}

/// A Redis URL (`redis://[user:pass@]host[:port][/db]`, port 6379 when omitted).
pub fn parse_redis_url(text: &str) -> Result<Url, TargetError> {
    let url = Url::parse(text).map_err(|source| TargetError::Parse {
        text: text.to_string(),
        source,
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NoHost(text.to_string()));
    }
    Ok(url)
}

fn default_port(url: &Url) -> u16 {
    match url.scheme() {
        "redis" | "rediss" => 6379,
        _ => url.port_or_known_default().unwrap_or(80),
    }
}

/// `host:port` for a TCP connect (the resolver handles names).
pub fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    format!("{host}:{}", url.port().unwrap_or_else(|| default_port(url)))
}

/// The address `url` points at. With several (`localhost` is often both
/// `::1` and `127.0.0.1`), the first that accepts a connection, so a
/// proxy forwards where the server really listens.
pub async fn resolve(url: &Url) -> Result<SocketAddr, TargetError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(authority(url))
        .await
        .map_err(|source| TargetError::Resolve {
            url: url.to_string(),
            source,
        })?
        .collect();
    for addr in &addrs {
        let probe = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr));
        if matches!(probe.await, Ok(Ok(_))) {
            return Ok(*addr);
        }
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| TargetError::NoAddress(url.to_string()))
}

/// `url` with its host and port replaced by `addr` (path, query and
/// credentials kept): the same service reached through a proxy.
pub fn via(url: &Url, addr: SocketAddr) -> Url {
    let mut proxied = url.clone();
    // Setting an IP host and a port on a URL that already has a host
    // cannot fail; the original is kept if it somehow does.
    if proxied.set_ip_host(addr.ip()).is_err() || proxied.set_port(Some(addr.port())).is_err() {
        return url.clone();
    }
    proxied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_targets_are_checked() {
        let url = parse_ws_target("ws://127.0.0.1:80/ws").unwrap();
        assert_eq!(authority(&url), "127.0.0.1:80");
        assert_eq!(
            authority(&parse_ws_target("ws://localhost/ws").unwrap()),
            "localhost:80"
        );
        assert!(matches!(
            parse_ws_target("http://x/ws"),
            Err(TargetError::Scheme { .. })
        ));
        assert!(parse_ws_target("ws://:80/ws").is_err());
        assert!(parse_ws_target("127.0.0.1:80").is_err());
    }

    #[test]
    fn redis_urls_keep_credentials_and_db_through_a_proxy() {
        let url = parse_redis_url("redis://:secret@localhost/2").unwrap();
        assert_eq!(authority(&url), "localhost:6379");
        let proxied = via(&url, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(proxied.as_str(), "redis://:secret@127.0.0.1:7000/2");
    }

    #[tokio::test]
    async fn localhost_resolves_to_where_something_listens() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = parse_ws_target(&format!("ws://localhost:{port}/ws")).unwrap();
        let addr = resolve(&url).await.unwrap();
        assert_eq!(addr, listener.local_addr().unwrap());
    }
}
