//! Two edge replicas behind a real L4 balancer: HAProxy in TCP mode, round robin, checking each
//! replica's admin `/readyz`, in front of two `signalr-edge` processes with the same config,
//! three emulated instances and an app server whose ClientEndpoint is HAProxy's address. The
//! official `@microsoft/signalr` client connects over WebSockets, SSE and long polling, so the
//! negotiate and the connect of one client often land on different replicas: the replicas must
//! still send both to the same instance, without sharing any state (the token's audience, or
//! the request id's place on the ring, which every replica computes alike).
//!
//! Each test prints a `replicas report` line, which the README's figures come from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use asrs_emulator::{AppConfig, Emulator, EmulatorConfig, InstanceConfig};
use testkit::steady::{now_ms, FaultReport, Steady};
use testkit::*;

fn e2e_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e"))
}

/// The replicas' drain deadline (`server.grace_period_seconds`).
const GRACE: u64 = 3;
/// Clients per transport in the affinity tests.
const CLIENTS: usize = 20;

/// Three instances and an app server behind two edge replicas behind HAProxy.
struct Replicas {
    _em: Emulator,
    sites: Vec<EdgeSite>,
    procs: Vec<EdgeProcess>,
    lb: Haproxy,
}

/// `shared`: instances that accept one key and any audience, chosen by request id (the ring
/// must agree across replicas, and pair pins are per process); otherwise per-instance keys and
/// the audience rule (the token names the instance).
async fn setup(shared: bool) -> Replicas {
    assert!(
        e2e_dir().join("node_modules/@microsoft/signalr").is_dir(),
        "the official client is not installed: run ./ci.sh (or `npm ci` in tests/e2e)"
    );
    let lb_port = free_port();
    let base = format!("http://127.0.0.1:{lb_port}");
    let instances: Vec<InstanceConfig> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            if shared {
                instance(n, "shared", false)
            } else {
                instance(n, &format!("key-{n}"), true)
            }
        })
        .collect();
    let app = AppConfig {
        audience_host: shared.then(|| "shared.service.signalr.net".to_string()),
        ..app_server(&base)
    };
    let em = Emulator::start(&EmulatorConfig {
        instances,
        apps: vec![app],
    })
    .await
    .unwrap();
    let mut tokens = Tokens::verify();
    let mut pool = signalr_pool(&em).health_check(
        HealthCheck::new()
            .interval(Duration::from_millis(500))
            .timeout(Duration::from_millis(400)),
    );
    if shared {
        tokens = tokens.audience("shared.service.signalr.net");
        pool = pool.affinity(&["audience", "request_id"]);
    }
    let config = EdgeConfig::new()
        .pool(pool.tokens(tokens))
        .pool(Pool::app("app").endpoint(Endpoint::url(format!("http://{}", em.apps[0]))))
        .route(Route::new("/client/", "signalr"))
        .route(Route::new("/", "app"));
    let mut sites = Vec::new();
    let mut procs = Vec::new();
    for n in 1..=2 {
        let site = EdgeSite::new();
        site.write(&config, GRACE);
        let mut p = site.spawn(&format!("edge{n}"), false);
        site.wait_ready(&mut p).await;
        sites.push(site);
        procs.push(p);
    }
    let replicas: Vec<Replica> = sites
        .iter()
        .map(|s| Replica {
            port: s.port,
            admin_port: s.admin_port,
        })
        .collect();
    let lb = Haproxy::start(lb_port, &replicas).await;
    Replicas {
        _em: em,
        sites,
        procs,
        lb,
    }
}

/// What the replicas' access logs say about the SignalR clients of a run, keyed by
/// `asrs_request_id` (one per client: its negotiate and every request after it carry it).
#[derive(Debug, Default)]
struct Pairs {
    /// Clients (request ids) with a negotiate and at least one request after it.
    clients: usize,
    /// Clients with a request after the negotiate on the other replica (for WebSockets and SSE,
    /// the connect itself; for long polling, a poll or a send).
    split: usize,
    /// Clients whose requests reached more than one instance (must be none).
    disagree: Vec<String>,
    /// Clients per replica of their negotiate.
    negotiated_on: [usize; 2],
    /// Their request ids.
    ids: Vec<String>,
    /// The rules that chose the instance for requests after the negotiate, by rule and by
    /// whether they came to the negotiate's replica (`same`) or the other (`other`).
    rules: BTreeMap<String, usize>,
}

/// Reads both replicas' logs for the clients whose request ids are not in `seen`.
fn pairs(r: &Replicas, seen: &BTreeSet<String>) -> Pairs {
    // request id -> (replica, is negotiate, endpoint, rule) of each request
    let mut by_id: BTreeMap<String, Vec<(usize, bool, String, String)>> = BTreeMap::new();
    for (i, p) in r.procs.iter().enumerate() {
        for l in access_lines(&p.log()) {
            let Some(id) = l.param("asrs_request_id") else {
                continue;
            };
            if seen.contains(id) || !l.path().starts_with("/client/") {
                continue;
            }
            let negotiate = l.path() == "/client/negotiate";
            by_id.entry(id.to_string()).or_default().push((
                i,
                negotiate,
                l.endpoint.clone(),
                l.rule.clone(),
            ));
        }
    }
    let mut out = Pairs::default();
    for (id, reqs) in &by_id {
        let Some(neg_on) = reqs.iter().find(|q| q.1).map(|q| q.0) else {
            continue;
        };
        if !reqs.iter().any(|q| !q.1) {
            continue;
        }
        out.clients += 1;
        out.ids.push(id.clone());
        out.negotiated_on[neg_on] += 1;
        if reqs.iter().any(|q| !q.1 && q.0 != neg_on) {
            out.split += 1;
        }
        for q in reqs.iter().filter(|q| !q.1) {
            let side = if q.0 == neg_on { "same" } else { "other" };
            *out.rules.entry(format!("{side}:{}", q.3)).or_default() += 1;
        }
        let endpoints: BTreeSet<&String> = reqs.iter().map(|q| &q.2).collect();
        if endpoints.len() != 1 {
            out.disagree.push(format!("{id}: {reqs:?}"));
        }
    }
    out
}

/// Runs `CLIENTS` official clients over each transport through HAProxy; every one must
/// connect, echo and report (whoami) the same request id at negotiate and connect; the logs
/// must show many pairs split across the replicas, each pair on one instance.
async fn clients_meet_across_replicas(shared: bool, mode: &str) {
    let r = setup(shared).await;
    let mut seen = BTreeSet::new();
    let mut lines = Vec::new();
    let mut total_split = 0;
    for transport in ["WebSockets", "ServerSentEvents", "LongPolling"] {
        let out = Command::new("node")
            .current_dir(e2e_dir())
            .env("TRANSPORTS", transport)
            .args(["transports.mjs", &r.lb.base(), &CLIENTS.to_string()])
            .output()
            .expect("node is needed for the replica tests");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{transport}: {stdout}\n{}\nedge1: {}\nedge2: {}",
            String::from_utf8_lossy(&out.stderr),
            r.procs[0].log(),
            r.procs[1].log()
        );
        // A WebSocket's access line is written when it closes: wait for every client's.
        let p = wait_for(
            Duration::from_secs(10),
            "every client's access lines",
            || {
                let p = pairs(&r, &seen);
                (p.clients >= CLIENTS).then_some(p)
            },
        )
        .await;
        seen.extend(p.ids.iter().cloned());
        assert!(
            p.disagree.is_empty(),
            "{transport}: pairs on two instances: {:?}",
            p.disagree
        );
        total_split += p.split;
        lines.push(format!(
            "{transport} {} clients, {} split (negotiated on r1/r2: {}/{}; later requests by \
             replica and rule {:?})",
            p.clients, p.split, p.negotiated_on[0], p.negotiated_on[1], p.rules
        ));
    }
    println!(
        "replicas report: {mode}: {}; 0 failures; HAProxy connections to r1/r2: {:?}",
        lines.join("; "),
        r.lb.connections(2)
    );
    // Round robin over fresh TCP connections must have split many pairs, or this test shows
    // nothing about replicas agreeing.
    assert!(
        total_split >= CLIENTS,
        "only {total_split} of {} clients split across the replicas: {lines:?}",
        3 * CLIENTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_instance_keys_meet_across_replicas() {
    clients_meet_across_replicas(false, "audience").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_key_replicas_meet_across_replicas() {
    clients_meet_across_replicas(true, "request_id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_replica_hands_its_clients_to_the_other() {
    let mut r = setup(true).await;
    let steady = Steady::start(e2e_dir(), &r.lb.base(), 3, Duration::from_secs(90)).await;
    // Fresh connections run through both replicas for a moment first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = r.sites[0].status().await;
    let term_at = now_ms();
    let t0 = Instant::now();
    send_signal(r.procs[0].pid(), "TERM");
    r.lb.wait_state(0, "DOWN", Duration::from_secs(5)).await;
    let detected_ms = t0.elapsed().as_millis();
    let exited = r.procs[0]
        .wait_exit(Duration::from_secs(GRACE + 5))
        .await
        .duration_since(t0);
    wait_for(Duration::from_secs(40), "every client back", || {
        let ev = steady.events();
        let n = |name: &str| ev.iter().filter(|e| e["ev"] == name).count();
        assert_eq!(n("closed"), 0, "a client gave up: {ev:?}");
        (n("up") == n("down")).then_some(())
    })
    .await;
    // Fresh connections go on through the remaining replica.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = steady.stop().await;
    let settle = Duration::from_millis(exited.as_millis() as u64 + 1000);
    let f = FaultReport::of(&events, term_at, settle);
    println!(
        "replicas report: drain: r1 held {} connections at SIGTERM; HAProxy saw it down after \
         {detected_ms} ms; r1 exited after {} ms (deadline {GRACE} s); fresh {} ok, {} failed \
         ({:.2} %), last failure +{} ms, {} after r1 exited; long-lived: {} lost, {} back, \
         longest outage {} ms, {} gave up, {} of 9 connected at the end; errors {:?}",
        before["connections"],
        exited.as_millis(),
        f.fresh_ok,
        f.fresh_fail,
        f.fail_percent(),
        f.last_fail_ms,
        f.fresh_fail_late,
        f.downs,
        f.ups,
        f.longest_outage_ms,
        f.closed,
        f.connected,
        f.errors,
    );
    assert_eq!(f.closed, 0);
    assert_eq!(
        f.connected, 9,
        "every long-lived client connected at the end"
    );
    assert_eq!(
        f.fresh_fail_late, 0,
        "fresh failures after the drain: {f:?}"
    );
    assert!(
        exited <= Duration::from_secs(GRACE + 2),
        "r1 exited {exited:?} after SIGTERM (deadline {GRACE} s)"
    );
    // The survivor serves everyone, and says it is ready.
    r.procs[1].assert_running();
    assert_eq!(r.sites[1].status().await["ready"], true);
}
