//! The accept loop, on hyper directly because `axum::serve` exposes none of
//! what a server facing hostile clients needs:
//! - a header-read timeout: hyper has one, but it only runs with a timer,
//!   which `axum::serve` does not set (slowloris connections and clients
//!   that send nothing were held open for as long as they liked);
//! - a cap on the request head size (hyper's default buffer is ~400 KB per
//!   connection);
//! - a maximum number of open connections, WebSockets included (their
//!   slot travels with the request into the session); past it a new
//!   connection gets a short 503 and is closed;
//! - a write deadline on every accepted socket ([`WriteDeadline`]);
//! - TLS, when configured: the handshake runs in the connection's own task
//!   (bounded by [`crate::tls::HANDSHAKE_TIMEOUT`]), after the connection
//!   slot is taken, so handshakes count against `--max-connections`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;

use super::{ConnectionSlot, LimitsConfig};

/// Over-limit connections answered with a 503 at once; past this many
/// they are simply closed (answering must not cost unbounded sockets).
const MAX_REJECTIONS_IN_FLIGHT: usize = 64;
/// How long a 503 may take to write and its request to be drained.
const REJECTION_TIME: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: LimitsConfig,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let connections = Arc::new(Semaphore::new(config.max_connections as usize));
    let rejections = Arc::new(Semaphore::new(MAX_REJECTIONS_IN_FLIGHT));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192));
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => return Ok(()),
        };
        let (tcp, _peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE/ENFILE and aborted handshakes: keep serving the
                // connections we have; retry accept shortly.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        set_nodelay(&tcp);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.limit_hit("max_connections");
            if let Ok(rejecting) = rejections.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    reject_busy(tcp).await;
                    drop(rejecting);
                });
            }
            continue;
        };
        let slot = Arc::new(ConnectionSlot { _permit: permit });
        let io = TokioIo::new(WriteDeadline::new(tcp, config.write_deadline));
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            // The WebSocket handler moves this into the session, so an
            // upgraded socket keeps counting as a connection.
            request.extensions_mut().insert(slot.clone());
            let mut router = router.clone();
            async move { tower_service::Service::call(&mut router, request).await }
        });
        let builder = builder.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                serve_connection(&builder, io, service, stop).await;
                return;
            };
            let handshake = acceptor.accept(io.into_inner());
            match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    serve_connection(&builder, TokioIo::new(stream), service, stop).await
                }
                Ok(Err(err)) => tracing::debug!(%err, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

/// One HTTP/1 connection (and the WebSocket it may become) until it ends
/// or the server stops.
async fn serve_connection<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        // Header-read timeouts, oversized heads, peers that left.
        tracing::debug!(%err, "connection ended with an error");
    }
}

/// Resolves once the server is stopping (or its stop sender is gone,
/// which means the same).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Err: the sender is gone; stop either way.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Turns Nagle's algorithm off on an accepted socket.
///
/// Why: the server writes small frames (acks, single live messages) and
/// the peer delays its ACKs (40 ms on Linux). With Nagle on, a frame
/// written while the previous one is unacknowledged waits for that delayed
/// ACK, which put a flat ~40 ms floor under the p99 of every delivery.
fn set_nodelay(socket: &TcpStream) {
    if let Err(err) = socket.set_nodelay(true) {
        // The socket still works, only slower; the peer may already be gone.
        tracing::debug!(%err, "cannot set TCP_NODELAY on an accepted socket");
    }
}

/// Answers a connection over `--max-connections` with 503 and closes it.
/// The request is drained briefly after the answer: closing a socket with
/// unread input sends a reset, which can destroy the answer in flight.
async fn reject_busy(mut tcp: TcpStream) {
    let body = r#"{"error":"server at its connection limit; retry later"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), io::Error>(())
    };
    match tokio::time::timeout(REJECTION_TIME, answer).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(%err, "503 not delivered"),
        Err(_) => tracing::debug!("503 not delivered in time"),
    }
}

/// A socket whose writes fail with `TimedOut` once one has made no
/// progress for `deadline` (the peer stopped reading and both kernel
/// buffers are full). Everything written to a client passes through here:
/// HTTP answers, WebSocket frames, pings and close frames, so no write
/// anywhere can hold a task (and the memory it holds) forever.
pub struct WriteDeadline<T> {
    inner: T,
    deadline: Duration,
    /// Running while a write is blocked; reset by any progress.
    blocked: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub fn new(inner: T, deadline: Duration) -> WriteDeadline<T> {
        WriteDeadline {
            inner,
            deadline,
            blocked: None,
        }
    }

    /// Called when the inner write is pending: `Ready(err)` once the
    /// deadline passed (the next write starts a fresh one).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.deadline;
        let timer = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.blocked = None;
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    SlowReader { deadline },
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn track<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.blocked = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_expired(cx).map(Err),
        }
    }
}

/// The error a write past its deadline fails with (inside an
/// `io::ErrorKind::TimedOut`), so callers can tell a slow reader from a
/// peer that left without parsing messages.
#[derive(Debug, thiserror::Error)]
#[error("the peer read nothing for {deadline:?} (write deadline)")]
pub struct SlowReader {
    pub deadline: Duration,
}

/// Whether an I/O error is a [`WriteDeadline`] expiry.
pub fn is_slow_reader(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::TimedOut
        && err
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<SlowReader>().is_some())
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.track(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.track(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_that_never_drains_fails_after_the_deadline() {
        // A duplex pipe of 1 KiB whose other end never reads.
        let (near, _far) = tokio::io::duplex(1024);
        let mut socket = WriteDeadline::new(near, Duration::from_millis(200));
        let started = tokio::time::Instant::now();
        let err = socket.write_all(&[7u8; 4096]).await.unwrap_err();
        assert!(is_slow_reader(&err), "{err}");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_slow_but_reading_peer_is_not_cut() {
        let (near, mut far) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 8192 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        let mut socket = WriteDeadline::new(near, Duration::from_millis(500));
        socket.write_all(&[7u8; 8192]).await.unwrap();
        assert!(reader.await.unwrap() >= 8192);
    }
}
