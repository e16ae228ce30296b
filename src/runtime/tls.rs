//! TLS material read at compile time: upstream CA bundles, shared by every peer of a pool, and
//! listener certificates, which a reload rotates.

use std::path::Path;
use std::sync::Arc;

use crate::config::{read_bounded, PathError, MAX_PEM_BYTES};

use pingora_core::protocols::tls::CaType;
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{CertificateDer, CryptoProvider, RootCertStore};
use pingora_core::utils::tls::{parse_x509, WrappedX509};

/// Reads a PEM bundle of CA certificates (a regular file of at most [`MAX_PEM_BYTES`]) into
/// the form `PeerOptions::ca` takes.
pub fn load_ca_file(path: &Path) -> Result<Arc<CaType>, String> {
    let pem = read_bounded(path, MAX_PEM_BYTES)?;
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

/// Reads a PEM certificate chain (leaf first) and its private key (regular files of at most
/// [`MAX_PEM_BYTES`] each), and checks they match. The error's path is `cert` or `key` when
/// one file is at fault, empty when they do not match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, PathError> {
    let in_cert = |m: String| PathError::new("cert", m);
    let pem = read_bounded(cert, MAX_PEM_BYTES).map_err(in_cert)?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| in_cert(format!("{}: bad PEM: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(in_cert(format!("{}: no CERTIFICATE found", cert.display())));
    }
    let in_key = |m: String| PathError::new("key", m);
    let pem = read_bounded(key, MAX_PEM_BYTES).map_err(in_key)?;
    let der = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| in_key(format!("{}: bad PEM: {e}", key.display())))?
        .ok_or_else(|| in_key(format!("{}: no PRIVATE KEY found", key.display())))?;
    pingora_core::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| PathError::new("", "no TLS crypto provider installed"))?;
    // from_der also checks that the key belongs to the leaf certificate.
    CertifiedKey::from_der(chain, der, provider)
        .map(Arc::new)
        .map_err(|e| {
            PathError::new(
                "",
                format!("{} with {}: {e}", cert.display(), key.display()),
            )
        })
}
