//! Request hygiene, probed with raw sockets (issue 11, item 3): paths are normalised before
//! routing and forwarded as routed, or refused; `Host`, the request target and the method are
//! checked; `Forwarded` and `X-Real-IP` from untrusted peers never reach the upstream; pipelined
//! requests are answered in order. Each probe gets the strict answer, the edge keeps serving, and
//! a recording upstream shows exactly what it was sent.

use std::time::Duration;

use testkit::raw::{closed, header_of, read_response, Recorder, Response};
use testkit::*;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Sends `raw` on a new connection and reads one answer.
async fn probe(edge: &Edge, raw: &[u8]) -> Response {
    let mut s = connect(edge).await;
    s.get_mut().write_all(raw).await.unwrap();
    read_response(&mut s)
        .await
        .unwrap_or_else(|| panic!("no answer to {}", String::from_utf8_lossy(raw)))
}

async fn connect(edge: &Edge) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(("127.0.0.1", edge.port)).await.unwrap())
}

/// `GET target` over HTTP/1.1 with `Host: a.example`.
fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: a.example\r\n\r\n").into_bytes()
}

/// An edge with `/public/` and, for `Host: internal.example` only, `/` routed to `up`.
fn edge_for(up: &Recorder, configure: impl FnOnce(EdgeConfig) -> EdgeConfig) -> Edge {
    let pool = Pool::app("app").endpoint(Endpoint::url(format!("http://127.0.0.1:{}", up.port)));
    Edge::start(configure(
        EdgeConfig::new()
            .pool(pool)
            .route(Route::new("/public/", "app"))
            .route(Route::new("/", "app").host("internal.example")),
    ))
}

/// Waits for `n` access lines naming `reason` (the line is written after the answer).
async fn refused_lines(edge: &Edge, reason: &str, n: usize) {
    let needle = format!(" refused={reason}");
    wait_for(Duration::from_secs(10), &format!("{n} x{needle}"), || {
        (edge.log().matches(&needle).count() >= n).then_some(())
    })
    .await;
}

/// The edge still serves, and logged no error.
async fn still_serving(edge: &Edge) {
    let r = probe(edge, &get("/public/alive")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "GET /public/alive HTTP/1.1")
    );
    assert!(!edge.log().contains("ERROR"), "{}", edge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_routing_and_forwarded_as_routed() {
    let up = Recorder::start().await;
    let edge = edge_for(&up, |c| c);
    // (target, status, the request line the upstream gets; none for a local answer)
    let cases: &[(&str, u16, Option<&str>)] = &[
        // Normalised, routed and forwarded as routed.
        ("/public/./a/../b", 200, Some("GET /public/b HTTP/1.1")),
        (
            "/public/%2e/%2E%2e/public/c",
            200,
            Some("GET /public/c HTTP/1.1"),
        ),
        (
            "//public//d?x=/../&y=%2e%2e",
            200,
            Some("GET /public/d?x=/../&y=%2e%2e HTTP/1.1"),
        ),
        ("/public\\e\\.\\f", 200, Some("GET /public/e/f HTTP/1.1")),
        ("/%70ublic/%7Eg", 200, Some("GET /public/~g HTTP/1.1")),
        // Normalised out of the route: its true path has none (a 404 from the edge).
        ("/public/../internal/secret", 404, None),
        ("/public/%2e%2e/internal/secret", 404, None),
        ("/public/.%2E/internal/secret", 404, None),
        ("/public/..\\internal/secret", 404, None),
        // Cannot be normalised safely.
        ("/public/..%2finternal/secret", 400, None),
        ("/public/..%2Finternal/secret", 400, None),
        ("/public/..%5cinternal/secret", 400, None),
        ("/public/..;/internal/secret", 400, None),
        ("/public/../../etc/passwd", 400, None),
        ("/public/%2e%2e/%2e%2e/etc/passwd", 400, None),
        ("/public/x%00.txt", 400, None),
        ("/public/%zz", 400, None),
        ("/public/%C0%AE%C0%AE/internal", 400, None),
    ];
    let mut forwarded = Vec::new();
    for (target, status, line) in cases {
        let r = probe(&edge, &get(target)).await;
        assert_eq!(r.status, *status, "{target}: {r:?}");
        if let Some(line) = line {
            assert_eq!(r.body, *line, "{target}");
            forwarded.push(line.to_string());
        }
    }
    // A raw NUL byte: Pingora escapes it to %00, which is refused.
    let r = probe(
        &edge,
        b"GET /public/x\0y HTTP/1.1\r\nHost: a.example\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        up.lines(),
        forwarded,
        "the upstream got exactly the routed paths"
    );
    for line in up.lines() {
        let target = line.split(' ').nth(1).unwrap_or("");
        let path = target.split('?').next().unwrap_or("").to_ascii_lowercase();
        for bad in ["/..", "/./", "%2e", "%2f", "%5c", "\\", "//", "%00"] {
            assert!(!path.contains(bad), "{line}");
        }
    }
    let refused = cases.iter().filter(|c| c.1 == 400).count() + 1;
    refused_lines(&edge, "bad_path", refused).await;
    refused_lines(&edge, "no_route", 4).await;
    still_serving(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_target_and_method_get_strict_answers() {
    let up = Recorder::start().await;
    let edge = edge_for(&up, |c| c);
    let line = |method: &str, target: &str, host: Option<&str>| {
        let host = host.map_or(String::new(), |h| format!("Host:{h}\r\n"));
        format!("{method} {target} HTTP/1.1\r\n{host}\r\n")
    };
    let (m33, m1k, m60k) = ("M".repeat(33), "M".repeat(1024), "M".repeat(60 * 1024));
    // (request, status, reason in the access log)
    let refused = [
        (line("GET", "/public/x", None), 400, "missing_host"),
        (line("GET", "/public/x", Some("")), 400, "bad_host"),
        (line("GET", "/public/x", Some(" a b")), 400, "bad_host"),
        (line("GET", "/public/x", Some(" a:99999")), 400, "bad_host"),
        (line("GET", "/public/x", Some(" a,b")), 400, "bad_host"),
        (
            line("GET", "ftp://a.example/public/x", Some(" a.example")),
            400,
            "bad_target",
        ),
        (
            line("GET", "gopher://a.example/x", Some(" a.example")),
            400,
            "bad_target",
        ),
        (line("OPTIONS", "*", Some(" a.example")), 400, "bad_target"),
        (
            line(&m33, "/public/x", Some(" a.example")),
            400,
            "bad_method",
        ),
        (
            line(&m1k, "/public/x", Some(" a.example")),
            400,
            "bad_method",
        ),
        // Over the request header limit (32 KiB), which answers first.
        (
            line(&m60k, "/public/x", Some(" a.example")),
            431,
            "header_too_large",
        ),
        // Pingora's parser refuses these: two Hosts, a target and a Host that disagree.
        (
            "GET /public/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n".into(),
            400,
            "malformed_header",
        ),
        (
            line("GET", "http://internal.example/x", Some(" a.example")),
            400,
            "malformed_header",
        ),
    ];
    for (raw, status, _) in &refused {
        let r = probe(&edge, raw.as_bytes()).await;
        assert_eq!(r.status, *status, "{}: {r:?}", &raw[..raw.len().min(80)]);
        assert!(r.closes(), "{r:?}");
    }
    assert_eq!(
        up.heads(),
        Vec::<String>::new(),
        "nothing refused reached the upstream"
    );
    for (_, _, reason) in &refused {
        let n = refused.iter().filter(|c| c.2 == *reason).count();
        refused_lines(&edge, reason, n).await;
    }

    // What passes: absolute-form http(s) targets go upstream in origin-form, routed by and
    // forwarded with the target's authority (RFC 9112 3.2.2); HTTP/1.0 may omit Host.
    let r = probe(
        &edge,
        b"GET HTTPS://a.example/public/y/../z?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "GET /public/z?q=1 HTTP/1.1")
    );
    let r = probe(
        &edge,
        b"GET http://internal.example/secret HTTP/1.0\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "GET /secret HTTP/1.1"));
    let r = probe(&edge, b"GET /public/old HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200);
    let r = probe(
        &edge,
        format!(
            "{} /public/m HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "M".repeat(32)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "32 bytes of method pass");
    let heads = up.heads();
    assert_eq!(heads.len(), 4, "{heads:?}");
    assert_eq!(header_of(&heads[0], "host"), Some("a.example"));
    assert_eq!(
        header_of(&heads[1], "host"),
        Some("internal.example"),
        "the target's authority"
    );
    assert_eq!(
        header_of(&heads[1], "x-forwarded-host"),
        Some("internal.example")
    );
    still_serving(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_x_real_ip_come_only_from_trusted_peers_or_the_edge() {
    let up = Recorder::start().await;
    let spoofed =
        b"GET /public/f HTTP/1.1\r\nHost: a.example\r\nForwarded: for=6.6.6.6;host=evil\r\n\
                    X-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let head = |edge: &Edge| {
        let edge_port = edge.port;
        let up = &up;
        async move {
            let before = up.heads().len();
            let mut s = BufReader::new(TcpStream::connect(("127.0.0.1", edge_port)).await.unwrap());
            s.get_mut().write_all(spoofed).await.unwrap();
            let r = read_response(&mut s).await.unwrap();
            assert_eq!(r.status, 200, "{r:?}");
            up.heads()[before].clone()
        }
    };

    // The peer is no trusted proxy: its forwarding headers go.
    let edge = edge_for(&up, |c| c.trusted_proxy("10.0.0.0/8"));
    let h = head(&edge).await;
    assert_eq!(header_of(&h, "forwarded"), None, "{h}");
    assert_eq!(header_of(&h, "x-real-ip"), None, "{h}");
    assert_eq!(header_of(&h, "x-forwarded-for"), Some("127.0.0.1"), "{h}");
    still_serving(&edge).await;
    drop(edge);

    // Asked for: set from the peer.
    let edge = edge_for(&up, |c| c.forwarding(true, true));
    let h = head(&edge).await;
    assert_eq!(header_of(&h, "x-real-ip"), Some("127.0.0.1"), "{h}");
    assert_eq!(
        header_of(&h, "forwarded"),
        Some("for=127.0.0.1;proto=http;host=a.example"),
        "{h}"
    );
    drop(edge);

    // A trusted proxy's headers are kept, and extended when asked.
    let edge = edge_for(&up, |c| c.trusted_proxy("127.0.0.1/32"));
    let h = head(&edge).await;
    assert_eq!(
        header_of(&h, "forwarded"),
        Some("for=6.6.6.6;host=evil"),
        "{h}"
    );
    assert_eq!(header_of(&h, "x-real-ip"), Some("6.6.6.6"), "{h}");
    drop(edge);
    let edge = edge_for(&up, |c| {
        c.trusted_proxy("127.0.0.1/32").forwarding(true, true)
    });
    let h = head(&edge).await;
    assert_eq!(
        header_of(&h, "forwarded"),
        Some("for=6.6.6.6;host=evil, for=127.0.0.1;proto=http;host=a.example"),
        "{h}"
    );
    assert_eq!(
        header_of(&h, "x-real-ip"),
        Some("6.6.6.6"),
        "the client, as the chain says"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let up = Recorder::start().await;
    let edge = edge_for(&up, |c| c);
    let n = 50;

    // All in one write, one with a body, then more on the same connection.
    let mut s = connect(&edge).await;
    let mut burst = Vec::new();
    for i in 0..n {
        if i == 10 {
            burst.extend_from_slice(
                b"POST /public/10 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello",
            );
        } else {
            burst.extend_from_slice(&get(&format!("/public/{i}")));
        }
    }
    s.get_mut().write_all(&burst).await.unwrap();
    for i in 0..n {
        let r = read_response(&mut s)
            .await
            .unwrap_or_else(|| panic!("no answer {i}"));
        let method = if i == 10 { "POST" } else { "GET" };
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, format!("{method} /public/{i} HTTP/1.1").as_str())
        );
        assert!(!r.closes(), "{i}: keep-alive as said");
    }
    // The connection is still usable, for pipelined requests sent in pieces too.
    s.get_mut().write_all(&get("/public/a")).await.unwrap();
    let second = [get("/public/b"), get("/public/c")].concat();
    let (first_half, rest) = second.split_at(second.len() / 2 + 3);
    s.get_mut().write_all(first_half).await.unwrap();
    for want in ["a", "b"] {
        if want == "b" {
            s.get_mut().write_all(rest).await.unwrap();
        }
        let r = read_response(&mut s).await.unwrap();
        assert_eq!(r.body, format!("GET /public/{want} HTTP/1.1"));
    }
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.body, "GET /public/c HTTP/1.1");
    assert_eq!(up.heads().len(), n + 3);

    // A refusal in the pipeline: its answer says close, the connection closes, and nothing
    // after it reaches the upstream.
    let before = up.heads().len();
    let mut s = connect(&edge).await;
    let burst = [get("/public/1"), get("/public/../../x"), get("/public/3")].concat();
    s.get_mut().write_all(&burst).await.unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 200);
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.closes(), "{r:?}");
    assert!(closed(&mut s).await, "closed after an answer that said so");
    assert_eq!(up.lines()[before..], ["GET /public/1 HTTP/1.1"]);
    still_serving(&edge).await;
}
