//! The counters behind the limits: request rate per client (pingora-limits' `Rate`), requests
//! in flight per route, and the key a client is counted under. A reload keeps them where the
//! setting they count for is unchanged, so a reload neither resets a client's window nor
//! forgets the WebSockets a route already holds.

use std::net::{IpAddr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_limits::rate::Rate;

/// The address a client is counted under: IPv4 as is, IPv6 by its /64 (one host or site
/// gets a whole /64, so per-address counting would not limit it at all).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Requests per client in fixed windows of `interval`.
pub struct ClientRate {
    rate: Rate,
    /// The window length.
    pub interval: Duration,
}

impl std::fmt::Debug for ClientRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRate")
            .field("interval", &self.interval)
            .finish()
    }
}

impl ClientRate {
    /// Counts windows of `interval` (whole seconds, at least 1 s: checked by the config).
    pub fn new(interval: Duration) -> Self {
        // 4 x 8192 counters (256 KiB per window): with 100,000 clients in one window, the
        // estimate of one client is off by a few requests, not by hundreds.
        ClientRate {
            rate: Rate::new_with_estimator_config(interval, 4, 8192),
            interval,
        }
    }

    /// Counts one request of `client` and returns its requests in the current window.
    pub fn observe(&self, client: IpAddr) -> usize {
        // `Rate` asserts on a window reset raced by a thread stalled longer than a second; a
        // panic must not take the connection down: such a request is let through.
        catch_unwind(AssertUnwindSafe(|| {
            self.rate.observe(&client_key(client), 1)
        }))
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }
}

/// Requests in flight on one route, against its cap (a clone counts into the same counter).
#[derive(Debug, Clone)]
pub struct RouteGate {
    /// The cap.
    pub max: usize,
    open: Arc<AtomicUsize>,
}

impl RouteGate {
    /// A gate of `max`, counting into `open` (shared with the previous generation's gate of the
    /// same route, if any).
    pub fn new(max: usize, open: Option<Arc<AtomicUsize>>) -> Self {
        RouteGate {
            max,
            open: open.unwrap_or_default(),
        }
    }

    /// The counter, for the next generation.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        self.open.clone()
    }

    /// Admits one request, held until the guard drops; `None` when the route is full.
    pub fn enter(&self) -> Option<GateGuard> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| GateGuard(self.open.clone()))
    }

    /// Requests in flight now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One request in flight on a route.
#[derive(Debug)]
pub struct GateGuard(Arc<AtomicUsize>);

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff::1")),
            client_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn rate_counts_per_client() {
        let r = ClientRate::new(Duration::from_secs(3600));
        let a = "192.0.2.1".parse().unwrap();
        let b = "192.0.2.2".parse().unwrap();
        for n in 1..=5 {
            assert_eq!(r.observe(a), n);
        }
        assert_eq!(r.observe(b), 1);
    }

    #[test]
    fn gate_caps_and_releases() {
        let g = RouteGate::new(2, None);
        let one = g.enter().unwrap();
        let two = g.enter().unwrap();
        assert!(g.enter().is_none());
        assert_eq!(g.open(), 2);
        drop(one);
        let three = g.enter().unwrap();
        // The next generation shares the count: a reload does not reopen a full route.
        let next = RouteGate::new(2, Some(g.counter()));
        assert!(next.enter().is_none());
        drop((two, three));
        assert_eq!(next.open(), 0);
        assert!(next.enter().is_some());
    }
}
