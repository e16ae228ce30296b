//! Graceful drain: count downstream connections, and once the listeners stop accepting, exit as
//! soon as none are left, or at the drain deadline (closing what remains, so clients reconnect
//! to the new process).
//!
//! Pingora itself sleeps `grace_period_seconds` after the shutdown signal whatever is open,
//! and then drops every connection; this module ends the process as soon as it is idle.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use log::{info, warn};
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use super::connections;
use crate::proxy::connection::ConnectionLimits;
use crate::runtime::drain::{Drain, Phase};
use crate::runtime::SharedRuntime;

/// How long idle keep-alive connections stay open after the listeners stop accepting, so a
/// request already on its way on one (or on a connection accepted just before) is served.
/// Responses sent while draining carry `Connection: close`, so busy clients leave before.
pub const LINGER: Duration = Duration::from_secs(1);

/// How often the drain watcher looks at the connection count (it is also woken at zero).
const TICK: Duration = Duration::from_millis(100);

/// Wraps Pingora's HTTP app to count connections, to hold them to the connection limits, and
/// to delay closing idle keep-alive ones.
pub struct TrackedApp<A> {
    inner: Arc<A>,
    drain: Arc<Drain>,
    limits: ConnectionLimits,
    state: SharedRuntime,
}

impl<A> TrackedApp<A> {
    /// Wraps `inner`; `limits` counts connections against the caps of the current runtime.
    pub fn new(
        inner: A,
        drain: Arc<Drain>,
        limits: ConnectionLimits,
        state: SharedRuntime,
    ) -> Self {
        TrackedApp {
            inner: Arc::new(inner),
            drain,
            limits,
            state,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for TrackedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _counted = self.drain.connection();
        connections::serve(&self.inner, &self.limits, &self.state, session, shutdown).await;
        None
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

/// Waits for Pingora's shutdown broadcast (the listeners stop accepting), then returns as soon
/// as no connection is left, or at `deadline`: the process may end then. Never returns when the
/// broadcast cannot come.
pub async fn drained(drain: Arc<Drain>, mut shutdown: ShutdownWatch, deadline: Duration) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        return std::future::pending().await;
    }
    drain.begin(Phase::Stopping);
    let stopped = Instant::now();
    // The deadline is bounded by the config check; a sum past the clock's end means never.
    let at = stopped.checked_add(deadline);
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
        if at.is_some_and(|at| Instant::now() >= at) {
            warn!(
                "drain: deadline reached; closing {} remaining connections (clients reconnect to \
                 the new process); exiting",
                drain.active()
            );
            break;
        }
        tokio::select! {
            _ = drain.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = sleep_until(at) => {}
            Some(()) = recv(&mut int) => {
                warn!("drain: SIGINT; closing {} connections now; exiting", drain.active());
                break;
            }
            Some(()) = recv(&mut quit) => info!("drain: SIGQUIT ignored: already draining"),
            Some(()) = recv(&mut term) => info!("drain: SIGTERM ignored: already draining (SIGINT stops at once)"),
        }
    }
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
