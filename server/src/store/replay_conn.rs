//! Plain RESP2 connections for replay pages, a few per process.
//!
//! Why: a replay page is hundreds of entries; through redis-rs every one
//! becomes a `Value` tree (and the reply is parsed by the shared
//! connection's driver task, which every other command of the process
//! waits behind). `resp::xrange_entries` decodes the reply bytes directly.
//!
//! Bounded and optional: at most `MAX_OPEN` connections per process; when
//! all are busy, when the Redis address is not plain TCP (TLS, Unix
//! socket), or when anything on this path fails at the connection level,
//! the caller reads the page through the shared connection exactly as
//! before (`None`); a page Redis does not answer within the response
//! timeout is an error, as on the shared connection. A connection whose
//! request failed or timed out is dropped, never reused mid-reply.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::resp::{xrange_entries, ReplyFrame};
use super::{StoreError, StreamEntry};

/// Replay connections open at once per process (each serves one page read
/// at a time; a replaying session reads one page at a time).
pub const MAX_OPEN: usize = 8;

/// As the shared connection's settings (`Store::connect`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection keeps its read buffer for the next page; one larger
/// than this (an unusually wide page) is given back.
const KEEP_BUFFER_BYTES: usize = 2 << 20;

struct Target {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

pub(crate) struct ReplayConnections {
    /// `None`: not plain TCP; every page goes through the shared connection.
    target: Option<Target>,
    idle: Mutex<Vec<Connection>>,
    open: Arc<Semaphore>,
}

struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Held while the connection exists (idle or in use).
    _open: OwnedSemaphorePermit,
}

/// Why a replay connection could not serve a page (logged; the page is
/// then read through the shared connection).
enum Failure {
    Io(std::io::Error),
    Refused(String),
    TimedOut,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(err) => write!(f, "i/o: {err}"),
            Failure::Refused(detail) => write!(f, "refused: {detail}"),
            Failure::TimedOut => write!(f, "timed out"),
        }
    }
}

impl ReplayConnections {
    pub(crate) fn new(info: &redis::ConnectionInfo) -> ReplayConnections {
        let target = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                let settings = info.redis_settings();
                // RESP3 would change the reply shapes `resp` reads; such a
                // configuration keeps the shared connection.
                let resp2 = matches!(settings.protocol(), redis::ProtocolVersion::RESP2);
                resp2.then(|| Target {
                    host: host.clone(),
                    port: *port,
                    username: settings.username().map(str::to_owned),
                    password: settings.password().map(str::to_owned),
                    db: settings.db(),
                })
            }
            _ => None,
        };
        ReplayConnections {
            target,
            idle: Mutex::new(Vec::new()),
            open: Arc::new(Semaphore::new(MAX_OPEN)),
        }
    }

    /// `XRANGE key start end COUNT count` on a replay connection, decoded
    /// straight from the reply. `None`: no replay connection could serve
    /// it; read the page through the shared connection instead.
    pub(crate) async fn xrange(
        &self,
        key: &str,
        start: &str,
        end: &str,
        count: usize,
        conversation_id: Uuid,
    ) -> Option<Result<Vec<StreamEntry>, StoreError>> {
        let target = self.target.as_ref()?;
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let permit = self.open.clone().try_acquire_owned().ok()?;
                match Connection::open(target, permit).await {
                    Ok(conn) => conn,
                    Err(failure) => {
                        tracing::debug!(%failure, "replay connection not opened; shared connection used");
                        return None;
                    }
                }
            }
        };
        let command = redis::cmd("XRANGE")
            .arg(key)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count.max(1))
            .get_packed_command();
        let reply_len = match conn.request(&command).await {
            Ok(len) => len,
            // Redis is up but did not answer in time (stalled): asking again
            // on the shared connection would only double the wait.
            Err(Failure::TimedOut) => {
                let timed_out = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no reply within the response timeout",
                );
                return Some(Err(StoreError::Redis {
                    op: "XRANGE page",
                    source: timed_out.into(),
                }));
            }
            // A pooled connection Redis closed meanwhile, and the like.
            Err(failure) => {
                tracing::debug!(%failure, "replay connection failed; shared connection used");
                return None;
            }
        };
        let entries = xrange_entries(&conn.buf[..reply_len], conversation_id);
        if conn.buf.capacity() > KEEP_BUFFER_BYTES {
            conn.buf = Vec::new();
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        Some(entries)
    }

    /// Replay connections open now (idle or reading).
    pub(crate) fn open_count(&self) -> usize {
        MAX_OPEN - self.open.available_permits()
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }
}

impl Connection {
    async fn open(target: &Target, permit: OwnedSemaphorePermit) -> Result<Connection, Failure> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| Failure::TimedOut)?
        .map_err(Failure::Io)?;
        // A request is one small write answered by one reply: Nagle would
        // only delay it (the same reason as the shared connection).
        stream.set_nodelay(true).map_err(Failure::Io)?;
        let mut conn = Connection {
            stream,
            buf: Vec::new(),
            _open: permit,
        };
        if let Some(password) = &target.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = &target.username {
                auth.arg(username);
            }
            let auth = auth.arg(password).get_packed_command();
            conn.expect_ok(&auth, "AUTH").await?;
        }
        if target.db != 0 {
            let select = redis::cmd("SELECT").arg(target.db).get_packed_command();
            conn.expect_ok(&select, "SELECT").await?;
        }
        Ok(conn)
    }

    async fn expect_ok(&mut self, command: &[u8], what: &str) -> Result<(), Failure> {
        let len = self.request(command).await?;
        if self.buf[..len].starts_with(b"+OK\r\n") {
            Ok(())
        } else {
            Err(Failure::Refused(format!(
                "{what}: {}",
                String::from_utf8_lossy(&self.buf[..len.min(200)]).trim_end()
            )))
        }
    }

    /// Writes one command and reads its whole reply into `buf`; returns
    /// the reply's length.
    async fn request(&mut self, command: &[u8]) -> Result<usize, Failure> {
        tokio::time::timeout(RESPONSE_TIMEOUT, self.exchange(command))
            .await
            .map_err(|_| Failure::TimedOut)?
    }

    async fn exchange(&mut self, command: &[u8]) -> Result<usize, Failure> {
        self.stream.write_all(command).await.map_err(Failure::Io)?;
        self.buf.clear();
        let mut frame = ReplyFrame::default();
        loop {
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(self.buf.len().max(64 * 1024));
            }
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(Failure::Io)?;
            if read == 0 {
                return Err(Failure::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            match frame.complete(&self.buf) {
                Ok(Some(len)) if len == self.buf.len() => return Ok(len),
                // Bytes after the reply: nothing else was asked.
                Ok(Some(_)) => return Err(Failure::Refused("unrequested reply".into())),
                Ok(None) => {}
                Err(err) => return Err(Failure::Refused(err.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(url: &str) -> ReplayConnections {
        ReplayConnections::new(&redis::IntoConnectionInfo::into_connection_info(url).unwrap())
    }

    #[test]
    fn only_plain_tcp_resp2_gets_replay_connections() {
        assert!(connections("redis://127.0.0.1:6379").target.is_some());
        assert!(connections("redis://127.0.0.1:6379/?protocol=resp3")
            .target
            .is_none());
        assert!(connections("redis+unix:///tmp/redis.sock").target.is_none());
    }

    #[tokio::test]
    async fn unreachable_redis_falls_back_to_the_shared_connection() {
        // Bind then drop: a loopback port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = connections(&format!("redis://127.0.0.1:{port}"));
        let page = pool.xrange("k", "-", "+", 10, Uuid::nil()).await;
        assert!(page.is_none());
        assert_eq!(pool.idle_count(), 0);
        // The failed attempt gave its permit back.
        assert_eq!(pool.open.available_permits(), MAX_OPEN);
    }
}
