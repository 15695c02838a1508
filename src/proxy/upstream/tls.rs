//! TLS to upstreams: rustls (ring) verifying against the system's trust store, plus the
//! certificates of `--upstream-ca`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why the upstream TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The `--upstream-ca` file could not be read or holds no certificate.
    #[error("--upstream-ca {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client configuration for upstream TLS: system roots plus `extra_ca` (PEM).
pub fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system trust store loaded");
    if let Some(path) = extra_ca {
        let shown = path.display().to_string();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| TlsSetupError::CaFile { path: shown.clone(), reason: e.to_string() })?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsSetupError::CaFile { path: shown.clone(), reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(TlsSetupError::CaFile {
                path: shown,
                reason: "no PEM certificate in the file".into(),
            });
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| TlsSetupError::CaFile { path: shown.clone(), reason: e.to_string() })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // ALPN (http/1.1) is set by the connector.
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
