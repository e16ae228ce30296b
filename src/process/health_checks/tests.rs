use std::path::Path;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_load_balancing::health_check::HealthCheck as Probe;
use pingora_load_balancing::Backend;

use super::*;
use crate::runtime::{Prober, Runtime};

/// Two endpoints on closed ports, probed every 10 ms and down after one failure.
const TWO: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
pools:
  p:
    kind: app
    endpoints:
      - { url: "http://a.example", address: "127.0.0.1:1" }
      - { url: "http://b.example", address: "127.0.0.1:1" }
    health_check: { type: tcp, interval: 10ms, timeout: 1s, unhealthy_threshold: 1 }
routes: [{ path: /, pool: p }]
"#;

/// A probe that counts its calls and panics in every one.
struct Panics(Arc<AtomicUsize>);

#[async_trait]
impl Probe for Panics {
    async fn check(&self, _target: &Backend) -> pingora_core::Result<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        panic!("a probe bug");
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

/// The runtime of `TWO`, whose first endpoint's probe panics (its calls counted in `calls`).
fn runtime_with_a_panicking_probe(calls: &Arc<AtomicUsize>) -> Runtime {
    let cfg = crate::config::parse_str(TWO).unwrap();
    let mut rt = Runtime::compile(&cfg.service, Path::new("t.yaml"), None).unwrap();
    let pool = Arc::get_mut(&mut rt.pools[0]).unwrap();
    let ep = Arc::get_mut(&mut pool.endpoints[0]).unwrap();
    let settings = ep.prober.as_ref().unwrap().settings.clone();
    let probe = Prober::with_probe(Box::new(Panics(calls.clone())), &settings, ep.addr);
    ep.prober = Some(Arc::new(probe));
    rt
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_panicking_probe_is_a_failed_probe_and_the_others_go_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let rt = Arc::new(runtime_with_a_panicking_probe(&calls));
    let (a, b) = (
        rt.pools[0].endpoints[0].clone(),
        rt.pools[0].endpoints[1].clone(),
    );
    let panics_before = counts().probe_panics;
    let state: SharedRuntime = Arc::new(ArcSwap::new(rt));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let checker = tokio::spawn(async move { HealthChecker::new(state).start(shutdown).await });
    eventually("both endpoints down", || !a.is_healthy() && !b.is_healthy()).await;
    // The panicking probe keeps being scheduled: the scheduler survived its panics.
    eventually("three panicking probes", || {
        calls.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(counts().probe_panics >= panics_before + 3);
    assert!(!checker.is_finished());
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), checker)
        .await
        .expect("the checker stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn probe_once_records_a_panic_as_a_failure() {
    let rt = runtime_with_a_panicking_probe(&Arc::new(AtomicUsize::new(0)));
    let ep = rt.pools[0].endpoints[1].clone();
    assert!(ep.is_healthy());
    probe_once("p".into(), ep.clone(), async { panic!("boom") }).await;
    assert!(!ep.is_healthy(), "one failure (threshold 1) takes it down");
    probe_once("p".into(), ep.clone(), async { Ok(()) }).await;
    assert!(ep.is_healthy(), "and one success brings it back");
}

#[tokio::test]
async fn a_scheduler_that_panics_or_stops_is_started_again() {
    let restarts_before = counts().scheduler_restarts;
    let started = Arc::new(AtomicUsize::new(0));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let s = started.clone();
    let supervisor = tokio::spawn(supervise(
        "test",
        shutdown,
        Duration::ZERO,
        &SCHEDULER_RESTARTS,
        move || {
            let n = s.fetch_add(1, Ordering::Relaxed);
            async move {
                match n {
                    0 => panic!("a scheduler bug"),
                    1 => {} // returns: stopped
                    _ => std::future::pending().await,
                }
            }
        },
    ));
    eventually("a third start", || started.load(Ordering::Relaxed) >= 3).await;
    assert!(counts().scheduler_restarts >= restarts_before + 2);
    assert!(!supervisor.is_finished(), "the third one runs");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), supervisor)
        .await
        .expect("the supervisor stops on shutdown")
        .unwrap();
    assert_eq!(started.load(Ordering::Relaxed), 3);
}
