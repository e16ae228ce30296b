//! The load generator: lean HTTP/1.1 and WebSocket clients driving each scenario on 127.0.0.1,
//! every wait bounded so a run always stops by itself.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use testkit::client::hub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::upstream::now_nanos;

/// Longest wait for any single answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A WebSocket through the system under test.
pub type Ws = WebSocketStream<TcpStream>;

/// What a client run counted.
pub struct Outcome {
    /// Completed operations (requests, messages, connections, events).
    pub ok: u64,
    /// Failed operations.
    pub failed: u64,
    /// Latencies in microseconds.
    pub hist: Histogram<u64>,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// First failure seen, for the report.
    pub first_error: Option<String>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            ok: 0,
            failed: 0,
            hist: histogram(),
            elapsed: Duration::ZERO,
            first_error: None,
        }
    }

    fn fail(&mut self, e: impl ToString) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    /// Adds another run's counts and latencies.
    pub fn merge(&mut self, o: Outcome) {
        self.ok += o.ok;
        self.failed += o.failed;
        let _ = self.hist.add(&o.hist);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn record(h: &mut Histogram<u64>, since: Instant) {
    let _ = h.record((since.elapsed().as_micros() as u64).max(1));
}

/// A client's identity: the token it sends and the edge host it calls.
#[derive(Clone)]
pub struct Client {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `Host` the client sends.
    pub host: String,
    /// The bearer token (the size and shape of an SDK token).
    pub token: String,
}

fn request_id(n: u64) -> String {
    // 8 bytes base64 like the SDK's ids, URL-encoded: distinct per client connection.
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD
        .encode(n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    b.replace('=', "%3D")
        .replace('+', "%2B")
        .replace('/', "%2F")
}

impl Client {
    fn negotiate_request(&self, n: u64, close: bool) -> Vec<u8> {
        format!(
            "POST /client/negotiate?hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id={} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nUser-Agent: signalr-edge-load\r\nX-Requested-With: XMLHttpRequest\r\nContent-Length: 0\r\n{}\r\n",
            request_id(n),
            self.host,
            self.token,
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes()
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| std::io::Error::other("connect timeout"))??;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Opens a WebSocket to `/client/`, with `id` when given (after a negotiate).
    pub async fn websocket(&self, n: u64, id: Option<&str>) -> Result<Ws, String> {
        let stream = self.connect().await.map_err(|e| e.to_string())?;
        let mut url = format!(
            "ws://{}/client/?hub=chat&asrs.op=%2Fchat&asrs_request_id={}",
            self.addr,
            request_id(n)
        );
        if let Some(id) = id {
            url.push_str("&id=");
            url.push_str(id);
        }
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        let h = req.headers_mut();
        h.insert("host", self.host.parse().map_err(|_| "bad host")?);
        h.insert(
            "authorization",
            format!("Bearer {}", self.token)
                .parse()
                .map_err(|_| "bad token")?,
        );
        let (ws, _) =
            tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::client_async(req, stream))
                .await
                .map_err(|_| "websocket handshake timeout".to_string())?
                .map_err(|e| e.to_string())?;
        Ok(ws)
    }
}

/// One HTTP/1.1 response as the generator needs it.
struct Response {
    status: u16,
    body: BytesMut,
    /// The server will close the connection (`Connection: close`).
    close: bool,
}

/// A keep-alive HTTP/1.1 connection with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::with_capacity(8192),
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read_buf(&mut self.buf))
            .await
            .map_err(|_| std::io::Error::other("read timeout"))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(())
    }

    /// Reads a response head; returns status, content length (None: chunked or to EOF), whether
    /// it is chunked, and whether the server closes the connection after it.
    async fn head(&mut self) -> std::io::Result<(u16, Option<usize>, bool, bool)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut length = None;
                    let mut chunked = false;
                    let mut close = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    self.buf.advance(len);
                    return Ok((status, length, chunked, close));
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
    }

    /// Reads one chunk of a chunked body; an empty one ends it.
    async fn chunk(&mut self) -> std::io::Result<BytesMut> {
        loop {
            if let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size_text = std::str::from_utf8(&self.buf[..eol]).unwrap_or("");
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| {
                            std::io::Error::other(format!("bad chunk size {size_text:?}"))
                        })?;
                while self.buf.len() < eol + 2 + size + 2 {
                    self.fill().await?;
                }
                self.buf.advance(eol + 2);
                let data = self.buf.split_to(size);
                self.buf.advance(2);
                return Ok(data);
            }
            self.fill().await?;
        }
    }

    async fn response(&mut self) -> std::io::Result<Response> {
        let (status, length, chunked, close) = self.head().await?;
        let body = if chunked {
            let mut body = BytesMut::new();
            loop {
                let c = self.chunk().await?;
                if c.is_empty() {
                    break;
                }
                body.extend_from_slice(&c);
            }
            body
        } else {
            let len = length.unwrap_or(0);
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.split_to(len)
        };
        Ok(Response {
            status,
            body,
            close,
        })
    }

    async fn send(&mut self, req: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(req))
            .await
            .map_err(|_| std::io::Error::other("write timeout"))?
    }
}

/// `conns` clients POST negotiates in a closed loop until `dur` passes; with `new_conn`, each
/// request opens its own connection (as browsers do before they upgrade).
pub async fn negotiate(client: &Client, conns: usize, dur: Duration, new_conn: bool) -> Outcome {
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let client = client.clone();
            tokio::task::spawn_local(async move {
                let mut out = Outcome::new();
                let mut conn: Option<Conn> = None;
                let mut n = (c as u64) << 32;
                while Instant::now() < deadline {
                    n += 1;
                    let t0 = Instant::now();
                    if conn.is_none() {
                        match client.connect().await {
                            Ok(s) => conn = Some(Conn::new(s)),
                            Err(e) => {
                                out.fail(e);
                                continue;
                            }
                        }
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    let result = async {
                        c.send(&client.negotiate_request(n, new_conn)).await?;
                        c.response().await
                    }
                    .await;
                    match result {
                        Ok(r) if r.status == 200 => {
                            record(&mut out.hist, t0);
                            out.ok += 1;
                            // A server may end keep-alive (nginx does after keepalive_requests).
                            if r.close {
                                conn = None;
                            }
                        }
                        Ok(r) => out.fail(format!("status {}", r.status)),
                        Err(e) => {
                            out.fail(e);
                            conn = None;
                        }
                    }
                    if new_conn {
                        conn = None;
                    }
                }
                out
            })
        })
        .collect();
    let mut total = merged(tasks).await;
    total.elapsed = start.elapsed();
    total
}

/// `clients` negotiate + WebSocket connects, `concurrency` at a time; the sockets stay open
/// until all are done. `ok` counts connections; latency is negotiate-to-open.
pub async fn connect_storm(
    client: &Client,
    clients: usize,
    concurrency: usize,
) -> (Outcome, Vec<Ws>) {
    let start = Instant::now();
    let one = |n: u64| {
        let client = client.clone();
        async move {
            let t0 = Instant::now();
            let mut c = Conn::new(client.connect().await.map_err(|e| e.to_string())?);
            c.send(&client.negotiate_request(n, true))
                .await
                .map_err(|e| e.to_string())?;
            let r = c.response().await.map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("negotiate status {}", r.status));
            }
            let id = hub::connection_token(&r.body).ok_or("negotiate without connectionToken")?;
            let ws = client.websocket(n, Some(&id)).await?;
            Ok::<_, String>((ws, t0.elapsed()))
        }
    };
    let results: Vec<_> = futures_util::stream::iter(0..clients as u64)
        .map(one)
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut out = Outcome::new();
    out.elapsed = start.elapsed();
    let mut held = Vec::with_capacity(clients);
    for r in results {
        match r {
            Ok((ws, took)) => {
                out.ok += 1;
                let _ = out.hist.record((took.as_micros() as u64).max(1));
                held.push(ws);
            }
            Err(e) => out.fail(e),
        }
    }
    (out, held)
}

/// A message the size of a SignalR invocation record.
fn message() -> String {
    hub::invocation("1", "echo", &[&"x".repeat(48)])
}

async fn round_trip(ws: &mut Ws, msg: &str) -> Result<(), String> {
    ws.send(Message::text(msg.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(IO_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(m))) if m.is_text() || m.is_binary() => return Ok(()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("closed".into()),
            Err(_) => return Err("echo timeout".into()),
        }
    }
}

/// Opens `conns` WebSockets, `concurrency` at a time, each doing one echo (as a SignalR
/// handshake would) before it idles; returns them for the caller to hold.
pub async fn open_idle(client: &Client, conns: usize, concurrency: usize) -> (Outcome, Vec<Ws>) {
    open_held(client, conns, concurrency, 0).await
}

/// Like `open_idle`, but each WebSocket first sends (and gets back) `traffic` bytes of echo
/// messages of 1 KiB, as a connection that has been in use and now idles.
pub async fn open_held(
    client: &Client,
    conns: usize,
    concurrency: usize,
    traffic: usize,
) -> (Outcome, Vec<Ws>) {
    let start = Instant::now();
    let msg = message();
    let big = hub::invocation("1", "echo", &[&"y".repeat(1024 - 64)]);
    let results: Vec<_> = futures_util::stream::iter(0..conns as u64)
        .map(|n| {
            let (client, msg, big) = (client.clone(), msg.clone(), big.clone());
            async move {
                let mut ws = client.websocket(n, None).await?;
                round_trip(&mut ws, &msg).await?;
                let mut sent = 0;
                while sent < traffic {
                    round_trip(&mut ws, &big).await?;
                    sent += big.len();
                }
                Ok::<_, String>(ws)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut out = Outcome::new();
    let mut held = Vec::with_capacity(conns);
    for r in results {
        match r {
            Ok(ws) => {
                out.ok += 1;
                held.push(ws);
            }
            Err(e) => out.fail(e),
        }
    }
    out.elapsed = start.elapsed();
    (out, held)
}

/// `conns` WebSockets each echo messages in a closed loop for `dur`; `ok` counts round trips.
pub async fn echo(client: &Client, conns: usize, dur: Duration) -> Outcome {
    let (mut total, held) = open_idle(client, conns, conns).await;
    total.ok = 0;
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = held
        .into_iter()
        .map(|mut ws| {
            tokio::task::spawn_local(async move {
                let mut out = Outcome::new();
                let msg = message();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match round_trip(&mut ws, &msg).await {
                        Ok(()) => {
                            record(&mut out.hist, t0);
                            out.ok += 1;
                        }
                        Err(e) => {
                            out.fail(e);
                            break;
                        }
                    }
                }
                let _ = ws.close(None).await;
                out
            })
        })
        .collect();
    total.merge(merged(tasks).await);
    total.elapsed = start.elapsed();
    total
}

/// Delivery latency of pushed messages: `sse` Server-Sent Events streams and `lp` long-poll
/// loops for `dur`. Returns (SSE, long polling) outcomes; `ok` counts delivered messages.
pub async fn push(client: &Client, sse: usize, lp: usize, dur: Duration) -> (Outcome, Outcome) {
    let start = Instant::now();
    let deadline = start + dur;
    let spawn = |n: u64, sse: bool| {
        let client = client.clone();
        tokio::task::spawn_local(async move {
            let mut out = Outcome::new();
            let run = if sse {
                sse_stream(&client, n, deadline, &mut out).await
            } else {
                long_poll(&client, n, deadline, &mut out).await
            };
            if let Err(e) = run {
                out.fail(e);
            }
            out
        })
    };
    let sse_tasks: Vec<_> = (0..sse as u64).map(|n| spawn(n, true)).collect();
    let lp_tasks: Vec<_> = (0..lp as u64).map(|n| spawn(n, false)).collect();
    let mut s = merged(sse_tasks).await;
    let mut l = merged(lp_tasks).await;
    s.elapsed = start.elapsed();
    l.elapsed = s.elapsed;
    (s, l)
}

/// The clients' outcomes added up (a task that panicked counts nothing).
async fn merged(tasks: Vec<tokio::task::JoinHandle<Outcome>>) -> Outcome {
    let mut total = Outcome::new();
    for t in tasks {
        if let Ok(o) = t.await {
            total.merge(o);
        }
    }
    total
}

fn record_stamp(out: &mut Outcome, stamp: &[u8]) {
    let sent: u64 = std::str::from_utf8(stamp)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if sent > 0 {
        let _ = out
            .hist
            .record((now_nanos().saturating_sub(sent) / 1000).max(1));
        out.ok += 1;
    }
}

async fn sse_stream(
    client: &Client,
    n: u64,
    deadline: Instant,
    out: &mut Outcome,
) -> std::io::Result<()> {
    let mut c = Conn::new(client.connect().await?);
    let req = format!(
        "GET /client/?hub=chat&id=sse-{n}&asrs_request_id={}&access_token={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
        request_id(n),
        client.token,
        client.host
    );
    c.send(req.as_bytes()).await?;
    let (status, _, chunked, _) = c.head().await?;
    if status != 200 || !chunked {
        return Err(std::io::Error::other(format!(
            "SSE answered {status} (chunked: {chunked})"
        )));
    }
    let mut line = BytesMut::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(chunk) = tokio::time::timeout(left, c.chunk()).await else {
            return Ok(());
        };
        let chunk = chunk?;
        if chunk.is_empty() {
            return Err(std::io::Error::other("SSE stream ended"));
        }
        line.extend_from_slice(&chunk);
        while let Some(eol) = line.windows(2).position(|w| w == b"\r\n") {
            let l = line.split_to(eol + 2);
            if let Some(stamp) = l.strip_prefix(b"data: ") {
                record_stamp(out, stamp);
            }
        }
    }
}

async fn long_poll(
    client: &Client,
    n: u64,
    deadline: Instant,
    out: &mut Outcome,
) -> std::io::Result<()> {
    let mut c = Conn::new(client.connect().await?);
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let req = format!(
            "GET /client/?hub=chat&id=lp-{n}&asrs_request_id={}&_={i} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            request_id(n),
            client.host,
            client.token
        );
        c.send(req.as_bytes()).await?;
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let Ok(r) = tokio::time::timeout(left, c.response()).await else {
            return Ok(());
        };
        let r = r?;
        if r.status != 200 {
            return Err(std::io::Error::other(format!("poll answered {}", r.status)));
        }
        record_stamp(out, &r.body);
        if r.close {
            c = Conn::new(client.connect().await?);
        }
    }
    Ok(())
}
