//! The background service that resolves the endpoint host names of the current generation
//! every `resolver.refresh` and, when one moved, has the reloader swap in a generation with
//! the new address (`Reloader::readdress`): new requests go there, connections open on the old
//! address live on. A failed lookup keeps the last good address. Supervised like the health
//! checks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use log::{error, info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;
use tokio::time::Instant;

use super::health_checks::{supervise, RESTART_DELAY};
use crate::config::Resolver;
use crate::metrics::families as metrics;
use crate::reload::Reloader;
use crate::runtime::resolve::{choose, Addresses, Lookup};

/// How often the task looks whether a refresh is due (`resolver.refresh` is at least this).
const TICK: Duration = Duration::from_millis(100);

/// A host that keeps failing is logged again at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

static SWAPS_FAILED: AtomicU64 = AtomicU64::new(0);
static RESTARTS: AtomicU64 = AtomicU64::new(0);

/// What the DNS refresh did since start (in `/status`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DnsCounts {
    /// Rounds that resolved every endpoint host name.
    pub refreshes: u64,
    /// Lookups that failed (the host kept its last good address).
    pub lookup_failures: u64,
    /// Endpoints moved to a new address.
    pub endpoints_moved: u64,
    /// New addresses whose generation could not be compiled (the old one kept serving).
    pub swaps_failed: u64,
    /// Times the task stopped or panicked and was started again.
    pub restarts: u64,
}

/// The counters since start.
pub fn counts() -> DnsCounts {
    DnsCounts {
        refreshes: metrics().dns_refreshes.get(),
        lookup_failures: metrics().dns_lookup_failures.get(),
        endpoints_moved: metrics().dns_endpoints_moved.get(),
        swaps_failed: SWAPS_FAILED.load(Ordering::Relaxed),
        restarts: RESTARTS.load(Ordering::Relaxed),
    }
}

/// Resolves endpoint host names again on the current generation's schedule.
pub struct DnsRefresh {
    reloader: Arc<Reloader>,
}

impl DnsRefresh {
    /// The refresh of the runtime `reloader` keeps (it swaps in moved addresses too).
    pub fn new(reloader: Arc<Reloader>) -> Self {
        DnsRefresh { reloader }
    }
}

#[async_trait]
impl BackgroundService for DnsRefresh {
    async fn start(&self, shutdown: ShutdownWatch) {
        let reloader = self.reloader.clone();
        supervise(
            "dns refresh",
            shutdown,
            RESTART_DELAY,
            &RESTARTS,
            move || refresh_loop(reloader.clone()),
        )
        .await
    }
}

/// Every `TICK`, starts a round when the current `resolver.refresh` has passed since the last
/// one. Never returns.
async fn refresh_loop(reloader: Arc<Reloader>) {
    let mut lookup: Option<(Resolver, Lookup)> = None;
    let mut failing = Failing::default();
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let runtime = reloader.runtime();
        if last.elapsed() < runtime.resolver.refresh {
            continue;
        }
        last = Instant::now();
        let settings = runtime.resolver.clone();
        let known: Vec<(String, IpAddr)> = runtime
            .resolved_addresses()
            .into_iter()
            .map(|(h, ip)| (h.to_string(), ip))
            .collect();
        drop(runtime);
        if known.is_empty() {
            continue;
        }
        if lookup.as_ref().is_none_or(|(s, _)| *s != settings) {
            match Lookup::new(&settings) {
                Ok(l) => lookup = Some((settings, l)),
                Err(e) => {
                    metrics().dns_lookup_failures.inc_by(known.len() as u64);
                    error!("dns: {e}; endpoints keep their addresses");
                    continue;
                }
            }
        }
        let Some((_, l)) = &lookup else { continue };
        let answers = join_all(known.iter().map(|(host, _)| l.lookup(host))).await;
        let found = take_answers(&known, answers, &mut failing);
        metrics().dns_refreshes.inc();
        match reloader.readdress(found).await {
            Ok(moved) => {
                metrics().dns_endpoints_moved.inc_by(moved.len() as u64);
            }
            Err(e) => {
                SWAPS_FAILED.fetch_add(1, Ordering::Relaxed);
                error!("dns: new addresses not applied; the current generation keeps serving: {e}");
            }
        }
    }
}

/// The address each host has now: the one `choose` takes among its answers, or, when its
/// lookup failed, none (it keeps its address). Failures are counted and logged, at most once
/// a minute per host.
fn take_answers(
    known: &[(String, IpAddr)],
    answers: Vec<Result<Vec<IpAddr>, String>>,
    failing: &mut Failing,
) -> Addresses {
    let mut found = Addresses::default();
    for ((host, current), answer) in known.iter().zip(answers) {
        match answer.map(|ips| choose(Some(*current), &ips)) {
            Ok(Some(ip)) => {
                if failing.recovered(host) {
                    info!("dns: {host} resolves again");
                }
                found.insert(host.clone(), Ok(ip));
            }
            Ok(None) => {}
            Err(e) => {
                metrics().dns_lookup_failures.inc();
                if let Some(times) = failing.failed(host) {
                    warn!(
                        "dns: cannot resolve {host} ({e}); it keeps {current} ({times} failed \
                         lookups in a row)"
                    );
                }
            }
        }
    }
    found
}

/// Hosts whose last lookup failed: since when the failure was last logged, and how many in a
/// row.
#[derive(Default)]
struct Failing(HashMap<String, (Instant, u64)>);

impl Failing {
    /// Counts a failure of `host`; `Some(failures in a row)` when it is time to log it.
    fn failed(&mut self, host: &str) -> Option<u64> {
        let now = Instant::now();
        match self.0.get_mut(host) {
            None => {
                self.0.insert(host.to_string(), (now, 1));
                Some(1)
            }
            Some((logged, n)) => {
                *n += 1;
                if now.duration_since(*logged) < FAILURE_LOG_EVERY {
                    return None;
                }
                *logged = now;
                Some(*n)
            }
        }
    }

    /// Whether `host` was failing (it no longer is).
    fn recovered(&mut self, host: &str) -> bool {
        self.0.remove(host).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_address_and_is_logged_once_a_minute() {
        let known = vec![
            ("a.test".to_string(), ip("10.0.0.1")),
            ("b.test".to_string(), ip("10.0.0.2")),
        ];
        let mut failing = Failing::default();
        let before = counts().lookup_failures;
        let answers = vec![
            Ok(vec![ip("10.0.0.9"), ip("10.0.0.1")]),
            Err("SERVFAIL".into()),
        ];
        let found = take_answers(&known, answers, &mut failing);
        assert_eq!(
            found.get("a.test"),
            Ok(ip("10.0.0.1")),
            "still listed: kept"
        );
        assert!(
            found.get("b.test").is_err(),
            "no answer: the reloader keeps its address"
        );
        assert!(counts().lookup_failures > before);
        assert_eq!(
            failing.failed("b.test"),
            None,
            "the second failure is not logged"
        );
        assert!(failing.recovered("b.test"));
        assert!(!failing.recovered("b.test"));
        assert_eq!(failing.failed("b.test"), Some(1));
    }
}
