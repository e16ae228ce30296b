//! Graceful drain: count downstream connections, and once the listeners stop accepting, exit as
//! soon as none are left, or at the drain deadline (closing what remains, so clients reconnect
//! to the new process).
//!
//! Pingora itself sleeps `grace_period_seconds` after the shutdown signal whatever is open,
//! and then drops every connection; this module ends the process as soon as it is idle.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use log::{error, info, warn};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long idle keep-alive connections stay open after the listeners stop accepting, so a
/// request already on its way on one (or on a connection accepted just before) is served.
/// Responses sent while draining carry `Connection: close`, so busy clients leave before.
pub const LINGER: Duration = Duration::from_secs(1);

/// How often the drain watcher looks at the connection count (it is also woken at zero).
const TICK: Duration = Duration::from_millis(100);

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

/// Wraps Pingora's HTTP app to count connections and to delay closing idle keep-alive ones.
pub struct TrackedApp<A> {
    inner: Arc<A>,
    drain: Arc<Drain>,
}

impl<A> TrackedApp<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, drain: Arc<Drain>) -> Self {
        TrackedApp {
            inner: Arc::new(inner),
            drain,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TrackedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _counted = self.drain.connection();
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        // Pingora calls this when its accept loops end; the inner cleanup wakes every idle
        // keep-alive connection to close it. Give requests already on the wire a moment first.
        tokio::time::sleep(LINGER).await;
        self.inner.cleanup().await;
        info!(
            "drain: idle keep-alive connections closed; {} connections left",
            self.drain.active()
        );
        self.drain.close_listeners();
    }
}

/// Waits for Pingora's shutdown broadcast (the listeners stop accepting), then exits the
/// process as soon as no connection is left, or at `deadline`.
pub async fn drain_then_exit(drain: Arc<Drain>, mut shutdown: ShutdownWatch, deadline: Duration) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        return;
    }
    drain.begin(Phase::Stopping);
    let stopped = Instant::now();
    let at = stopped + deadline;
    info!(
        "drain: stopped accepting; {} connections open; they have {}s (server.grace_period_seconds)",
        drain.active(),
        deadline.as_secs()
    );
    let (mut int, mut quit, mut term) = (
        signal(SignalKind::interrupt()).ok(),
        signal(SignalKind::quit()).ok(),
        signal(SignalKind::terminate()).ok(),
    );
    loop {
        if drain.listeners_closed() && drain.active() == 0 {
            info!(
                "drain: no connections left {:.1}s after the listeners closed; exiting",
                stopped.elapsed().as_secs_f64()
            );
            break;
        }
        if Instant::now() >= at {
            warn!(
                "drain: deadline reached; closing {} remaining connections (clients reconnect to \
                 the new process); exiting",
                drain.active()
            );
            break;
        }
        tokio::select! {
            _ = drain.changed.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = tokio::time::sleep_until(at) => {}
            Some(()) = recv(&mut int) => {
                warn!("drain: SIGINT; closing {} connections now; exiting", drain.active());
                break;
            }
            Some(()) = recv(&mut quit) => info!("drain: SIGQUIT ignored: already draining"),
            Some(()) = recv(&mut term) => info!("drain: SIGTERM ignored: already draining (SIGINT stops at once)"),
        }
    }
    exit_now(0);
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Flushes the log and ends the process; the kernel closes every socket left.
pub fn exit_now(code: i32) -> ! {
    log::logger().flush();
    if code != 0 {
        error!("exiting with status {code}");
    }
    std::process::exit(code)
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
