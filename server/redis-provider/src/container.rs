//! Redis in a Docker container through testcontainers.
//!
//! The container command is always set explicitly, as
//! `redis-server --protected-mode no --save "" --appendonly ...`:
//! - the bare name `redis-server` works with both images we meet: the
//!   official one (ENTRYPOINT docker-entrypoint.sh recognises `redis-server`
//!   as its first argument; the binary is /usr/local/bin) and our imported CI
//!   image (no entrypoint, binary /usr/bin, PATH set by the import);
//! - `--save ""` keeps stop/start semantics equal to the local provider:
//!   the official image's default command would snapshot to dump.rdb on
//!   SIGTERM and silently keep data that `Persistence::None` promises to lose.

use std::time::Duration;

use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ImageExt};
use testcontainers_modules::redis::{Redis, REDIS_PORT};

use crate::docker_probe::DockerEndpoint;
use crate::error::ProviderError;
use crate::image_ref::ImageRef;
use crate::options::Persistence;
use crate::readiness::{check_version, wait_for_ping, READY_TIMEOUT};
use crate::state::{free_loopback_port, ServerState};

/// Covers container creation up to "Ready to accept connections"; a pull of
/// the official image on a real developer machine is not included.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Docker sends SIGTERM, then SIGKILL after this; Redis needs well under a
/// second to flush an AOF.
const STOP_TIMEOUT_SECONDS: i32 = 10;

pub(crate) struct ContainerServer {
    image: ImageRef,
    persistence: Persistence,
    version: String,
    host: String,
    port: u16,
    state: ServerState,
    /// Always `Some` until `Drop` takes it out.
    container: Option<ContainerAsync<Redis>>,
}

impl ContainerServer {
    pub(crate) async fn start(
        image: ImageRef,
        persistence: Persistence,
    ) -> Result<Self, ProviderError> {
        let endpoint = DockerEndpoint::from_env()
            .map_err(|reason| ProviderError::DockerUnavailable { reason })?;
        let mut command = vec![
            "redis-server".to_string(),
            "--protected-mode".into(),
            "no".into(),
        ];
        command.extend(persistence.server_args());
        let request = Redis::default()
            .with_name(image.name.clone())
            .with_tag(image.tag.clone())
            .with_cmd(command)
            .with_startup_timeout(STARTUP_TIMEOUT);
        // A fixed host port keeps the URL valid across stop/start (Docker
        // would otherwise pick a new one); binding it to loopback keeps an
        // unauthenticated Redis off the network. Both only make sense when
        // the daemon runs on this machine.
        let request = if endpoint.is_local() {
            request
                .with_mapped_port(free_loopback_port()?, REDIS_PORT.tcp())
                .with_host_config_modifier(|host_config| {
                    for binding in host_config
                        .port_bindings
                        .iter_mut()
                        .flat_map(|bindings| bindings.values_mut())
                        .flatten()
                        .flatten()
                    {
                        binding.host_ip = Some("127.0.0.1".to_string());
                    }
                })
        } else {
            request
        };
        let container = request
            .start()
            .await
            .map_err(|source| ProviderError::ContainerStart {
                image: image.to_string(),
                source: Box::new(source),
            })?;
        let host =
            if endpoint.is_local() {
                "127.0.0.1".to_string()
            } else {
                let host = container.get_host().await.map_err(|source| {
                    ProviderError::ContainerOperation {
                        operation: "get_host",
                        image: image.to_string(),
                        source: Box::new(source),
                    }
                })?;
                host.to_string()
            };
        let mut server = ContainerServer {
            image,
            persistence,
            version: String::new(),
            host,
            port: 0,
            state: ServerState::Running,
            container: Some(container),
        };
        server.refresh_port().await?;
        wait_for_ping(&server.url(), READY_TIMEOUT, || Ok(())).await?;
        server.version = check_version(&server.url()).await?;
        Ok(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://{}:{}", self.host, self.port)
    }

    pub(crate) fn description(&self) -> String {
        let id = self
            .container
            .as_ref()
            .map_or("?", |container| container.id());
        let short_id = id.get(..12).unwrap_or(id);
        format!(
            "testcontainers image {} (redis {}, container {short_id}, {}) on port {}",
            self.image, self.version, self.persistence, self.port
        )
    }

    /// `docker stop`: SIGTERM lets Redis flush its AOF; the container and
    /// its filesystem (and so the AOF) are kept for `restart`.
    pub(crate) async fn stop(&mut self) -> Result<(), ProviderError> {
        if self.state == ServerState::Paused {
            self.resume_without_wait().await?;
        }
        self.state.require(ServerState::Running, "stop")?;
        let result = self
            .container()?
            .stop_with_timeout(Some(STOP_TIMEOUT_SECONDS))
            .await;
        self.map_operation("stop", result)?;
        self.state = ServerState::Stopped;
        Ok(())
    }

    pub(crate) async fn restart(&mut self) -> Result<(), ProviderError> {
        self.state.require(ServerState::Stopped, "start")?;
        let result = self.container()?.start().await;
        self.map_operation("start", result)?;
        self.state = ServerState::Running;
        self.refresh_port().await?;
        wait_for_ping(&self.url(), READY_TIMEOUT, || Ok(())).await
    }

    pub(crate) async fn pause(&mut self) -> Result<(), ProviderError> {
        self.state.require(ServerState::Running, "pause")?;
        let result = self.container()?.pause().await;
        self.map_operation("pause", result)?;
        self.state = ServerState::Paused;
        Ok(())
    }

    pub(crate) async fn resume(&mut self) -> Result<(), ProviderError> {
        self.state.require(ServerState::Paused, "resume")?;
        self.resume_without_wait().await?;
        wait_for_ping(&self.url(), READY_TIMEOUT, || Ok(())).await
    }

    async fn resume_without_wait(&mut self) -> Result<(), ProviderError> {
        let result = self.container()?.unpause().await;
        self.map_operation("unpause", result)?;
        self.state = ServerState::Running;
        Ok(())
    }

    /// With a fixed mapping this finds the same port again; with a remote
    /// daemon Docker may pick a new one, which `url()` then reflects.
    async fn refresh_port(&mut self) -> Result<(), ProviderError> {
        let result = self.container()?.get_host_port_ipv4(REDIS_PORT).await;
        self.port = self.map_operation("get_host_port_ipv4", result)?;
        Ok(())
    }

    fn container(&self) -> Result<&ContainerAsync<Redis>, ProviderError> {
        self.container.as_ref().ok_or(ProviderError::InvalidState {
            operation: "use the container",
            state: "removed",
        })
    }

    fn map_operation<T>(
        &self,
        operation: &'static str,
        result: Result<T, testcontainers::TestcontainersError>,
    ) -> Result<T, ProviderError> {
        result.map_err(|source| ProviderError::ContainerOperation {
            operation,
            image: self.image.to_string(),
            source: Box::new(source),
        })
    }
}

impl Drop for ContainerServer {
    fn drop(&mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        // testcontainers removes the container in its own Drop, which needs
        // a Tokio runtime; a handle dropped outside one gets a short-lived
        // runtime so the container is still removed.
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(container);
            return;
        }
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(async move { drop(container) }),
            Err(error) => {
                tracing::error!(
                    "cannot remove container {} (no Tokio runtime: {error}); remove it with `docker rm -f`",
                    container.id()
                );
                // Dropping it here would panic inside testcontainers.
                std::mem::forget(container);
            }
        }
    }
}
