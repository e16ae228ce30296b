//! TLS material read at compile time: upstream CA bundles, shared by every peer of a pool, and
//! listener certificates, which a reload rotates.

use std::path::Path;
use std::sync::Arc;

use pingora_core::protocols::tls::CaType;
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{CertificateDer, CryptoProvider, RootCertStore};
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
