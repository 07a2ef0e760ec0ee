//! Servers started from a scenario's `[servers] command`: any program, given
//! its port and Redis URL through `{port}` / `{redis_url}` placeholders (and
//! `PORT` / `REDIS_URL` in its environment, and the run's token secret as
//! `SERVER_JWT_SECRET` — the reference server's variable — so a server that
//! checks the harness's tokens can verify them), counted as started once its
//! readiness probe passes. Each instance leads its own process group so a
//! `server_kill` fault kills what the command forked too.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use super::ServerInstance;
use crate::scenario::{fill_placeholders, ReadyProbe, ServerCommand};

/// Lines of the server's output kept for error messages.
const OUTPUT_TAIL_LINES: usize = 40;
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start server command {program:?} (relative paths are from {cwd}): {source}")]
    Spawn {
        program: String,
        cwd: String,
        source: std::io::Error,
    },
    #[error("no free port for a server command: {0}")]
    NoPort(std::io::Error),
    #[error("server command {program:?}: url {url:?} is not a loopback WebSocket URL")]
    BadUrl { program: String, url: String },
    #[error("server command {program:?} exited ({status}) before it was ready; its last output:\n{output}")]
    Exited {
        program: String,
        status: ExitStatus,
        output: String,
    },
    #[error("server command {program:?} was not ready within {timeout:?} ({probe} on {addr}: {last}); its last output:\n{output}")]
    NotReady {
        program: String,
        probe: String,
        addr: SocketAddr,
        timeout: Duration,
        last: String,
        output: String,
    },
}

/// Starts one instance on `listen`'s port (a free port when `None`) and
/// waits for its readiness probe.
pub async fn spawn(
    spec: &ServerCommand,
    redis_url: &str,
    jwt_secret: Option<&str>,
    listen: Option<SocketAddr>,
) -> Result<ServerInstance, CommandError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let port = match listen {
        Some(addr) if addr.port() != 0 => addr.port(),
        _ => free_port().await.map_err(CommandError::NoPort)?,
    };
    let port_text = port.to_string();
    let values = [("port", port_text.as_str()), ("redis_url", redis_url)];
    // Validation checked every placeholder; a failure here is a Scenario
    // built by hand, reported as the text it would have run.
    let fill = |text: &str| fill_placeholders(text, &values).unwrap_or_else(|_| text.to_string());
    let ws_url = fill(&spec.url);
    let probe_addr = loopback_addr(&ws_url).ok_or_else(|| CommandError::BadUrl {
        program: program.clone(),
        url: ws_url.clone(),
    })?;

    let mut command = Command::new(fill(&program));
    command
        .args(spec.argv.iter().skip(1).map(|arg| fill(arg)))
        .env("PORT", &port_text)
        .env("REDIS_URL", redis_url)
        .env_remove("SERVER_JWT_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(secret) = jwt_secret {
        command.env("SERVER_JWT_SECRET", secret);
    }
    command.kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| CommandError::Spawn {
        program: program.clone(),
        cwd: std::env::current_dir().map_or_else(
            |_| "the current directory".into(),
            |d| d.display().to_string(),
        ),
        source,
    })?;
    let output = OutputTail::default();
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(output.drain(stdout));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(output.drain(stderr));
    }

    match wait_ready(&mut child, &spec.ready, probe_addr, spec.ready_timeout).await {
        Ok(()) => Ok(ServerInstance::Process {
            child,
            ws_url,
            own_group: true,
        }),
        Err(Failure::Exited(status)) => {
            // The pipes end with the child: let the readers take its last
            // words (bounded: a grandchild may still hold a pipe open).
            let readers = futures_util::future::join_all(readers);
            // A timeout only means some output may be missing.
            let _ = tokio::time::timeout(Duration::from_secs(1), readers).await;
            Err(CommandError::Exited {
                program,
                status,
                output: output.text(),
            })
        }
        Err(Failure::NotReady(last)) => {
            // Not ready is not started: leave nothing running behind.
            ServerInstance::Process {
                child,
                ws_url,
                own_group: true,
            }
            .kill()
            .await;
            Err(CommandError::NotReady {
                program,
                probe: describe(&spec.ready),
                addr: probe_addr,
                timeout: spec.ready_timeout,
                last,
                output: output.text(),
            })
        }
    }
}

fn describe(probe: &ReadyProbe) -> String {
    match probe {
        ReadyProbe::Tcp => "TCP connect".into(),
        ReadyProbe::Http { path } => format!("HTTP GET {path} expecting 2xx"),
    }
}

/// A port the OS just handed out (and took back): free unless someone
/// else grabs it in between, which the readiness probe then reveals.
async fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    Ok(listener.local_addr()?.port())
}

fn loopback_addr(ws_url: &str) -> Option<SocketAddr> {
    let url = crate::target::parse_ws_target(ws_url).ok()?;
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => std::net::IpAddr::V4(ip),
        url::Host::Ipv6(ip) => std::net::IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    Some(SocketAddr::new(ip, url.port()?))
}

enum Failure {
    Exited(ExitStatus),
    /// The last probe outcome.
    NotReady(String),
}

async fn wait_ready(
    child: &mut Child,
    probe: &ReadyProbe,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = "not probed yet".to_string();
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::Exited(status));
        }
        match probe_once(probe, addr).await {
            Ok(()) => return Ok(()),
            Err(outcome) => last = outcome,
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    Err(Failure::NotReady(last))
}

/// One probe: `Err` says what it saw instead of ready.
async fn probe_once(probe: &ReadyProbe, addr: SocketAddr) -> Result<(), String> {
    let mut stream =
        match tokio::time::timeout(PROBE_CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(format!("connect: {err}")),
            Err(_) => return Err("connect timed out".into()),
        };
    let ReadyProbe::Http { path } = probe else {
        return Ok(());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        // The status line fits in the first read's worth of bytes.
        let mut head = vec![0u8; 256];
        let mut filled = 0;
        while filled < head.len() {
            let read = stream.read(&mut head[filled..]).await?;
            if read == 0 || head[..filled + read].contains(&b'\n') {
                filled += read;
                break;
            }
            filled += read;
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..filled]).into_owned())
    };
    let head = match tokio::time::timeout(PROBE_CONNECT_TIMEOUT, exchange).await {
        Ok(Ok(head)) => head,
        Ok(Err(err)) => return Err(format!("HTTP exchange: {err}")),
        Err(_) => return Err("no HTTP answer within 1s".into()),
    };
    let status_line = head.lines().next().unwrap_or_default().to_string();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status_line.starts_with("HTTP/") && code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else if status_line.is_empty() {
        Err("empty HTTP answer".into())
    } else {
        Err(format!("answered {status_line:?}"))
    }
}

/// The last lines the server printed (stdout and stderr interleaved),
/// drained continuously so the child never blocks on a full pipe.
#[derive(Clone, Default)]
struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    fn drain(&self, pipe: impl AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<()> {
        let tail = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "server_output", "{line}");
                if let Ok(mut kept) = tail.0.lock() {
                    if kept.len() == OUTPUT_TAIL_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            }
        })
    }

    fn text(&self) -> String {
        let kept = match self.0.lock() {
            Ok(kept) => kept.iter().cloned().collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        if kept.is_empty() {
            "(none)".into()
        } else {
            kept.join("\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], ready: ReadyProbe, timeout: Duration) -> ServerCommand {
        ServerCommand {
            argv: argv.iter().map(|arg| arg.to_string()).collect(),
            url: "ws://127.0.0.1:{port}/ws".into(),
            ready,
            ready_timeout: timeout,
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let spec = spec(
            &["./no-such-server-program"],
            ReadyProbe::Tcp,
            Duration::from_secs(1),
        );
        let Err(err) = spawn(&spec, "redis://127.0.0.1:1", None, None).await else {
            panic!("a missing program started");
        };
        let text = err.to_string();
        assert!(
            text.contains("cannot start server command \"./no-such-server-program\""),
            "{text}"
        );
        assert!(text.contains("relative paths are from"), "{text}");
    }

    #[tokio::test]
    async fn a_server_that_exits_early_shows_its_output_and_status() {
        let spec = spec(
            &[
                "sh",
                "-c",
                "echo listening on {port} with {redis_url}; echo boom >&2; exit 3",
            ],
            ReadyProbe::Tcp,
            Duration::from_secs(5),
        );
        let Err(err) = spawn(&spec, "redis://127.0.0.1:1", None, None).await else {
            panic!("an exiting server counted as ready");
        };
        let text = err.to_string();
        assert!(
            text.contains("exited (exit status: 3) before it was ready"),
            "{text}"
        );
        assert!(
            text.contains("with redis://127.0.0.1:1"),
            "placeholders filled: {text}"
        );
        assert!(text.contains("boom"), "stderr kept: {text}");
    }

    #[tokio::test]
    async fn a_server_that_never_listens_times_out_and_is_killed() {
        let spec = spec(
            &["sleep", "30"],
            ReadyProbe::Tcp,
            Duration::from_millis(300),
        );
        let started = std::time::Instant::now();
        let Err(err) = spawn(&spec, "redis://127.0.0.1:1", None, None).await else {
            panic!("a silent server counted as ready");
        };
        let text = err.to_string();
        assert!(
            text.contains("was not ready within 300ms (TCP connect on 127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains("connect:"), "last probe outcome: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "it waited for sleep to end"
        );
    }

    #[tokio::test]
    async fn the_http_probe_needs_a_2xx() {
        // A listener that answers 503 to everything: TCP would pass, HTTP not.
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming().take(50) {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 512];
                // Best effort: the probe may hang up first.
                if stream.read(&mut buf).is_ok() {
                    let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
                    // probe may be gone
                }
            }
        });
        let probe = ReadyProbe::Http {
            path: "/healthz".into(),
        };
        let outcome = probe_once(&probe, addr).await;
        assert_eq!(
            outcome,
            Err("answered \"HTTP/1.1 503 Service Unavailable\"".to_string())
        );
        assert_eq!(probe_once(&ReadyProbe::Tcp, addr).await, Ok(()));
    }
}
