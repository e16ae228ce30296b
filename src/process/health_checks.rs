//! The background service that runs every endpoint's probe on its interval, for whatever
//! runtime is current. It outlives any one probe: a probe that panics is logged and counted as
//! a failed probe of its endpoint; and should the scheduler itself ever stop or panic, it is
//! started again, so no pool is left without health checks.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use log::{error, info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::bounds::MAX_HEALTH_INTERVAL;
use crate::runtime::{Endpoint, SharedRuntime};

/// How often the scheduler looks for due probes.
const TICK: Duration = Duration::from_millis(100);

/// How long a scheduler that stopped waits before it starts again (a bug that panics at once
/// must not spin).
pub(super) const RESTART_DELAY: Duration = Duration::from_secs(1);

static PROBE_PANICS: AtomicU64 = AtomicU64::new(0);
static SCHEDULER_RESTARTS: AtomicU64 = AtomicU64::new(0);

/// What went wrong inside the health checks since start (in `/status`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HealthCounts {
    /// Probes that panicked (each counted as a failed probe of its endpoint).
    pub probe_panics: u64,
    /// Times the scheduler stopped or panicked and was started again.
    pub scheduler_restarts: u64,
}

/// The counters since start.
pub fn counts() -> HealthCounts {
    HealthCounts {
        probe_panics: PROBE_PANICS.load(Ordering::Relaxed),
        scheduler_restarts: SCHEDULER_RESTARTS.load(Ordering::Relaxed),
    }
}

/// Runs health probes for whatever runtime is current.
pub struct HealthChecker {
    state: SharedRuntime,
}

impl HealthChecker {
    /// A checker over the shared runtime.
    pub fn new(state: SharedRuntime) -> Self {
        HealthChecker { state }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, shutdown: ShutdownWatch) {
        let state = self.state.clone();
        supervise(
            "health checks",
            shutdown,
            RESTART_DELAY,
            &SCHEDULER_RESTARTS,
            move || schedule(state.clone()),
        )
        .await
    }
}

/// Runs the task `start` makes until `shutdown`, starting a new one `delay` after it ends or
/// panics; each restart counts in `restarts`.
pub(super) async fn supervise<F, T>(
    name: &str,
    mut shutdown: ShutdownWatch,
    delay: Duration,
    restarts: &AtomicU64,
    mut start: F,
) where
    F: FnMut() -> T,
    T: Future<Output = ()> + Send + 'static,
{
    loop {
        let mut task = tokio::spawn(start());
        tokio::select! {
            _ = shutdown.changed() => {
                task.abort();
                return;
            }
            ended = &mut task => match ended {
                Err(e) if e.is_panic() => error!("{name}: the scheduler panicked; it starts again in {delay:?}"),
                _ => error!("{name}: the scheduler stopped; it starts again in {delay:?}"),
            },
        }
        restarts.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The scheduler: every `TICK`, starts the probes that are due, at most one per endpoint at
/// a time. Never returns.
async fn schedule(state: SharedRuntime) {
    // Next due time per (pool, endpoint name); endpoints that vanish on reload drop out.
    let mut due: HashMap<(String, String), Instant> = HashMap::new();
    let mut running: HashMap<(String, String), tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let runtime = state.load_full();
        let now = Instant::now();
        running.retain(|_, h| !h.is_finished());
        let mut live = HashSet::new();
        for pool in &runtime.pools {
            for ep in &pool.endpoints {
                let Some(prober) = ep.prober.clone() else {
                    continue;
                };
                let key = (pool.name.clone(), ep.name.clone());
                live.insert(key.clone());
                let at = due.entry(key.clone()).or_insert(now);
                if *at > now || running.contains_key(&key) {
                    continue;
                }
                // The interval is bounded by the config check; never overflow the clock anyway.
                *at = now
                    .checked_add(prober.interval)
                    .unwrap_or(now + MAX_HEALTH_INTERVAL);
                let probe = probe_once(pool.name.clone(), ep.clone(), async move {
                    prober.probe().await
                });
                running.insert(key, tokio::spawn(probe));
            }
        }
        due.retain(|k, _| live.contains(k));
        tokio::time::sleep(TICK).await;
    }
}

/// Runs one probe of `ep` and records its result; a panic is a failed probe.
async fn probe_once<P>(pool: String, ep: Arc<Endpoint>, probe: P)
where
    P: Future<Output = Result<(), String>>,
{
    let result = match AssertUnwindSafe(probe).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            PROBE_PANICS.fetch_add(1, Ordering::Relaxed);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!(
                "pool {pool}: the health probe of endpoint {} panicked ({what}); counted as a \
                 failed probe",
                ep.name
            );
            Err(format!("the probe panicked: {what}"))
        }
    };
    record(&pool, &ep, result);
}

fn record(pool: &str, ep: &Endpoint, result: Result<(), String>) {
    let Some(prober) = &ep.prober else { return };
    let s = &prober.settings;
    let flipped = ep
        .health
        .record(result.is_ok(), s.healthy_threshold, s.unhealthy_threshold);
    match (flipped, result) {
        (Some(true), _) => info!(
            "pool {pool}: endpoint {} ({}) is healthy again",
            ep.name, ep.addr
        ),
        (Some(false), Err(e)) => warn!(
            "pool {pool}: endpoint {} ({}) is unhealthy: {e}",
            ep.name, ep.addr
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
