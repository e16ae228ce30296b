//! Certificates of TLS listeners, held in the runtime so a reload rotates them: every handshake
//! asks the current runtime generation for its listener's key.

use std::sync::Arc;

use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{ClientHello, ResolvesServerCert};

use crate::runtime::SharedRuntime;

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
