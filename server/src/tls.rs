//! TLS (`wss://`) from a PEM certificate chain and key, with rustls.
//!
//! Why a [`Listener`] wrapper instead of another server crate: `axum::serve`
//! takes any listener, so TLS stays one layer around the TCP listener and
//! everything else (graceful shutdown, the upgrade path) is unchanged.
//! Handshakes run in their own tasks, bounded by [`HANDSHAKE_TIMEOUT`]: a
//! client that opens TCP and never finishes its handshake holds one task
//! for a few seconds, never the accept loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the HTTP server to pick them up.
const READY_QUEUE: usize = 64;

/// TLS flags (flattened into [`crate::Config`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsConfig {
    /// Serve `wss://` with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(
        long,
        env = "SERVER_TLS_CERT",
        value_name = "PEM_FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(
        long,
        env = "SERVER_TLS_KEY",
        value_name = "PEM_FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificates from {path}: {detail}")]
    Certs { path: PathBuf, detail: String },
    #[error("{path} holds no certificate")]
    NoCerts { path: PathBuf },
    #[error("cannot read the TLS private key from {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("the TLS certificate and key do not go together: {0}")]
    Config(#[from] rustls::Error),
}

impl TlsConfig {
    /// The acceptor, or `None` when TLS is not configured.
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let config = server_config(cert, key)?;
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<rustls::ServerConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| TlsError::Certs {
            path: cert_path.to_path_buf(),
            detail: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|err| TlsError::Key {
        path: key_path.to_path_buf(),
        detail: err.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(config)
}

/// A listener that hands out TLS streams whose handshake completed.
pub struct TlsListener<L: Listener> {
    ready: mpsc::Receiver<(TlsStream<L::Io>, L::Addr)>,
    local_addr: std::io::Result<L::Addr>,
}

impl<L> TlsListener<L>
where
    L: Listener,
    L::Addr: Clone + std::fmt::Debug + Sync + 'static,
{
    pub fn new(mut inner: L, acceptor: TlsAcceptor) -> TlsListener<L> {
        let local_addr = inner.local_addr();
        let (ready_tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let (io, addr) = tokio::select! {
                    accepted = inner.accept() => accepted,
                    // The server is gone: stop accepting.
                    () = ready_tx.closed() => return,
                };
                let acceptor = acceptor.clone();
                let ready_tx = ready_tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            // Err: the server stopped meanwhile; the stream is dropped.
                            let _ = ready_tx.send((stream, addr)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(%err, ?addr, "TLS handshake failed"),
                        Err(_) => tracing::debug!(?addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, local_addr }
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    L::Addr: Clone + std::fmt::Debug + Sync + 'static,
{
    type Io = TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task only ends when this listener is dropped, so
            // this is not reached; wait forever like an idle listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local_addr {
            Ok(addr) => Ok(addr.clone()),
            Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn cert_and_key_come_together_and_are_checked() {
        let err = crate::Config::try_parse_from(["server", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(err.to_string().contains("--tls-key"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsConfig {
            tls_cert: Some(dir.path().join("nope.pem")),
            tls_key: Some(dir.path().join("nope.key")),
        };
        let err = missing.acceptor().err().expect("missing files").to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        let mismatched = TlsConfig {
            tls_cert: Some(cert.clone()),
            tls_key: Some(key.clone()),
        };
        assert!(
            mismatched.acceptor().is_err(),
            "a key of another certificate"
        );
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        let good = TlsConfig {
            tls_cert: Some(cert),
            tls_key: Some(key),
        };
        assert!(good.acceptor().unwrap().is_some());
        assert!(TlsConfig::default().acceptor().unwrap().is_none());
    }
}
