//! The running Redis given to a test: URL, kind and fault-injection controls.

use crate::container::ContainerServer;
use crate::error::ProviderError;
use crate::local::LocalServer;
use crate::options::ProviderKind;

pub(crate) enum Backend {
    /// Boxed: the testcontainers handle is far larger than the other variants.
    Container(Box<ContainerServer>),
    Local(LocalServer),
    /// An external server: nothing to own, nothing to clean up.
    External {
        version: String,
    },
}

/// A running Redis. Dropping it removes the container, kills the child
/// process and deletes its data directory; an external server is left alone.
pub struct RedisHandle {
    /// Cached so `url()` can hand out `&str`; refreshed after `start`.
    url: String,
    backend: Backend,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandle")
            .field("url", &self.url)
            .field("kind", &self.kind())
            .finish()
    }
}

impl RedisHandle {
    pub(crate) fn new(url: String, backend: Backend) -> Self {
        RedisHandle { url, backend }
    }

    /// `redis://HOST:PORT`, valid across `stop`/`start`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn kind(&self) -> ProviderKind {
        match self.backend {
            Backend::Container(_) => ProviderKind::Testcontainers,
            Backend::Local(_) => ProviderKind::Local,
            Backend::External { .. } => ProviderKind::Url,
        }
    }

    /// Human-readable origin, for logs and reports.
    pub fn description(&self) -> String {
        match &self.backend {
            Backend::Container(server) => server.description(),
            Backend::Local(server) => server.description(),
            Backend::External { version } => {
                format!("external Redis {version} at {}", self.url)
            }
        }
    }

    /// Stops Redis gracefully (SIGTERM / `docker stop`), keeping its data
    /// directory. What survives depends on the persistence: AOF data does,
    /// `Persistence::None` comes back empty.
    pub async fn stop(&mut self) -> Result<(), ProviderError> {
        match &mut self.backend {
            Backend::Container(server) => server.stop().await,
            Backend::Local(server) => server.stop().await,
            Backend::External { .. } => Err(unsupported("stop")),
        }
    }

    /// Starts a stopped Redis again on the same port with the same data,
    /// returning once it answers PING.
    pub async fn start(&mut self) -> Result<(), ProviderError> {
        let result = match &mut self.backend {
            Backend::Container(server) => server.restart().await,
            Backend::Local(server) => server.restart().await,
            Backend::External { .. } => Err(unsupported("start")),
        };
        if let Backend::Container(server) = &self.backend {
            self.url = server.url();
        }
        result
    }

    /// Freezes Redis (SIGSTOP / `docker pause`): connections stay open but
    /// nothing answers until `resume`.
    pub async fn pause(&mut self) -> Result<(), ProviderError> {
        match &mut self.backend {
            Backend::Container(server) => server.pause().await,
            Backend::Local(server) => server.pause(),
            Backend::External { .. } => Err(unsupported("pause")),
        }
    }

    /// Undoes `pause`, returning once Redis answers PING again.
    pub async fn resume(&mut self) -> Result<(), ProviderError> {
        match &mut self.backend {
            Backend::Container(server) => server.resume().await,
            Backend::Local(server) => server.resume().await,
            Backend::External { .. } => Err(unsupported("resume")),
        }
    }
}

fn unsupported(operation: &'static str) -> ProviderError {
    ProviderError::Unsupported {
        operation,
        kind: ProviderKind::Url,
    }
}
