//! A `redis-server` child process from `PATH`, on a free loopback port, with
//! its data in a temporary directory that lives as long as the handle.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use tempfile::TempDir;

use crate::error::ProviderError;
use crate::options::Persistence;
use crate::readiness::{check_version, wait_for_ping, READY_TIMEOUT};
use crate::state::{free_loopback_port, ServerState};

/// A port clash between picking a free port and redis-server binding it
/// shows up as an early exit; a few fresh ports make that race harmless.
const PORT_ATTEMPTS: usize = 3;
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(20);
const LOG_FILE_NAME: &str = "redis.log";
const LOG_TAIL_LINES: usize = 20;

pub(crate) struct LocalServer {
    binary: PathBuf,
    port: u16,
    persistence: Persistence,
    version: String,
    state: ServerState,
    /// `None` exactly when stopped.
    child: Option<Child>,
    /// Declared last so it is removed after `Drop` has killed the child.
    data_dir: TempDir,
}

/// The first executable `redis-server` on `PATH`.
pub(crate) fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join("redis-server"))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl LocalServer {
    pub(crate) async fn start(persistence: Persistence) -> Result<Self, ProviderError> {
        let binary = find_redis_server().ok_or(ProviderError::RedisServerNotFound)?;
        let mut last_exit = None;
        for attempt in 1..=PORT_ATTEMPTS {
            let data_dir = tempfile::Builder::new()
                .prefix("redis-provider-")
                .tempdir()
                .map_err(|source| ProviderError::TempDir { source })?;
            let mut server = LocalServer {
                binary: binary.clone(),
                port: free_loopback_port()?,
                persistence,
                version: String::new(),
                state: ServerState::Stopped,
                child: None,
                data_dir,
            };
            match server.spawn_and_wait().await {
                Ok(()) => {
                    server.version = check_version(&server.url()).await?;
                    return Ok(server);
                }
                // Dropping the failed server removes its data directory.
                Err(error @ ProviderError::LocalExited { .. }) => {
                    tracing::warn!(
                        "redis-server attempt {attempt}/{PORT_ATTEMPTS} failed: {error}"
                    );
                    last_exit = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_exit.unwrap_or(ProviderError::RedisServerNotFound))
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn description(&self) -> String {
        let pid = self.child.as_ref().map_or_else(
            || "stopped".to_string(),
            |child| format!("pid {}", child.id()),
        );
        format!(
            "local redis-server {} ({}, {pid}) on port {}, {}, data dir {}",
            self.version,
            self.binary.display(),
            self.port,
            self.persistence,
            self.data_dir.path().display()
        )
    }

    /// Graceful stop: SIGTERM makes redis-server flush its AOF (if any) and
    /// exit; with `Persistence::None` nothing is written, so data is lost.
    pub(crate) async fn stop(&mut self) -> Result<(), ProviderError> {
        if self.state == ServerState::Paused {
            self.signal(Signal::CONT, "SIGCONT")?;
            self.state = ServerState::Running;
        }
        self.state.require(ServerState::Running, "stop")?;
        self.signal(Signal::TERM, "SIGTERM")?;
        let result = self.wait_for_exit(STOP_TIMEOUT).await;
        self.child = None;
        self.state = ServerState::Stopped;
        result
    }

    /// Starts again on the same port with the same data directory.
    pub(crate) async fn restart(&mut self) -> Result<(), ProviderError> {
        self.state.require(ServerState::Stopped, "start")?;
        self.spawn_and_wait().await
    }

    pub(crate) fn pause(&mut self) -> Result<(), ProviderError> {
        self.state.require(ServerState::Running, "pause")?;
        self.signal(Signal::STOP, "SIGSTOP")?;
        self.state = ServerState::Paused;
        Ok(())
    }

    pub(crate) async fn resume(&mut self) -> Result<(), ProviderError> {
        self.state.require(ServerState::Paused, "resume")?;
        self.signal(Signal::CONT, "SIGCONT")?;
        self.state = ServerState::Running;
        wait_for_ping(&self.url(), READY_TIMEOUT, || Ok(())).await
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ProviderError> {
        let child = self.spawn()?;
        let pid = child.id();
        tracing::debug!(
            "spawned {} pid {pid} on port {}",
            self.binary.display(),
            self.port
        );
        self.child = Some(child);
        self.state = ServerState::Running;
        let url = self.url();
        let result = wait_for_ping(&url, READY_TIMEOUT, || self.fail_if_exited()).await;
        if result.is_err() {
            self.kill_child();
        }
        result
    }

    fn spawn(&self) -> Result<Child, ProviderError> {
        let data_dir = self.data_dir.path();
        Command::new(&self.binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(data_dir)
            .arg("--logfile")
            .arg(data_dir.join(LOG_FILE_NAME))
            .args(self.persistence.server_args())
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ProviderError::Spawn {
                binary: self.binary.clone(),
                source,
            })
    }

    fn fail_if_exited(&mut self) -> Result<(), ProviderError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                self.state = ServerState::Stopped;
                Err(ProviderError::LocalExited {
                    port: self.port,
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                })
            }
            Err(source) => Err(ProviderError::Wait { pid, source }),
        }
    }

    async fn wait_for_exit(&mut self, timeout: Duration) -> Result<(), ProviderError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        let started = Instant::now();
        let max_polls = timeout.as_millis() / EXIT_POLL_INTERVAL.as_millis() + 1;
        for _ in 0..max_polls {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => tokio::time::sleep(EXIT_POLL_INTERVAL).await,
                Err(source) => return Err(ProviderError::Wait { pid, source }),
            }
        }
        self.kill_child();
        Err(ProviderError::StopTimeout {
            pid,
            waited: started.elapsed(),
        })
    }

    fn signal(&self, signal: Signal, name: &'static str) -> Result<(), ProviderError> {
        let child = self.child.as_ref().ok_or(ProviderError::InvalidState {
            operation: name,
            state: ServerState::Stopped.as_str(),
        })?;
        kill_process(Pid::from_child(child), signal).map_err(|errno| ProviderError::Signal {
            signal: name,
            pid: child.id(),
            source: errno.into(),
        })
    }

    /// SIGKILL also ends a SIGSTOPped process, so this works in any state.
    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.kill() {
                tracing::warn!("could not kill redis-server pid {}: {error}", child.id());
            }
            // Reaping avoids a zombie; after SIGKILL it returns at once, and a
            // failure only means it was reaped already.
            let _ = child.wait();
        }
        self.state = ServerState::Stopped;
    }

    fn log_tail(&self) -> String {
        let log_path = self.data_dir.path().join(LOG_FILE_NAME);
        match std::fs::read_to_string(&log_path) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(error) => format!("(no log at {}: {error})", log_path.display()),
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill_child();
    }
}
