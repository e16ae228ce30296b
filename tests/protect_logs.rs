//! Secrets never logged (issue 11, item 5): at `RUST_LOG=trace`, every way a client can carry
//! a token (bearer header, `access_token` in any case, encoding or separator, a JWT in any
//! other parameter, the connection token) over negotiate, WebSocket and long polling, and a
//! negotiate answer that arrives chunked, leaves neither the token's signature, the connection
//! token nor an `Authorization` value in any log line; and fields taken from the request are
//! escaped, so a `"` or a control byte cannot break or forge an access line.

use std::time::Duration;

use asrs_emulator::Emulator;
use testkit::client::ws::WsClient;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The signature (third part) of a JWT.
fn signature(jwt: &str) -> String {
    jwt.rsplit('.').next().unwrap().to_string()
}

/// Only the letters and digits of `s`: a secret printed char by char (`['e', 'y', ...]`) or
/// escaped is still found.
fn squeeze(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// Lines of `log` holding `secret`, however it was printed.
fn lines_with<'a>(log: &'a str, secret: &str) -> Vec<&'a str> {
    let secret = squeeze(secret);
    log.lines()
        .filter(|l| squeeze(l).contains(&secret))
        .collect()
}

/// Fails with the offending lines if any line of `log` holds one of `secrets`.
fn assert_no_secret(log: &str, secrets: &[(&str, &str)]) {
    assert!(log.lines().count() > 50, "trace logging is on:\n{log}");
    let mut found = Vec::new();
    for (what, secret) in secrets {
        for l in lines_with(log, secret) {
            found.push(format!("{what}: {l}"));
        }
    }
    assert!(
        found.is_empty(),
        "secrets in the log:\n{}",
        found.join("\n")
    );
}

/// An app server stand-in: `/chat/negotiate` gets a negotiate answer holding `token`, chunked
/// as ASP.NET Core writes one (no Content-Length), with a cookie holding it too; `/chat/broken`
/// gets a response head that does not parse, after that cookie; anything else an empty `200`.
/// It closes each connection after one answer.
async fn chunked_app_server(token: String) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let token = token.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body =
                    format!(r#"{{"url":"http://edge/client/?hub=chat","accessToken":"{token}"}}"#);
                let answer = if head.starts_with(b"POST /chat/negotiate") {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Set-Cookie: session={token}\r\n\
                         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                         {:x}\r\n{body}\r\n0\r\n\r\n",
                        body.len()
                    )
                } else if head.starts_with(b"GET /chat/broken") {
                    format!("HTTP/1.1 200 OK\r\nSet-Cookie: session={token}\r\nBad Header\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
                };
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// The edge at trace level in front of `em` (`/client/`) and a chunked app server (`/chat/`),
/// writing access lines as `format`.
fn edge(em: &Emulator, app: std::net::SocketAddr, format: &str) -> Edge {
    let config = EdgeConfig::new()
        .log_format(format)
        .pool(signalr_pool(em))
        .pool(Pool::app("app").endpoint(Endpoint::url(format!("http://{app}"))))
        .route(Route::new("/client/", "signalr"))
        .route(Route::new("/chat/", "app"));
    Edge::start_logging("trace", free_port(), config)
}

/// Sends `request` on a new connection and reads the answer until the edge closes or 10 s.
async fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Every way a client or an upstream carries a credential, at `RUST_LOG=trace`: no log line
/// holds a token's signature, a connection token or an `Authorization` value, however printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_in_any_log_line_at_trace_level() {
    credentials_stay_out_of_the_log("text").await;
}

/// The same with JSON access lines, each of which parses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_in_any_json_access_line() {
    let log = credentials_stay_out_of_the_log("json").await;
    let json: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(json.len() > 20, "JSON access lines:\n{log}");
    for line in json {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["ts"].is_string() && v["status"].is_u64(), "{line}");
    }
}

/// Sends credentials every way a client or upstream carries them and checks the log for them;
/// returns the log.
async fn credentials_stay_out_of_the_log(format: &str) -> String {
    let em = emulator(vec![instance("a", "shared", false)]).await;
    let app_token = token("shared", "a.service.signalr.net", "app-answer");
    let app = chunked_app_server(app_token.clone()).await;
    let mut edge = edge(&em, app, format);
    let client = http();
    let token = token("shared", "a.service.signalr.net", "chat");
    let q = "hub=chat&negotiateVersion=1&asrs_request_id=logtest";

    // WebSocket with a bearer header.
    let n = negotiate(&client, &edge.url(""), q, &token).await;
    assert_eq!(n.status, 200);
    let ws_id = n.connection_token.unwrap();
    ws_whoami(&edge.ws_base(), &format!("{q}&id={ws_id}"), &token)
        .await
        .unwrap();
    let mut ids = vec![ws_id];

    // A WebSocket and an SSE stream with the token in the query, as browsers send it.
    for sse in [false, true] {
        let n = negotiate(&client, &edge.url(""), q, &token).await;
        let id = n.connection_token.unwrap();
        let path = format!("/client/?hub=chat&id={id}&access_token={token}");
        if sse {
            let mut r = client
                .get(edge.url(&path))
                .header("accept", "text/event-stream")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.chunk().await.unwrap().is_some(), "the stream opened");
        } else {
            let url = format!("{}{path}", edge.ws_base());
            let mut ws = WsClient::connect(&url, None, None).await.unwrap();
            ws.handshake().await.unwrap();
            ws.close().await;
        }
        ids.push(id);
    }
    // Long polling with the token in the query, in every spelling a server may accept.
    let n = negotiate(&client, &edge.url(""), q, &token).await;
    let lp_id = n.connection_token.unwrap();
    ids.push(lp_id.clone());
    for (i, param) in [
        "access_token=",
        "ACCESS_TOKEN=",
        "access%5Ftoken=",
        "Access%5fToken=",
    ]
    .iter()
    .enumerate()
    {
        let url = edge.url(&format!("/client/?hub=chat&id={lp_id}&{param}{token}"));
        let r = client.get(&url).send().await.unwrap();
        assert!(r.status().as_u16() < 500, "{param}: {}", r.status());
        if i == 0 {
            // The first poll is open: send the handshake, poll once more, and end it.
            let r = client
                .post(&url)
                .body("{\"protocol\":\"json\",\"version\":1}\u{1e}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            client.delete(&url).send().await.unwrap();
        }
    }
    // `;` as separator, the connection token as `ID`, and a JWT in parameters of any name,
    // alone or inside another value.
    let other_id = "Zm9vYmFyLWNvbm5lY3Rpb24tdG9rZW4";
    ids.push(other_id.to_string());
    for query in [
        format!("hub=chat;access_token={token}"),
        format!("hub=chat&ID={other_id}"),
        format!("hub=chat&%69d={other_id}"),
        format!("hub=chat&state={token}"),
        format!("hub=chat&auth=Bearer%20{token}"),
        format!("hub=chat&{token}"),
    ] {
        let r = client
            .get(edge.url(&format!("/client/?{query}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "{query}: {}", r.status());
    }
    // A header credential that is not a JWT, and a negotiate answer the app sends chunked.
    let basic = "Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3N3b3Jk";
    let r = client
        .post(edge.url("/chat/negotiate?negotiateVersion=1"))
        .header("authorization", basic)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(&app_token));
    // A chunked request body followed by a pipelined request with a credential: the bytes
    // that follow the body must not be printed either.
    let pipelined = format!(
        "POST /chat/send HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nabc\r\n0\r\n\r\n\
         GET /chat/x HTTP/1.1\r\nHost: a\r\nAuthorization: {basic}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(edge.port, pipelined.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A request head that does not parse, after the credentials: Pingora's error names it.
    let bad = format!(
        "GET /client/?hub=chat&id={other_id}&access_token={token} HTTP/1.1\r\nHost: a\r\n\
         Authorization: {basic}\r\nBad Header\r\n\r\n"
    );
    let answer = raw(edge.port, bad.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // A response head that does not parse, after a cookie holding a token.
    let r = client.get(edge.url("/chat/broken")).send().await.unwrap();
    assert_eq!(r.status(), 502);

    edge.interrupt();
    let log = edge.log();
    let mut secrets = vec![
        ("token signature", signature(&token)),
        ("chunked answer's token signature", signature(&app_token)),
        ("Authorization value", basic["Basic ".len()..].to_string()),
    ];
    for id in &ids {
        secrets.push(("connection token", id.clone()));
    }
    let secrets: Vec<(&str, &str)> = secrets.iter().map(|(w, s)| (*w, s.as_str())).collect();
    assert_no_secret(&log, &secrets);
    log
}

/// Unescaped `"` in `line`: an access line has exactly two, around the request.
fn bare_quotes(line: &str) -> usize {
    let (mut n, mut escaped) = (0, false);
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => n += 1,
            _ => escaped = false,
        }
    }
    n
}

/// Quotes, backslashes and control bytes in the request target reach the access log escaped:
/// every line keeps one quoted request field, and no byte of the request can end a line or
/// color a terminal. (Pingora percent-escapes control bytes in a request line it cannot parse
/// and answers 400 to bytes that are not UTF-8; the unit tests of `redact` cover those too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_fields_are_escaped_in_the_access_log() {
    let em = emulator(vec![instance("a", "shared", false)]).await;
    let config = EdgeConfig::new()
        .pool(signalr_pool(&em))
        .route(Route::new("/client/", "signalr"));
    let mut edge = Edge::start_logging("info", free_port(), config);
    let probes: [&[u8]; 5] = [
        b"GET /client/x\\ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET \"/client/a\\b?x=\"1\"&id=s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET x:\"/nowhere\" 200 forged=\"x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET \"/client/\x01\x7f\x1b[31m\r HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /client/%0a%22x?y=%0d%0a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ];
    for probe in probes {
        let answer = raw(edge.port, probe).await;
        assert!(answer.starts_with("HTTP/1.1 "), "{answer:?}");
    }
    // The edge is still serving.
    let r = http()
        .get(edge.url("/client/negotiate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "the emulator answers GET negotiate");
    edge.interrupt();
    let log = edge.log();
    let access: Vec<&str> = log.lines().filter(|l| l.contains(" access] ")).collect();
    assert_eq!(
        access.len(),
        probes.len() + 1,
        "one line per request:\n{log}"
    );
    for line in &access {
        assert_eq!(bare_quotes(line), 2, "one quoted request field: {line}");
    }
    let control: Vec<&str> = log
        .lines()
        .filter(|l| l.chars().any(|c| c.is_control()))
        .collect();
    assert!(control.is_empty(), "control characters logged: {control:?}");
    for logged in [
        r#""GET /client/x\\" "#,
        r#""GET \"/client/a\\b?x=\"1\"&id=<redacted>" "#,
        r#""GET /client/%0a%22x?y=%0d%0a" "#,
    ] {
        assert!(
            access.iter().any(|l| l.contains(logged)),
            "no line with {logged}:\n{}",
            access.join("\n")
        );
    }
}
