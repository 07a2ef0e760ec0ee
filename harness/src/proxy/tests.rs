//! The proxy against a loopback echo server. Time bounds are lower bounds
//! plus loose upper bounds only: CI machines are noisy.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::{Proxy, ProxyError};

const PATIENCE: Duration = Duration::from_secs(5);

struct Echo {
    addr: SocketAddr,
    /// Server-side sockets still open.
    open: Arc<AtomicUsize>,
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut reader, mut writer) = socket.split();
                // Ends on EOF (then FIN back) or on a reset; both are fine here.
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                // The client may already be gone (reset tests); nothing to report.
                let _ = writer.shutdown().await;
                drop(socket);
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Echo { addr, open }
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(message).await?;
    let mut answer = vec![0u8; message.len()];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// The next read ends with an RST or EOF, as a dropped connection should.
async fn assert_closed_promptly(stream: &mut TcpStream) {
    let mut buf = [0u8; 16];
    match timeout(PATIENCE, stream.read(&mut buf)).await {
        Ok(Ok(0)) => {}
        Ok(Err(error)) => assert_eq!(error.kind(), io::ErrorKind::ConnectionReset),
        Ok(Ok(n)) => panic!("expected a closed connection, read {n} bytes"),
        Err(_) => panic!("connection still open after {PATIENCE:?}"),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 8) as u8)
        })
        .collect()
}

#[tokio::test]
async fn passes_a_mebibyte_through_both_ways_intact() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sent = pattern(1024 * 1024, 7);
    let to_send = sent.clone();
    let sending = tokio::spawn(async move {
        writer.write_all(&to_send).await.unwrap();
        // The half-close must cross the proxy, or the echo never ends.
        writer.shutdown().await.unwrap();
    });
    let mut received = Vec::new();
    timeout(PATIENCE, reader.read_to_end(&mut received))
        .await
        .expect("echo did not end: data or FIN lost")
        .unwrap();
    sending.await.unwrap();
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "bytes changed in transit");
}

#[tokio::test]
async fn latency_delays_each_direction_of_a_round_trip() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    round_trip(&mut stream, b"warm").await.unwrap();
    let latency = Duration::from_millis(100);
    proxy.set_latency(latency, Duration::ZERO);
    let started = Instant::now();
    assert_eq!(round_trip(&mut stream, b"ping").await.unwrap(), b"ping");
    let took = started.elapsed();
    assert!(took >= 2 * latency, "round trip took {took:?}");
    // Loose on purpose: a loaded CI machine can hold this thread up; the
    // bound only catches a delay applied many times over.
    assert!(took < PATIENCE, "round trip took {took:?}");
}

#[tokio::test]
async fn jitter_never_reorders_bytes() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    proxy.set_latency(Duration::from_millis(2), Duration::from_millis(30));
    let stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = stream.into_split();
    const CHUNKS: u32 = 150;
    let sending = tokio::spawn(async move {
        for number in 0..CHUNKS {
            // Spaced writes so the proxy reads them as separate chunks,
            // each with its own jitter draw.
            writer.write_all(&number.to_be_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        writer.shutdown().await.unwrap();
    });
    let mut received = Vec::new();
    timeout(PATIENCE, reader.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();
    sending.await.unwrap();
    let numbers: Vec<u32> = received
        .chunks_exact(4)
        .map(|bytes| u32::from_be_bytes(bytes.try_into().unwrap()))
        .collect();
    assert_eq!(numbers, (0..CHUNKS).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_latency_change_applies_to_data_already_queued() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    round_trip(&mut stream, b"warm").await.unwrap();
    proxy.set_latency(Duration::from_secs(30), Duration::ZERO);
    stream.write_all(b"ping").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.clear();
    let mut answer = [0u8; 4];
    timeout(PATIENCE, stream.read_exact(&mut answer))
        .await
        .expect("queued chunk kept its old 30 s delay")
        .unwrap();
    assert_eq!(&answer, b"ping");
}

#[tokio::test]
async fn bandwidth_limit_paces_an_open_connection() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    // Set after connecting: the limit must reach existing connections.
    proxy.set_bandwidth(Some(128 * 1024));
    let (mut reader, mut writer) = stream.into_split();
    let sent = pattern(256 * 1024, 3);
    let to_send = sent.clone();
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        writer.write_all(&to_send).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let mut received = Vec::new();
    timeout(Duration::from_secs(20), reader.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    sending.await.unwrap();
    assert!(received == sent, "bytes changed in transit");
    assert!(
        took >= Duration::from_millis(1500),
        "256 KiB at 128 KiB/s took {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "256 KiB at 128 KiB/s took {took:?}"
    );
}

#[tokio::test]
async fn blackhole_holds_traffic_until_lifted() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let mut open_before = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    round_trip(&mut open_before, b"warm").await.unwrap();

    proxy.set_blackhole(true);
    let mut opened_during = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    let held = Duration::from_millis(300);
    for stream in [&mut open_before, &mut opened_during] {
        stream.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        let read = timeout(held, stream.read_exact(&mut answer)).await;
        assert!(read.is_err(), "data crossed a blackhole");
    }
    assert_eq!(
        proxy.connections(),
        2,
        "a partition must keep connections open"
    );
    assert_eq!(
        echo.open.load(Ordering::SeqCst),
        1,
        "upstream dialled during a partition"
    );

    proxy.set_blackhole(false);
    for stream in [&mut open_before, &mut opened_during] {
        let mut answer = [0u8; 4];
        timeout(PATIENCE, stream.read_exact(&mut answer))
            .await
            .expect("held data not delivered after the partition lifted")
            .unwrap();
        assert_eq!(&answer, b"ping");
    }
}

#[tokio::test]
async fn a_client_leaving_during_a_blackhole_is_not_kept() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    proxy.set_blackhole(true);
    let stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    wait_until("the proxy accepted", || proxy.connections() == 1).await;
    drop(stream);
    wait_until("the abandoned connection is closed", || {
        proxy.connections() == 0
    })
    .await;
}

#[tokio::test]
async fn reset_all_resets_open_connections_only() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        round_trip(&mut stream, b"warm").await.unwrap();
        streams.push(stream);
    }
    assert_eq!(proxy.connections(), 3);

    proxy.reset_all();
    for stream in &mut streams {
        assert_closed_promptly(stream).await;
    }
    wait_until("proxy connections closed", || proxy.connections() == 0).await;
    wait_until("upstream sockets closed", || {
        echo.open.load(Ordering::SeqCst) == 0
    })
    .await;

    let mut after = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    assert_eq!(round_trip(&mut after, b"next").await.unwrap(), b"next");
}

#[tokio::test]
async fn reset_all_sends_rst_not_fin() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    round_trip(&mut stream, b"warm").await.unwrap();
    proxy.reset_all();
    let mut buf = [0u8; 4];
    let read = timeout(PATIENCE, stream.read(&mut buf)).await.unwrap();
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset)
    );
}

#[tokio::test]
async fn upstream_down_closes_the_client_and_is_counted() {
    let vacant = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_upstream = vacant.local_addr().unwrap();
    drop(vacant);
    let proxy = Proxy::start(dead_upstream).await.unwrap();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    let started = Instant::now();
    assert_closed_promptly(&mut stream).await;
    assert!(started.elapsed() < PATIENCE);
    wait_until("the failure is counted", || proxy.connect_failures() == 1).await;
    assert_eq!(proxy.connections(), 0);
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_connections() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let listen_addr = proxy.listen_addr();
    let mut stream = TcpStream::connect(listen_addr).await.unwrap();
    round_trip(&mut stream, b"warm").await.unwrap();
    let observer = proxy.clone();
    timeout(PATIENCE, proxy.shutdown())
        .await
        .expect("shutdown hung");
    assert_eq!(observer.connections(), 0);
    assert_closed_promptly(&mut stream).await;
    let refused = TcpStream::connect(listen_addr).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionRefused)
    );
}

#[tokio::test]
async fn dropping_every_handle_stops_the_proxy() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    let listen_addr = proxy.listen_addr();
    let mut stream = TcpStream::connect(listen_addr).await.unwrap();
    round_trip(&mut stream, b"warm").await.unwrap();
    drop(proxy);
    assert_closed_promptly(&mut stream).await;
}

#[tokio::test]
async fn many_concurrent_connections_are_counted_and_served() {
    let echo = echo_server().await;
    let proxy = Proxy::start(echo.addr).await.unwrap();
    const CLIENTS: usize = 200;
    let mut streams = Vec::new();
    for _ in 0..CLIENTS {
        streams.push(TcpStream::connect(proxy.listen_addr()).await.unwrap());
    }
    let clients = streams.into_iter().enumerate().map(|(index, mut stream)| {
        tokio::spawn(async move {
            let message = format!("client {index:04}");
            let answer = round_trip(&mut stream, message.as_bytes()).await.unwrap();
            assert_eq!(answer, message.as_bytes());
            stream
        })
    });
    let mut streams = Vec::new();
    for client in clients {
        streams.push(timeout(PATIENCE, client).await.unwrap().unwrap());
    }
    assert_eq!(proxy.connections(), CLIENTS);
    drop(streams);
    wait_until("all connections closed", || proxy.connections() == 0).await;
}

#[tokio::test]
async fn non_loopback_addresses_are_refused() {
    let loopback: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let outside: SocketAddr = "10.1.2.3:80".parse().unwrap();
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    match Proxy::start(outside).await {
        Err(ProxyError::NotLoopback { role, addr }) => {
            assert_eq!((role, addr), ("upstream", outside));
        }
        other => panic!("expected NotLoopback, got {other:?}"),
    }
    match Proxy::start_on(any, loopback).await {
        Err(ProxyError::NotLoopback { role, addr }) => assert_eq!((role, addr), ("listen", any)),
        other => panic!("expected NotLoopback, got {other:?}"),
    }
}

#[tokio::test]
async fn binding_a_taken_port_names_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    match Proxy::start_on(addr, addr).await {
        Err(error @ ProxyError::Bind { .. }) => {
            assert!(error.to_string().contains(&addr.to_string()), "{error}");
        }
        other => panic!("expected Bind, got {other:?}"),
    }
}

/// An upstream that accepts one connection and reports what it delivered
/// and how it ended (`Ok` for a FIN).
async fn recording_server() -> (
    SocketAddr,
    tokio::sync::oneshot::Receiver<(Vec<u8>, io::Result<()>)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, reported) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        let ended = loop {
            match socket.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(error) => break Err(error),
            }
        };
        // The test may have given up already; nothing to report then.
        let _ = report.send((received, ended));
    });
    (addr, reported)
}

#[tokio::test]
async fn bytes_sent_before_a_reset_still_arrive_behind_latency() {
    // An ack written just before an RST must reach the server, as it would
    // on a real slow link where the RST follows it on the wire.
    let (upstream, reported) = recording_server().await;
    let proxy = Proxy::start(upstream).await.unwrap();
    let latency = Duration::from_millis(100);
    proxy.set_latency(latency, Duration::ZERO);
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    let started = Instant::now();
    stream.write_all(b"last words").await.unwrap();
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    let (received, ended) = timeout(PATIENCE, reported).await.unwrap().unwrap();
    assert_eq!(received, b"last words");
    assert_eq!(
        ended.map_err(|error| error.kind()),
        Err(io::ErrorKind::ConnectionReset),
        "the reset is passed on after the data, not turned into a FIN"
    );
    assert!(started.elapsed() >= latency, "the data skipped its latency");
}
