//! The request path: the `ProxyHttp` hooks (thin glue, in the order Pingora calls them), the
//! per-request decision (`selection`), forwarding headers (`forwarded`) and the access log.
//!
//! Reads `runtime` (one `ArcSwap` load per request) and `signalr`; nothing here parses config.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HOST;
use log::info;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session};

mod access_log;
mod forwarded;
pub mod refusal;
pub mod selection;

use crate::config::HostHeader;
use crate::runtime::drain::Drain;
use crate::runtime::{Runtime, SharedRuntime};
use crate::signalr::Rule;
use access_log::redact_query;
use refusal::Refusal;
use selection::{select, Selection};

/// The edge proxy service.
pub struct EdgeProxy {
    state: SharedRuntime,
    drain: Arc<Drain>,
}

impl EdgeProxy {
    /// A proxy reading the shared runtime; `drain` says when to stop keeping connections alive.
    pub fn new(state: SharedRuntime, drain: Arc<Drain>) -> Self {
        EdgeProxy { state, drain }
    }
}

/// Per-request state: the runtime generation the request started on, and what was chosen.
pub struct RequestCtx {
    started: Instant,
    runtime: Option<Arc<Runtime>>,
    sel: Selection,
    /// Why the edge answered itself, if it did.
    refusal: Option<Refusal>,
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            runtime: None,
            sel: Selection::default(),
            refusal: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.drain.is_draining() {
            // `Connection: close` moves keep-alive clients to a fresh connection, which the
            // new process (or, after SIGTERM, another replica) accepts.
            session.set_keepalive(None);
        }
        let runtime = self.state.load_full();
        let peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let answer = select(&runtime, session.req_header(), peer_ip, &mut ctx.sel);
        ctx.runtime = Some(runtime);
        match answer {
            Ok(()) => Ok(false),
            Err(refusal) => {
                refuse(session, ctx, refusal).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match &ctx.sel.endpoint {
            Some(ep) => Ok(ep.peer()),
            None => Error::e_explain(ErrorType::InternalError, "no endpoint chosen"),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(pool), Some(ep)) = (&ctx.sel.pool, &ctx.sel.endpoint) else {
            return Ok(());
        };
        let original_host = upstream
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| session.req_header().uri.host())
            .map(str::to_owned);
        if pool.host_header == HostHeader::Endpoint {
            upstream.insert_header(HOST, ep.authority.clone())?;
        }
        if let Some(peer) = ctx.sel.client.peer_ip {
            let existing = upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            let xff = forwarded::forwarded_for(peer, existing, ctx.sel.client.peer_trusted);
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        let trusted = ctx.sel.client.peer_trusted;
        if !(trusted && upstream.headers.contains_key("x-forwarded-proto")) {
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            upstream.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
        }
        if !(trusted && upstream.headers.contains_key("x-forwarded-host")) {
            match original_host {
                Some(h) => upstream.insert_header("x-forwarded-host", h)?,
                None => {
                    upstream.remove_header("x-forwarded-host");
                }
            }
        }
        Ok(())
    }

    fn upgraded_tunnel(&self, _session: &Session, _ctx: &RequestCtx) -> bool {
        // WebSockets go through as raw bytes: no body filter of ours needs to see them, both
        // directions then flow independently and an idle tunnel holds no buffers (patch 0003).
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // Formatting the line costs more than the rest of our per-request work: skip it when off.
        if !log::log_enabled!(target: access_log::TARGET, log::Level::Info) {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let query = req.uri.query().map(redact_query);
        let sel = &ctx.sel;
        let route = sel
            .route
            .map_or_else(|| "-".to_string(), |i| format!("routes[{i}]"));
        info!(
            target: access_log::TARGET,
            "{} \"{} {}{}{}\" {} route={} pool={} endpoint={} rule={} ms={:.1}{}{}{}{}",
            sel.client.client_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            req.method,
            req.uri.path(),
            if query.is_some() { "?" } else { "" },
            query.as_deref().unwrap_or(""),
            status,
            route,
            sel.pool.as_ref().map_or("-", |p| p.name.as_str()),
            sel.endpoint.as_ref().map_or("-", |e| e.name.as_str()),
            sel.choice.map_or("-", Rule::as_str),
            ctx.started.elapsed().as_secs_f64() * 1000.0,
            if ctx.refusal.is_some() { " refused=" } else { "" },
            ctx.refusal.map_or("", Refusal::as_str),
            if e.is_some() { " error=" } else { "" },
            e.map(|e| e.etype().as_str()).unwrap_or(""),
        );
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        // Pingora's default prints the whole URI, which may carry an access token.
        let req = session.req_header();
        match req.uri.query() {
            Some(q) => format!("{} {}?{}", req.method, req.uri.path(), redact_query(q)),
            None => format!("{} {}", req.method, req.uri.path()),
        }
    }
}

/// Answers the request locally for `refusal`, counts it and keeps it for the access log.
async fn refuse(session: &mut Session, ctx: &mut RequestCtx, refusal: Refusal) -> Result<()> {
    refusal.count();
    ctx.refusal = Some(refusal);
    let body = match refusal {
        Refusal::NoRoute => Bytes::from_static(b"signalr-edge: no route for this request\n"),
        Refusal::NoHealthyEndpoint => {
            let pool = ctx.sel.pool.as_ref().map_or("", |p| p.name.as_str());
            Bytes::from(format!(
                "signalr-edge: no healthy endpoint in pool {pool}\n"
            ))
        }
    };
    session
        .respond_error_with_body(refusal.status(), body)
        .await
}
