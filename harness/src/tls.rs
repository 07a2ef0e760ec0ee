//! TLS for `wss://` targets: one rustls client configuration per run,
//! trusting the system's roots, or only the CA given with `--ca` (a
//! private CA or a self-signed test certificate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA certificates from {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
    #[error("{path} holds no usable CA certificate")]
    NoCa { path: PathBuf },
    #[error("no system root certificates found ({0}); pass --ca")]
    NoRoots(String),
    #[error("TLS client configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The client configuration for `wss://` targets. Built once: loading the
/// system roots per connection would cost more than the handshake.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| TlsError::Ca {
                    path: path.to_path_buf(),
                    detail: err.to_string(),
                })?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::NoCa {
                    path: path.to_path_buf(),
                });
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(TlsError::NoRoots(format!("{:?}", native.errors)));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
