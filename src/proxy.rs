//! The `ProxyHttp` impl: thin glue from Pingora's hooks to the routing, affinity and upstream modules.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use log::info;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session};

use crate::access_log::{self, redact_query};
use crate::affinity::AffinityInput;
use crate::config::HostHeader;
use crate::drain::Drain;
use crate::forwarded;
use crate::runtime::{Runtime, SharedRuntime};
use crate::upstream::{Choice, Endpoint, Pool};

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
    route: Option<usize>,
    pool: Option<Arc<Pool>>,
    endpoint: Option<Arc<Endpoint>>,
    choice: Option<Choice>,
    peer_ip: Option<IpAddr>,
    peer_trusted: bool,
    client_ip: Option<IpAddr>,
}

/// What the edge answers itself, when it does not proxy.
enum LocalAnswer {
    NoRoute,
    NoHealthyEndpoint,
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            runtime: None,
            route: None,
            pool: None,
            endpoint: None,
            choice: None,
            peer_ip: None,
            peer_trusted: false,
            client_ip: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.drain.is_draining() {
            // `Connection: close` moves keep-alive clients to a fresh connection, which the
            // new process (or, after SIGTERM, another replica) accepts.
            session.set_keepalive(None);
        }
        let runtime = self.state.load_full();
        let answer = select(&runtime, session, ctx);
        ctx.runtime = Some(runtime);
        match answer {
            Ok(()) => Ok(false),
            Err(LocalAnswer::NoRoute) => {
                session
                    .respond_error_with_body(
                        404,
                        Bytes::from_static(b"signalr-edge: no route for this request\n"),
                    )
                    .await?;
                Ok(true)
            }
            Err(LocalAnswer::NoHealthyEndpoint) => {
                let pool = ctx.pool.as_ref().map_or("", |p| p.name.as_str());
                let body = format!("signalr-edge: no healthy endpoint in pool {pool}\n");
                session
                    .respond_error_with_body(503, Bytes::from(body))
                    .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match &ctx.endpoint {
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
        let (Some(pool), Some(ep)) = (&ctx.pool, &ctx.endpoint) else {
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
        if let Some(peer) = ctx.peer_ip {
            let existing = upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            let xff = forwarded::forwarded_for(peer, existing, ctx.peer_trusted);
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        let trusted = ctx.peer_trusted;
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

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let query = req.uri.query().map(redact_query);
        let route = ctx
            .route
            .map_or_else(|| "-".to_string(), |i| format!("routes[{i}]"));
        info!(
            target: access_log::TARGET,
            "{} \"{} {}{}{}\" {} route={} pool={} endpoint={} rule={} ms={:.1}{}{}",
            ctx.client_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            req.method,
            req.uri.path(),
            if query.is_some() { "?" } else { "" },
            query.as_deref().unwrap_or(""),
            status,
            route,
            ctx.pool.as_ref().map_or("-", |p| p.name.as_str()),
            ctx.endpoint.as_ref().map_or("-", |e| e.name.as_str()),
            ctx.choice.map_or("-", Choice::as_str),
            ctx.started.elapsed().as_secs_f64() * 1000.0,
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

/// Routes the request and picks its endpoint, filling `ctx`.
fn select(
    runtime: &Runtime,
    session: &Session,
    ctx: &mut RequestCtx,
) -> std::result::Result<(), LocalAnswer> {
    let req = session.req_header();
    let peer_ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    if let Some(peer) = peer_ip {
        ctx.peer_trusted = forwarded::is_trusted(peer, &runtime.trusted_proxies);
        let xff = req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        ctx.client_ip = Some(forwarded::client_ip(peer, xff, &runtime.trusted_proxies));
    }
    ctx.peer_ip = peer_ip;
    let host = req
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host());
    let route = runtime
        .routes
        .find(host, req.uri.path(), &req.method)
        .ok_or(LocalAnswer::NoRoute)?;
    ctx.route = Some(route.index);
    let pool = runtime
        .pools
        .get(route.pool)
        .ok_or(LocalAnswer::NoRoute)?
        .clone();
    let input = AffinityInput::new(
        req.uri.query(),
        req.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        ctx.client_ip,
    );
    let chosen = pool.choose(&input);
    ctx.pool = Some(pool.clone());
    let (i, choice) = chosen.ok_or(LocalAnswer::NoHealthyEndpoint)?;
    ctx.endpoint = Some(
        pool.endpoint(i)
            .ok_or(LocalAnswer::NoHealthyEndpoint)?
            .clone(),
    );
    ctx.choice = Some(choice);
    Ok(())
}
