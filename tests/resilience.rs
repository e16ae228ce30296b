//! Resilience: instances that die or stop answering behind fault gates (`testkit::fault`), with
//! the official client (`tests/e2e/*.mjs`, Node 20) and raw requests. A token for a dead
//! instance gets the edge's `503` with `Retry-After`, never another instance's `401`; passive
//! health ejects an instance that refuses connects or never answers before any probe sees it;
//! an app pool sends a request whose connect failed to its next server.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use asrs_emulator::{AppConfig, Emulator, EmulatorConfig, InstanceConfig};
use testkit::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn e2e_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e"))
}

/// Instances (each behind its gate), app servers, and the edge in front of them all.
struct Setup {
    em: Emulator,
    gates: Vec<FaultGate>,
    app_gates: Vec<FaultGate>,
    edge: Edge,
    base: String,
    admin: String,
}

/// A SignalR pool over `em`'s instances, each reached through its gate under its own host name.
fn gated_pool(em: &Emulator, gates: &[FaultGate]) -> Pool {
    em.instances
        .iter()
        .zip(gates)
        .fold(Pool::signalr("signalr"), |p, (i, g)| {
            p.endpoint(endpoint_of(i).address(g.addr))
        })
}

async fn setup(
    instances: Vec<InstanceConfig>,
    apps: usize,
    pool: impl FnOnce(Pool) -> Pool,
    app_pool: impl FnOnce(Pool) -> Pool,
) -> Setup {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let em = Emulator::start(&EmulatorConfig {
        instances,
        apps: (0..apps)
            .map(|_| app_server(&base))
            .collect::<Vec<AppConfig>>(),
    })
    .await
    .unwrap();
    let mut gates = Vec::new();
    for i in &em.instances {
        gates.push(FaultGate::start(i.addr).await);
    }
    let mut app_gates = Vec::new();
    for a in &em.apps {
        app_gates.push(FaultGate::start(*a).await);
    }
    let admin = format!("127.0.0.1:{}", free_port());
    let apps = app_gates.iter().fold(Pool::app("app"), |p, g| {
        p.endpoint(Endpoint::url(format!("http://{}", g.addr)))
    });
    let config = EdgeConfig::new()
        .pool(pool(gated_pool(&em, &gates)))
        .pool(app_pool(apps))
        .route(Route::new("/client/", "signalr"))
        .route(Route::new("/", "app"))
        .admin(&admin);
    let edge = Edge::start_on(port, config);
    Setup {
        em,
        gates,
        app_gates,
        edge,
        base,
        admin: format!("http://{admin}"),
    }
}

fn distinct_keys() -> Vec<InstanceConfig> {
    vec![
        instance("a", "key-a", true),
        instance("b", "key-b", true),
        instance("c", "key-c", true),
    ]
}

/// `/status` of the edge.
async fn status(s: &Setup) -> serde_json::Value {
    get_json(&format!("{}/status", s.admin)).await
}

/// The `/status` entry of endpoint `name` in pool `pool`.
fn endpoint_status<'a>(st: &'a serde_json::Value, pool: &str, name: &str) -> &'a serde_json::Value {
    st["endpoints"][pool]
        .as_array()
        .and_then(|eps| eps.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no endpoint {name} in {st}"))
}

/// A raw request with a token for instance `b`: status, `Retry-After` and body.
async fn with_token_for_b(
    s: &Setup,
    method: &str,
    path_and_query: &str,
) -> (u16, Option<u64>, String) {
    let token = token("key-b", "b.service.signalr.net", "chat");
    let r = http()
        .request(
            method.parse().unwrap(),
            format!("{}{path_and_query}", s.base),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = r.text().await.unwrap();
    assert!(!body.contains(&token), "the body shows the token");
    (status, retry, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_move_to_healthy_instances_and_tokens_for_the_dead_one_get_503() {
    assert!(
        e2e_dir().join("node_modules/@microsoft/signalr").is_dir(),
        "the official client is not installed: run ./ci.sh (or `npm ci` in tests/e2e)"
    );
    let hc = HealthCheck::new()
        .interval(Duration::from_secs(1))
        .timeout(Duration::from_secs(1))
        .unhealthy_threshold(1)
        .healthy_threshold(1);
    let s = setup(
        distinct_keys(),
        1,
        |p| p.health_check(hc).tokens(Tokens::verify()),
        |p| p,
    )
    .await;
    // 10 clients per transport with automatic reconnect, spread over a, b and c.
    let per_transport = 10;
    let mut node = tokio::process::Command::new("node")
        .current_dir(e2e_dir())
        .args(["reconnect.mjs", &s.base, &per_transport.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is needed for the end-to-end tests");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let started = next_line(&mut lines).await.expect("the clients started");
    println!("{started}");
    let on_b: serde_json::Value = serde_json::from_str(&started).unwrap();
    assert!(on_b["instances"]["b"].as_u64() > Some(0), "{started}");

    // b dies: its process is gone (connects refused, connections reset) and the app server's
    // SDK sees it offline, as it would through the service's own health reporting.
    s.em.instances[1].state.set_healthy(false);
    s.gates[1].set(Fault::Refuse);
    let mut stdin = node.stdin.take().unwrap();
    stdin.write_all(b"b\n").await.unwrap();
    let mut report = Vec::new();
    while let Some(line) = next_line(&mut lines).await {
        println!("{line}");
        report.push(line);
    }
    let exit = node.wait().await.unwrap();
    assert!(
        exit.success(),
        "clients failed: {report:?}\n{}",
        tail(&s.edge)
    );
    for t in ["WebSockets", "ServerSentEvents", "LongPolling"] {
        let line = report
            .iter()
            .find(|l| l.contains(&format!("\"{t}\"")))
            .unwrap();
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["ok"], per_transport, "{line}");
        assert_eq!(
            r["reconnected"], r["before"]["b"],
            "each client on b reconnected: {line}"
        );
        assert!(r["after"]["b"].is_null(), "{line}");
    }

    // New clients start through the healthy instances.
    let out = tokio::process::Command::new("node")
        .current_dir(e2e_dir())
        .args(["transports.mjs", &s.base, "10"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{}", tail(&s.edge));
    assert!(!stdout.contains("\"b\":"), "a client landed on b: {stdout}");

    // A token for b: 503 with Retry-After naming b, for a negotiate and for a request of an
    // existing connection alike; never 401 from another instance, never a bare 502.
    for (method, target) in [
        ("POST", "/client/negotiate?hub=chat&asrs_request_id=x"),
        ("GET", "/client/?hub=chat&id=gone"),
        ("POST", "/client/?hub=chat&id=gone"),
    ] {
        let (status, retry, body) = with_token_for_b(&s, method, target).await;
        assert_eq!(status, 503, "{method} {target}: {body}");
        assert!(
            retry.is_some_and(|r| r >= 1),
            "{method} {target}: {retry:?}"
        );
        assert_eq!(
            body,
            "signalr-edge: instance b.service.signalr.net is unavailable; negotiate again\n"
        );
    }
    let st = status(&s).await;
    assert!(
        st["refusals"]["instance_unavailable"].as_u64() >= Some(3),
        "{st}"
    );
    let b = endpoint_status(&st, "signalr", "b.service.signalr.net");
    assert_eq!(b["healthy"], false, "{b}");
    wait_for(Duration::from_secs(5), "the access lines", || {
        (s.edge.log().matches("refused=instance_unavailable").count() >= 3).then_some(())
    })
    .await;
    assert!(
        !s.edge.log().contains("\" 401 "),
        "a 401: {}",
        tail(&s.edge)
    );

    // b back: tokens for it reach it again.
    s.gates[1].set(Fault::Pass);
    s.em.instances[1].state.set_healthy(true);
    let client = http();
    let token_b = token("key-b", "b.service.signalr.net", "chat");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = negotiate(&client, &s.base, "hub=chat&asrs_request_id=y", &token_b).await;
        if n.status == 200 {
            assert_eq!(n.instance, "b");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b not back: {}",
            n.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next line node prints, within 60 s.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("node answers within 60 s")
        .unwrap()
}

/// The last lines of the edge's log.
fn tail(edge: &Edge) -> String {
    let log = edge.log();
    let lines: Vec<&str> = log.lines().rev().take(30).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Three replicas that accept one key and any audience, chosen by request id; no probe, so
/// that only passive health can see a fault.
fn replicas() -> Vec<InstanceConfig> {
    ["a", "b", "c"]
        .iter()
        .map(|n| instance(n, "shared", false))
        .collect()
}

/// Negotiates with request ids `from..to` and a token naming no endpoint: (status, instance)
/// of each, with `Retry-After` when there is one.
async fn negotiates(s: &Setup, ids: std::ops::Range<usize>) -> Vec<(u16, String, Option<String>)> {
    let token = token("shared", "shared.service.signalr.net", "chat");
    let client = http();
    let mut out = Vec::new();
    for i in ids {
        let r = client
            .post(format!(
                "{}/client/negotiate?hub=chat&asrs_request_id=k{i}",
                s.base
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let instance = r
            .headers()
            .get("x-emulator-instance")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        out.push((r.status().as_u16(), instance, retry));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_a_refusing_and_a_silent_instance_before_any_probe() {
    let ejection = Duration::from_secs(2);
    let s = setup(
        replicas(),
        1,
        |p| {
            p.affinity(&["request_id"])
                .passive_health(2, ejection)
                .timeouts(Timeouts::new().read(Duration::from_millis(500)))
        },
        |p| p,
    )
    .await;
    // All three serve.
    let all = negotiates(&s, 0..60).await;
    assert!(all.iter().all(|(st, _, _)| *st == 200));
    for name in ["a", "b", "c"] {
        assert!(all.iter().any(|(_, i, _)| i == name), "{name} got nothing");
    }
    // b dies, c accepts and never answers.
    s.gates[1].set(Fault::Refuse);
    s.gates[2].set(Fault::Blackhole);
    let started = tokio::time::Instant::now();
    let during = negotiates(&s, 0..60).await;
    let elapsed = started.elapsed();
    let failed: Vec<_> = during.iter().filter(|(st, _, _)| *st != 200).collect();
    println!(
        "60 negotiates, b refusing and c silent: {} failed, in {elapsed:?}",
        failed.len()
    );
    // Two failures each eject them; each failure is a 503 with Retry-After, not a 502.
    assert_eq!(failed.len(), 4, "{during:?}");
    assert!(
        failed.iter().all(|(st, _, r)| *st == 503 && r.is_some()),
        "{failed:?}"
    );
    assert!(during.iter().all(|(st, i, _)| *st != 200 || i == "a"));
    let st = status(&s).await;
    for name in ["b.service.signalr.net", "c.service.signalr.net"] {
        let e = endpoint_status(&st, "signalr", name);
        assert_eq!(
            (e["healthy"].as_bool(), e["ejections"].as_u64()),
            (Some(false), Some(1)),
            "{e}"
        );
        assert!(e["ejected_for_seconds"].as_f64() > Some(0.0), "{e}");
        assert_eq!(e["probe_healthy"], true, "{e}");
    }
    let log = s.edge.log();
    assert!(
        log.contains("b.service.signalr.net") && log.contains("ejected for 2s"),
        "{log}"
    );
    // Fixed, they come back after the ejection time.
    s.gates[1].set(Fault::Pass);
    s.gates[2].set(Fault::Pass);
    tokio::time::sleep(ejection).await;
    let after = negotiates(&s, 0..60).await;
    assert!(after.iter().all(|(st, _, _)| *st == 200), "{after:?}");
    for name in ["b", "c"] {
        assert!(
            after.iter().any(|(_, i, _)| i == name),
            "{name} is not back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_pool_sends_a_request_whose_connect_failed_to_the_next_server() {
    let s = setup(
        replicas(),
        3,
        |p| p,
        // Passive health off: every request meets the dead server in turn.
        |p| p.passive_health(0, Duration::from_secs(1)),
    )
    .await;
    s.app_gates[1].set(Fault::Refuse);
    let client = http();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = client
            .post(format!("{}/chat/negotiate", s.base))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    // Every request answered by a live server; the dead one was tried a third of the time.
    assert!(statuses.iter().all(|&st| st == 200), "{statuses:?}");
    assert_eq!(s.app_gates[1].accepted(), 0);
    let refused = s.edge.log().matches("failed: ConnectRefused").count();
    assert!(
        refused >= 9,
        "the dead server was tried {refused} times\n{}",
        tail(&s.edge)
    );
    // All dead: the edge answers 502 after trying each once (nothing hangs).
    for g in &s.app_gates {
        g.set(Fault::Refuse);
    }
    let r = client
        .post(format!("{}/chat/negotiate", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
}
