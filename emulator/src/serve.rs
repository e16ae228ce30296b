//! Accept loop for emulator listeners: plain or TLS, recording the SNI of each connection.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use log::debug;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Facts about the client connection, available to handlers as an `Extension`.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The TLS server name the client sent, if TLS.
    pub sni: Option<String>,
    /// The peer address.
    pub peer: Option<SocketAddr>,
}

/// Builds a TLS acceptor from PEM certificate chain and key files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut std::fs::read(cert).map_err(|e| e.to_string())?.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut std::fs::read(key).map_err(|e| e.to_string())?.as_slice())
            .map_err(|e| format!("{}: {e}", key.display()))?
            .ok_or_else(|| format!("{}: no private key", key.display()))?;
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, router: Router) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            let mut info = ConnInfo {
                sni: None,
                peer: Some(peer),
            };
            match tls {
                None => serve_conn(TokioIo::new(stream), router, info).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        info.sni = s.get_ref().1.server_name().map(str::to_string);
                        serve_conn(TokioIo::new(s), router, info).await
                    }
                    Err(e) => debug!("emulator: TLS handshake from {peer} failed: {e}"),
                },
            }
        });
    }
}

async fn serve_conn<I>(io: TokioIo<I>, router: Router, info: ConnInfo)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(router.layer(axum::Extension(info)));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades()
        .await;
}
