//! End-to-end tests: the official `@microsoft/signalr` client (Node 20, installed by `./ci.sh`
//! from `tests/e2e/package-lock.json`) through `signalr-edge` to emulated ASRS instances, over
//! WebSockets, Server-Sent Events and long polling, with the app server's negotiate redirect.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use signalr_edge::emulator::{AppConfig, Emulator, EmulatorConfig, InstanceConfig};

fn e2e_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e"))
}

/// Starts instances + an app server behind a fresh edge, then runs the Node client script.
async fn run_clients(
    instances: Vec<InstanceConfig>,
    app: impl Fn(String) -> AppConfig,
    clients: usize,
    mode: &str,
    rule: &str,
) {
    assert!(
        e2e_dir().join("node_modules/@microsoft/signalr").is_dir(),
        "the official client is not installed: run ./ci.sh (or `npm ci` in tests/e2e)"
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let em = Emulator::start(&EmulatorConfig {
        instances,
        apps: vec![app(base.clone())],
    })
    .await
    .unwrap();
    let body = format!(
        "{}  app:\n    kind: app\n    endpoints: [{{ url: \"http://{}\" }}]\nroutes:\n  - {{ path: /client/, pool: signalr }}\n  - {{ path: /, pool: app }}\n",
        signalr_pool(&em, ""),
        em.apps[0]
    );
    let edge = Edge::start_on(port, &body);
    let out = tokio::task::spawn_blocking({
        let base = base.clone();
        let (clients, mode) = (clients.to_string(), mode.to_string());
        move || {
            Command::new("node")
                .current_dir(e2e_dir())
                .args(["transports.mjs", &base, &clients, &mode])
                .output()
        }
    })
    .await
    .unwrap()
    .expect("node is needed for the end-to-end tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "clients failed:\n{stdout}\n{}\nedge log tail:\n{}",
        String::from_utf8_lossy(&out.stderr),
        edge.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The rule under test chose every SignalR request.
    let log = edge.log();
    let signalr_lines: Vec<&str> = log.lines().filter(|l| l.contains("pool=signalr")).collect();
    assert!(!signalr_lines.is_empty());
    for l in &signalr_lines {
        assert!(
            l.contains(&format!("rule={rule} ")),
            "expected rule={rule}: {l}"
        );
    }
    // Every transport ran every client.
    for t in ["WebSockets", "ServerSentEvents", "LongPolling"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("\"transport\":\"{t}\"")))
            .unwrap_or_default();
        assert!(line.contains(&format!("\"ok\":{clients}")), "{t}: {line}");
    }
}

fn app(omit_request_id: bool, audience_host: Option<&str>) -> impl Fn(String) -> AppConfig {
    let audience_host = audience_host.map(str::to_string);
    move |edge| AppConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        client_endpoint: edge,
        instances: vec![],
        omit_request_id,
        audience_host: audience_host.clone(),
        static_dir: None,
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
    run_clients(instances, app(false, None), 100, "", "audience").await;
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
    run_clients(
        shared_key_instances(),
        app(false, Some("shared.service.signalr.net")),
        30,
        "",
        "request_id",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_sticks_by_fallbacks_without_request_id() {
    run_clients(
        shared_key_instances(),
        app(true, Some("shared.service.signalr.net")),
        30,
        "no-request-id",
        "signature",
    )
    .await;
}
