//! Process signals. Pingora's own handler hands the listeners over on SIGQUIT even when no new
//! process takes them, and then always sleeps out its grace period; this one keeps serving
//! when the hand-off fails and leaves the exit to the drain (see `drain`).
//!
//! - `SIGHUP`: live reload (handled by the control service).
//! - `SIGQUIT`: binary upgrade: hand the listeners to the process waiting on `upgrade_sock`,
//!   keep accepting for `UPGRADE_OVERLAP`, then drain.
//! - `SIGTERM`: stop accepting and drain.
//! - `SIGINT`: stop at once.
//!
//! SIGHUP, SIGQUIT and SIGTERM are caught from process start on: one that arrives before the
//! handlers below run (the process may already answer `/readyz` then) is remembered and acted
//! on once they do, instead of killing the process by its default action.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use log::{error, info};
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use super::ops::Ops;
use crate::runtime::drain::Phase;

static EARLY_SIGHUP: AtomicBool = AtomicBool::new(false);
static EARLY_SIGQUIT: AtomicBool = AtomicBool::new(false);
static EARLY_SIGTERM: AtomicBool = AtomicBool::new(false);

/// Catches SIGHUP, SIGQUIT and SIGTERM from process start on, so that one sent before the
/// handlers run neither kills the process (the default action) nor gets lost. Call first
/// thing, before any fork.
pub fn catch_early_signals() {
    for (kind, flag) in [
        (SignalKind::hangup(), &EARLY_SIGHUP),
        (SignalKind::quit(), &EARLY_SIGQUIT),
        (SignalKind::terminate(), &EARLY_SIGTERM),
    ] {
        // SAFETY: the action only stores to an atomic, which is async-signal-safe.
        let registered = unsafe {
            signal_hook_registry::register(kind.as_raw_value(), move || {
                flag.store(true, Ordering::Release);
            })
        };
        if let Err(e) = registered {
            error!(
                "cannot catch signal {} during startup: {e}",
                kind.as_raw_value()
            );
        }
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
        // Signals that came before the handlers above existed. The early handlers stay
        // registered (they also see later signals), so they are read once, here.
        if EARLY_SIGTERM.swap(false, Ordering::AcqRel) {
            return self.terminate();
        }
        if EARLY_SIGQUIT.swap(false, Ordering::AcqRel) && self.ops.hand_over().await.is_ok() {
            return ShutdownSignal::GracefulTerminate;
        }
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    if self.ops.hand_over().await.is_ok() {
                        // Pingora's upgrade path would send the sockets again: the listeners
                        // are with the new process already, so only the drain is left.
                        return ShutdownSignal::GracefulTerminate;
                    }
                }
                _ = term.recv() => return self.terminate(),
                _ = int.recv() => {
                    info!("SIGINT: stopping now");
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
    }
}

impl EdgeSignals {
    /// SIGTERM: say not ready, stop accepting and drain.
    fn terminate(&self) -> ShutdownSignal {
        self.ops.drain.begin(Phase::Stopping);
        info!(
            "SIGTERM: /readyz answers 503; stop accepting and drain for up to {}s",
            self.ops.deadline.as_secs()
        );
        ShutdownSignal::GracefulTerminate
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::process::ops::test_ops;

    /// A SIGTERM that comes while the process starts, before `recv` installs its handlers
    /// (the process may already answer `/readyz`), must drain, not kill the process.
    #[tokio::test]
    async fn a_sigterm_before_the_handlers_run_is_kept_and_drains() {
        catch_early_signals();
        let pid = std::process::id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !EARLY_SIGTERM.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the early handler never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        let ops = Arc::new(test_ops());
        let got = EdgeSignals::new(ops.clone()).recv().await;
        assert!(matches!(got, ShutdownSignal::GracefulTerminate));
        assert_eq!(ops.drain.phase(), Phase::Stopping);
    }
}
