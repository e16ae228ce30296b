//! The admin listener's live status page (`GET /`) in headless Chromium (`tests/e2e/status_page.mjs`
//! through Node and playwright-core): it renders the pools and endpoints, its numbers follow
//! the traffic, and a health change shows within about one refresh.
//!
//! `STATUS_PAGE_SCREENSHOT=<path>` also saves the screenshot there (the README's comes from it).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use testkit::*;

fn e2e_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e"))
}

/// The page in a browser, driven line by line.
struct Browser {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    async fn open(url: &str, chromium: &str) -> Browser {
        let mut child = Command::new("node")
            .current_dir(e2e_dir())
            .args(["status_page.mjs", url, chromium])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is needed for the browser tests");
        Browser {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
        }
    }

    async fn ask(&mut self, cmd: &str) -> Value {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        let line = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
            .await
            .expect("the page answers within 30 s")
            .unwrap()
            .expect("the browser script ended");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("failed").is_none(), "{v}");
        v
    }

    /// Asks for snapshots until `ok` holds for one (at most `limit`); returns it and the wait.
    async fn until(
        &mut self,
        limit: Duration,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let started = Instant::now();
        loop {
            let snap = self.ask("snap").await;
            assert_eq!(snap["pageErrors"], Value::Array(vec![]), "{snap}");
            if ok(&snap) {
                return (snap, started.elapsed());
            }
            assert!(started.elapsed() < limit, "{what}: page shows {snap}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_pools_traffic_and_health_changes() {
    let Some(chromium) = chromium() else { return };
    let em = emulator(vec![
        instance("a", "k", false),
        instance("b", "k", false),
        instance("c", "k", false),
    ])
    .await;
    let admin = free_port();
    let probe = HealthCheck::new()
        .interval(Duration::from_millis(200))
        .timeout(Duration::from_secs(1))
        .unhealthy_threshold(1)
        .healthy_threshold(1);
    let edge = Edge::start(
        EdgeConfig::new()
            .pool(signalr_pool(&em).health_check(probe))
            .route(Route::new("/client/", "signalr"))
            .admin(format!("127.0.0.1:{admin}")),
    );
    let mut page = Browser::open(&format!("http://localhost:{admin}/"), chromium).await;
    let endpoint = |n: &str| format!("signalr/{n}.service.signalr.net");

    // It renders every endpoint, healthy.
    let (snap, _) = page
        .until(Duration::from_secs(20), "three healthy endpoints", |s| {
            s["endpoints"]
                .as_object()
                .is_some_and(|e| e.len() == 3 && e.values().all(|v| v["health"] == "healthy"))
        })
        .await;
    assert_eq!(snap["phase"], "serving");
    assert_eq!(snap["error"], "");

    // Its numbers follow the traffic: 20 negotiates for a (its token's audience), 5 requests
    // with no route.
    let client = http();
    let t = token("k", "a.service.signalr.net", "chat");
    for i in 0..20 {
        let q = format!("hub=chat&asrs_request_id=p{i}");
        assert_eq!(negotiate(&client, &edge.url(""), &q, &t).await.status, 200);
    }
    for _ in 0..5 {
        let r = client.get(edge.url("/nowhere")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let a = endpoint("a");
    let (_, took) = page
        .until(Duration::from_secs(10), "the traffic", |s| {
            s["endpoints"][&a]["requests"].as_u64() >= Some(20)
                && s["refusals"]["no_route"].as_u64() >= Some(5)
        })
        .await;
    println!("status page: traffic shown after {took:?}");

    // Under a steady load with three WebSockets open, the rates and open connections show.
    let target = |id: &str| Target {
        base: edge.url(""),
        token: token("k", "c.service.signalr.net", "chat"),
        request_id: id.to_string(),
    };
    let mut sockets = Vec::new();
    for i in 0..3 {
        let (ws, on) = Client::connect(&client, &target(&format!("ws{i}")), Transport::WebSockets)
            .await
            .unwrap();
        assert_eq!(on, "c");
        sockets.push(ws);
    }
    let load = {
        let (client, base, t) = (client.clone(), edge.url(""), t.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let q = format!("hub=chat&asrs_request_id=l{i}");
                let _ = negotiate(&client, &base, &q, &t).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (_, took) = page
        .until(Duration::from_secs(10), "the load", |s| {
            s["ws"] == "3" && s["rps"].as_str().and_then(|r| r.parse::<f64>().ok()) > Some(1.0)
        })
        .await;
    println!("status page: load shown after {took:?}");

    // b goes down: the page shows it within about one refresh (1 s) after the probe (200 ms).
    em.instances[1].state.set_healthy(false);
    let b = endpoint("b");
    let (_, took) = page
        .until(Duration::from_secs(10), "b down", |s| {
            s["endpoints"][&b]["health"] == "down"
        })
        .await;
    println!("status page: b shown down after {took:?}");
    let shot = std::env::var("STATUS_PAGE_SCREENSHOT").unwrap_or_else(|_| {
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("status-page.png")
            .display()
            .to_string()
    });
    page.ask(&format!("shot {shot}")).await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    load.abort();
    drop(sockets);
    em.instances[1].state.set_healthy(true);
    page.until(Duration::from_secs(10), "b back", |s| {
        s["endpoints"][&b]["health"] == "healthy"
    })
    .await;
}
