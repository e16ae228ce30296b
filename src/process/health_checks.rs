//! The background service that runs every endpoint's probe on its interval.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use log::{info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::time::Instant;

use crate::runtime::SharedRuntime;

/// How often the scheduler looks for due probes.
const TICK: Duration = Duration::from_millis(100);

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

fn record(pool: &str, ep: &crate::runtime::Endpoint, result: Result<(), String>) {
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

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Next due time per (pool, endpoint name); endpoints that vanish on reload drop out.
        let mut due: HashMap<(String, String), Instant> = HashMap::new();
        let mut running: HashMap<(String, String), tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            let runtime = self.state.load_full();
            let now = Instant::now();
            running.retain(|_, h| !h.is_finished());
            let mut live = Vec::new();
            for pool in &runtime.pools {
                for ep in &pool.endpoints {
                    let Some(prober) = ep.prober.clone() else {
                        continue;
                    };
                    let key = (pool.name.clone(), ep.name.clone());
                    live.push(key.clone());
                    let at = due.entry(key.clone()).or_insert(now);
                    if *at > now || running.contains_key(&key) {
                        continue;
                    }
                    *at = now + prober.interval;
                    let (ep, pool_name) = (ep.clone(), pool.name.clone());
                    let task =
                        tokio::spawn(async move { record(&pool_name, &ep, prober.probe().await) });
                    running.insert(key, task);
                }
            }
            due.retain(|k, _| live.contains(k));
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
}
