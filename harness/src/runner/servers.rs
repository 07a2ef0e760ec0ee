//! The servers under test: reference servers the harness starts (as child
//! processes, so they can be killed and measured apart from the harness,
//! or in-process for library use), any server started from a scenario's
//! `command` (see `command.rs`), or external targets.

#[path = "servers_command.rs"]
mod command;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How spawned reference servers are started.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// `<program> serve <flags>`: the harness binary itself (it embeds the
    /// reference server), or any binary with the same flags.
    Process {
        program: PathBuf,
        serve_subcommand: bool,
    },
    /// `server::start` inside this process (tests; no process isolation).
    InProcess,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start reference server {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("reference server {program} did not print its address within {timeout:?}; its output: {output}")]
    NoAddress {
        program: String,
        timeout: Duration,
        output: String,
    },
    #[error("in-process reference server failed to start: {0}")]
    InProcess(#[from] server::StartError),
    /// Boxed: it carries the server's output, and every `RunError` would
    /// otherwise be as large.
    #[error(transparent)]
    Command(#[from] Box<command::CommandError>),
}

/// One running server.
pub enum ServerInstance {
    /// `own_group`: the child leads its own process group, and signals go
    /// to the whole group (a command such as `npm start` forks the server).
    Process {
        child: Child,
        ws_url: String,
        own_group: bool,
    },
    InProcess(server::RunningServer),
}

impl ServerInstance {
    pub fn ws_url(&self) -> String {
        match self {
            ServerInstance::Process { ws_url, .. } => ws_url.clone(),
            ServerInstance::InProcess(server) => server.ws_url(),
        }
    }

    /// The OS process id of a server running as a child process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            ServerInstance::Process { child, .. } => child.id(),
            ServerInstance::InProcess(_) => None,
        }
    }

    /// The address it listens on.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        let url = crate::target::parse_ws_target(&self.ws_url()).ok()?;
        let ip = match url.host()? {
            url::Host::Ipv4(ip) => std::net::IpAddr::V4(ip),
            url::Host::Ipv6(ip) => std::net::IpAddr::V6(ip),
            url::Host::Domain(_) => return None,
        };
        Some(SocketAddr::new(ip, url.port()?))
    }

    /// Crash: SIGKILL, no cursor saved, no close frames. (An in-process
    /// server cannot be killed; it is shut down instead.)
    pub async fn kill(self) {
        match self {
            ServerInstance::Process {
                mut child,
                own_group,
                ..
            } => {
                if own_group {
                    signal_group(&child, rustix::process::Signal::KILL);
                }
                if let Err(err) = child.kill().await {
                    tracing::warn!(%err, "SIGKILL to the server failed");
                }
            }
            ServerInstance::InProcess(_) => self.stop().await,
        }
    }

    /// Graceful stop: SIGTERM (cursors saved, sockets closed 1001), then
    /// SIGKILL if it does not exit within the grace period.
    pub async fn stop(self) {
        match self {
            ServerInstance::Process {
                mut child,
                own_group,
                ..
            } => {
                if own_group {
                    signal_group(&child, rustix::process::Signal::TERM);
                } else if let Some(pid) = child
                    .id()
                    .and_then(|id| rustix::process::Pid::from_raw(id as i32))
                {
                    if let Err(err) =
                        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
                    {
                        tracing::debug!(%err, "SIGTERM to the server failed");
                    }
                }
                match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!("server did not stop within 10s of SIGTERM; killing it");
                        if own_group {
                            signal_group(&child, rustix::process::Signal::KILL);
                        }
                        if let Err(err) = child.kill().await {
                            tracing::warn!(%err, "killing the server failed");
                        }
                    }
                }
            }
            ServerInstance::InProcess(server) => {
                if let Err(err) = server.shutdown().await {
                    tracing::warn!(%err, "in-process server shutdown failed");
                }
            }
        }
    }
}

/// Signals the process group `child` leads (children it forked included).
fn signal_group(child: &Child, signal: rustix::process::Signal) {
    let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    else {
        return; // already reaped: nothing left to signal
    };
    if let Err(err) = rustix::process::kill_process_group(pid, signal) {
        tracing::debug!(%err, ?signal, "signalling the server's process group failed");
    }
}

/// Flags shared by every spawned server.
#[derive(Debug, Clone)]
pub struct SpawnSettings {
    /// `Some`: start this command instead of the reference server.
    pub command: Option<crate::scenario::ServerCommand>,
    pub redis_url: String,
    /// HS256 secret the servers verify tokens with (the harness mints the
    /// devices' tokens with it). `None`, or `--insecure-no-auth` among the
    /// extra arguments: no authentication.
    pub jwt_secret: Option<String>,
    pub sync_interval: Duration,
    pub heartbeat_interval: Duration,
    pub extra_args: Vec<String>,
}

fn humantime_arg(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

pub async fn spawn(
    launcher: &Launcher,
    settings: &SpawnSettings,
) -> Result<ServerInstance, ServerError> {
    spawn_at(launcher, settings, None).await
}

/// Starts a server listening on `listen` (a free port when `None`).
pub async fn spawn_at(
    launcher: &Launcher,
    settings: &SpawnSettings,
    listen: Option<SocketAddr>,
) -> Result<ServerInstance, ServerError> {
    if let Some(server_command) = &settings.command {
        return command::spawn(
            server_command,
            &settings.redis_url,
            settings.jwt_secret.as_deref(),
            listen,
        )
        .await
        .map_err(|err| ServerError::Command(Box::new(err)));
    }
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    match launcher {
        Launcher::InProcess => {
            let mut config = server::Config::for_tests(&settings.redis_url);
            config.listen = listen;
            config.sync_interval = settings.sync_interval;
            config.heartbeat_interval = settings.heartbeat_interval;
            match &settings.jwt_secret {
                Some(secret) => config.auth.jwt_secret = Some(secret.clone()),
                None => config.auth.insecure_no_auth = true,
            }
            Ok(ServerInstance::InProcess(server::start(config).await?))
        }
        Launcher::Process {
            program,
            serve_subcommand,
        } => {
            let mut command = Command::new(program);
            if *serve_subcommand {
                command.arg("serve");
            }
            // Through the environment, not argv: other local users can
            // read command lines. Key settings inherited from the harness's
            // environment would conflict with the run's secret.
            command
                .env_remove("SERVER_JWT_SECRET")
                .env_remove("SERVER_JWT_PUBLIC_KEY")
                .env_remove("SERVER_INSECURE_NO_AUTH");
            let insecure = settings
                .extra_args
                .iter()
                .any(|a| a == "--insecure-no-auth");
            match &settings.jwt_secret {
                Some(secret) if !insecure => {
                    command.env("SERVER_JWT_SECRET", secret);
                }
                Some(_) => {}
                None if insecure => {}
                None => {
                    command.arg("--insecure-no-auth");
                }
            }
            command
                .args([
                    "--listen",
                    &listen.to_string(),
                    "--redis-url",
                    &settings.redis_url,
                ])
                .args(["--sync-interval", &humantime_arg(settings.sync_interval)])
                .args([
                    "--heartbeat-interval",
                    &humantime_arg(settings.heartbeat_interval),
                ])
                .args(&settings.extra_args)
                .env(
                    "RUST_LOG",
                    std::env::var("SERVER_LOG").unwrap_or_else(|_| "error".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            let name = program.display().to_string();
            let mut child = command.spawn().map_err(|source| ServerError::Spawn {
                program: name.clone(),
                source,
            })?;
            let Some(stdout) = child.stdout.take() else {
                return Err(ServerError::NoAddress {
                    program: name,
                    timeout: Duration::ZERO,
                    output: "no stdout pipe".into(),
                });
            };
            let timeout = Duration::from_secs(20);
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = String::new();
            let found = tokio::time::timeout(timeout, async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(url) = line.strip_prefix("LISTENING ") {
                        return Some(url.trim().to_string());
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                None
            })
            .await;
            match found {
                Ok(Some(ws_url)) => {
                    // Keep draining stdout so the child never blocks on a full pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    Ok(ServerInstance::Process {
                        child,
                        ws_url,
                        own_group: false,
                    })
                }
                _ => Err(ServerError::NoAddress {
                    program: name,
                    timeout,
                    output: seen,
                }),
            }
        }
    }
}
