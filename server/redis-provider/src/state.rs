//! Lifecycle state shared by the providers that own their server.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    Running,
    Paused,
    Stopped,
}

impl ServerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ServerState::Running => "running",
            ServerState::Paused => "paused",
            ServerState::Stopped => "stopped",
        }
    }

    /// Fails with a message naming the operation unless in `expected`.
    pub(crate) fn require(
        self,
        expected: ServerState,
        operation: &'static str,
    ) -> Result<(), crate::ProviderError> {
        if self == expected {
            Ok(())
        } else {
            Err(crate::ProviderError::InvalidState {
                operation,
                state: self.as_str(),
            })
        }
    }
}

/// Finds a port that is free right now by letting the kernel pick one.
/// Another process could take it before we bind it again; callers retry.
pub(crate) fn free_loopback_port() -> Result<u16, crate::ProviderError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|source| crate::ProviderError::FreePort { source })?;
    let port = listener
        .local_addr()
        .map_err(|source| crate::ProviderError::FreePort { source })?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_names_the_operation_and_actual_state() {
        assert!(ServerState::Running
            .require(ServerState::Running, "pause")
            .is_ok());
        let error = ServerState::Stopped
            .require(ServerState::Running, "pause")
            .unwrap_err()
            .to_string();
        assert_eq!(error, "cannot pause: Redis is stopped");
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_loopback_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
