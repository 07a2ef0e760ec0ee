//! One proxied connection: wait for a path to the upstream, connect, then
//! two directions (client -> upstream, upstream -> client) run inside one task
//! on shared `&TcpStream`s until both directions end, either side fails,
//! or the proxy resets or stops.
//!
//! Each direction is a reader and a writer joined by a small FIFO queue of
//! chunks stamped with their read time. The writer delivers a chunk at
//! `read time + latency + jitter share`, never earlier than the chunk
//! before it, so jitter delays data but cannot reorder it, and the delay
//! is recomputed from the current settings whenever they change. A FIN
//! travels the queue like data; a reset stops the reading but not the
//! delivery of what was read before it.

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
/// How long a failed connection may still spend delivering what it read
/// before the failure: enough for any latency fault a scenario sets, short
/// enough that a sink which stopped reading cannot hold a dead connection.
const DRAIN_AFTER_FAILURE: Duration = Duration::from_secs(2);

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

/// Both directions until each has passed its source's FIN on, or a
/// failure. A failure (a reset or error on either side) stops the reading
/// at once, but what was already read still goes out at its due time
/// before the caller passes the reset on: on a real network the bytes a
/// peer sent before its RST are ahead of it on the wire, so an ack written
/// just before a reset reaches the server behind a slow link as well as
/// without one.
async fn forward_both(
    client: &TcpStream,
    server: &TcpStream,
    settings: watch::Receiver<FaultSettings>,
) -> io::Result<()> {
    let (upstream_tx, upstream_rx) = mpsc::channel(QUEUE_CHUNKS);
    let (downstream_tx, downstream_rx) = mpsc::channel(QUEUE_CHUNKS);
    // A reader that returns drops its sender, so its writer ends once it
    // has delivered the queue.
    let (read_settings, write_settings) = (settings.clone(), settings);
    let reading = async move {
        tokio::try_join!(
            read_side(client, upstream_tx, read_settings.clone()),
            read_side(server, downstream_tx, read_settings),
        )
    };
    // Joined, not try-joined: a failed write towards a peer that reset must
    // not throw away what the other direction still owes the other peer.
    let writing = async move {
        let (upstream, downstream) = tokio::join!(
            write_side(server, upstream_rx, write_settings.clone()),
            write_side(client, downstream_rx, write_settings),
        );
        upstream.and(downstream)
    };
    tokio::pin!(writing);
    tokio::select! {
        read = reading => match read {
            Ok(_) => writing.await,
            Err(failure) => {
                if tokio::time::timeout(DRAIN_AFTER_FAILURE, &mut writing).await.is_err() {
                    tracing::debug!("fault proxy: a sink did not take the bytes read before a reset within {DRAIN_AFTER_FAILURE:?}");
                }
                Err(failure)
            }
        },
        written = &mut writing => written,
    }
}

/// A chunk with no data: the source's FIN, delivered in order after the
/// data before it.
struct Chunk {
    data: Vec<u8>,
    read_at: Instant,
    /// This chunk's share of the jitter, in [0, 1): kept rather than a
    /// fixed delay so a jitter change applies to queued chunks too.
    jitter_share: f64,
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
        let end_of_stream = data.is_empty();
        let chunk = Chunk {
            data,
            read_at: Instant::now(),
            jitter_share: rand::random::<f64>(),
        };
        if queue.send(chunk).await.is_err() || end_of_stream {
            // A writer only stops early on an error, which the join
            // reports; after EOF there is nothing more to read.
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
        if chunk.data.is_empty() {
            // The source sent FIN and everything before it is delivered.
            if let Err(error) = SockRef::from(sink).shutdown(Shutdown::Write) {
                // The sink is already gone; the other direction reports that.
                tracing::debug!(%error, "fault proxy: cannot pass a half-close on");
            }
            return Ok(());
        }
        write_paced(sink, &chunk.data, &mut bucket, &mut settings).await?;
    }
    // The reading stopped on a failure: everything read is delivered and
    // the caller passes the reset on (no FIN first).
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
