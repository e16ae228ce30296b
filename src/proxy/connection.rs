//! Per-connection limits, decided when a connection is accepted: the listener's connection cap
//! (beyond it the connection is closed at once, unanswered: the cheapest refusal when the
//! edge is flooded) and the open connections of one client address (beyond them, the
//! connection's request gets `429` from the proxy, which then closes it), plus the header limits
//! each HTTP/1 session starts with.
//!
//! Connections are counted per TCP peer (IPv6: per /64): at accept no header has been read, and
//! a trusted proxy, which carries many clients, is not limited at all.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_core::protocols::http::ServerSession;
use pingora_limits::inflight::{Guard, Inflight};

use super::forwarded;
use super::refusal::Refusal;
use crate::config::Limits;
use crate::runtime::limits::client_key;
use crate::runtime::Runtime;

/// Marks a connection whose client address was over its connection limit when it was
/// accepted; the proxy answers its request with `429` (see `on_connection_reuse`).
#[derive(Debug, Clone, Copy)]
pub struct OverClientConnections;

/// Open connections per listener and per client address, for the life of the process
/// (reloads change the caps, not the counts).
pub struct ConnectionLimits {
    listeners: Vec<SocketAddr>,
    open: Vec<Arc<AtomicUsize>>,
    per_client: Inflight,
}

/// What holds a connection's place in the counts; dropped when the connection ends.
pub struct Admitted {
    _listener: Option<ListenerGuard>,
    _client: Option<Guard>,
    /// The client address is over its limit: refuse the request with `429`.
    pub over_client_limit: bool,
}

struct ListenerGuard(Arc<AtomicUsize>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionLimits {
    /// Counts connections on `listeners` (the process's listener addresses, in file order).
    pub fn new(listeners: Vec<SocketAddr>) -> Self {
        let open = listeners.iter().map(|_| Arc::default()).collect();
        ConnectionLimits {
            listeners,
            open,
            per_client: Inflight::new(),
        }
    }

    /// Admits a connection accepted on `local` from `peer`; `None` when its listener is full
    /// (close it unanswered).
    pub fn admit(
        &self,
        runtime: &Runtime,
        local: impl FnOnce() -> Option<SocketAddr>,
        peer: Option<IpAddr>,
    ) -> Option<Admitted> {
        // One listener (the usual case) needs no getsockname to know which one it is.
        let index = if self.listeners.len() == 1 {
            Some(0)
        } else {
            local().and_then(|l| listener_index(&self.listeners, l))
        };
        let mut listener = None;
        if let Some(i) = index {
            let cap = runtime
                .listener_connections
                .get(i)
                .copied()
                .unwrap_or(usize::MAX);
            let open = &self.open[i];
            let admitted = open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_ok();
            if !admitted {
                Refusal::ListenerFull.count();
                return None;
            }
            listener = Some(ListenerGuard(open.clone()));
        }
        let mut admitted = Admitted {
            _listener: listener,
            _client: None,
            over_client_limit: false,
        };
        let Some(peer) = peer else {
            return Some(admitted);
        };
        if forwarded::is_trusted(peer, &runtime.trusted_proxies) {
            return Some(admitted);
        }
        let (guard, open) = self.per_client.incr(client_key(peer), 1);
        let cap = runtime.limits.per_client.connections;
        if usize::try_from(open).is_ok_and(|n| n <= cap) {
            admitted._client = Some(guard);
        } else {
            // Not counted: a refused connection must not keep its client over the limit.
            admitted.over_client_limit = true;
        }
        Some(admitted)
    }

    /// Open connections on listener `i`.
    pub fn open(&self, i: usize) -> usize {
        self.open.get(i).map_or(0, |o| o.load(Ordering::Acquire))
    }
}

/// Which listener a connection to `local` came through: the one with its address, or the
/// wildcard one with its port.
pub fn listener_index(listeners: &[SocketAddr], local: SocketAddr) -> Option<usize> {
    let local_ip = match local.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(local.ip(), IpAddr::V4),
        ip => ip,
    };
    let local = SocketAddr::new(local_ip, local.port());
    listeners.iter().position(|l| *l == local).or_else(|| {
        listeners
            .iter()
            .position(|l| l.port() == local.port() && l.ip().is_unspecified())
    })
}

/// Sets the header limits of a new HTTP/1 session. The first session of a connection gets
/// `header_timeout` for its first byte too; later ones wait for it as long as the keep-alive
/// idle timeout set by the previous request.
pub fn prepare_session(session: &mut ServerSession, limits: &Limits, first: bool) {
    session.set_header_timeout(Some(limits.header_timeout));
    session.set_request_header_limits(limits.max_header_bytes, limits.max_headers);
    if first {
        // Keep-alive is decided per request once its header is read; until then the first
        // wait is a plain read timeout.
        session.set_keepalive(None);
        session.set_read_timeout(Some(limits.header_timeout));
    }
}

/// The keep-alive wait in Pingora's whole seconds, rounded up.
pub fn idle_seconds(idle: Duration) -> u64 {
    idle.as_secs() + u64::from(idle.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn runtime(extra: &str) -> Runtime {
        let cfg = crate::config::parse_str(&format!(
            "listeners: [{{ address: \"127.0.0.1:1000\", max_connections: 2 }}, \
             {{ address: \"0.0.0.0:2000\" }}]\n\
             trusted_proxies: [10.0.0.0/8]\n\
             pools: {{ app: {{ kind: app, endpoints: [{{ url: \"http://127.0.0.1:3\" }}] }} }}\n\
             routes: [{{ path: /, pool: app }}]\n{extra}"
        ))
        .unwrap();
        Runtime::compile(&cfg.service, Path::new("t.yaml"), None).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listeners_by_address_or_wildcard_port() {
        let ls = [addr("127.0.0.1:1000"), addr("0.0.0.0:2000")];
        assert_eq!(listener_index(&ls, addr("127.0.0.1:1000")), Some(0));
        assert_eq!(listener_index(&ls, addr("192.0.2.1:2000")), Some(1));
        assert_eq!(
            listener_index(&ls, addr("[::ffff:127.0.0.1]:1000")),
            Some(0)
        );
        assert_eq!(listener_index(&ls, addr("127.0.0.1:3000")), None);
    }

    #[test]
    fn listener_cap_closes_and_frees() {
        let rt = runtime("");
        let limits = ConnectionLimits::new(vec![addr("127.0.0.1:1000"), addr("0.0.0.0:2000")]);
        let on_first = || Some(addr("127.0.0.1:1000"));
        let a = limits.admit(&rt, on_first, None).unwrap();
        let _b = limits.admit(&rt, on_first, None).unwrap();
        assert!(limits.admit(&rt, on_first, None).is_none(), "cap of 2");
        assert_eq!(limits.open(0), 2);
        // The other listener has the default cap.
        assert!(limits
            .admit(&rt, || Some(addr("10.1.1.1:2000")), None)
            .is_some());
        drop(a);
        assert!(limits.admit(&rt, on_first, None).is_some());
    }

    #[test]
    fn client_cap_marks_without_counting_and_spares_trusted_proxies() {
        let rt = runtime("limits: { per_client: { connections: 2 } }");
        let limits = ConnectionLimits::new(vec![addr("127.0.0.1:1000"), addr("0.0.0.0:2000")]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // The listener with the default cap.
        let none = || Some(addr("127.0.0.1:2000"));
        let one = limits.admit(&rt, none, ip("192.0.2.1")).unwrap();
        let two = limits.admit(&rt, none, ip("192.0.2.1")).unwrap();
        assert!(!one.over_client_limit && !two.over_client_limit);
        let three = limits.admit(&rt, none, ip("192.0.2.1")).unwrap();
        assert!(three.over_client_limit);
        drop(three);
        assert!(
            limits
                .admit(&rt, none, ip("192.0.2.1"))
                .unwrap()
                .over_client_limit
        );
        assert!(
            !limits
                .admit(&rt, none, ip("192.0.2.2"))
                .unwrap()
                .over_client_limit
        );
        drop(one);
        assert!(
            !limits
                .admit(&rt, none, ip("192.0.2.1"))
                .unwrap()
                .over_client_limit
        );
        let proxies: Vec<_> = (0..5)
            .map(|_| limits.admit(&rt, none, ip("10.0.0.1")).unwrap())
            .collect();
        assert!(proxies.iter().all(|a| !a.over_client_limit));
    }

    #[test]
    fn idle_wait_rounds_up_to_seconds() {
        assert_eq!(idle_seconds(Duration::from_secs(60)), 60);
        assert_eq!(idle_seconds(Duration::from_millis(1500)), 2);
    }
}
