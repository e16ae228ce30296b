//! One emulated ASRS instance: negotiate, the three transports, health, and an emulator-only admin API.
// Handlers answer errors as ready `Response`s, the axum way.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::hub::{self, Action, WhoAmI, RS};
use super::request::{self, REQUEST_ID_PARAM};
use super::serve::ConnInfo;
use super::token;

/// How often the server pings on WebSocket and SSE (the client gives up after 30 s of silence).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// ASP.NET Core's default `MaximumReceiveMessageSize`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024;
/// ASP.NET Core's default `HandshakeTimeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a long poll is held without data.
pub const POLL_HOLD: Duration = Duration::from_secs(90);

/// Settings of one instance.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    /// Name reported in `X-Emulator-Instance` and `whoami`.
    pub name: String,
    /// The only `Host` it answers.
    pub host: String,
    /// The AccessKey tokens must be signed with.
    pub access_key: String,
    /// Check the token's `aud`.
    pub check_audience: bool,
    /// Time allowed between negotiate and connect.
    pub connect_window: Duration,
    /// Largest hub message accepted; a bigger one closes the connection with an error.
    pub max_message_size: usize,
}

/// One client connection known to the instance.
pub struct Conn {
    who: Mutex<WhoAmI>,
    negotiated_at: Instant,
    connected: AtomicBool,
    closed: AtomicBool,
    handshaken: AtomicBool,
    /// Bytes of a record not yet terminated: records may span frames and POSTs.
    pending: Mutex<String>,
    /// Handshake answered: broadcasts may be sent (never before the handshake response).
    ready: AtomicBool,
    transport: Mutex<Option<&'static str>>,
    tx: mpsc::UnboundedSender<String>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    polls: AtomicU64,
    poll_gen: watch::Sender<u64>,
}

/// Shared state of an instance.
pub struct Instance {
    /// Its settings.
    pub settings: InstanceSettings,
    healthy: AtomicBool,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    negotiations: AtomicU64,
}

impl Conn {
    fn who_mut(&self) -> std::sync::MutexGuard<'_, WhoAmI> {
        self.who.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hub(&self) -> String {
        self.who_mut().hub.clone()
    }
}

impl Instance {
    /// A fresh, healthy instance.
    pub fn new(settings: InstanceSettings) -> Arc<Self> {
        Arc::new(Instance {
            settings,
            healthy: AtomicBool::new(true),
            conns: Mutex::new(HashMap::new()),
            negotiations: AtomicU64::new(0),
        })
    }

    /// Flips the health endpoints between 200 and 503.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Whether the health endpoints answer 200.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Number of negotiate requests answered.
    pub fn negotiations(&self) -> u64 {
        self.negotiations.load(Ordering::Relaxed)
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, token: &str) -> Option<Arc<Conn>> {
        self.conns().get(token).cloned()
    }

    fn remove(&self, token: &str) {
        self.conns().remove(token);
    }

    fn register(&self, token: String, who: WhoAmI) -> Arc<Conn> {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            who: Mutex::new(who),
            negotiated_at: Instant::now(),
            connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            handshaken: AtomicBool::new(false),
            pending: Mutex::new(String::new()),
            ready: AtomicBool::new(false),
            transport: Mutex::new(None),
            tx,
            rx: tokio::sync::Mutex::new(rx),
            polls: AtomicU64::new(0),
            poll_gen: watch::channel(0).0,
        });
        let window = self.settings.connect_window;
        // Forget connections that never connected within the window, as ASRS does.
        self.conns().retain(|_, c| {
            c.connected.load(Ordering::Relaxed) || c.negotiated_at.elapsed() < window
        });
        self.conns().insert(token, conn.clone());
        conn
    }

    /// Runs the client records in `text` on `conn`; returns true when the connection closes.
    fn process(&self, conn: &Conn, text: &str) -> bool {
        let records = {
            let mut pending = conn.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.push_str(text);
            let complete = pending.rfind(RS).map_or(0, |i| i + RS.len_utf8());
            let records: String = pending.drain(..complete).collect();
            let max = self.settings.max_message_size;
            // Like ASP.NET Core, an unterminated record counts against the limit too.
            if pending.len() > max || records.split(RS).any(|r| r.len() > max) {
                let _ = conn.tx.send(hub::close_record(&format!(
                    "Connection closed with an error. InvalidDataException: The maximum message size of {max}B was exceeded. The message size can be configured in AddHubOptions."
                )));
                return true;
            }
            records
        };
        for msg in records.split(RS).filter(|m| !m.is_empty()) {
            if !conn.handshaken.swap(true, Ordering::Relaxed) {
                match hub::handshake(msg) {
                    Ok(reply) => {
                        let _ = conn.tx.send(reply);
                        conn.ready.store(true, Ordering::Release);
                    }
                    Err(e) => {
                        let _ = conn.tx.send(hub::record(&json!({ "error": e })));
                        return true;
                    }
                }
                continue;
            }
            let who = conn.who_mut().clone();
            for action in hub::handle(msg, &who) {
                match action {
                    Action::Reply(r) => {
                        let _ = conn.tx.send(r);
                    }
                    Action::Broadcast(r) => {
                        for c in self.conns().values() {
                            if c.hub() == who.hub && c.ready.load(Ordering::Acquire) {
                                let _ = c.tx.send(r.clone());
                            }
                        }
                    }
                    Action::Close(r) => {
                        let _ = conn.tx.send(r);
                        return true;
                    }
                }
            }
        }
        false
    }

    /// The connections it holds, for the admin API.
    pub fn list(&self) -> Vec<serde_json::Value> {
        self.conns()
            .values()
            .map(|c| {
                let who = c.who_mut().clone();
                json!({
                    "connectionId": who.connection_id,
                    "hub": who.hub,
                    "transport": *c.transport.lock().unwrap_or_else(|p| p.into_inner()),
                    "connected": c.connected.load(Ordering::Relaxed),
                    "requestId": who.request_id_at_negotiate,
                    // Long polls registered so far, so tests can wait for one to be pending.
                    "pollGeneration": *c.poll_gen.borrow(),
                })
            })
            .collect()
    }
}

/// The router of an instance.
pub fn router(inst: Arc<Instance>) -> Router {
    Router::new()
        .route("/client/negotiate", any(negotiate))
        .route("/client/", any(connect))
        .route("/client", any(connect))
        .route("/api/health", get(health).head(health))
        .route("/api/v1/health", get(health).head(health))
        .route("/_emulator/health/{state}", put(set_health))
        .route("/_emulator/connections", get(list_connections))
        .layer(middleware::from_fn_with_state(inst.clone(), host_check))
        .with_state(inst)
}

/// Answers only the instance's own Host, and names the instance on every answer.
async fn host_check(State(inst): State<Arc<Instance>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(request::host_without_port)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut resp = if host == inst.settings.host {
        next.run(req).await
    } else {
        (
            StatusCode::NOT_FOUND,
            format!("no tenant for host {host:?}\n"),
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&inst.settings.name) {
        resp.headers_mut().insert("x-emulator-instance", v);
    }
    resp
}

async fn health(State(inst): State<Arc<Instance>>) -> StatusCode {
    if inst.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn set_health(State(inst): State<Arc<Instance>>, Path(state): Path<String>) -> StatusCode {
    match state.as_str() {
        "up" => inst.set_healthy(true),
        "down" => inst.set_healthy(false),
        _ => return StatusCode::BAD_REQUEST,
    }
    StatusCode::NO_CONTENT
}

async fn list_connections(State(inst): State<Arc<Instance>>) -> Json<serde_json::Value> {
    Json(
        json!({ "instance": inst.settings.name, "negotiations": inst.negotiations(), "connections": inst.list() }),
    )
}

fn unauthorized(why: &str) -> Response {
    log::debug!("emulator: 401 {why}");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        format!("{why}\n"),
    )
        .into_response()
}

/// The single `hub` query value, or the answer ASP.NET Core gives.
fn hub_of(query: &str) -> Result<String, Response> {
    match request::query_values(query, "hub").as_slice() {
        [h] if !h.is_empty() => Ok(h.to_ascii_lowercase()),
        [_, _, ..] => Err((
            StatusCode::BAD_REQUEST,
            "Multiple 'hub' query parameters are not allowed.",
        )
            .into_response()),
        _ => Err((
            StatusCode::BAD_REQUEST,
            "'hub' query parameter is required.",
        )
            .into_response()),
    }
}

/// Checks the request's token; returns its user.
fn authorize(
    inst: &Instance,
    headers: &HeaderMap,
    query: &str,
    hub: &str,
) -> Result<Option<String>, Response> {
    let token =
        request::access_token(headers, query).ok_or_else(|| unauthorized("no access token"))?;
    let aud = token::audience(&inst.settings.host, hub);
    let expected = inst.settings.check_audience.then_some(aud.as_str());
    token::verify(&token, &inst.settings.access_key, expected)
        .map(|c| c.nameid)
        .map_err(|e| unauthorized(&e))
}

fn request_id(query: &str) -> Option<String> {
    request::query_value(query, REQUEST_ID_PARAM)
}

fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn negotiate(
    State(inst): State<Arc<Instance>>,
    Extension(info): Extension<ConnInfo>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let query = uri.query().unwrap_or_default();
    let hub = match hub_of(query) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let user = match authorize(&inst, &headers, query, &hub) {
        Ok(u) => u,
        Err(r) => return r,
    };
    inst.negotiations.fetch_add(1, Ordering::Relaxed);
    let connection_id = uuid::Uuid::new_v4().to_string();
    let connection_token = uuid::Uuid::new_v4().to_string();
    let v1 = request::query_value(query, "negotiateVersion").is_some_and(|v| v != "0");
    let id = if v1 {
        connection_token.clone()
    } else {
        connection_id.clone()
    };
    let who = WhoAmI {
        instance: inst.settings.name.clone(),
        connection_id: connection_id.clone(),
        hub,
        user,
        request_id_at_negotiate: request_id(query),
        request_id_at_connect: None,
        host: host_of(&headers),
        sni: info.sni.clone(),
    };
    inst.register(id, who);
    let transports = json!([
        {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
        {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]}
    ]);
    let body = if v1 {
        json!({"negotiateVersion": 1, "connectionId": connection_id, "connectionToken": connection_token, "availableTransports": transports})
    } else {
        json!({"negotiateVersion": 0, "connectionId": connection_id, "availableTransports": transports})
    };
    Json(body).into_response()
}

/// `/client/`: WebSocket, SSE, long polling, sends and stops.
async fn connect(
    State(inst): State<Arc<Instance>>,
    Extension(info): Extension<ConnInfo>,
    req: Request,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let hub = match hub_of(&query) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let user = match authorize(&inst, &parts.headers, &query, &hub) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let id = request::query_value(&query, "id");
    let is_ws = parts
        .headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if parts.method == Method::GET && is_ws {
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(r) => return r.into_response(),
        };
        let (token, conn) = match id {
            Some(id) => match attach(&inst, &id, &query, "WebSockets") {
                Ok(c) => (id, c),
                Err(r) => return r,
            },
            // Clients such as pysignalr connect without negotiating: a new connection.
            None => {
                let token = uuid::Uuid::new_v4().to_string();
                let who = WhoAmI {
                    instance: inst.settings.name.clone(),
                    connection_id: uuid::Uuid::new_v4().to_string(),
                    hub,
                    user,
                    request_id_at_negotiate: None,
                    request_id_at_connect: request_id(&query),
                    host: host_of(&parts.headers),
                    sni: info.sni.clone(),
                };
                let conn = inst.register(token.clone(), who);
                conn.connected.store(true, Ordering::Relaxed);
                *conn.transport.lock().unwrap_or_else(|p| p.into_inner()) = Some("WebSockets");
                (token, conn)
            }
        };
        return ws.on_upgrade(move |socket| websocket(inst, token, conn, socket));
    }
    let Some(id) = id else {
        return (StatusCode::BAD_REQUEST, "Connection ID required").into_response();
    };
    let accept_sse = parts
        .headers
        .get(header::ACCEPT)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    match parts.method {
        Method::GET if accept_sse => match attach(&inst, &id, &query, "ServerSentEvents") {
            Ok(conn) => sse(inst, id, conn),
            Err(r) => r,
        },
        Method::GET => long_poll(inst, id, &query).await,
        Method::POST => {
            let Some(conn) = inst.get(&id) else {
                return (StatusCode::NOT_FOUND, "No Connection with that ID").into_response();
            };
            if *conn.transport.lock().unwrap_or_else(|p| p.into_inner()) == Some("WebSockets") {
                return (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST requests are not allowed for WebSocket connections.",
                )
                    .into_response();
            }
            let bytes = match axum::body::to_bytes(body, 1 << 20).await {
                Ok(b) => b,
                Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            };
            if inst.process(&conn, &String::from_utf8_lossy(&bytes)) {
                conn.closed.store(true, Ordering::Relaxed);
            }
            StatusCode::OK.into_response()
        }
        Method::DELETE => {
            let Some(conn) = inst.get(&id) else {
                return (StatusCode::NOT_FOUND, "No Connection with that ID").into_response();
            };
            conn.closed.store(true, Ordering::Relaxed);
            conn.poll_gen.send_modify(|g| *g += 1);
            inst.remove(&id);
            (StatusCode::ACCEPTED, "").into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// Binds a negotiated connection to a transport, with ASP.NET Core's answers for misuse.
fn attach(
    inst: &Instance,
    id: &str,
    query: &str,
    transport: &'static str,
) -> Result<Arc<Conn>, Response> {
    let conn = inst
        .get(id)
        .filter(|c| {
            c.connected.load(Ordering::Relaxed)
                || c.negotiated_at.elapsed() < inst.settings.connect_window
        })
        .ok_or_else(|| (StatusCode::NOT_FOUND, "No Connection with that ID").into_response())?;
    let mut t = conn.transport.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = *t {
        let status = if existing == transport {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        return Err((
            status,
            format!("Connection already has a {existing} transport"),
        )
            .into_response());
    }
    *t = Some(transport);
    drop(t);
    // `whoami` reports what the connect carried.
    conn.who_mut().request_id_at_connect = request_id(query);
    conn.connected.store(true, Ordering::Relaxed);
    Ok(conn)
}

async fn websocket(inst: Arc<Instance>, token: String, conn: Arc<Conn>, mut socket: WebSocket) {
    let mut rx = conn.rx.lock().await;
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut closing = false;
    let handshake_deadline = tokio::time::sleep(HANDSHAKE_TIMEOUT);
    tokio::pin!(handshake_deadline);
    loop {
        tokio::select! {
            // ASP.NET Core drops a connection that has not completed its handshake in time.
            _ = &mut handshake_deadline, if !conn.ready.load(Ordering::Acquire) => break,
            msg = socket.next() => match msg {
                Some(Ok(Message::Text(t))) => closing = inst.process(&conn, t.as_str()),
                Some(Ok(Message::Binary(b))) => closing = inst.process(&conn, &String::from_utf8_lossy(&b)),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(r) => if socket.send(Message::Text(r.into())).await.is_err() { break },
                None => break,
            },
            _ = ping.tick() => {
                if socket.send(Message::Text(hub::record(&json!({"type": 6})).into())).await.is_err() { break }
            }
        }
        if closing {
            while let Ok(r) = rx.try_recv() {
                let _ = socket.send(Message::Text(r.into())).await;
            }
            let _ = socket.send(Message::Close(None)).await;
            break;
        }
    }
    inst.remove(&token);
}

fn sse(inst: Arc<Instance>, token: String, conn: Arc<Conn>) -> Response {
    struct Guard(Arc<Instance>, String);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.remove(&self.1);
        }
    }
    let guard = Guard(inst, token);
    let first = futures_util::stream::once(async {
        Ok::<Bytes, std::convert::Infallible>(Bytes::from_static(b":\r\n"))
    });
    let rest = futures_util::stream::unfold((conn, guard), |(conn, guard)| async move {
        let next = {
            let mut rx = conn.rx.lock().await;
            tokio::select! {
                r = rx.recv() => r,
                _ = tokio::time::sleep(PING_INTERVAL) => Some(hub::record(&json!({"type": 6}))),
            }
        };
        let r = next?;
        if conn.closed.load(Ordering::Relaxed) && r.is_empty() {
            return None;
        }
        Some((Ok(Bytes::from(format!("data: {r}\r\n\r\n"))), (conn, guard)))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache,no-store")
        .body(Body::from_stream(first.chain(rest)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn long_poll(inst: Arc<Instance>, id: String, query: &str) -> Response {
    let conn = match inst.get(&id) {
        Some(c)
            if c.transport
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some() =>
        {
            c
        }
        Some(_) => match attach(&inst, &id, query, "LongPolling") {
            Ok(c) => c,
            Err(r) => return r,
        },
        None => return (StatusCode::NOT_FOUND, "No Connection with that ID").into_response(),
    };
    if conn.closed.load(Ordering::Relaxed) {
        inst.remove(&id);
        return StatusCode::NO_CONTENT.into_response();
    }
    // The first poll answers at once: it tells the client the transport is open.
    if conn.polls.fetch_add(1, Ordering::Relaxed) == 0 {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            "",
        )
            .into_response();
    }
    let mut gen_rx = conn.poll_gen.subscribe();
    let mut my_gen = 0;
    conn.poll_gen.send_modify(|g| {
        *g += 1;
        my_gen = *g;
    });
    gen_rx.mark_unchanged();
    let superseded = async {
        loop {
            if gen_rx.changed().await.is_err() || *gen_rx.borrow() != my_gen {
                return;
            }
        }
    };
    tokio::select! {
        _ = superseded => StatusCode::NO_CONTENT.into_response(),
        body = async {
            let mut rx = conn.rx.lock().await;
            match tokio::time::timeout(POLL_HOLD, rx.recv()).await {
                Ok(Some(first)) => {
                    let mut body = first;
                    while let Ok(more) = rx.try_recv() {
                        body.push_str(&more);
                    }
                    Some(body)
                }
                Ok(None) => None,
                Err(_) => Some(String::new()),
            }
        } => match body {
            Some(b) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    }
}
