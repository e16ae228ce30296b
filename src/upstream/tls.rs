//! Upstream TLS trust: CA bundles loaded once at compile time, shared by every peer of a pool.

use std::path::Path;
use std::sync::Arc;

use pingora_core::protocols::tls::CaType;
use pingora_core::tls::{CertificateDer, RootCertStore};
use pingora_core::utils::tls::{parse_x509, WrappedX509};

/// Reads a PEM bundle of CA certificates into the form `PeerOptions::ca` takes.
pub fn load_ca_file(path: &Path) -> Result<Arc<CaType>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let ders: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if ders.is_empty() {
        return Err(format!("{}: no CERTIFICATE found", path.display()));
    }
    // Check each certificate parses before handing it to Pingora, whose parser panics on garbage.
    let mut store = RootCertStore::empty();
    for der in &ders {
        store
            .add(der.clone())
            .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    let certs: Vec<WrappedX509> = ders
        .into_iter()
        .map(|d| WrappedX509::new(d.to_vec(), parse_x509))
        .collect();
    Ok(Arc::from(certs.into_boxed_slice()))
}
