//! Integration tests: the real `signalr-edge` binary in front of emulated ASRS instances.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use testkit::*;

/// `pool` with `/client/` routed to it.
fn client_routes(pool: Pool) -> EdgeConfig {
    EdgeConfig::new()
        .pool(pool)
        .route(Route::new("/client/", "signalr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_paths_get_404_and_reach_no_upstream() {
    let em = emulator(vec![instance("a", "k", true)]).await;
    let edge = Edge::start(client_routes(signalr_pool(&em)));
    let r = http()
        .get(edge.url("/other/negotiate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no route"));
    let r = http().post(edge.url("/clien")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(em.instances[0].state.negotiations(), 0);
    // The access log names the reason.
    wait_for(Duration::from_secs(5), "the refusal's access line", || {
        edge.log()
            .lines()
            .any(|l| l.contains("\"POST /clien\" 404 ") && l.contains(" refused=no_route"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_and_websocket_of_one_request_id_land_on_one_instance() {
    // Shared key, audience checks off, and tokens naming no pool endpoint: only the
    // consistent hash of asrs_request_id can keep negotiate and connect together.
    let em = emulator(vec![
        instance("a", "shared", false),
        instance("b", "shared", false),
        instance("c", "shared", false),
    ])
    .await;
    let edge = Edge::start(client_routes(signalr_pool(&em)));
    let token = token("shared", "elsewhere.example", "chat");
    let client = http();
    let base = edge.url("");
    let ws_base = edge.ws_base();
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    let ids: Vec<String> = (0..200).map(|i| format!("ed8N{i:06}AA%3D")).collect();
    for chunk in ids.chunks(20) {
        let mut tasks = Vec::new();
        for id in chunk {
            let (client, base, ws_base, token, id) = (
                client.clone(),
                base.clone(),
                ws_base.clone(),
                token.clone(),
                id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let q = format!("hub=chat&asrs.op=%2Fchat&negotiateVersion=1&asrs_request_id={id}");
                let n = negotiate(&client, &base, &q, &token).await;
                assert_eq!(n.status, 200, "negotiate of {id}");
                let ct = n.connection_token.expect("connectionToken");
                let who = ws_whoami(&ws_base, &format!("{q}&id={ct}"), &token)
                    .await
                    .unwrap_or_else(|e| panic!("connect of {id}: {e}"));
                assert_eq!(who["instance"], n.instance.as_str(), "{id}");
                assert_eq!(who["requestIdAtNegotiate"], who["requestIdAtConnect"]);
                assert_eq!(who["host"], format!("{}.service.signalr.net", n.instance));
                n.instance
            }));
        }
        for t in tasks {
            *per_instance.entry(t.await.unwrap()).or_default() += 1;
        }
    }
    assert_eq!(per_instance.len(), 3, "{per_instance:?}");
    assert!(per_instance.values().all(|&n| n > 30), "{per_instance:?}");
    // A second edge process (another replica) agrees on every key.
    let edge2 = Edge::start(client_routes(signalr_pool(&em)));
    for id in ids.iter().take(50) {
        let q = format!("hub=chat&asrs_request_id={id}");
        let a = negotiate(&client, &base, &q, &token).await.instance;
        let b = negotiate(&client, &edge2.url(""), &q, &token)
            .await
            .instance;
        assert_eq!(a, b, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_audience_picks_the_instance_it_names() {
    let em = emulator(vec![
        instance("a", "ka", true),
        instance("b", "kb", true),
        instance("c", "kc", true),
    ])
    .await;
    let edge = Edge::start(client_routes(signalr_pool(&em)));
    let token = token("kb", "b.service.signalr.net", "chat");
    for i in 0..30 {
        let q = format!("hub=chat&negotiateVersion=1&asrs_request_id=id{i}");
        let n = negotiate(&http(), &edge.url(""), &q, &token).await;
        assert_eq!((n.status, n.instance.as_str()), (200, "b"));
    }
    // From the query too (SSE and browser WebSockets carry it there).
    let r = http()
        .post(edge.url(&format!("/client/negotiate?hub=chat&access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-emulator-instance"], "b");
    assert!(edge.log().contains("rule=audience"));
    assert!(!edge.log().contains(&token), "the token must not be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_instance_is_avoided_and_all_down_gives_503() {
    let em = emulator(vec![instance("a", "s", false), instance("b", "s", false)]).await;
    let hc = HealthCheck::new()
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_secs(1))
        .unhealthy_threshold(1)
        .healthy_threshold(1);
    let edge = Edge::start(client_routes(signalr_pool(&em).health_check(hc)));
    let token = token("s", "x.example", "chat");
    let client = http();
    em.instances[0].state.set_healthy(false);
    // Poll until the edge has seen the probe fail, then every id must avoid "a".
    let landed = |n: usize| {
        let (client, base, token) = (client.clone(), edge.url(""), token.clone());
        async move {
            let mut seen = Vec::new();
            for i in 0..n {
                seen.push(
                    negotiate(
                        &client,
                        &base,
                        &format!("hub=chat&asrs_request_id=r{i}"),
                        &token,
                    )
                    .await,
                );
            }
            seen
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = landed(40).await;
        if seen.iter().all(|n| n.instance == "b" && n.status == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance a still receives traffic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    em.instances[1].state.set_healthy(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = client
            .post(edge.url("/client/negotiate?hub=chat&asrs_request_id=z"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            assert!(r
                .text()
                .await
                .unwrap()
                .contains("no healthy endpoint in pool signalr"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Recovery: "a" comes back and takes its keys again.
    em.instances[0].state.set_healthy(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while landed(1).await[0].status != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_sni_are_rewritten_over_verified_tls() {
    let dir = TempDir::new("pki");
    let host = "a.service.signalr.net";
    let pki = test_pki(&dir.0, host);
    let mut inst = instance("a", "k", true);
    inst.tls = Some(asrs_emulator::TlsFiles {
        cert: pki.cert,
        key: pki.key,
    });
    let em = emulator(vec![inst]).await;
    let pool = |ca: &std::path::Path| {
        client_routes(
            Pool::signalr("signalr")
                .endpoint(
                    Endpoint::connection_string(format!(
                        "Endpoint=https://{host};AccessKey=k;Version=1.0;"
                    ))
                    .address(addr_of(&em, 0)),
                )
                .ca_file(ca),
        )
    };
    let edge = Edge::start(pool(&pki.ca));
    let token = token("k", host, "chat");
    let q = "hub=chat&negotiateVersion=1&asrs_request_id=tls1";
    let n = negotiate(&http(), &edge.url(""), q, &token).await;
    assert_eq!((n.status, n.instance.as_str()), (200, "a"));
    let who = ws_whoami(
        &edge.ws_base(),
        &format!("{q}&id={}", n.connection_token.unwrap()),
        &token,
    )
    .await
    .unwrap();
    assert_eq!(who["host"], host);
    assert_eq!(who["sni"], host);
    // A CA that did not sign the instance's certificate: the edge must refuse to talk to it.
    let other = TempDir::new("pki2");
    let wrong_ca = test_pki(&other.0, host).ca;
    let edge2 = Edge::start(pool(&wrong_ca));
    let n = negotiate(&http(), &edge2.url(""), q, &token).await;
    // The instance cannot be reached: 503 naming it, as for any failed connect (README:
    // Retriable answers).
    assert_eq!(n.status, 503);
    assert!(
        edge2.log().contains("TLSHandshakeFailure"),
        "{}",
        edge2.log()
    );
    assert_eq!(em.instances[0].state.negotiations(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_bytes_arrive_before_the_response_ends() {
    let em = emulator(vec![instance("a", "k", true)]).await;
    let edge = Edge::start(client_routes(signalr_pool(&em)));
    let token = token("k", "a.service.signalr.net", "chat");
    let q = "hub=chat&negotiateVersion=1&asrs_request_id=sse1";
    let ct = negotiate(&http(), &edge.url(""), q, &token)
        .await
        .connection_token
        .unwrap();
    let r = http()
        .get(edge.url(&format!("/client/?{q}&id={ct}&access_token={token}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    // The emulator never ends this response; the first bytes must still arrive at once.
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("no SSE bytes")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b":\r\n");
    // Send the handshake (a POST on the same connection id) and see the answer stream back.
    let r = http()
        .post(edge.url(&format!("/client/?{q}&id={ct}")))
        .bearer_auth(&token)
        .body("{\"protocol\":\"json\",\"version\":1}\u{1e}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let next = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("no handshake answer")
        .unwrap()
        .unwrap();
    assert_eq!(&next[..], b"data: {}\x1e\r\n\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_survive_a_fast_101_burst() {
    // pingora#946: a 101 that arrives before the request's (empty) body is finished.
    // The emulator answers the upgrade at once; many concurrent upgrades must all work.
    let em = emulator(vec![instance("a", "k", false)]).await;
    let edge = Edge::start(client_routes(signalr_pool(&em)));
    let token = token("k", "a.service.signalr.net", "chat");
    let ws_base = edge.ws_base();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (ws_base, token) = (ws_base.clone(), token.clone());
        // No id: the emulator creates the connection on the upgrade itself.
        tasks.push(tokio::spawn(async move {
            ws_whoami(&ws_base, &format!("hub=chat&asrs_request_id=f{i}"), &token).await
        }));
    }
    for t in tasks {
        let who = t.await.unwrap().unwrap();
        assert_eq!(who["instance"], "a");
    }
}

#[test]
fn check_flag_validates_files_like_nginx_t() {
    let dir = TempDir::new("check");
    let good = dir.0.join("good.yaml");
    std::fs::write(&good, "listeners: [{address: 127.0.0.1:1}]\npools:\n  app:\n    kind: app\n    endpoints: [{url: http://127.0.0.1:2}]\nroutes: [{path: /, pool: app}]\n").unwrap();
    let out = std::process::Command::new(edge_binary())
        .args(["-t", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.0.join("bad.yaml");
    std::fs::write(&bad, "listeners: [{address: 127.0.0.1:1}]\npools:\n  app:\n    kind: app\n    endpoints: [{url: http://127.0.0.1:2}]\nroutes: [{path: /, pool: apps}]\n").unwrap();
    let out = std::process::Command::new(edge_binary())
        .args(["-t", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: routes[0].pool: unknown pool \"apps\"",
            bad.display()
        )),
        "{err}"
    );
    // The shipped example must stay valid.
    let out = std::process::Command::new(edge_binary())
        .args([
            "-t",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/conf/signalr-edge.yaml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_trust_only_configured_proxies() {
    use asrs_emulator::{Emulator, EmulatorConfig};
    let em = Emulator::start(&EmulatorConfig {
        instances: vec![instance("a", "k", true)],
        apps: vec![app_server("http://edge")],
    })
    .await
    .unwrap();
    let body = |trusted: &str| {
        EdgeConfig::new()
            .trusted_proxy(trusted)
            .pool(Pool::app("app").endpoint(Endpoint::url(format!("http://{}", em.apps[0]))))
            .route(Route::new("/", "app"))
    };
    let headers = |edge: &Edge| {
        let url = edge.url("/_emulator/headers");
        async move {
            let r = http()
                .get(url)
                .header("x-forwarded-for", "1.2.3.4")
                .header("x-forwarded-proto", "https")
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let untrusted = Edge::start(body("10.0.0.0/8"));
    let h = headers(&untrusted).await;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["x-forwarded-host"],
        format!("127.0.0.1:{}", untrusted.port)
    );
    assert_eq!(
        h["host"],
        format!("127.0.0.1:{}", untrusted.port),
        "app pools keep the client's Host"
    );
    let trusted = Edge::start(body("127.0.0.1/32"));
    let h = headers(&trusted).await;
    assert_eq!(h["x-forwarded-for"], "1.2.3.4, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
}
