//! Certificates of TLS listeners, held in the runtime so a reload rotates them: every handshake
//! asks the current runtime generation for its listener's key.

use std::path::Path;
use std::sync::Arc;

use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{ClientHello, CryptoProvider, ResolvesServerCert};

use crate::runtime::SharedRuntime;

/// Reads a PEM certificate chain (leaf first) and its private key, and checks they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let pem = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE found", cert.display()));
    }
    let pem = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let der = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: bad PEM: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no PRIVATE KEY found", key.display()))?;
    pingora_core::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider installed".to_string())?;
    // from_der also checks that the key belongs to the leaf certificate.
    CertifiedKey::from_der(chain, der, provider)
        .map(Arc::new)
        .map_err(|e| format!("{} with {}: {e}", cert.display(), key.display()))
}

/// Hands each TLS handshake of one listener the certificate of the current runtime generation.
#[derive(Debug)]
pub struct CertResolver {
    state: SharedRuntime,
    listener: usize,
}

impl CertResolver {
    /// The resolver of `listeners[listener]`.
    pub fn new(state: SharedRuntime, listener: usize) -> Self {
        CertResolver { state, listener }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.state
            .load()
            .listener_certs
            .get(self.listener)
            .cloned()
            .flatten()
    }
}
