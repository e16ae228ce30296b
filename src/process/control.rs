//! The control service: a Pingora service that owns the admin listener (handed over on upgrade
//! like the proxy's listeners), runs reloads on SIGHUP (and on file changes with `--watch`),
//! and ends the process when drained (Pingora would sleep out its whole grace period first).

use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;

use async_trait::async_trait;
use log::{error, info};
use pingora_core::server::{ListenFds, ShutdownWatch};
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use tokio::signal::unix::{signal, SignalKind};

use super::ops::Ops;
use super::watch::{self, Fingerprint};
use super::{admin, drain, signals};
use crate::reload::Trigger;
use crate::runtime::drain::Phase;

/// Runs beside the proxy service; the proxy depends on it, so it sees the inherited sockets
/// before the proxy binds new ones.
pub struct ControlService {
    ops: Arc<Ops>,
    admin: Option<String>,
    listeners: Vec<String>,
    watch: Option<Fingerprint>,
}

impl ControlService {
    /// The service; `admin` is the normalized `ip:port` of the admin listener, if any, and
    /// `listeners` the proxy's listening addresses as given to Pingora; `watch` (`--watch`)
    /// the content the running generation was loaded from.
    pub fn new(
        ops: Arc<Ops>,
        admin: Option<String>,
        listeners: Vec<String>,
        watch: Option<Fingerprint>,
    ) -> Self {
        ControlService {
            ops,
            admin,
            listeners,
            watch,
        }
    }
}

#[async_trait]
impl ServiceWithDependents for ControlService {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        if let Some(fds) = &fds {
            self.ops.adopt_fds(fds.clone());
        }
        let admin = match &self.admin {
            None => None,
            Some(addr) => match admin_listener(addr, fds.as_ref()) {
                Ok(l) => Some(l),
                Err(e) => {
                    error!("admin listener {addr}: {e}");
                    (self.ops.exit)(1);
                }
            },
        };
        ready.notify_ready();
        tokio::spawn(ready_when_listening(
            self.ops.clone(),
            fds.clone(),
            self.listeners.clone(),
        ));
        if let Some(listener) = admin {
            let stop = handed_over(self.ops.clone(), shutdown.clone());
            tokio::spawn(admin::serve(listener, self.ops.clone(), stop));
        }
        tokio::spawn(reload_on_sighup(self.ops.clone()));
        // Started here, after a daemon forked: notify's thread would not survive the fork.
        if let Some(baseline) = self.watch {
            tokio::spawn(watch::watch(self.ops.clone(), baseline));
        }
        drain::drained(self.ops.drain.clone(), shutdown, self.ops.deadline).await;
        (self.ops.exit)(0);
    }

    fn name(&self) -> &str {
        "control"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        // Claims the inherited admin socket, so Pingora does not close it as unclaimed.
        Some(self.admin.iter().cloned().collect())
    }
}

/// Marks the process ready once the proxy holds all its listening sockets (inherited, or bound
/// by the proxy service, which starts after this one): from then on no connect is refused.
async fn ready_when_listening(ops: Arc<Ops>, fds: Option<ListenFds>, listeners: Vec<String>) {
    if let Some(fds) = fds {
        while !listeners.iter().all(|l| fds.lock().get(l).is_some()) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    ops.mark_started();
}

/// The admin socket: inherited from the old process, or bound and put in Pingora's table so the
/// next upgrade hands it on with the proxy's listeners.
fn admin_listener(addr: &str, fds: Option<&ListenFds>) -> Result<std::net::TcpListener, String> {
    let Some(fds) = fds else {
        return bind(addr);
    };
    let mut table = fds.lock();
    let listener = match table.get(addr).copied() {
        Some(fd) => {
            info!("admin listener {addr} taken over from the old process");
            // SAFETY: the descriptor came over upgrade_sock for this address and nothing else in
            // this process owns it; Pingora's table only keeps its number for the next hand-off.
            unsafe { std::net::TcpListener::from_raw_fd(fd) }
        }
        None => {
            let l = bind(addr)?;
            table.add(addr.to_string(), l.as_raw_fd());
            l
        }
    };
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(listener)
}

fn bind(addr: &str) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot bind: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

/// Resolves when the admin socket belongs to the new process: the old one stopped accepting
/// after a hand-off. On SIGTERM the admin listener stays up, so `/readyz` can say 503.
async fn handed_over(ops: Arc<Ops>, mut shutdown: ShutdownWatch) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
    if ops.drain.phase() != Phase::Upgrading {
        std::future::pending::<()>().await;
    }
}

async fn reload_on_sighup(ops: Arc<Ops>) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot handle SIGHUP ({e}); use POST /reload");
            return;
        }
    };
    if signals::take_early_sighup() {
        info!("SIGHUP arrived during startup; reloading now");
        ops.reloader.reload(Trigger::Sighup).await;
    }
    while hup.recv().await.is_some() {
        // The flag is set on every SIGHUP (its handler stays registered): clear it.
        signals::take_early_sighup();
        if ops.drain.is_draining() {
            info!("SIGHUP while draining: reloading this process anyway (a new process reads the file itself)");
        }
        ops.reloader.reload(Trigger::Sighup).await;
    }
}
