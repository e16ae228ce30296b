//! End-to-end tests: the official `@microsoft/signalr` client (Node 20, installed by `./ci.sh`
//! from `tests/e2e/package-lock.json`) through `signalr-edge` to emulated ASRS instances, over
//! WebSockets, Server-Sent Events and long polling, with the app server's negotiate redirect.
//! The edge verifies every client token (`tokens: { verify: true }`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use asrs_emulator::{AppConfig, Emulator, EmulatorConfig, InstanceConfig};
use testkit::*;

fn e2e_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e"))
}

/// Instances + an app server behind a fresh edge that probes health every 100 ms.
struct Setup {
    em: Emulator,
    edge: Edge,
    base: String,
}

async fn setup(instances: Vec<InstanceConfig>, app: impl Fn(String) -> AppConfig) -> Setup {
    setup_under(instances, app, "").await
}

/// As `setup`, with the SignalR route under `prefix` (`/signalr`), stripped before forwarding:
/// the app server's ClientEndpoint is the edge's URL with that path.
async fn setup_under(
    instances: Vec<InstanceConfig>,
    app: impl Fn(String) -> AppConfig,
    prefix: &str,
) -> Setup {
    assert!(
        e2e_dir().join("node_modules/@microsoft/signalr").is_dir(),
        "the official client is not installed: run ./ci.sh (or `npm ci` in tests/e2e)"
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let app = app(format!("{base}{prefix}"));
    // The edge verifies every client's token, as the example config does; tokens the app signs
    // for a shared audience (no pool endpoint) verify with the pool's (shared) key.
    let tokens = app
        .audience_host
        .iter()
        .fold(Tokens::verify(), |t, host| t.audience(host));
    let em = Emulator::start(&EmulatorConfig {
        instances,
        apps: vec![app],
    })
    .await
    .unwrap();
    let hc = HealthCheck::new()
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_secs(1))
        .unhealthy_threshold(1)
        .healthy_threshold(1);
    let config = EdgeConfig::new()
        .pool(signalr_pool(&em).health_check(hc).tokens(tokens))
        .pool(Pool::app("app").endpoint(Endpoint::url(format!("http://{}", em.apps[0]))))
        .route(signalr_route(prefix))
        .route(Route::new("/", "app"));
    let edge = Edge::start_on(port, config);
    // Verification is on: a forged token gets its 401 from the edge itself. (Its access line
    // is awaited, so that it cannot land among the lines of the clients that follow.)
    let r = http()
        .post(format!("{base}{prefix}/client/negotiate?hub=chat"))
        .bearer_auth("forged.token.x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.text().await.unwrap(),
        "signalr-edge: invalid access token\n"
    );
    wait_for(
        Duration::from_secs(5),
        "the forged token's access line",
        || edge.log().contains("refused=invalid_token").then_some(()),
    )
    .await;
    Setup { em, edge, base }
}

/// `<prefix>/client/` to the SignalR pool, the prefix stripped before forwarding.
fn signalr_route(prefix: &str) -> Route {
    let route = Route::new(&format!("{prefix}/client/"), "signalr");
    if prefix.is_empty() {
        route
    } else {
        route.strip_prefix(prefix)
    }
}

/// Runs `node <script> <args>` in tests/e2e; returns stdout, failing with both outputs and the
/// edge log's tail when the script fails.
async fn node(edge: &Edge, args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(e2e_dir())
            .args(&args)
            .output()
    })
    .await
    .unwrap()
    .expect("node is needed for the end-to-end tests");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "node failed:\n{stdout}\n{}\nlog tail:\n{}",
        String::from_utf8_lossy(&out.stderr),
        edge.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    stdout
}

/// Runs `clients` official clients per transport; checks they all passed and which rule chose.
async fn run_clients(s: &Setup, clients: usize, mode: &str, rule: &str) -> String {
    let args = ["transports.mjs", &s.base, &clients.to_string(), mode];
    let log_before = s.edge.log().len();
    let stdout = node(&s.edge, args.iter().map(|a| a.to_string()).collect()).await;
    // The rule under test chose every negotiate of these clients, and every later request of
    // their connections too, or (after a hashing rule) the pin their negotiate left.
    let log = s.edge.log().split_off(log_before);
    let signalr_lines: Vec<&str> = log.lines().filter(|l| l.contains("pool=signalr")).collect();
    assert!(!signalr_lines.is_empty());
    for l in &signalr_lines {
        let chosen = l.contains(&format!("rule={rule} "));
        let pinned = rule != "audience" && l.contains("rule=pinned ") && !l.contains("/negotiate");
        assert!(chosen || pinned, "expected rule={rule}: {l}");
    }
    // Every transport ran every client.
    for t in ["WebSockets", "ServerSentEvents", "LongPolling"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("\"transport\":\"{t}\"")))
            .unwrap_or_default();
        assert!(line.contains(&format!("\"ok\":{clients}")), "{t}: {line}");
    }
    stdout
}

fn app(omit_request_id: bool, audience_host: Option<&str>) -> impl Fn(String) -> AppConfig {
    let audience_host = audience_host.map(str::to_string);
    move |edge| AppConfig {
        omit_request_id,
        audience_host: audience_host.clone(),
        ..app_server(&edge)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_over_three_transports_with_distinct_keys() {
    // 100 clients per transport over 3 instances whose keys differ: a token is valid on one
    // instance only, and every whoami shows one instance and one request id.
    let instances = vec![
        instance("a", "key-a", true),
        instance("b", "key-b", true),
        instance("c", "key-c", true),
    ];
    let s = setup(instances, app(false, None)).await;
    run_clients(&s, 100, "", "audience").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_through_a_reverse_proxy_url_with_a_path() {
    // The SDK's ClientEndpoint is `<edge>/signalr`: clients negotiate at
    // `/signalr/client/negotiate` and connect at `/signalr/client/`, which the instances only
    // know as `/client/...` (without strip_prefix they answer 404). Tokens name the instance's
    // `/client/?hub=` and are verified by the edge as without the prefix.
    let instances = vec![
        instance("a", "key-a", true),
        instance("b", "key-b", true),
        instance("c", "key-c", true),
    ];
    let s = setup_under(instances, app(false, None), "/signalr").await;
    let log_before = s.edge.log().len();
    let stdout = run_clients(&s, 30, "", "audience").await;
    let log = s.edge.log().split_off(log_before);
    // Every SignalR request of the clients came in under the prefix.
    let signalr: Vec<&str> = log.lines().filter(|l| l.contains("pool=signalr")).collect();
    assert!(
        signalr.iter().all(|l| l.contains(" /signalr/client/")),
        "{signalr:?}"
    );
    for request in [
        "\"GET /signalr/client/?",
        "\"POST /signalr/client/negotiate?",
    ] {
        assert!(log.contains(request), "no {request} in the access log");
    }
    // The instances negotiated all 90 clients, and every instance some of them.
    let negotiated: Vec<u64> =
        s.em.instances
            .iter()
            .map(|i| i.state.negotiations())
            .collect();
    assert!(
        negotiated.iter().sum::<u64>() >= 90,
        "{negotiated:?}: {stdout}"
    );
    assert!(negotiated.iter().all(|n| *n > 0), "{negotiated:?}");
}

/// Three instances that accept one key and any audience (like geo-replicas of one resource).
fn shared_key_instances() -> Vec<InstanceConfig> {
    ["a", "b", "c"]
        .iter()
        .map(|n| instance(n, "shared", false))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_sticks_by_request_id_when_tokens_name_no_endpoint() {
    let s = setup(
        shared_key_instances(),
        app(false, Some("shared.service.signalr.net")),
    )
    .await;
    run_clients(&s, 30, "", "request_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_sticks_by_fallbacks_without_request_id() {
    let s = setup(
        shared_key_instances(),
        app(true, Some("shared.service.signalr.net")),
    )
    .await;
    run_clients(&s, 30, "no-request-id", "signature").await;
}

/// Polls until a token for instance b does (or no longer does) reach b through the edge, i.e.
/// until the edge's health check has seen b's switch.
async fn wait_for_b(s: &Setup, reaches: bool) {
    let (client, token_b) = (http(), token("key-b", "b.service.signalr.net", "chat"));
    let probe_lines = || s.edge.log().matches("asrs_request_id=x\"").count();
    let logged_before = probe_lines();
    let mut probes = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        probes += 1;
        let instance = negotiate(&client, &s.base, "hub=chat&asrs_request_id=x", &token_b)
            .await
            .instance;
        if (instance == "b") == reaches {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b {} traffic after 10 s",
            if reaches { "gets no" } else { "still gets" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The edge writes a request's access line after its answer has left: wait for the probes'
    // lines, so that none lands among the lines of the clients that follow.
    wait_for(Duration::from_secs(5), "the probes' access lines", || {
        (probe_lines() >= logged_before + probes).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_instance_gets_no_new_official_clients() {
    let instances = vec![
        instance("a", "key-a", true),
        instance("b", "key-b", true),
        instance("c", "key-c", true),
    ];
    let s = setup(instances, app(false, None)).await;
    let b = &s.em.instances[1];
    b.state.set_healthy(false);
    wait_for_b(&s, false).await;
    let before = b.state.negotiations();
    let stdout = run_clients(&s, 30, "", "audience").await;
    assert_eq!(b.state.negotiations(), before, "b negotiated new clients");
    assert!(!stdout.contains("\"b\":"), "a client landed on b: {stdout}");
    // Back up: b takes new clients again.
    b.state.set_healthy(true);
    wait_for_b(&s, true).await;
    let stdout = run_clients(&s, 30, "", "audience").await;
    assert!(stdout.contains("\"b\":"), "no client landed on b: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_chats_through_the_edge_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let port = free_port();
    let mut demo = Edge::demo(port);
    // Ready when the page and the official client script both load through the edge.
    let client = http();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ok = async {
            for path in [
                "/",
                "/signalr.min.js",
                "/signalr/",
                "/signalr/signalr.min.js",
            ] {
                let r = client.get(demo.url(path)).send().await.ok()?;
                r.status().is_success().then_some(())?;
            }
            Some(())
        };
        if ok.await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "demo not ready: {}",
            demo.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The page at `/`, and at `/signalr/` from the app server whose ClientEndpoint has that
    // path: there the SignalR traffic goes through /signalr/client/ (prefix stripped).
    for page in ["/", "/signalr/"] {
        let args = vec!["browser.mjs".into(), demo.url(page), browser.to_string()];
        let stdout = node(&demo, args).await;
        assert_eq!(stdout.matches("\"ok\":true").count(), 3, "{page}: {stdout}");
    }
    assert!(
        demo.log().contains("\"GET /signalr/client/?"),
        "no SignalR traffic under /signalr: {}",
        demo.log()
    );
    // Ctrl-C stops the demo cleanly.
    assert!(demo.interrupt().success(), "{}", demo.log());
}
