//! A lean stand-in for ASRS instances, run as a child process so its CPU is counted apart:
//! negotiate answers, WebSocket echo, and SSE / long-poll pushes stamped with their send time.
//! It answers only `Host: bench.service.signalr.net`, so a proxy that skips the rewrite fails.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// The tenant host the upstream answers.
pub const HOST: &str = "bench.service.signalr.net";

type Body = BoxBody<Bytes, Infallible>;

/// Wall-clock nanoseconds, comparable across the processes of one machine.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct State {
    tick: watch::Receiver<u64>,
    next_id: AtomicU64,
}

/// Serves `count` listeners on ephemeral ports until killed; prints `ports P1 P2 ...` when ready.
pub fn run(count: usize, tick: Duration) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let (tx, rx) = watch::channel(0u64);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            loop {
                every.tick().await;
                tx.send_replace(now_nanos());
            }
        });
        let state = Arc::new(State {
            tick: rx,
            next_id: AtomicU64::new(0),
        });
        let mut ports = Vec::new();
        for _ in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            ports.push(listener.local_addr().expect("addr").port());
            tokio::spawn(accept(listener, state.clone()));
        }
        let line: Vec<String> = ports.iter().map(u16::to_string).collect();
        println!("ports {}", line.join(" "));
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
    });
    std::process::exit(0)
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn full(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h));
    if host != Some(HOST) {
        return Ok(full(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no such tenant\n",
        ));
    }
    let path = req.uri().path();
    if path == "/api/health" {
        return Ok(full(StatusCode::OK, "text/plain", ""));
    }
    if path == "/client/negotiate" {
        let n = state.next_id.fetch_add(1, Ordering::Relaxed);
        // The shape and size of an ASRS negotiate v1 answer.
        let body = format!(
            "{{\"negotiateVersion\":1,\"connectionId\":\"{n:08x}-0000-4000-8000-000000000000\",\"connectionToken\":\"{n:08x}-1111-4000-8000-000000000000\",\"availableTransports\":[{{\"transport\":\"WebSockets\",\"transferFormats\":[\"Text\",\"Binary\"]}},{{\"transport\":\"ServerSentEvents\",\"transferFormats\":[\"Text\"]}},{{\"transport\":\"LongPolling\",\"transferFormats\":[\"Text\",\"Binary\"]}}]}}"
        );
        return Ok(full(StatusCode::OK, "application/json", body));
    }
    if !path.starts_with("/client") {
        return Ok(full(StatusCode::NOT_FOUND, "text/plain", "not found\n"));
    }
    if let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) {
        let accept = derive_accept_key(key.as_bytes());
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                echo(ws).await;
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        return Ok(r);
    }
    let mut tick = state.tick.clone();
    tick.mark_unchanged();
    let sse = req
        .headers()
        .get(header::ACCEPT)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if sse {
        let first = futures_util::stream::once(async {
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b":\r\n")))
        });
        let rest = futures_util::stream::unfold(tick, |mut tick| async move {
            tick.changed().await.ok()?;
            let ts = *tick.borrow_and_update();
            Some((
                Ok(Frame::data(Bytes::from(format!("data: {ts}\r\n\r\n")))),
                tick,
            ))
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(first.chain(rest))));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache,no-store"),
        );
        return Ok(r);
    }
    // A long poll: held until the next push.
    if tick.changed().await.is_err() {
        return Ok(full(StatusCode::NO_CONTENT, "text/plain", ""));
    }
    let ts = *tick.borrow();
    Ok(full(
        StatusCode::OK,
        "application/octet-stream",
        ts.to_string(),
    ))
}

async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() || msg.is_binary() {
            if ws.send(msg).await.is_err() {
                break;
            }
        } else if msg.is_close() {
            break;
        }
    }
}

/// A running upstream child process.
pub struct Upstream {
    child: std::process::Child,
    /// Its listeners.
    pub addrs: Vec<SocketAddr>,
}

impl Upstream {
    /// Starts this binary as an upstream with `count` listeners, pinned to `cpu` if given.
    pub fn start(count: usize, tick: Duration, cpu: Option<usize>) -> Result<Upstream, String> {
        use std::io::BufRead;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = crate::targets::pinned(cpu, &exe);
        cmd.args([
            "upstream",
            &count.to_string(),
            &tick.as_millis().to_string(),
        ])
        .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("upstream: {e}"))?;
        let stdout = child.stdout.take().ok_or("upstream: no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addrs: Vec<SocketAddr> = line
            .trim()
            .strip_prefix("ports ")
            .ok_or_else(|| format!("upstream said {line:?}"))?
            .split(' ')
            .filter_map(|p| p.parse::<u16>().ok())
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        Ok(Upstream { child, addrs })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
