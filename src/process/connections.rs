//! Serves one accepted connection: admits it against the listener's and the client's
//! connection limits, then runs its HTTP/1 sessions one after another (keep-alive), each
//! starting with the header limits of the runtime current at that moment, so a reload applies
//! from the next request on. HTTP/2 (ALPN) goes to Pingora's own loop unchanged.
//!
//! This is Pingora's HTTP/1 loop (`impl ServerApp for HttpServerApp`) plus the limits: Pingora
//! offers no hook between accepting a connection and reading its first header.

use std::sync::Arc;

use log::debug;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;

use crate::proxy::connection::{prepare_session, ConnectionLimits, OverClientConnections};
use crate::runtime::SharedRuntime;

/// Serves `stream` with `app` within the limits; returns when the connection is done.
pub async fn serve<A>(
    app: &Arc<A>,
    limits: &ConnectionLimits,
    state: &SharedRuntime,
    stream: Stream,
    shutdown: &ShutdownWatch,
) where
    A: HttpServerApp + Send + Sync + 'static,
{
    let runtime = state.load();
    let digest = stream.get_socket_digest();
    let peer = digest
        .as_ref()
        .and_then(|d| d.peer_addr())
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let local = || {
        digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet())
            .copied()
    };
    let Some(admitted) = limits.admit(&runtime, local, peer) else {
        debug!("listener full: closing a connection from {peer:?} unanswered");
        return;
    };
    if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
        // Not offered by our listeners today; Pingora's own loop, if it ever is.
        drop(runtime);
        app.process_new(stream, shutdown).await;
        return;
    }
    let mut session = ServerSession::new_http1(stream);
    prepare_session(&mut session, &runtime.limits, true);
    drop(runtime);
    loop {
        if admitted.over_client_limit {
            session.set_connection_user_context(Some(Box::new(OverClientConnections)));
        }
        let Some(reused) = app.process_new_http(session, shutdown).await else {
            return;
        };
        let (stream, persistent) = reused.consume();
        session = ServerSession::new_http1(stream);
        if let Some(p) = persistent {
            p.apply_to_session(&mut session);
        }
        prepare_session(&mut session, &state.load().limits, false);
    }
}
