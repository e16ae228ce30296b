//! The process phase and the count of open downstream connections: set by the process layer
//! (signals, upgrade), read by the proxy (to close keep-alive connections while draining) and
//! by the admin listener.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving.
    Serving,
    /// Handed its listeners to a new process (SIGQUIT); draining.
    Upgrading,
    /// Stopping for good (SIGTERM); draining.
    Stopping,
}

/// The drain state shared by the proxy, the admin listener and the signal handlers.
#[derive(Debug)]
pub struct Drain {
    phase: AtomicU8,
    active: AtomicUsize,
    listeners_closed: AtomicBool,
    since: OnceLock<Instant>,
    changed: Notify,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            phase: AtomicU8::new(0),
            active: AtomicUsize::new(0),
            listeners_closed: AtomicBool::new(false),
            since: OnceLock::new(),
            changed: Notify::new(),
        }
    }
}

impl Drain {
    /// Starts draining (readiness turns off); false if it had started already.
    pub fn begin(&self, phase: Phase) -> bool {
        let code = match phase {
            Phase::Serving => return false,
            Phase::Upgrading => 1,
            Phase::Stopping => 2,
        };
        let first = self
            .phase
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            let _ = self.since.set(Instant::now());
        }
        first
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Serving,
            1 => Phase::Upgrading,
            _ => Phase::Stopping,
        }
    }

    /// True once draining has begun.
    pub fn is_draining(&self) -> bool {
        self.phase() != Phase::Serving
    }

    /// Seconds since draining began.
    pub fn draining_for(&self) -> Option<Duration> {
        self.since.get().map(|t| t.elapsed())
    }

    /// Counts one downstream connection until the guard drops.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }

    /// Open downstream connections (HTTP, WebSocket tunnels, SSE and long polls included).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Records that the listeners stopped and idle keep-alive connections were told to close.
    pub fn close_listeners(&self) {
        self.listeners_closed.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// True once the listeners stopped accepting and lingering idle connections were closed.
    pub fn listeners_closed(&self) -> bool {
        self.listeners_closed.load(Ordering::Acquire)
    }

    /// Resolves at the next change worth a look: the last connection closed, or the listeners.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// Holds one count of `Drain::active`.
pub struct ConnectionGuard(Arc<Drain>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_counting() {
        let d = Arc::new(Drain::default());
        assert_eq!(d.phase(), Phase::Serving);
        assert!(!d.is_draining() && d.draining_for().is_none());
        let a = d.connection();
        let b = d.connection();
        assert_eq!(d.active(), 2);
        drop(a);
        assert_eq!(d.active(), 1);
        assert!(d.begin(Phase::Upgrading));
        assert!(!d.begin(Phase::Stopping), "the first reason stays");
        assert_eq!(d.phase(), Phase::Upgrading);
        assert!(d.is_draining() && d.draining_for().is_some());
        drop(b);
        assert_eq!(d.active(), 0);
        assert!(!d.listeners_closed());
        d.close_listeners();
        assert!(d.listeners_closed());
    }
}
