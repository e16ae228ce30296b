//! Process signals. Pingora's own handler hands the listeners over on SIGQUIT even when no new
//! process takes them, and then always sleeps out its grace period; this one keeps serving
//! when the hand-off fails and leaves the exit to the drain (see `drain`).
//!
//! - `SIGHUP`: live reload (handled by the control service; one arriving during startup is
//!   remembered and applied once it runs).
//! - `SIGQUIT`: binary upgrade: hand the listeners to the process waiting on `upgrade_sock`,
//!   keep accepting for `UPGRADE_OVERLAP`, then drain.
//! - `SIGTERM`: stop accepting and drain.
//! - `SIGINT`: stop at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use log::{error, info};
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use super::ops::Ops;
use crate::runtime::drain::Phase;

static EARLY_SIGHUP: AtomicBool = AtomicBool::new(false);

/// Catches SIGHUP from process start on, so that one sent before the reload loop runs neither
/// kills the process (the default action) nor gets lost. Call first thing, before any fork.
pub fn catch_early_sighup() {
    // SAFETY: the action only stores to an atomic, which is async-signal-safe.
    let registered = unsafe {
        signal_hook_registry::register(SignalKind::hangup().as_raw_value(), || {
            EARLY_SIGHUP.store(true, Ordering::Release);
        })
    };
    if let Err(e) = registered {
        error!("cannot catch SIGHUP during startup: {e}");
    }
}

/// Whether a SIGHUP arrived since the last call.
pub fn take_early_sighup() -> bool {
    EARLY_SIGHUP.swap(false, Ordering::AcqRel)
}

/// The shutdown signal watch given to Pingora's `Server::run`.
pub struct EdgeSignals {
    ops: Arc<Ops>,
}

impl EdgeSignals {
    /// Signals acting on `ops`.
    pub fn new(ops: Arc<Ops>) -> Self {
        EdgeSignals { ops }
    }
}

#[async_trait]
impl ShutdownSignalWatch for EdgeSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (quit, term, int) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (quit, term, int) else {
            error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    if self.ops.hand_over().await.is_ok() {
                        // Pingora's upgrade path would send the sockets again: the listeners
                        // are with the new process already, so only the drain is left.
                        return ShutdownSignal::GracefulTerminate;
                    }
                }
                _ = term.recv() => {
                    self.ops.drain.begin(Phase::Stopping);
                    info!(
                        "SIGTERM: /readyz answers 503; stop accepting and drain for up to {}s",
                        self.ops.deadline.as_secs()
                    );
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    info!("SIGINT: stopping now");
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
    }
}
