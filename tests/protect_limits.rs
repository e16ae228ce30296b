//! Client limits (issue 11, item 2), probed over raw sockets the way an attacker would: a
//! header trickled byte by byte (slowloris), a connection that never sends, oversized headers
//! and too many of them, oversized bodies, too many connections or requests from one address,
//! a full listener and a client that never reads. Each probe must get the strict answer, the
//! upstream must receive nothing it should not, and the edge must serve normally afterwards.
//!
//! Limits are set low (1 s deadlines, small caps) so the probes run fast; the assertions are
//! "closed before N s" bounds, never timings.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw HTTP/1.1 upstream: counts the requests it receives whole, answers `ok`, and streams
/// without end for `/stream` (until a write fails, which it records).
struct Upstream {
    port: u16,
    requests: Arc<AtomicUsize>,
    stream_ended: Arc<AtomicBool>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stream_ended = Arc::new(AtomicBool::new(false));
        let (count, ended) = (requests.clone(), stream_ended.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve_upstream(s, count.clone(), ended.clone()));
            }
        });
        Upstream {
            port,
            requests,
            stream_ended,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve_upstream(
    mut s: TcpStream,
    count: Arc<AtomicUsize>,
    ended: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            // Never a whole request here: read until the edge gives up on it.
            while s.read(&mut chunk).await? > 0 {}
            return Ok(());
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(()); // an incomplete request is not counted
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..end + 4 + length);
        count.fetch_add(1, Ordering::SeqCst);
        if head.starts_with("get /stream") {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
                .await?;
            let data = vec![b'x'; 64 * 1024];
            // Bounded: 4 GiB would take minutes; the edge must give up long before.
            for _ in 0..65_536 {
                if s.write_all(&data).await.is_err() {
                    break;
                }
            }
            ended.store(true, Ordering::SeqCst);
            return Ok(());
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await?;
    }
}

fn edge_with(
    up: &Upstream,
    limits: Limits,
    configure: impl FnOnce(EdgeConfig) -> EdgeConfig,
) -> Edge {
    let config = EdgeConfig::new()
        .pool(Pool::app("app").endpoint(Endpoint::url(format!("http://127.0.0.1:{}", up.port))))
        .route(Route::new("/small/", "app").max_body_bytes(1024))
        .route(Route::new("/", "app"))
        .limits(limits);
    Edge::start(configure(config))
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Reads one response: its head and a `Content-Length` body. `None` if the connection ended
/// (or failed) first, or after 10 s.
async fn response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return Some(String::from_utf8_lossy(&buf[..end + 4 + length]).into_owned());
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
}

/// True if the peer closes the connection (EOF or reset) within `limit`; what arrives before
/// is read and dropped.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut chunk = vec![0u8; 64 * 1024];
    let drain = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, drain).await.is_ok()
}

fn status(resp: &Option<String>) -> u16 {
    resp.as_deref()
        .and_then(|r| r.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

const GET: &[u8] = b"GET /ok HTTP/1.1\r\nHost: edge\r\n\r\n";

/// The edge still answers a plain request through the upstream.
async fn assert_serving(edge: &Edge, up: &Upstream) {
    let before = up.requests();
    let mut s = connect(edge.port).await;
    s.write_all(GET).await.unwrap();
    let r = response(&mut s).await;
    assert_eq!(status(&r), 200, "edge still serving: {r:?}\n{}", edge.log());
    assert_eq!(up.requests(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_header_is_cut_at_its_deadline() {
    let up = Upstream::start().await;
    let limits = Limits {
        header_timeout: Some(Duration::from_secs(1)),
        ..Limits::default()
    };
    let edge = edge_with(&up, limits, |c| c);
    // A new connection trickling its first header; a keep-alive one trickling its second.
    let mut fresh = connect(edge.port).await;
    let mut reused = connect(edge.port).await;
    reused.write_all(GET).await.unwrap();
    assert_eq!(status(&response(&mut reused).await), 200);
    let started = Instant::now();
    let (a, b) = tokio::join!(trickle(&mut fresh), trickle(&mut reused));
    // Both get 408 and are closed well before the trickle would end (~14 s at this pace).
    for answer in [a, b] {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "slow headers held for {:?}",
        started.elapsed()
    );
    assert_eq!(
        up.requests(),
        1,
        "only the complete first request went upstream"
    );
    assert!(
        edge.log().contains("refused=header_timeout"),
        "{}",
        edge.log()
    );
    assert_serving(&edge, &up).await;
}

/// Sends a header one byte every 200 ms until the edge answers or closes, then reads to the
/// end (at most 10 s); returns what the edge sent.
async fn trickle(s: &mut TcpStream) -> String {
    let header = format!(
        "GET /ok HTTP/1.1\r\nHost: edge\r\nX-Slow: {}",
        "a".repeat(60)
    );
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    for byte in header.bytes() {
        match s.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&chunk[..n]);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if s.write_all(&[byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rest = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), rest).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed() {
    let up = Upstream::start().await;
    let limits = Limits {
        header_timeout: Some(Duration::from_secs(1)),
        ..Limits::default()
    };
    let edge = edge_with(&up, limits, |c| c);
    let mut silent = connect(edge.port).await;
    // Stock Pingora waits 60 s for a first request.
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert_serving(&edge, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_too_many_fields_get_431() {
    let up = Upstream::start().await;
    let edge = edge_with(&up, Limits::default(), |c| c);
    let big = format!(
        "GET /ok HTTP/1.1\r\nHost: edge\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let many = |n: usize| {
        let fields: String = (0..n).map(|i| format!("X-F{i}: v\r\n")).collect();
        format!("GET /ok HTTP/1.1\r\nHost: edge\r\n{fields}\r\n")
    };
    // Over the default 32 KiB; over the default 100 fields; over Pingora's own 256.
    for probe in [big, many(120), many(300)] {
        let mut s = connect(edge.port).await;
        // The edge may answer and close before it read everything: a failed write is fine.
        let _ = s.write_all(probe.as_bytes()).await;
        let r = response(&mut s).await;
        assert_eq!(status(&r), 431, "{r:?}");
        assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    }
    // Within the limits: served.
    let mut s = connect(edge.port).await;
    s.write_all(many(90).as_bytes()).await.unwrap();
    assert_eq!(status(&response(&mut s).await), 200);
    assert_eq!(up.requests(), 1, "no refused header reached the upstream");
    assert!(
        edge.log().contains("refused=header_too_large"),
        "{}",
        edge.log()
    );
    assert_serving(&edge, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let edge = edge_with(&up, Limits::default(), |c| c);
    // Declared: answered at once, before a byte of the body is read or anything is sent on.
    for (path, length) in [("/small/x", 1025), ("/ok", 20 * 1024 * 1024)] {
        let mut s = connect(edge.port).await;
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: edge\r\nContent-Length: {length}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let r = response(&mut s).await;
        assert_eq!(status(&r), 413, "{path}: {r:?}");
        assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    }
    assert_eq!(up.requests(), 0, "nothing reached the upstream");
    // Chunked: cut when the count passes the limit; the upstream never gets a whole request.
    let mut s = connect(edge.port).await;
    s.write_all(b"POST /small/x HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..4 {
        let _ = s.write_all(b"200\r\n").await;
        let _ = s.write_all(&[b'x'; 512]).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let r = response(&mut s).await;
    assert_eq!(status(&r), 413, "{r:?}");
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    // At the limit: served.
    let mut s = connect(edge.port).await;
    let ok = format!(
        "POST /small/x HTTP/1.1\r\nHost: edge\r\nContent-Length: 1024\r\n\r\n{}",
        "x".repeat(1024)
    );
    s.write_all(ok.as_bytes()).await.unwrap();
    assert_eq!(status(&response(&mut s).await), 200);
    assert_eq!(
        up.requests(),
        1,
        "only the request within the limit went upstream"
    );
    assert!(
        edge.log().contains("refused=body_too_large"),
        "{}",
        edge.log()
    );
    assert_serving(&edge, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_from_one_address_get_429() {
    let up = Upstream::start().await;
    let limits = Limits {
        per_client: ClientLimits {
            connections: Some(3),
            ..ClientLimits::default()
        },
        ..Limits::default()
    };
    let edge = edge_with(&up, limits, |c| c);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect(edge.port).await;
        s.write_all(GET).await.unwrap();
        assert_eq!(status(&response(&mut s).await), 200);
        held.push(s); // kept alive
    }
    let mut over = connect(edge.port).await;
    over.write_all(GET).await.unwrap();
    let r = response(&mut over).await;
    assert_eq!(status(&r), 429, "{r:?}");
    assert!(r.as_deref().unwrap().contains("retry-after: 1"), "{r:?}");
    assert!(closed_within(&mut over, Duration::from_secs(5)).await);
    assert_eq!(up.requests(), 3);
    // A held connection leaves: there is room again.
    drop(held.pop());
    let mut s = wait_for_status(&edge, 200).await;
    drop(s.shutdown().await);
    assert!(
        edge.log().contains("refused=client_connections"),
        "{}",
        edge.log()
    );
}

/// Retries a new connection's `GET` until it gets `want` (the edge notices a closed
/// connection a moment after the client closed it).
async fn wait_for_status(edge: &Edge, want: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(edge.port).await;
        s.write_all(GET).await.unwrap();
        let got = status(&response(&mut s).await);
        if got == want {
            return s;
        }
        assert!(Instant::now() < deadline, "still {got}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_from_one_address_get_429_with_retry_after() {
    let up = Upstream::start().await;
    let limits = Limits {
        per_client: ClientLimits {
            requests: Some(5),
            // One window for the whole test: no reset can let a request through by chance.
            interval: Some(Duration::from_secs(3600)),
            ..ClientLimits::default()
        },
        ..Limits::default()
    };
    let edge = edge_with(&up, limits, |c| c);
    let mut s = connect(edge.port).await;
    for _ in 0..5 {
        s.write_all(GET).await.unwrap();
        assert_eq!(status(&response(&mut s).await), 200);
    }
    s.write_all(GET).await.unwrap();
    let r = response(&mut s).await;
    assert_eq!(status(&r), 429, "{r:?}");
    assert!(r.as_deref().unwrap().contains("retry-after: 3600"), "{r:?}");
    // Unrouted probes count too, and are refused the same way.
    let mut s = connect(edge.port).await;
    s.write_all(b"GET /nothing-here HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status(&response(&mut s).await), 429);
    assert_eq!(up.requests(), 5);
    assert!(edge.log().contains("refused=client_rate"), "{}", edge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_closes_new_connections_unanswered() {
    let up = Upstream::start().await;
    let capped = free_port();
    let edge = edge_with(&up, Limits::default(), |c| {
        let mut l = Listener::new(format!("127.0.0.1:{capped}"));
        l.max_connections = Some(2);
        c.listener(l)
    });
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(capped).await;
        s.write_all(GET).await.unwrap();
        assert_eq!(status(&response(&mut s).await), 200);
        held.push(s);
    }
    let mut over = connect(capped).await;
    let _ = over.write_all(GET).await;
    assert_eq!(response(&mut over).await, None, "closed without an answer");
    assert_eq!(up.requests(), 2);
    // The other listener has its own (default) cap.
    assert_serving(&edge, &up).await;
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(capped).await;
        let _ = s.write_all(GET).await;
        if status(&response(&mut s).await) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener never had room again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_after_the_send_timeout() {
    let up = Upstream::start().await;
    let limits = Limits {
        send_timeout: Some(Duration::from_secs(1)),
        ..Limits::default()
    };
    let edge = edge_with(&up, limits, |c| c);
    let mut s = connect(edge.port).await;
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing; once the socket buffers are full, the edge's write waits
    // for it, gives up after 1 s and drops both connections, which ends the upstream's stream.
    wait_for(
        Duration::from_secs(20),
        "the upstream stream to be cut",
        || up.stream_ended.load(Ordering::SeqCst).then_some(()),
    )
    .await;
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "the client connection was closed"
    );
    assert_serving(&edge, &up).await;
}
