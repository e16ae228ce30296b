//! The operations state shared by the signal handlers, the admin listener and the drain:
//! reloads, binary upgrades (listener hand-off) and readiness, with their counters.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use log::{error, info, warn};
use pingora_core::server::ListenFds;
use serde::Serialize;

use super::Exit;
use crate::reload::{Reloader, Report};
use crate::runtime::drain::{Drain, Phase};
use crate::runtime::{HealthView, Runtime};

/// How long an old process keeps accepting after it handed its listeners over, so the new one
/// is surely accepting before the old one stops. (The sockets are shared: nothing is refused
/// either way; this only keeps the accept queue short.)
pub const UPGRADE_OVERLAP: Duration = Duration::from_secs(1);

/// Everything reload, upgrade and drain share.
pub struct Ops {
    /// Connection count and drain phase.
    pub drain: Arc<Drain>,
    /// The reload path (SIGHUP and `POST /reload`).
    pub reloader: Arc<Reloader>,
    /// Where a new process started with `-u` waits for the listeners.
    pub upgrade_sock: String,
    /// The drain deadline (`server.grace_period_seconds`).
    pub deadline: Duration,
    /// This process took its listeners over from an old one (`-u`).
    pub started_by_upgrade: bool,
    /// Ends the process (the binary's exit point).
    pub exit: Exit,
    started: AtomicBool,
    fds: OnceLock<ListenFds>,
    inherited: OnceLock<Vec<String>>,
    upgrades_ok: AtomicU64,
    upgrades_failed: AtomicU64,
}

impl Ops {
    /// The shared state of one process.
    pub fn new(
        reloader: Reloader,
        upgrade_sock: &Path,
        deadline: Duration,
        upgrade: bool,
        exit: Exit,
    ) -> Self {
        Ops {
            drain: Arc::new(Drain::default()),
            reloader: Arc::new(reloader),
            upgrade_sock: upgrade_sock.display().to_string(),
            deadline,
            started_by_upgrade: upgrade,
            exit,
            started: AtomicBool::new(false),
            fds: OnceLock::new(),
            inherited: OnceLock::new(),
            upgrades_ok: AtomicU64::new(0),
            upgrades_failed: AtomicU64::new(0),
        }
    }

    /// Keeps Pingora's table of listening sockets (for the hand-off) and logs what this
    /// process inherited from an old one.
    pub fn adopt_fds(&self, fds: ListenFds) {
        let mut inherited = fds.lock().serialize().0;
        inherited.sort();
        if self.started_by_upgrade {
            info!(
                "upgrade: took over listening sockets {} from the old process",
                inherited.join(", ")
            );
        }
        let _ = self.inherited.set(inherited);
        let _ = self.fds.set(fds);
    }

    /// The services are up (the listeners are bound or inherited).
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Ready for new traffic: started and not draining.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Acquire) && !self.drain.is_draining()
    }

    /// Sends the listening sockets to a new process waiting on `upgrade_sock` (SIGQUIT).
    /// On success this process starts draining; on failure it keeps serving.
    pub async fn hand_over(&self) -> Result<(), String> {
        if self.drain.is_draining() {
            return Err("already draining".into());
        }
        let Some(fds) = self.fds.get().cloned() else {
            warn!("SIGQUIT before startup finished: ignored; send it again");
            return Err("still starting".into());
        };
        let sock = self.upgrade_sock.clone();
        info!("SIGQUIT: handing the listening sockets to the new process on {sock}");
        // Pingora's sender retries (blocking, up to about 5 s) until a new process listens.
        let sent = tokio::task::spawn_blocking(move || {
            let table = fds.lock();
            let count = table.serialize().0.len();
            table
                .send_to_sock(sock.as_str())
                .map(|_| count)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match sent {
            Ok(count) => {
                self.upgrades_ok.fetch_add(1, Ordering::Relaxed);
                count_upgrade("ok");
                self.drain.begin(Phase::Upgrading);
                info!(
                    "upgrade: handed {count} listening sockets to the new process; this one stops \
                     accepting in {}s, then drains for up to {}s",
                    UPGRADE_OVERLAP.as_secs(),
                    self.deadline.as_secs()
                );
                tokio::time::sleep(UPGRADE_OVERLAP).await;
                Ok(())
            }
            Err(e) => {
                self.upgrades_failed.fetch_add(1, Ordering::Relaxed);
                count_upgrade("failed");
                error!(
                    "upgrade failed: no new process took the sockets on {}: {e}; this process \
                     keeps serving (start `signalr-edge -u` first, then send SIGQUIT)",
                    self.upgrade_sock
                );
                Err(e)
            }
        }
    }

    /// The `/metrics` text: the gauges of the moment are set first (generation, drain, each
    /// endpoint's health, which also notices ejections that ended).
    pub fn metrics(&self) -> String {
        let f = crate::metrics::families();
        let runtime = self.reloader.runtime();
        f.generation
            .set(i64::try_from(runtime.generation).unwrap_or(i64::MAX));
        f.draining.set(i64::from(self.drain.is_draining()));
        // Endpoints a reload removed leave the gauge.
        f.endpoint_healthy.reset();
        for pool in &runtime.pools {
            for e in &pool.endpoints {
                f.endpoint_healthy
                    .with_label_values(&[pool.name.as_str(), e.name.as_str()])
                    .set(i64::from(e.is_healthy()));
            }
        }
        drop(runtime);
        f.render()
    }

    /// The `/status` document.
    pub fn status(&self) -> Status {
        let (ok, failed) = self.reloader.counts();
        Status {
            pid: std::process::id(),
            ready: self.is_ready(),
            phase: match self.drain.phase() {
                Phase::Serving => "serving",
                Phase::Upgrading => "upgrading",
                Phase::Stopping => "stopping",
            },
            draining_for_seconds: self.drain.draining_for().map(|d| d.as_secs_f64()),
            drain_deadline_seconds: self.deadline.as_secs(),
            connections: self.drain.active(),
            config: self.reloader.file().display().to_string(),
            generation: self.reloader.generation(),
            reloads: Counts { ok, failed },
            last_reload: self.reloader.last(),
            upgrades: Counts {
                ok: self.upgrades_ok.load(Ordering::Relaxed),
                failed: self.upgrades_failed.load(Ordering::Relaxed),
            },
            started_by_upgrade: self.started_by_upgrade,
            inherited_listeners: self.inherited.get().cloned().unwrap_or_default(),
            refusals: crate::proxy::refusal::counts().into_iter().collect(),
            health_checks: super::health_checks::counts(),
            dns: super::dns::counts(),
            endpoints: endpoints(&self.reloader.runtime()),
        }
    }
}

/// Counts a hand-off in `signalr_edge_upgrades_total`.
fn count_upgrade(outcome: &str) {
    crate::metrics::families()
        .upgrades
        .with_label_values(&[outcome])
        .inc();
}

/// Each pool's endpoints and their health, as `/status` shows them.
fn endpoints(runtime: &Runtime) -> BTreeMap<String, Vec<EndpointStatus>> {
    runtime
        .pools
        .iter()
        .map(|p| {
            let eps = p
                .endpoints
                .iter()
                .map(|e| EndpointStatus {
                    name: e.name.clone(),
                    address: e.addr.to_string(),
                    healthy: e.is_healthy(),
                    health: e.health_view(),
                })
                .collect();
            (p.name.clone(), eps)
        })
        .collect()
}

/// One endpoint in `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// Its name on the ring.
    pub name: String,
    /// Where it is reached.
    pub address: String,
    /// Whether new requests may go there (probe healthy and not ejected).
    pub healthy: bool,
    /// The probe's verdict and passive health's state.
    #[serde(flatten)]
    pub health: HealthView,
}

/// Successes and failures.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
}

/// What `GET /status` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Process id.
    pub pid: u32,
    /// Same as `/readyz`.
    pub ready: bool,
    /// `serving`, `upgrading` (listeners handed over) or `stopping` (SIGTERM).
    pub phase: &'static str,
    /// Seconds since draining began.
    pub draining_for_seconds: Option<f64>,
    /// `server.grace_period_seconds`.
    pub drain_deadline_seconds: u64,
    /// Open downstream connections.
    pub connections: usize,
    /// The configuration file.
    pub config: String,
    /// The runtime generation serving new requests.
    pub generation: u64,
    /// Reloads of this process.
    pub reloads: Counts,
    /// The last reload, with what it changed or why it failed.
    pub last_reload: Option<Report>,
    /// Listener hand-offs to a new process (SIGQUIT).
    pub upgrades: Counts,
    /// Whether this process took its listeners over from an old one.
    pub started_by_upgrade: bool,
    /// The listening sockets it inherited.
    pub inherited_listeners: Vec<String>,
    /// Requests the edge answered itself since start, by reason (`refused=` in the access log).
    pub refusals: BTreeMap<&'static str, u64>,
    /// Health-check probes that panicked and scheduler restarts since start.
    pub health_checks: super::health_checks::HealthCounts,
    /// DNS refresh rounds, failed lookups and endpoints moved since start.
    pub dns: super::dns::DnsCounts,
    /// Each pool's endpoints: health, ejection time left, failure streak and ejections.
    pub endpoints: BTreeMap<String, Vec<EndpointStatus>>,
}

/// An `Ops` over a one-pool config, for unit tests; its exit panics.
#[cfg(test)]
pub(crate) fn test_ops() -> Ops {
    let cfg = crate::config::parse_str(
        "listeners: [{ address: \"127.0.0.1:8080\" }]\npools:\n  p:\n    kind: app\n    endpoints: [{ url: \"http://127.0.0.1:5000\" }]\nroutes: [{ path: /, pool: p }]\n",
    )
    .unwrap();
    let rt = crate::runtime::Runtime::compile(&cfg.service, Path::new("t.yaml"), None).unwrap();
    let reloader = Reloader::new(
        Path::new("t.yaml"),
        cfg,
        Arc::new(arc_swap::ArcSwap::from_pointee(rt)),
    );
    Ops::new(
        reloader,
        Path::new("/tmp/u.sock"),
        Duration::from_secs(7),
        false,
        |code| panic!("exit({code})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_started_until_draining() {
        let ops = test_ops();
        assert!(!ops.is_ready(), "not before the listeners are held");
        ops.mark_started();
        assert!(ops.is_ready());
        let s = ops.status();
        assert_eq!(
            (s.phase, s.generation, s.drain_deadline_seconds),
            ("serving", 1, 7)
        );
        let p = &s.endpoints["p"];
        assert_eq!((p[0].name.as_str(), p[0].healthy), ("127.0.0.1:5000", true));
        assert_eq!(p[0].health.ejected_for_seconds, None);
        ops.drain.begin(Phase::Stopping);
        assert!(!ops.is_ready());
        let s = ops.status();
        assert_eq!(s.phase, "stopping");
        assert!(!s.ready && s.draining_for_seconds.is_some());
    }

    #[tokio::test]
    async fn a_hand_off_before_startup_is_refused_and_serving_goes_on() {
        let ops = test_ops();
        ops.mark_started();
        assert!(ops.hand_over().await.is_err());
        assert!(ops.is_ready());
    }
}
