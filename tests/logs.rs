//! What the edge writes to its log: no credentials at any level, no ERROR for ordinary client
//! behaviour (patch 0005 and the edge's own redaction).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use asrs_emulator::Emulator;
use testkit::*;

/// The SignalR pool of `em`'s instances with `/client/` routed to it.
fn client_routes(em: &Emulator) -> EdgeConfig {
    EdgeConfig::new()
        .pool(signalr_pool(em))
        .route(Route::new("/client/", "signalr"))
}

/// Lines at ERROR level.
fn error_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" ERROR ")).collect()
}

/// At `trace` level, with every kind of SignalR request carrying credentials (bearer header,
/// `access_token` query, connection token), no log line holds a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_in_any_log_line_at_trace_level() {
    let em = emulator(vec![instance("a", "shared", false)]).await;
    let mut edge = Edge::start_logging("trace", free_port(), client_routes(&em));
    let token = token("shared", "a.service.signalr.net", "chat");
    let signature = token.rsplit('.').next().unwrap().to_string();
    let client = http();
    let q = "hub=chat&negotiateVersion=1&asrs_request_id=logtest";
    let n = negotiate(&client, &edge.url(""), q, &token).await;
    assert_eq!(n.status, 200);
    let ct = n.connection_token.unwrap();
    ws_whoami(&edge.ws_base(), &format!("{q}&id={ct}"), &token)
        .await
        .unwrap();
    // The query-string form of the token, as SSE and long polling send it.
    let r = client
        .get(edge.url(&format!("/client/?{q}&id=nosuch&access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the emulator knows no such connection");
    edge.interrupt();
    let log = edge.log();
    assert!(log.lines().count() > 50, "trace logging is on:\n{log}");
    for (what, secret) in [("token signature", &signature), ("connection token", &ct)] {
        let leaks: Vec<_> = log
            .lines()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(leaks.is_empty(), "{what} in the log: {leaks:#?}");
    }
}

/// Keep-alive traffic and clients that connect, send a byte and leave are ordinary: they must
/// not produce ERROR lines (stock Pingora logs one per such client, and "failed to acquire
/// reusable stream" under keep-alive load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_client_behaviour_logs_no_error() {
    let em = emulator(vec![instance("a", "shared", false)]).await;
    let edge = Edge::start(client_routes(&em).threads(2));
    let token = token("shared", "a.service.signalr.net", "chat");
    let client = http();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (client, base, token) = (client.clone(), edge.url(""), token.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                let q = format!("hub=chat&asrs_request_id=k{t}x{i}");
                assert_eq!(negotiate(&client, &base, &q, &token).await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let port = edge.port;
    tokio::task::spawn_blocking(move || {
        for _ in 0..200 {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"G").unwrap();
        }
        // And some that leave without a byte, or mid-header.
        for _ in 0..100 {
            drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /client/negotiate HTTP/1.1\r\nHost: a\r\n")
                .unwrap();
        }
    })
    .await
    .unwrap();
    // The edge has seen every connection once a fresh request gets through after them.
    wait_for(Duration::from_secs(10), "edge answers", || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    assert_eq!(
        negotiate(&client, &edge.url(""), "hub=chat", &token)
            .await
            .status,
        200
    );
    let log = edge.log();
    let errors = error_lines(&log);
    assert!(
        errors.is_empty(),
        "{} ERROR lines, first: {:#?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}

/// The JSON lines of `log`, parsed.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `log.format: json`: one object per request with its route, pool, endpoint, rule, status and
/// duration; a WebSocket's and an SSE stream's line comes when it ends, with its kind and close
/// reason; a refusal names its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_lines_describe_each_request_and_connection() {
    let em = emulator(vec![instance("a", "shared", false)]).await;
    let mut edge = Edge::start(client_routes(&em).log_format("json"));
    let token = token("shared", "a.service.signalr.net", "chat");
    let client = http();
    let q = "hub=chat&negotiateVersion=1&asrs_request_id=jsonlog";
    let n = negotiate(&client, &edge.url(""), q, &token).await;
    let ct = n.connection_token.unwrap();
    ws_whoami(&edge.ws_base(), &format!("{q}&id={ct}"), &token)
        .await
        .unwrap();
    let n = negotiate(&client, &edge.url(""), q, &token).await;
    let id = n.connection_token.unwrap();
    let mut sse = client
        .get(edge.url(&format!("/client/?hub=chat&id={id}&access_token={token}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(sse.chunk().await.unwrap().is_some(), "the stream opened");
    drop(sse);
    let r = client.get(edge.url("/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // 2 negotiates, the WebSocket, the SSE stream (when the edge sees its client left), the 404.
    let lines = wait_for(Duration::from_secs(10), "five JSON lines", || {
        let lines = json_lines(&edge.log());
        (lines.len() >= 5).then_some(lines)
    })
    .await;
    edge.interrupt();
    let by_kind = |kind: &str| {
        lines
            .iter()
            .filter(|l| l["kind"] == kind && l["route"] == "/client/")
            .collect::<Vec<_>>()
    };
    let plain = by_kind("plain");
    assert_eq!(plain.len(), 2, "{lines:#?}");
    let neg = plain[0];
    assert_eq!(neg["method"], "POST");
    assert_eq!(neg["status"], 200);
    assert_eq!(
        (&neg["pool"], &neg["endpoint"], &neg["rule"]),
        (
            &serde_json::json!("signalr"),
            &serde_json::json!("a.service.signalr.net"),
            &serde_json::json!("audience")
        )
    );
    assert!(neg["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(neg["bytes_from_upstream"].as_u64().unwrap() > 0);
    assert!(
        neg["close"].is_null(),
        "only long-lived lines say how they closed"
    );
    assert_eq!(neg["client"], "127.0.0.1");
    let ws = by_kind("websocket");
    assert_eq!(ws.len(), 1, "{lines:#?}");
    assert_eq!(ws[0]["status"], 101);
    assert!(ws[0]["close"].is_string(), "{:#?}", ws[0]);
    assert!(ws[0]["path"].as_str().unwrap().contains("id=<redacted>"));
    let sse = by_kind("sse");
    assert_eq!(sse.len(), 1, "{lines:#?}");
    assert_eq!(sse[0]["close"], "client", "{:#?}", sse[0]);
    assert!(!sse[0]["path"].as_str().unwrap().contains(&token));
    let refused: Vec<_> = lines.iter().filter(|l| l["status"] == 404).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["refused"], "no_route");
    assert!(refused[0]["route"].is_null());
}
