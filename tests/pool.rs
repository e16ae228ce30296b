//! Upstream connection pooling through the edge (patch 0007 changes how a pooled connection is
//! matched to its peer; this checks pooled connections are still found and reused).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A keep-alive HTTP upstream answering every request with `ok`; counts accepted connections.
async fn counting_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await?;
                    }
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_upstream_connection() {
    let (up, accepted) = counting_upstream().await;
    let edge = Edge::start(
        EdgeConfig::new()
            .pool(Pool::app("app").endpoint(Endpoint::url(format!("http://127.0.0.1:{up}"))))
            .route(Route::new("/", "app")),
    );
    let client = http();
    for i in 0..50 {
        let r = client
            .get(edge.url(&format!("/r/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    // Pingora may open a second connection when a request races the pool's idle watcher.
    let n = accepted.load(Ordering::SeqCst);
    assert!(
        n <= 2,
        "{n} upstream connections for 50 sequential requests"
    );
}
