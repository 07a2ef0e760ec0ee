//! One proxied connection: wait for a path to the upstream, connect, then
//! two pumps (client -> upstream, upstream -> client) run inside one task
//! on shared `&TcpStream`s until both directions end, either side fails,
//! or the proxy resets or stops.
//!
//! Each pump is a reader and a writer joined by a small FIFO queue of
//! chunks stamped with their read time. The writer delivers a chunk at
//! `read time + latency + jitter share`, never earlier than the chunk
//! before it, so jitter delays data but cannot reorder it, and the delay
//! is recomputed from the current settings whenever they change.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::bucket::TokenBucket;
use super::settings::{FaultSettings, Lifecycle, Stop};
use super::Stats;

/// Bytes read per chunk: small, because thousands of connections each hold
/// up to one chunk in flight per direction while idle peers wake.
const CHUNK_BYTES: usize = 8 * 1024;
/// Chunks in flight per direction (up to 512 KiB) so a delayed stream
/// keeps reading while earlier chunks wait out their latency.
const QUEUE_CHUNKS: usize = 64;
/// Loopback connects fail or succeed at once; this only bounds the odd
/// hang (e.g. a full accept backlog on a stopped-but-listening server).
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection task needs from the proxy.
pub(super) struct Wiring {
    pub upstream: SocketAddr,
    pub settings: watch::Receiver<FaultSettings>,
    pub lifecycle: watch::Receiver<Lifecycle>,
    /// `Lifecycle::reset_round` when the client was accepted.
    pub accepted_round: u64,
    pub stats: Arc<Stats>,
}

/// Keeps `Stats::open` right however the task ends (aborts included).
pub(super) struct OpenGuard(Arc<Stats>);

impl OpenGuard {
    pub fn new(stats: Arc<Stats>) -> Self {
        stats
            .open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenGuard(stats)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("the client left while the path was blackholed")]
    ClientGone,
    #[error("the proxy stopped")]
    ProxyGone,
    #[error("cannot connect to the upstream: {0}")]
    Connect(io::Error),
    #[error("upstream connect timed out after {UPSTREAM_CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
}

pub(super) async fn serve(client: TcpStream, wiring: Wiring, _open: OpenGuard) {
    let Wiring {
        upstream,
        mut settings,
        mut lifecycle,
        accepted_round,
        stats,
    } = wiring;
    let stop = wait_for_stop(&mut lifecycle, accepted_round);
    tokio::pin!(stop);

    let opened = tokio::select! {
        biased;
        stop = &mut stop => {
            close(&[&client], stop == Stop::Reset);
            return;
        }
        opened = open_path(&client, upstream, &mut settings) => opened,
    };
    let server = match opened {
        Ok(server) => server,
        Err(OpenError::ClientGone | OpenError::ProxyGone) => return,
        Err(failure @ (OpenError::Connect(_) | OpenError::ConnectTimeout)) => {
            stats
                .connect_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%upstream, %failure, "fault proxy: upstream connect failed; resetting the client");
            // A refused upstream looks like a refused connect to the client.
            close(&[&client], true);
            return;
        }
    };
    set_nodelay(&server);

    let outcome = tokio::select! {
        biased;
        stop = &mut stop => Err(stop),
        forwarded = forward_both(&client, &server, settings) => match forwarded {
            Ok(()) => Ok(()),
            // A reset or error on one side is passed on as a reset.
            Err(_) => Err(Stop::Reset),
        },
    };
    match outcome {
        Ok(()) => {}
        Err(stop) => close(&[&client, &server], stop == Stop::Reset),
    }
}

/// Resolves when `reset_all` ran after the accept, or the proxy stops (or
/// its handle is gone).
async fn wait_for_stop(lifecycle: &mut watch::Receiver<Lifecycle>, accepted_round: u64) -> Stop {
    let asked = lifecycle
        .wait_for(|now| now.stop_for(accepted_round).is_some())
        .await
        .map(|now| now.stop_for(accepted_round));
    match asked {
        Ok(Some(stop)) => stop,
        Ok(None) | Err(_) => Stop::Shutdown,
    }
}

/// Closes the sockets when their owners drop them; with `reset` an RST is
/// sent instead of a FIN (SO_LINGER 0), and unsent data is discarded.
fn close(sockets: &[&TcpStream], reset: bool) {
    if !reset {
        return;
    }
    for socket in sockets {
        if let Err(error) = SockRef::from(*socket).set_linger(Some(Duration::ZERO)) {
            tracing::debug!(%error, "fault proxy: cannot arm SO_LINGER 0; the socket closes with a FIN");
        }
    }
}

fn set_nodelay(socket: &TcpStream) {
    // The proxy must not add Nagle delay on top of the injected latency.
    if let Err(error) = socket.set_nodelay(true) {
        tracing::debug!(%error, "fault proxy: cannot set TCP_NODELAY");
    }
}

/// A partition holds new connections too: the upstream is dialled only
/// once the blackhole is lifted. A client that gives up meanwhile (EOF or
/// error seen by `peek`) ends the wait so abandoned sockets do not pile up.
async fn open_path(
    client: &TcpStream,
    upstream: SocketAddr,
    settings: &mut watch::Receiver<FaultSettings>,
) -> Result<TcpStream, OpenError> {
    let mut client_sent_data = false;
    loop {
        let blackhole = settings.borrow_and_update().blackhole;
        if !blackhole {
            break;
        }
        if client_sent_data {
            // `peek` would return at once from now on; only a lift helps.
            settings.changed().await.map_err(|_| OpenError::ProxyGone)?;
            continue;
        }
        let mut probe = [0u8; 1];
        tokio::select! {
            changed = settings.changed() => changed.map_err(|_| OpenError::ProxyGone)?,
            peeked = client.peek(&mut probe) => match peeked {
                Ok(0) | Err(_) => return Err(OpenError::ClientGone),
                Ok(_) => client_sent_data = true,
            },
        }
    }
    match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(server)) => Ok(server),
        Ok(Err(error)) => Err(OpenError::Connect(error)),
        Err(_) => Err(OpenError::ConnectTimeout),
    }
}

async fn forward_both(
    client: &TcpStream,
    server: &TcpStream,
    settings: watch::Receiver<FaultSettings>,
) -> io::Result<()> {
    let upstream = pump(client, server, settings.clone());
    let downstream = pump(server, client, settings);
    tokio::try_join!(upstream, downstream).map(|_| ())
}

struct Chunk {
    data: Vec<u8>,
    read_at: Instant,
    /// This chunk's share of the jitter, in [0, 1): kept rather than a
    /// fixed delay so a jitter change applies to queued chunks too.
    jitter_share: f64,
}

/// One direction. Ends `Ok` after the source's EOF has been delivered and
/// passed on as a half-close.
async fn pump(
    source: &TcpStream,
    sink: &TcpStream,
    settings: watch::Receiver<FaultSettings>,
) -> io::Result<()> {
    let (queue_tx, queue_rx) = mpsc::channel(QUEUE_CHUNKS);
    let reading = read_side(source, queue_tx, settings.clone());
    let writing = write_side(sink, queue_rx, settings);
    tokio::try_join!(reading, writing).map(|_| ())
}

fn proxy_gone() -> io::Error {
    io::Error::other("fault proxy stopped")
}

async fn read_side(
    source: &TcpStream,
    queue: mpsc::Sender<Chunk>,
    mut settings: watch::Receiver<FaultSettings>,
) -> io::Result<()> {
    loop {
        // A partition stops reading: TCP backpressure holds the bytes in
        // the peers' buffers, as a real partition would.
        loop {
            let blackhole = settings.borrow_and_update().blackhole;
            if !blackhole {
                break;
            }
            settings.changed().await.map_err(|_| proxy_gone())?;
        }
        let data = read_chunk(source).await?;
        if data.is_empty() {
            return Ok(());
        }
        let chunk = Chunk {
            data,
            read_at: Instant::now(),
            jitter_share: rand::random::<f64>(),
        };
        if queue.send(chunk).await.is_err() {
            // The writer only stops early on an error, which the join reports.
            return Ok(());
        }
    }
}

/// An empty chunk is EOF. The buffer is allocated only once data is ready,
/// so idle connections hold no buffers.
async fn read_chunk(source: &TcpStream) -> io::Result<Vec<u8>> {
    loop {
        source.readable().await?;
        let mut data = vec![0u8; CHUNK_BYTES];
        match source.try_read(&mut data) {
            Ok(read) => {
                data.truncate(read);
                return Ok(data);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
}

async fn write_side(
    sink: &TcpStream,
    mut queue: mpsc::Receiver<Chunk>,
    mut settings: watch::Receiver<FaultSettings>,
) -> io::Result<()> {
    let mut previous_due: Option<Instant> = None;
    let mut bucket = TokenBucket::new(Instant::now());
    while let Some(chunk) = queue.recv().await {
        let due = wait_until_due(&chunk, previous_due, &mut settings).await?;
        previous_due = Some(due);
        write_paced(sink, &chunk.data, &mut bucket, &mut settings).await?;
    }
    // The source sent FIN and everything before it is delivered.
    if let Err(error) = SockRef::from(sink).shutdown(Shutdown::Write) {
        // The sink is already gone; the other direction reports that.
        tracing::debug!(%error, "fault proxy: cannot pass a half-close on");
    }
    Ok(())
}

/// Waits until the chunk may go out; returns its due time so the next
/// chunk is never due earlier (delivery times never go backwards).
async fn wait_until_due(
    chunk: &Chunk,
    previous_due: Option<Instant>,
    settings: &mut watch::Receiver<FaultSettings>,
) -> io::Result<Instant> {
    loop {
        let now_settings = *settings.borrow_and_update();
        if now_settings.blackhole {
            settings.changed().await.map_err(|_| proxy_gone())?;
            continue;
        }
        let delay = now_settings.latency + now_settings.jitter.mul_f64(chunk.jitter_share);
        let due = (chunk.read_at + delay).max(previous_due.unwrap_or(chunk.read_at));
        if due <= Instant::now() {
            return Ok(due);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            changed = settings.changed() => changed.map_err(|_| proxy_gone())?,
        }
    }
}

/// Writes `data` within the bandwidth limit, re-reading the settings
/// before every piece so a new limit or a partition applies mid-chunk.
async fn write_paced(
    sink: &TcpStream,
    data: &[u8],
    bucket: &mut TokenBucket,
    settings: &mut watch::Receiver<FaultSettings>,
) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let now_settings = *settings.borrow_and_update();
        let now = Instant::now();
        let wait = match (now_settings.blackhole, now_settings.bandwidth_bytes_per_s) {
            (true, _) | (false, Some(0)) => None,
            (false, None) => {
                bucket.unlimited(now);
                write_all(sink, rest).await?;
                return Ok(());
            }
            (false, Some(rate)) => match bucket.take(now, rate, rest.len()) {
                Ok(allowed) => {
                    write_all(sink, &rest[..allowed]).await?;
                    rest = &rest[allowed..];
                    continue;
                }
                Err(wait) => Some(wait),
            },
        };
        match wait {
            Some(wait) => tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = settings.changed() => changed.map_err(|_| proxy_gone())?,
            },
            None => settings.changed().await.map_err(|_| proxy_gone())?,
        }
    }
    Ok(())
}

async fn write_all(sink: &TcpStream, data: &[u8]) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        sink.writable().await?;
        match sink.try_write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => rest = &rest[written..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
