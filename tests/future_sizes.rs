//! The size of Pingora's long-lived futures, which every request or connection allocates and
//! holds for its whole life (patch 0006). A future is as large as its largest state, so a rarely
//! taken branch inlined into it (a TCP + TLS connect, a TLS accept, the HTTP/2 accept loop) costs
//! every keep-alive request a bigger box to fill and every idle WebSocket that much memory.
//! The limits sit between stock Pingora 0.9.1's sizes and ours. (The TLS accept boxed by the
//! same patch lives in the connection task, which Pingora does not expose; see
//! benches/profile/type-sizes.sh for all of them.)

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};

/// The smallest proxy: the hooks' own futures are boxed, so Pingora's dominate.
struct Minimal;

#[async_trait]
impl ProxyHttp for Minimal {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new("127.0.0.1:9", false, String::new())))
    }
}

async fn stream() -> Stream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    Box::new(pingora_core::protocols::l4::stream::Stream::from(client))
}

#[tokio::test]
async fn per_request_and_per_connection_futures_stay_small() {
    let conf = Arc::new(ServerConf::default());
    let app = Arc::new(pingora_proxy::http_proxy(&conf, Minimal));
    let (_tx, shutdown) = tokio::sync::watch::channel(false);

    // Boxed (async_trait) for every request. Test profile: stock 0.9.1 13,432 B, patched 7,968 B.
    let request =
        HttpServerApp::process_new_http(&app, ServerSession::new_http1(stream().await), &shutdown);
    let request_size = std::mem::size_of_val(&*request);
    // Boxed for every connection and held for its life. Stock 3,824 B, patched 1,608 B.
    let connection = ServerApp::process_new(&app, stream().await, &shutdown);
    let connection_size = std::mem::size_of_val(&*connection);
    println!("process_new_http: {request_size} B, process_new: {connection_size} B");
    assert!(
        request_size < 10 * 1024,
        "per-request future is {request_size} B"
    );
    assert!(
        connection_size < 2560,
        "per-connection future is {connection_size} B"
    );
}
