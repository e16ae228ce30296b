//! The request path: the `ProxyHttp` hooks (thin glue, in the order Pingora calls them), the
//! per-request decision (`selection`, after the request hygiene of `target` and `path`),
//! forwarding headers (`forwarded`) and the access log.
//!
//! Reads `runtime` (one `ArcSwap` load per request) and `signalr`; nothing here parses config.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HOST;
use http::HeaderValue;
use log::info;
use pingora_core::protocols::http::ServerSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

mod access_log;
pub mod connection;
mod forwarded;
mod kind;
pub mod limits;
mod observe;
mod outcome;
mod path;
mod pinning;
mod redact;
pub mod refusal;
pub mod selection;
mod target;

use crate::config::{HostHeader, LogFormat};
use crate::metrics::{unrouted, Kind, OpenGuard, StatusClass};
use crate::runtime::drain::Drain;
use crate::runtime::{Runtime, SharedRuntime};
use crate::signalr::Rule;
use access_log::{close_reason, request_line, Record};
use connection::{idle_seconds, OverClientConnections};
use limits::{admit, retry_after, BodyCount};
use outcome::{answer_unavailable, of_proxy_error, of_response, Outcome};
use refusal::Refusal;
use selection::{select, Selection};

pub use access_log::JSON_TARGET as JSON_ACCESS_TARGET;

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
    /// The connection's client address was over its connection limit at accept.
    over_client_connections: bool,
    /// The route's in-flight count, held to the end of the request.
    _gate: Option<crate::runtime::limits::GateGuard>,
    /// The body limit, and the body seen so far.
    max_body: u64,
    body: BodyCount,
    /// The upstream's response header arrived.
    upstream_header: bool,
    /// The chosen endpoint failed (connect, or no header in time): passive health counted it.
    upstream_failed: bool,
    /// App pools: endpoints whose connect failed, each tried once.
    tried: Vec<usize>,
    /// What kind of connection the request is.
    kind: Kind,
    /// The request's place in its endpoint's open-connection gauge, while proxied.
    open: Option<OpenGuard>,
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
            over_client_connections: false,
            _gate: None,
            max_body: u64::MAX,
            body: BodyCount::default(),
            upstream_header: false,
            upstream_failed: false,
            tried: Vec::new(),
            kind: Kind::Plain,
            open: None,
        }
    }

    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        prev: Box<dyn std::any::Any + Send + Sync>,
    ) {
        // Set by the connection's admission (process layer) on each of its sessions.
        ctx.over_client_connections = prev.is::<OverClientConnections>();
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let runtime = self.state.load_full();
        let limits = &runtime.limits;
        session.set_read_timeout(Some(limits.body_timeout));
        session.set_write_timeout(Some(limits.send_timeout));
        if self.drain.is_draining() {
            // `Connection: close` moves keep-alive clients to a fresh connection, which the
            // new process (or, after SIGTERM, another replica) accepts.
            session.set_keepalive(None);
        } else if session.get_keepalive().is_some() {
            // Pingora waits for the next request for ever unless told otherwise.
            session.set_keepalive(Some(idle_seconds(limits.idle_timeout)));
        }
        // Requests a client sends before reading the answers get their answers in order, on
        // the same connection (Pingora closes it otherwise, after an answer that said
        // keep-alive). Not for upgrades: bytes after a WebSocket handshake belong to it.
        let pipelining = !session.is_upgrade_req();
        session
            .downstream_session
            .set_pipelining_enabled(pipelining);
        let peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.kind = kind::classify(session.req_header(), session.is_upgrade_req());
        let routed = select(&runtime, session.req_header(), peer_ip, &mut ctx.sel);
        let admitted = admit(
            &runtime,
            session.req_header(),
            &ctx.sel,
            ctx.over_client_connections,
            routed,
        );
        ctx.runtime = Some(runtime);
        match admitted {
            Ok(a) => {
                ctx._gate = a.gate;
                ctx.max_body = a.max_body;
                ctx.open = ctx.sel.endpoint.as_ref().map(|e| e.metrics.open(ctx.kind));
                Ok(false)
            }
            Err(refusal) => {
                refuse(session, ctx, refusal).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let n = body.as_ref().map_or(0, Bytes::len);
        if ctx.body.add(n, ctx.max_body) {
            return Ok(());
        }
        // A body without Content-Length went over the limit as it streamed: the upstream has
        // the first `max_body` bytes of a request that never completes (its connection is
        // dropped); the client gets 413 (Pingora's fail_to_proxy answers the status).
        Refusal::BodyTooLarge.count();
        ctx.refusal = Some(Refusal::BodyTooLarge);
        *body = None;
        Error::e_explain(
            ErrorType::HTTPStatus(413),
            "request body over the route's limit",
        )
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // A refused body is the client's doing, counted and logged as a refusal.
        ctx.refusal.is_some()
    }

    fn request_header_failed(&self, session: &ServerSession, _error: &Error, status: Option<u16>) {
        let Some(refusal) = status.and_then(Refusal::of_header_status) else {
            return;
        };
        refusal.count();
        unrouted().count(None, StatusClass::of(refusal.status()), None);
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let json = self.state.load().log_format == LogFormat::Json;
        access_log::header_refused(client, refusal, json);
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

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let (Some(pool), Some(ep)) = (&ctx.sel.pool, &ctx.sel.endpoint) else {
            return e;
        };
        ep.record_failure(&pool.name, e.etype().as_str());
        ep.metrics.connect_failed(observe::connect_failure(&e));
        ctx.upstream_failed = true;
        // Nothing was sent: an app pool tries its next server; a SignalR request stays with
        // its instance, whose 503 `fail_to_proxy` answers.
        match pool.next_after_failure(ep, &mut ctx.tried).cloned() {
            Some(next) => {
                ctx.sel.load = Some(next.load.hold());
                ctx.open = None;
                ctx.open = Some(next.metrics.open(ctx.kind));
                ctx.sel.endpoint = Some(next);
                ctx.upstream_failed = false;
                e.set_retry(true);
            }
            None => e.set_retry(false),
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        if let (Some(pool), Some(ep)) = (&ctx.sel.pool, &ctx.sel.endpoint) {
            if observe::is_timeout(&e) {
                ep.metrics.timeouts.inc();
            }
            let from_upstream = e.esource() == &ErrorSource::Upstream;
            let outcome =
                of_proxy_error(e.etype(), from_upstream, ctx.upstream_header, client_reused);
            if outcome == Outcome::Failure {
                ep.record_failure(&pool.name, e.etype().as_str());
                ctx.upstream_failed = true;
            }
        }
        // Pingora's own policy: a request whose pooled connection the upstream had closed is
        // sent again (on a fresh connection to the same endpoint), if it is idempotent and
        // its body is still buffered.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(ep) = &ctx.sel.endpoint {
            ep.metrics.connected(reused);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_header = true;
        if let (Some(pool), Some(ep)) = (&ctx.sel.pool, &ctx.sel.endpoint) {
            let req = session.req_header();
            let status = upstream_response.status.as_u16();
            match of_response(pool.kind, &req.method, req.uri.path(), status) {
                Outcome::Failure => {
                    ep.record_failure(&pool.name, &format!("{status} to negotiate"))
                }
                Outcome::Success => ep.record_success(),
                Outcome::Neutral => {}
            }
        }
        let sel = &mut ctx.sel;
        if let (Some(watch), Some(pool), Some(ep)) = (&mut sel.negotiate, &sel.pool, &sel.endpoint)
        {
            watch.on_response(upstream_response, pool, ep);
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let unavailable = ctx.refusal.is_none()
            && ctx.sel.pool.as_ref().is_some_and(|p| {
                answer_unavailable(p.kind, ctx.upstream_failed, ctx.upstream_header)
            });
        if unavailable
            && refuse(session, ctx, Refusal::InstanceUnavailable)
                .await
                .is_ok()
        {
            return FailToProxy {
                error_code: Refusal::InstanceUnavailable.status(),
                can_reuse_downstream: false,
            };
        }
        // Pingora's default answer.
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            if let Err(e) = session.respond_error(code).await {
                log::error!("failed to send error response to downstream: {e}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
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
        // Forward what was routed: the normalised origin-form target.
        if let Some(target) = &ctx.sel.rewrite {
            upstream.set_raw_path(target.as_bytes())?;
        }
        let authority = target::authority(session.req_header());
        match pool.host_header {
            HostHeader::Endpoint => upstream.insert_header(HOST, ep.authority.clone())?,
            // The routed authority: an absolute-form target's wins over `Host` (RFC 9112 3.2.2).
            HostHeader::Preserve => {
                let current = upstream.headers.get(HOST).map(HeaderValue::as_bytes);
                if let Some(a) = authority.filter(|a| current != Some(a.as_bytes())) {
                    upstream.insert_header(HOST, a)?;
                }
            }
        }
        let client = &ctx.sel.client;
        let hop = forwarded::Hop {
            peer: client.peer_ip,
            peer_trusted: client.peer_trusted,
            client: client.client_ip,
            tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
            host: authority,
        };
        let opts = ctx
            .runtime
            .as_ref()
            .map(|r| r.forwarding)
            .unwrap_or_default();
        forwarded::apply(upstream, &hop, opts)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        let sel = &mut ctx.sel;
        if let (Some(watch), Some(pool), Some(ep), Some(chunk)) =
            (&mut sel.negotiate, &sel.pool, &sel.endpoint, body.as_ref())
        {
            watch.on_body(chunk, pool, ep);
        }
        Ok(None)
    }

    fn upgraded_tunnel(&self, _session: &Session, _ctx: &RequestCtx) -> bool {
        // WebSockets go through as raw bytes: no body filter of ours needs to see them, both
        // directions then flow independently and an idle tunnel holds no buffers (patch 0003).
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let done = observe::Finished {
            status,
            elapsed: ctx.started.elapsed(),
            negotiate: observe::is_negotiate(&req.method, req.uri.path()),
            proxied: ctx.open.take().is_some(),
            kind: ctx.kind,
            bytes: (
                session.upstream_body_bytes_sent().unwrap_or(0) as u64,
                session.upstream_body_bytes_received() as u64,
            ),
        };
        observe::record(ctx.runtime.as_deref(), &ctx.sel, &done);
        // Formatting the line costs more than the rest of our per-request work: skip it when off.
        if !log::log_enabled!(target: access_log::TARGET, log::Level::Info) {
            return;
        }
        let sel = &ctx.sel;
        let json = ctx
            .runtime
            .as_ref()
            .is_some_and(|r| r.log_format == LogFormat::Json);
        if json {
            let route = sel
                .route
                .and_then(|i| ctx.runtime.as_ref()?.routes.by_index(i))
                .map(|r| r.prefix.as_str());
            let record = Record {
                ts: access_log::timestamp(),
                client: sel.client.client_ip,
                method: Some(redact::escape(req.method.as_str().as_bytes())),
                path: Some(redact::log_target(req.raw_path())),
                status,
                route,
                pool: sel.pool.as_ref().map(|p| p.name.as_str()),
                endpoint: sel.endpoint.as_ref().map(|e| e.name.as_str()),
                rule: sel.choice.map(Rule::as_str),
                duration_ms: Some(done.elapsed.as_secs_f64() * 1000.0),
                refused: ctx.refusal.map(Refusal::as_str),
                error: e.map(|e| e.etype().as_str()),
                kind: Some(ctx.kind.as_str()),
                bytes_to_upstream: done.bytes.0,
                bytes_from_upstream: done.bytes.1,
                close: (done.proxied && ctx.kind.is_long_lived())
                    .then(|| close_reason(ctx.kind, e)),
            };
            info!(target: access_log::JSON_TARGET, "{}", record.to_line());
            return;
        }
        let route = sel
            .route
            .map_or_else(|| "-".to_string(), |i| format!("routes[{i}]"));
        info!(
            target: access_log::TARGET,
            "{} \"{}\" {} route={} pool={} endpoint={} rule={} ms={:.1}{}{}{}{}",
            sel.client.client_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            request_line(req),
            status,
            route,
            sel.pool.as_ref().map_or("-", |p| p.name.as_str()),
            sel.endpoint.as_ref().map_or("-", |e| e.name.as_str()),
            sel.choice.map_or("-", Rule::as_str),
            done.elapsed.as_secs_f64() * 1000.0,
            if ctx.refusal.is_some() { " refused=" } else { "" },
            ctx.refusal.map_or("", Refusal::as_str),
            if e.is_some() { " error=" } else { "" },
            e.map(|e| e.etype().as_str()).unwrap_or(""),
        );
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        // Pingora's default prints the whole URI, which may carry an access token, unescaped.
        request_line(session.req_header())
    }
}

/// Answers the request locally for `refusal`, counts it and keeps it for the access log.
/// The connection closes after the answer (an unread body is never drained).
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
        Refusal::MissingToken => Bytes::from_static(b"signalr-edge: no access token\n"),
        Refusal::InvalidToken => Bytes::from_static(b"signalr-edge: invalid access token\n"),
        Refusal::InstanceUnavailable => {
            // An endpoint without a `name:` is named by its host: say it once.
            let instance = ctx.sel.endpoint.as_ref().map_or(String::new(), |e| {
                if e.name == e.host {
                    e.name.clone()
                } else {
                    format!("{} ({})", e.name, e.host)
                }
            });
            Bytes::from(format!(
                "signalr-edge: instance {instance} is unavailable; negotiate again\n"
            ))
        }
        other => Bytes::from(format!("signalr-edge: refused: {}\n", other.as_str())),
    };
    let mut resp = ServerSession::generate_error(refusal.status());
    resp.set_content_length(body.len())?;
    if let Some(secs) = retry_after(refusal, ctx.runtime.as_deref(), ctx.sel.endpoint.as_deref()) {
        resp.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    }
    for (name, value) in refusal.headers() {
        resp.insert_header(*name, *value)?;
    }
    session
        .as_downstream_mut()
        .write_error_response(resp, body)
        .await
}
