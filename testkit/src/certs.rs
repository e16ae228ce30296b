//! Test certificates: a private CA and a leaf for one host, written as PEM files, for TLS
//! between the edge and emulated instances and on the edge's own listeners.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// The PEM files of one test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA's certificate (what a client trusts).
    pub ca: PathBuf,
    /// The leaf certificate for the host, signed by the CA.
    pub cert: PathBuf,
    /// The leaf's private key.
    pub key: PathBuf,
}

/// Writes a fresh CA and a certificate for `host` signed by it into `dir` as `ca.pem`,
/// `cert.pem` and `key.pem`. Every call makes a new CA, so two PKIs do not trust each other.
pub fn test_pki(dir: &Path, host: &str) -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "signalr-edge test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let pki = TestPki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

impl TestPki {
    /// The CA as a root certificate for an HTTP client.
    pub fn root(&self) -> reqwest::Certificate {
        root_certificate(&self.ca)
    }
}

/// The PEM certificate in `path` as a root certificate for an HTTP client.
pub fn root_certificate(path: &Path) -> reqwest::Certificate {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reqwest::Certificate::from_pem(&pem).unwrap()
}
