//! Opening and dropping one WebSocket.
//!
//! The TCP connection is made by hand so the harness can size
//! tungstenite's buffers per connection (its defaults are large: with
//! thousands of sockets they dominate memory) and reset the connection
//! with SO_LINGER 0 to simulate a device that vanishes.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::target::authority;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TCP connect to {addr} failed: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {0} timed out")]
    Timeout(String),
    #[error("server refused the upgrade with HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the token contains characters an HTTP header cannot carry")]
    BadToken,
    #[error("websocket handshake failed: {0}")]
    Handshake(tokio_tungstenite::tungstenite::Error),
}

/// How a planned drop ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    /// Close frame, then wait (briefly) for the server's close.
    Close,
    /// TCP FIN without a close frame.
    Abrupt,
    /// TCP RST (SO_LINGER 0).
    Reset,
}

fn small_buffers() -> WebSocketConfig {
    // tungstenite zero-fills `read_buffer_size` bytes on every poll of the
    // stream, data or not (perf: memset was 5% of the harness at churn-1k
    // with 8 KiB), and the buffer stays allocated (and touched) for the
    // connection's life: 2 KiB of each connected socket's RSS. A chat
    // frame (~450 bytes with a 256-byte body) is well under 2 KiB; a
    // larger frame grows the buffer to its length, and a burst of frames
    // (a replay) only takes more reads.
    WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(1024 * 1024))
        .max_frame_size(Some(1024 * 1024))
}

/// Opens `url`: the target with whatever path and query the protocol
/// adapter added (`ProtocolCodec::connect_url`). `bearer` goes in the
/// `Authorization` header when given; `tls` is the configuration for
/// `wss://` targets.
pub async fn connect(
    url: &Url,
    bearer: Option<&str>,
    tls: Option<&Connector>,
    timeout: Duration,
) -> Result<Ws, ConnectError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let addr = authority(url);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(ConnectError::Handshake)?;
    if let Some(token) = bearer {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ConnectError::BadToken)?;
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::header::AUTHORIZATION,
            value,
        );
    }
    let attempt = async {
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| ConnectError::Tcp {
                addr: addr.clone(),
                source,
            })?;
        // Latency matters more than packet count on loopback.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "TCP_NODELAY not set");
        }
        match tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            Some(small_buffers()),
            tls.cloned(),
        )
        .await
        {
            Ok((ws, _response)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(ConnectError::Http {
                status: response.status().as_u16(),
                body: response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            }),
            Err(err) => Err(ConnectError::Handshake(err)),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout(url.to_string()))?
}

/// Ends a connection the planned way. Never fails: the point is that the
/// connection is gone afterwards.
pub async fn drop_connection(mut ws: Ws, kind: DropKind) {
    match kind {
        DropKind::Close => {
            let close = async {
                if ws.close(None).await.is_ok() {
                    // Wait for the server's close so it saw ours.
                    while let Some(Ok(_)) = ws.next().await {}
                }
            };
            // Bounded: a server that never answers a close is not our problem here.
            if tokio::time::timeout(Duration::from_secs(2), close)
                .await
                .is_err()
            {
                tracing::debug!("server did not answer the close frame within 2s");
            }
        }
        DropKind::Abrupt => {
            // Say nothing: the kernel sends FIN, no close frame.
            drop(ws);
        }
        DropKind::Reset => {
            let tcp = match ws.get_ref() {
                MaybeTlsStream::Plain(tcp) => tcp,
                MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
                _ => return drop(ws),
            };
            let sock = socket2::SockRef::from(tcp);
            // Linger 0 on a non-blocking socket does not block: close
            // sends RST at once.
            if let Err(err) = sock.set_linger(Some(Duration::ZERO)) {
                tracing::debug!(%err, "SO_LINGER 0 failed; dropping without reset");
            }
            drop(ws);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per connected socket: what one connection holds inline in
    /// its socket task. Printed, not asserted (layouts change with crate
    /// versions); `docs/performance.md` ("Client, third pass") quotes it.
    #[test]
    fn connection_sizes() {
        use tokio_tungstenite::tungstenite::protocol::WebSocket;
        println!(
            "Ws {} bytes; MaybeTlsStream<TcpStream> {}; TcpStream {}; rustls client stream {}; tungstenite WebSocket<TcpStream> {}",
            std::mem::size_of::<Ws>(),
            std::mem::size_of::<MaybeTlsStream<TcpStream>>(),
            std::mem::size_of::<TcpStream>(),
            std::mem::size_of::<tokio_rustls::client::TlsStream<TcpStream>>(),
            std::mem::size_of::<WebSocket<std::net::TcpStream>>(),
        );
        assert!(std::mem::size_of::<Ws>() >= std::mem::size_of::<TcpStream>());
    }
}
