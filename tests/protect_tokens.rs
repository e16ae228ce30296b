//! Token validation at the edge (`tokens: { verify: true }`), tried as an attacker would: every
//! probe gets `401` with `WWW-Authenticate` from the edge, nothing of it reaches an upstream,
//! and the edge goes on serving the clients whose tokens verify.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use asrs_emulator::token::audience;
use testkit::*;

const SINK_HOST: &str = "sink.service.signalr.net";
const SINK_KEY: &str = "sink-access-key-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(alg: Algorithm, key: &str, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// Claims as the SDK writes them for `host` and `hub`, valid for 10 minutes.
fn claims(host: &str, hub: &str) -> Value {
    let t = now();
    json!({"aud": audience(host, hub), "iat": t, "nbf": t, "exp": t + 600})
}

/// An upstream that answers `200 ok` to anything and counts the connections it accepts.
struct Sink {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
}

async fn sink() -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    // Ends with the test's runtime.
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Sink { addr, accepted }
}

/// Sends `request` as raw bytes and reads the answer until the edge closes the connection.
async fn raw(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("the edge answers and closes within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn request(method: &str, target: &str, extra: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: edge.example\r\n{extra}Connection: close\r\n\r\n")
}

fn bearer(method: &str, target: &str, token: &str) -> String {
    request(
        method,
        target,
        &format!("Authorization: Bearer {token}\r\n"),
    )
}

/// A token with hand-written header and payload and a signature that is not one.
fn forged(header: &str, payload: &Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_401_from_the_edge_and_the_upstream_sees_none() {
    let sink = sink().await;
    let pool = Pool::signalr("signalr")
        .endpoint(
            Endpoint::connection_string(format!(
                "Endpoint=http://{SINK_HOST};AccessKey={SINK_KEY};Version=1.0;"
            ))
            .address(sink.addr),
        )
        .tokens(Tokens::verify().clock_skew(Duration::from_secs(5)));
    // At trace level: no token may reach any line, Pingora's and the verifier's included.
    let edge = Edge::start_logging(
        "trace",
        free_port(),
        EdgeConfig::new()
            .pool(pool)
            .route(Route::new("/client/", "signalr")),
    );
    let good = sign(Algorithm::HS256, SINK_KEY, claims(SINK_HOST, "chat"));
    let t = now();
    let with = |patch: Value| {
        let mut c = claims(SINK_HOST, "chat");
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        c
    };
    let negotiate = "/client/negotiate?hub=chat&negotiateVersion=1&asrs_request_id=p";
    let poll = "/client/?hub=chat&id=conn-1";
    let key = |claims: Value| sign(Algorithm::HS256, SINK_KEY, claims);
    let none = forged(r#"{"alg":"none","typ":"JWT"}"#, &claims(SINK_HOST, "chat"));
    let none_unsigned = format!("{}.", none.rsplit_once('.').unwrap().0);
    let server_aud = format!("https://{SINK_HOST}/server/?hub=chat");
    // Bad tokens, each sent as a negotiate's bearer token.
    let bad: Vec<(&str, String)> = vec![
        ("garbage", "not-a-jwt".into()),
        ("three garbage parts", "a.b.c".into()),
        ("alg none", none),
        ("alg none, no signature", none_unsigned),
        (
            "RS256 header",
            forged(r#"{"alg":"RS256"}"#, &claims(SINK_HOST, "chat")),
        ),
        (
            "HS256, forged signature",
            forged(r#"{"alg":"HS256"}"#, &claims(SINK_HOST, "chat")),
        ),
        (
            "HS384, right key",
            sign(Algorithm::HS384, SINK_KEY, claims(SINK_HOST, "chat")),
        ),
        (
            "wrong key",
            sign(Algorithm::HS256, "another-key", claims(SINK_HOST, "chat")),
        ),
        ("expired", key(with(json!({"exp": t - 600})))),
        ("not yet valid", key(with(json!({"nbf": t + 600})))),
        (
            "another host",
            key(claims("other.service.signalr.net", "chat")),
        ),
        ("another hub", key(claims(SINK_HOST, "admin"))),
        ("server audience", key(with(json!({"aud": server_aud})))),
        ("10 KiB", key(with(json!({"pad": "p".repeat(10 * 1024)})))),
    ];
    let mut invalid: Vec<(&str, String)> = bad
        .iter()
        .map(|(what, token)| (*what, bearer("POST", negotiate, token)))
        .collect();
    let wrong_key = sign(Algorithm::HS256, "another-key", claims(SINK_HOST, "chat"));
    invalid.extend([
        (
            "a good token on a request for another hub",
            bearer("POST", "/client/negotiate?hub=admin", &good),
        ),
        (
            "long poll, query token with the wrong key",
            request("GET", &format!("{poll}&access_token={wrong_key}"), ""),
        ),
        (
            "WebSocket upgrade, garbage query token",
            request(
                "GET",
                &format!("{poll}&access_token=x.y.z"),
                "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            ),
        ),
        (
            "send with a body",
            format!(
                "POST {poll} HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer x.y.z\r\n\
                 Content-Length: 5\r\nConnection: close\r\n\r\nhello"
            ),
        ),
    ]);
    let missing: Vec<(&str, String)> = vec![
        ("negotiate without token", request("POST", negotiate, "")),
        ("long poll without token", request("GET", poll, "")),
        ("stop without token", request("DELETE", poll, "")),
        (
            "a Basic credential",
            request("POST", negotiate, "Authorization: Basic dXNlcjpwdw==\r\n"),
        ),
        (
            "an empty query token",
            request("GET", &format!("{poll}&access_token="), ""),
        ),
    ];
    for (what, req) in &invalid {
        let answer = raw(edge.port, req).await;
        assert_eq!(status_of(&answer), 401, "{what}: {answer}");
        assert_eq!(
            header_of(&answer, "www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{what}: {answer}"
        );
    }
    for (what, req) in &missing {
        let answer = raw(edge.port, req).await;
        assert_eq!(status_of(&answer), 401, "{what}: {answer}");
        assert_eq!(
            header_of(&answer, "www-authenticate"),
            Some("Bearer"),
            "{what}: {answer}"
        );
    }
    assert_eq!(
        sink.accepted.load(Ordering::SeqCst),
        0,
        "a refused request reached the upstream"
    );
    // The edge is alive, and the same upstream gets what verifies: the probes above would
    // have reached it. Twice: the second comes from the cache.
    for _ in 0..2 {
        let answer = raw(edge.port, &bearer("POST", negotiate, &good)).await;
        assert_eq!(status_of(&answer), 200, "{answer}");
    }
    assert_eq!(sink.accepted.load(Ordering::SeqCst), 2);
    // Each refusal has its reason in the access log.
    let log = wait_for(Duration::from_secs(5), "the refusals' access lines", || {
        let log = edge.log();
        let n = log.matches(" refused=").count();
        (n >= invalid.len() + missing.len()).then_some(log)
    })
    .await;
    let refused: Vec<&str> = log.lines().filter(|l| l.contains(" refused=")).collect();
    assert!(
        refused.iter().all(|l| l.contains("\" 401 ")),
        "{refused:#?}"
    );
    assert_eq!(log.matches("refused=invalid_token").count(), invalid.len());
    assert_eq!(log.matches("refused=missing_token").count(), missing.len());
    // Every signature sent, good or forged, stays out of the log.
    assert!(log.lines().count() > 200, "trace logging is on:\n{log}");
    let requests = invalid.iter().chain(&missing).map(|(_, r)| r.as_str());
    let mut checked = 0;
    for req in requests.chain([bearer("POST", negotiate, &good).as_str()]) {
        for token in req
            .split([' ', '=', '&', '\r'])
            .filter(|w| w.matches('.').count() == 2)
        {
            let signature = token.rsplit('.').next().unwrap_or_default();
            if signature.len() > 8 {
                checked += 1;
                assert!(
                    !log.contains(signature),
                    "a token signature reached the log: {token}"
                );
            }
        }
    }
    assert!(checked >= 14, "{checked} signatures checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_negotiates_only_verified_clients_and_they_work_over_every_transport() {
    // The instance itself does not check audiences: every token below that names another hub
    // or host would be accepted there, so its negotiate count shows what got through.
    let em = emulator(vec![instance("a", "key-a", false)]).await;
    let edge = Edge::start(
        EdgeConfig::new()
            .pool(signalr_pool(&em).tokens(Tokens::verify()))
            .route(Route::new("/client/", "signalr")),
    );
    let a = &em.instances[0].state;
    let http = http();
    let base = edge.url("");
    let host = "a.service.signalr.net";
    for (what, token, hub) in [
        (
            "another hub",
            testkit::token("key-a", host, "admin"),
            "chat",
        ),
        (
            "another host",
            testkit::token("key-a", "elsewhere.service.signalr.net", "chat"),
            "chat",
        ),
        (
            "server audience",
            sign(
                Algorithm::HS256,
                "key-a",
                json!({"aud": format!("https://{host}/server/?hub=chat"), "exp": now() + 600}),
            ),
            "chat",
        ),
    ] {
        let n = negotiate(
            &http,
            &base,
            &format!("hub={hub}&asrs_request_id=x"),
            &token,
        )
        .await;
        assert_eq!((n.status, n.instance.as_str()), (401, ""), "{what}");
    }
    assert_eq!(
        a.negotiations(),
        0,
        "a refused negotiate reached the instance"
    );
    // Verified clients negotiate, connect and echo over the three transports; long polling
    // repeats its token on every poll and send.
    let target = Target {
        base: base.clone(),
        token: testkit::token("key-a", host, "chat"),
        request_id: "verified".into(),
    };
    for transport in [
        Transport::WebSockets,
        Transport::ServerSentEvents,
        Transport::LongPolling,
    ] {
        let (mut c, instance) = Client::connect(&http, &target, transport).await.unwrap();
        assert_eq!(instance, "a");
        c.echo(3)
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        c.close().await;
    }
    assert_eq!(a.negotiations(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_retires_an_instance_keeps_verifying_its_long_polls() {
    let em = emulator(vec![
        instance("a", "key-a", true),
        instance("b", "key-b", true),
    ])
    .await;
    let site = EdgeSite::new();
    let config = |with_b: bool| {
        let pool = em
            .instances
            .iter()
            .filter(|i| with_b || i.state.settings.name != "b")
            .fold(Pool::signalr("signalr"), |p, i| p.endpoint(endpoint_of(i)))
            .tokens(Tokens::verify());
        EdgeConfig::new()
            .pool(pool)
            .route(Route::new("/client/", "signalr"))
    };
    site.write(&config(true), 0);
    let mut p = site.spawn("edge", false);
    site.wait_ready(&mut p).await;
    let http = http();
    let b_token = testkit::token("key-b", "b.service.signalr.net", "chat");
    let target = Target {
        base: site.url(""),
        token: b_token.clone(),
        request_id: "lp".into(),
    };
    let (mut lp, instance) = Client::connect(&http, &target, Transport::LongPolling)
        .await
        .unwrap();
    assert_eq!(instance, "b");
    site.write(&config(false), 0);
    let (status, report) = site.reload().await;
    assert_eq!(status, 200, "{report}");
    // b is retired: its long poll goes on, each poll and send verified with b's key.
    lp.echo(3).await.unwrap();
    // A token naming b signed with a's key is still refused by the edge.
    let forged = testkit::token("key-a", "b.service.signalr.net", "chat");
    let poll = format!("/client/?hub=chat&id=anything&access_token={forged}");
    let answer = raw(site.port, &request("GET", &poll, "")).await;
    assert_eq!(status_of(&answer), 401, "{answer}");
    assert!(
        answer.ends_with("signalr-edge: invalid access token\n"),
        "{answer}"
    );
    lp.close().await;
    p.assert_running();
}
