//! `GET /metrics` after a known run: the scraped values equal the run's counts (negotiates,
//! WebSockets opened and closed, refusals, a health flip, reloads), and a reload does not reset
//! the counters of an unchanged endpoint.

use std::time::{Duration, Instant};

use asrs_emulator::Emulator;
use testkit::metrics::{scrape, Scrape};
use testkit::*;

const N_NEGOTIATES: usize = 6;
const M_WEBSOCKETS: usize = 3;
const K_NO_ROUTE: usize = 4;
/// The endpoints' names: their host names (the pool names none).
const A: &str = "a.service.signalr.net";
const B: &str = "b.service.signalr.net";

fn config(em: &Emulator) -> EdgeConfig {
    let hc = HealthCheck::new()
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_secs(1))
        .unhealthy_threshold(1)
        .healthy_threshold(1);
    EdgeConfig::new()
        .pool(signalr_pool(em).health_check(hc))
        .route(Route::new("/client/", "signalr"))
}

/// Scrapes until `check` holds (the edge counts a request after its answer has left), failing
/// after 10 s with the last scrape.
async fn eventually(site: &EdgeSite, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(&site.admin_url("")).await;
        if check(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_values_equal_a_known_run() {
    let em = emulator(vec![
        instance("a", "shared", false),
        instance("b", "shared", false),
    ])
    .await;
    let site = EdgeSite::new();
    site.write(&config(&em), 5);
    let mut p = site.spawn("edge", false);
    site.wait_ready(&mut p).await;

    let s = scrape(&site.admin_url("")).await;
    assert_eq!(s.sum("signalr_edge_config_generation", &[]), 1.0);
    assert_eq!(s.sum("signalr_edge_draining", &[]), 0.0);
    assert_eq!(s.sum("signalr_edge_build_info", &[]), 1.0);

    // Every client names instance a in its token: the audience rule sends it there.
    let token = token("shared", "a.service.signalr.net", "chat");
    let client = http();
    let ws_base = format!("ws://127.0.0.1:{}", site.port);
    for i in 0..N_NEGOTIATES {
        let q = format!("hub=chat&negotiateVersion=1&asrs_request_id=m{i}");
        let n = negotiate(&client, &site.url(""), &q, &token).await;
        assert_eq!(n.status, 200);
        if i < M_WEBSOCKETS {
            let ct = n.connection_token.unwrap();
            ws_whoami(&ws_base, &format!("{q}&id={ct}"), &token)
                .await
                .unwrap();
        }
    }
    for _ in 0..K_NO_ROUTE {
        let r = client.get(site.url("/nothing")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }

    let (n, m, k) = (N_NEGOTIATES as f64, M_WEBSOCKETS as f64, K_NO_ROUTE as f64);
    let client_a = [("route", "/client/"), ("pool", "signalr"), ("endpoint", A)];
    let s = eventually(&site, "every request counted", |s| {
        s.sum("signalr_edge_request_duration_seconds_count", &[]) == n + m + k
            && s.sum("signalr_edge_connections_open", &[]) == 0.0
    })
    .await;
    assert_eq!(s.types["signalr_edge_requests_total"], "counter");
    assert_eq!(
        s.types["signalr_edge_negotiate_duration_seconds"],
        "histogram"
    );
    let req = |extra: &[(&str, &str)]| {
        let labels: Vec<_> = client_a.iter().chain(extra).copied().collect();
        s.sum("signalr_edge_requests_total", &labels)
    };
    assert_eq!(req(&[("status_class", "2xx"), ("rule", "audience")]), n);
    assert_eq!(req(&[("status_class", "1xx"), ("rule", "audience")]), m);
    assert_eq!(
        s.sum("signalr_edge_requests_total", &[("endpoint", B)]),
        0.0
    );
    let unrouted = [
        ("route", "-"),
        ("pool", "-"),
        ("endpoint", "-"),
        ("status_class", "4xx"),
        ("rule", "-"),
    ];
    assert_eq!(s.sum("signalr_edge_requests_total", &unrouted), k);
    assert_eq!(
        s.sum("signalr_edge_refusals_total", &[("reason", "no_route")]),
        k
    );
    let pool = [("pool", "signalr")];
    assert_eq!(
        s.sum("signalr_edge_negotiate_duration_seconds_count", &pool),
        n
    );
    assert_eq!(
        s.sum("signalr_edge_request_duration_seconds_count", &pool),
        n + m
    );
    let lifetimes = |kind| {
        s.sum(
            "signalr_edge_connection_duration_seconds_count",
            &[("pool", "signalr"), ("kind", kind)],
        )
    };
    assert_eq!((lifetimes("websocket"), lifetimes("plain")), (m, n));
    assert!(s.has("signalr_edge_connections_open"));
    let a = [("pool", "signalr"), ("endpoint", A)];
    assert_eq!(
        s.sum("signalr_edge_upstream_connections_total", &a),
        n + m,
        "one upstream connection per proxied request, new or reused"
    );
    let from_a = [("endpoint", A), ("direction", "from_upstream")];
    assert!(s.sum("signalr_edge_upstream_bytes_total", &from_a) > 0.0);
    assert_eq!(
        s.sum("signalr_edge_upstream_connect_errors_total", &[]),
        0.0
    );
    for e in [A, B] {
        assert_eq!(
            s.sum("signalr_edge_endpoint_healthy", &[("endpoint", e)]),
            1.0
        );
    }

    // A health flip of b, both ways, through its health endpoint.
    let b = &em.instances[1];
    let b_labels = |to| [("pool", "signalr"), ("endpoint", B), ("to", to)];
    b.state.set_healthy(false);
    let s = eventually(&site, "b unhealthy", |s| {
        s.sum("signalr_edge_endpoint_healthy", &[("endpoint", B)]) == 0.0
    })
    .await;
    let flips = |s: &Scrape, to| {
        s.sum(
            "signalr_edge_endpoint_health_transitions_total",
            &b_labels(to),
        )
    };
    assert_eq!((flips(&s, "unhealthy"), flips(&s, "healthy")), (1.0, 0.0));
    b.state.set_healthy(true);
    let s = eventually(&site, "b healthy again", |s| {
        s.sum("signalr_edge_endpoint_healthy", &[("endpoint", B)]) == 1.0
    })
    .await;
    assert_eq!((flips(&s, "unhealthy"), flips(&s, "healthy")), (1.0, 1.0));

    // A reload: counted, a new generation, and a's counters go on from where they were.
    let (code, report) = site.reload().await;
    assert_eq!(code, 200, "{report}");
    let q = "hub=chat&negotiateVersion=1&asrs_request_id=after";
    assert_eq!(
        negotiate(&client, &site.url(""), q, &token).await.status,
        200
    );
    let s = eventually(&site, "the negotiate after the reload", |s| {
        s.sum("signalr_edge_negotiate_duration_seconds_count", &pool) == n + 1.0
    })
    .await;
    assert_eq!(s.sum("signalr_edge_config_generation", &[]), 2.0);
    assert_eq!(
        s.sum("signalr_edge_reloads_total", &[("outcome", "ok")]),
        1.0
    );
    let labels: Vec<_> = client_a
        .iter()
        .chain(&[("status_class", "2xx")])
        .copied()
        .collect();
    assert_eq!(s.sum("signalr_edge_requests_total", &labels), n + 1.0);
    // Its health counters too.
    assert_eq!(flips(&s, "unhealthy"), 1.0);

    // A refused file: counted as refused, the generation stays.
    std::fs::write(site.conf(), "pools: [").unwrap();
    let (code, _) = site.reload().await;
    assert_eq!(code, 422);
    let s = scrape(&site.admin_url("")).await;
    assert_eq!(
        s.sum("signalr_edge_reloads_total", &[("outcome", "refused")]),
        1.0
    );
    assert_eq!(s.sum("signalr_edge_config_generation", &[]), 2.0);
    p.assert_running();
}

/// `/metrics` is behind the admin token, like `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_admin_token() {
    let em = emulator(vec![instance("a", "shared", false)]).await;
    let site = EdgeSite::new();
    let token_file = site.dir.join("admin.token");
    let admin_token = "a-long-enough-admin-token-for-metrics";
    std::fs::write(&token_file, admin_token).unwrap();
    let cfg = site.config(&config(&em), 5).admin_token_file(&token_file);
    cfg.write(&site.conf());
    let mut p = site.spawn("edge", false);
    site.wait_ready(&mut p).await;
    let url = site.admin_url("/metrics");
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .get(&url)
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = Scrape::parse(&r.text().await.unwrap());
    assert_eq!(
        s.sum(
            "signalr_edge_refusals_total",
            &[("reason", "admin_unauthorized")]
        ),
        1.0
    );
}

/// A WebSocket's bytes count each way, as the tunnel (patch 0003) moves them (patch 0015): in
/// `signalr_edge_upstream_bytes_total` of its endpoint and in its JSON access line, at least
/// the echoed payload and at most a little framing more, the same in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_bytes_count_both_ways() {
    const ECHOES: usize = 8;
    const PAYLOAD: usize = 16_000;
    let em = emulator(vec![instance("a", "shared", false)]).await;
    let site = EdgeSite::new();
    site.write(&config(&em).log_format("json"), 5);
    let mut p = site.spawn("edge", false);
    site.wait_ready(&mut p).await;
    let target = Target {
        base: site.url(""),
        token: token("shared", A, "chat"),
        request_id: "wsbytes".into(),
    };
    let (_, id) = target.negotiate(&http()).await.unwrap();
    let bytes = |s: &Scrape, direction| {
        s.sum(
            "signalr_edge_upstream_bytes_total",
            &[("endpoint", A), ("direction", direction)],
        )
    };
    let pool = [("pool", "signalr")];
    let before = eventually(&site, "the negotiate counted", |s| {
        s.sum("signalr_edge_request_duration_seconds_count", &pool) == 1.0
    })
    .await;

    let mut ws = Client::open(&http(), &target, Transport::WebSockets, &id)
        .await
        .unwrap();
    let payload = "x".repeat(PAYLOAD);
    for i in 0..ECHOES {
        let answer = ws
            .invoke(&i.to_string(), "echo", &[&payload])
            .await
            .unwrap();
        assert!(answer.contains(&payload));
    }
    ws.close().await;
    let after = eventually(&site, "the WebSocket counted", |s| {
        s.sum("signalr_edge_request_duration_seconds_count", &pool) == 2.0
    })
    .await;

    let echoed = (ECHOES * PAYLOAD) as f64;
    let framing = 4096.0;
    let up = bytes(&after, "to_upstream") - bytes(&before, "to_upstream");
    let down = bytes(&after, "from_upstream") - bytes(&before, "from_upstream");
    for (what, n) in [("to_upstream", up), ("from_upstream", down)] {
        assert!(
            (echoed..echoed + framing).contains(&n),
            "{what}: {n} bytes for {echoed} echoed"
        );
    }
    let line = wait_for(Duration::from_secs(10), "the WebSocket's JSON line", || {
        p.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["kind"] == "websocket")
    })
    .await;
    assert_eq!(
        (&line["bytes_to_upstream"], &line["bytes_from_upstream"]),
        (
            &serde_json::json!(up as u64),
            &serde_json::json!(down as u64)
        ),
        "{line}"
    );
    println!(
        "WebSocket of {ECHOES} echoes of {PAYLOAD} bytes: {up} bytes to upstream, {down} from"
    );
}
