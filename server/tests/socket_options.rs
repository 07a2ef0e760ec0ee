//! Socket options the server must set, read back from the server's own
//! sockets (the server runs in this process, so its file descriptors are
//! ours to inspect): not a timing, the option itself.

mod common;

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use common::*;
use socket2::SockRef;
use tokio_tungstenite::MaybeTlsStream;
use uuid::Uuid;

/// One TCP socket open in this process: its two ends and whether
/// TCP_NODELAY is on.
#[derive(Debug)]
struct OpenTcp {
    local: SocketAddr,
    peer: SocketAddr,
    nodelay: bool,
}

/// Every connected TCP socket of this process, from /proc/self/fd.
fn open_tcp_sockets() -> Vec<OpenTcp> {
    let mut sockets = Vec::new();
    let entries = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable");
    for entry in entries.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the fd was open a moment ago and only getsockname,
        // getpeername and getsockopt are called on it; if it was closed
        // meanwhile those calls fail (EBADF) and the fd is skipped.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&borrowed);
        let ends = socket.local_addr().ok().zip(socket.peer_addr().ok());
        let Some((local, peer)) = ends.and_then(|(l, p)| l.as_socket().zip(p.as_socket())) else {
            continue; // not TCP/IP, or not connected
        };
        if let Ok(nodelay) = socket.tcp_nodelay() {
            sockets.push(OpenTcp {
                local,
                peer,
                nodelay,
            });
        }
    }
    sockets
}

#[tokio::test]
async fn accepted_websocket_sockets_have_nagle_off() {
    init_tracing();
    let env = TestEnv::one().await;
    let server_addr = env.servers[0].local_addr();
    let conversation = Uuid::new_v4();
    let device = Device::new(Uuid::new_v4(), conversation);
    let conn = Conn::open(&env.url(0), &device.with_cursor()).await;
    let MaybeTlsStream::Plain(tcp) = conn.ws.get_ref() else {
        panic!("the test connects over plain TCP");
    };
    let client_addr = tcp.local_addr().expect("client socket address");

    let sockets = open_tcp_sockets();
    let accepted: Vec<&OpenTcp> = sockets
        .iter()
        .filter(|s| s.local.port() == server_addr.port() && s.peer == client_addr)
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "exactly one server-side socket for client {client_addr}; open TCP sockets: {sockets:?}"
    );
    assert!(
        accepted[0].nodelay,
        "TCP_NODELAY is off on the accepted socket {:?}: small frames wait for the peer's delayed ACK",
        accepted[0]
    );
    conn.close().await;
}

#[tokio::test]
async fn redis_client_sockets_have_nagle_off() {
    init_tracing();
    let env = TestEnv::one().await;
    let redis_port: u16 = env
        .redis
        .url()
        .rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .expect("redis url ends with :port");
    // Subscribing makes the tailer open its own (blocking) connection.
    let device = Device::new(Uuid::new_v4(), Uuid::new_v4());
    let conn = Conn::open(&env.url(0), &device.with_cursor()).await;

    // The provider's readiness probe connection may still be closing:
    // wait (bounded) for the server's two connections to be the only ones.
    let deadline = Instant::now() + Duration::from_secs(5);
    let to_redis = loop {
        let to_redis: Vec<OpenTcp> = open_tcp_sockets()
            .into_iter()
            .filter(|s| s.peer.port() == redis_port)
            .collect();
        let settled = to_redis.len() >= 2 && to_redis.iter().all(|s| s.nodelay);
        if settled || Instant::now() > deadline {
            break to_redis;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        to_redis.len() >= 2,
        "expected the command and tailer connections to redis, found {to_redis:?}"
    );
    let nagle_on: Vec<&OpenTcp> = to_redis.iter().filter(|s| !s.nodelay).collect();
    assert!(
        nagle_on.is_empty(),
        "redis connections with TCP_NODELAY off: {nagle_on:?}"
    );
    conn.close().await;
}
