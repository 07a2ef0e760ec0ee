//! TLS (`wss://`) from a PEM certificate chain and key, with rustls (ring,
//! no extra server crate): this module builds the acceptor; the accept loop
//! (`limits::listener`) runs each handshake in the connection's own task,
//! bounded by [`HANDSHAKE_TIMEOUT`], so a client that opens TCP and never
//! finishes its handshake holds one task for a few seconds, never the
//! accept loop, and counts against `--max-connections` meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
