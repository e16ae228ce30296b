//! Live reload: read the file, check and compile it completely, refuse it if its process
//! settings differ (`diff`), health-check new and changed endpoints, and only then swap the
//! runtime. A bad file changes nothing. Uses `config` and `runtime`; used by `process`.

pub mod diff;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use log::{error, info, warn};
use serde::Serialize;

use crate::config::{self, Config, ConfigError};
use crate::runtime::resolve::Addresses;
use crate::runtime::{Runtime, SharedRuntime};
pub use diff::{upgrade_only_changes, Changes};

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `SIGHUP` (also one that arrived during startup).
    Sighup,
    /// `POST /reload` on the admin listener.
    Admin,
    /// `--watch`: the file's content changed on disk.
    Watch,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Sighup => "SIGHUP",
            Trigger::Admin => "POST /reload",
            Trigger::Watch => "file change",
        })
    }
}

/// The first health check of an endpoint a reload adds or changes.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// `pool/endpoint`.
    pub endpoint: String,
    /// Whether it answered; it starts with this state.
    pub healthy: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of one reload, as logged and as `POST /reload` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether the new file is now serving.
    pub ok: bool,
    /// `SIGHUP`, `POST /reload` or `file change`.
    pub trigger: String,
    /// The generation serving after the attempt.
    pub generation: u64,
    /// What changed (on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    /// First health checks of new and changed endpoints (on success).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<Probe>,
    /// Why the file was refused (on failure): file, key path and message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the attempt took.
    pub millis: u64,
    /// When it finished (Unix seconds).
    pub at: u64,
}

/// Reloads one configuration file into the shared runtime, one reload at a time.
pub struct Reloader {
    file: PathBuf,
    state: SharedRuntime,
    /// The config behind the current runtime; its lock also serializes reloads.
    config: tokio::sync::Mutex<Arc<Config>>,
    ok: AtomicU64,
    failed: AtomicU64,
    last: Mutex<Option<Report>>,
}

impl Reloader {
    /// A reloader of `file`, whose current config and runtime are `config` and `state`.
    pub fn new(file: &Path, config: Config, state: SharedRuntime) -> Self {
        Reloader {
            file: file.to_path_buf(),
            state,
            config: tokio::sync::Mutex::new(Arc::new(config)),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// The configuration file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The runtime serving new requests.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.state.load_full()
    }

    /// The generation serving new requests.
    pub fn generation(&self) -> u64 {
        self.state.load().generation
    }

    /// Successful and failed reloads so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// The last reload's report.
    pub fn last(&self) -> Option<Report> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads the file; logs and counts the outcome. Waits for a reload in progress first.
    pub async fn reload(&self, trigger: Trigger) -> Report {
        let mut current_config = match self.config.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                info!("reload ({trigger}) waits for the reload in progress");
                self.config.lock().await
            }
        };
        let started = Instant::now();
        let current = self.state.load_full();
        let outcome = self.prepare(&current_config, &current).await;
        let millis = started.elapsed().as_millis() as u64;
        let report = match outcome {
            Ok((cfg, runtime, changes, probes)) => {
                let generation = runtime.generation;
                self.state.store(Arc::new(runtime));
                *current_config = Arc::new(cfg);
                self.ok.fetch_add(1, Ordering::Relaxed);
                count_reload("ok");
                for p in probes.iter().filter(|p| !p.healthy) {
                    warn!(
                        "reload ({trigger}): {} failed its first health check and starts unhealthy: {}",
                        p.endpoint,
                        p.error.as_deref().unwrap_or("")
                    );
                }
                info!("reload ({trigger}) ok: generation {generation} serves new connections ({millis} ms): {changes}");
                if let Some(w) = current_config.admin_warning() {
                    warn!("{w}");
                }
                Report {
                    ok: true,
                    trigger: trigger.to_string(),
                    generation,
                    changes: Some(changes),
                    probes,
                    error: None,
                    millis,
                    at: unix_now(),
                }
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                count_reload(if e.message.starts_with(TASK_FAILED) {
                    "failed"
                } else {
                    "refused"
                });
                error!(
                    "reload ({trigger}) failed; generation {} keeps serving: {e}",
                    current.generation
                );
                Report {
                    ok: false,
                    trigger: trigger.to_string(),
                    generation: current.generation,
                    changes: None,
                    probes: Vec::new(),
                    error: Some(e.to_string()),
                    millis,
                    at: unix_now(),
                }
            }
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        report
    }

    /// Swaps in a generation compiled from the current config (not read again) with the host
    /// addresses `found` (what DNS answers now; hosts it lacks keep theirs), by the steps of a
    /// reload: compile, first health check of the moved endpoints, swap. Waits for a reload in
    /// progress. Returns the endpoints moved, as `pool/name: old -> new`; none when the
    /// addresses are the current ones.
    pub async fn readdress(&self, mut found: Addresses) -> Result<Vec<String>, String> {
        let config = self.config.lock().await;
        let current = self.state.load_full();
        for (host, ip) in current.resolved_addresses() {
            found.fill(host, ip);
        }
        let moved = moved_endpoints(&current, &found);
        if moved.is_empty() {
            return Ok(moved);
        }
        let (cfg, file, previous) = (config.clone(), self.file.clone(), current.clone());
        // Compiling reads the CA and certificate files: keep it off the async threads.
        let runtime = tokio::task::spawn_blocking(move || {
            Runtime::compile_with(&cfg.service, &file, Some(&previous), &found)
        })
        .await
        .map_err(|e| format!("readdress task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        let probes = probe_new_endpoints(&current, &runtime).await;
        let generation = runtime.generation;
        self.state.store(Arc::new(runtime));
        for m in &moved {
            info!("dns: endpoint {m}; generation {generation} serves new connections");
        }
        for p in probes.iter().filter(|p| !p.healthy) {
            warn!(
                "dns: {} failed its first health check at its new address and starts unhealthy: {}",
                p.endpoint,
                p.error.as_deref().unwrap_or("")
            );
        }
        Ok(moved)
    }

    /// Everything but the swap: load, check, compile, probe.
    async fn prepare(
        &self,
        old_cfg: &Arc<Config>,
        current: &Arc<Runtime>,
    ) -> Result<(Config, Runtime, Changes, Vec<Probe>), ConfigError> {
        let (file, previous) = (self.file.clone(), current.clone());
        let old = old_cfg.clone();
        // Reading the file and resolving host names block: keep them off the async threads.
        let compiled = tokio::task::spawn_blocking(move || {
            let cfg = config::load(&file)?;
            let fixed = upgrade_only_changes(&old.process, &cfg.process);
            if let Some(first) = fixed.first() {
                return Err(ConfigError {
                    file: file.clone(),
                    path: first.clone(),
                    message: format!(
                        "a reload cannot change {} (listeners, server settings and the admin \
                         listener need a binary upgrade: signalr-edge -u)",
                        fixed.join(", ")
                    ),
                });
            }
            let runtime = Runtime::compile(&cfg.service, &file, Some(&previous))?;
            Ok((cfg, runtime))
        })
        .await
        .map_err(|e| ConfigError {
            file: self.file.clone(),
            path: String::new(),
            message: format!("{TASK_FAILED}: {e}"),
        })??;
        let (cfg, runtime) = compiled;
        let probes = probe_new_endpoints(current, &runtime).await;
        let changes = Changes::between(&old_cfg.service, current, &cfg.service, &runtime);
        Ok((cfg, runtime, changes, probes))
    }
}

/// Probes, once and together, every endpoint of `new` whose health state is not carried over
/// from `old` (added or changed), and starts it in the state the probe found.
pub async fn probe_new_endpoints(old: &Runtime, new: &Runtime) -> Vec<Probe> {
    let mut probes = Vec::new();
    for pool in &new.pools {
        for ep in &pool.endpoints {
            let Some(prober) = ep.prober.clone() else {
                continue;
            };
            let known = old.pool(&pool.name).is_some_and(|p| {
                p.endpoints
                    .iter()
                    .any(|o| Arc::ptr_eq(&o.health, &ep.health))
            });
            if known {
                continue;
            }
            let (ep, name) = (ep.clone(), format!("{}/{}", pool.name, ep.name));
            probes.push(async move {
                let result = prober.probe().await;
                ep.health.set(result.is_ok());
                Probe {
                    endpoint: name,
                    healthy: result.is_ok(),
                    error: result.err(),
                }
            });
        }
    }
    join_all(probes).await
}

/// The endpoints of `runtime` whose host resolves elsewhere in `found`, as
/// `pool/name: old -> new`.
fn moved_endpoints(runtime: &Runtime, found: &Addresses) -> Vec<String> {
    let mut moved = Vec::new();
    for pool in &runtime.pools {
        for e in pool.endpoints.iter().filter(|e| e.resolved) {
            if let Ok(ip) = found.get(&e.host) {
                if ip != e.addr.ip() {
                    let new = std::net::SocketAddr::new(ip, e.addr.port());
                    moved.push(format!("{}/{}: {} -> {new}", pool.name, e.name, e.addr));
                }
            }
        }
    }
    moved
}

/// How the error of a reload that could not run (rather than a refused file) begins.
const TASK_FAILED: &str = "reload task failed";

/// Counts a reload in `signalr_edge_reloads_total`: `ok`, `refused` (the file, or a setting
/// only an upgrade may change) or `failed` (the reload itself).
fn count_reload(outcome: &str) {
    crate::metrics::families()
        .reloads
        .with_label_values(&[outcome])
        .inc();
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
