//! What one finished request adds to the metrics: its request counter, its durations and its
//! bytes, through the handles its route, pool and endpoint hold (atomic adds only).

use std::sync::LazyLock;
use std::time::Duration;

use pingora_core::{Error, ErrorType};

use super::selection::Selection;
use crate::metrics::{unrouted, ConnectFailure, Kind, PoolMetrics, RequestCounters, StatusClass};
use crate::runtime::Runtime;

/// A finished request, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The status sent (0: none).
    pub status: u16,
    /// Header to end of response.
    pub elapsed: Duration,
    /// A SignalR negotiate (`POST .../negotiate`).
    pub negotiate: bool,
    /// It was proxied (held an open-connection count): its lifetime counts by kind.
    pub proxied: bool,
    /// Its kind.
    pub kind: Kind,
    /// Body bytes sent to and received from the endpoint.
    pub bytes: (u64, u64),
}

/// The pool handles of requests without a pool.
fn no_pool() -> &'static PoolMetrics {
    static NO_POOL: LazyLock<PoolMetrics> = LazyLock::new(|| PoolMetrics::new("-"));
    &NO_POOL
}

/// Counts `done`, routed and chosen as `sel` says, on `runtime`'s handles.
pub fn record(runtime: Option<&Runtime>, sel: &Selection, done: &Finished) {
    let counters: &RequestCounters = match sel
        .route
        .and_then(|i| runtime?.routes.by_index(i)?.requests.as_deref())
    {
        Some(c) => c,
        None => unrouted(),
    };
    let endpoint = sel.endpoint.as_ref().map(|e| (e.slot, e.name.as_str()));
    counters.count(endpoint, StatusClass::of(done.status), sel.choice);
    let pool: &PoolMetrics = match &sel.pool {
        Some(p) => &p.metrics,
        None => no_pool(),
    };
    let secs = done.elapsed.as_secs_f64();
    pool.request_duration.observe(secs);
    if done.negotiate {
        pool.negotiate_duration.observe(secs);
    }
    if done.proxied {
        pool.connection_duration(done.kind).observe(secs);
    }
    if let Some(ep) = &sel.endpoint {
        let (up, down) = done.bytes;
        if up > 0 {
            ep.metrics.to_upstream.inc_by(up);
        }
        if down > 0 {
            ep.metrics.from_upstream.inc_by(down);
        }
    }
}

/// Why a connect failed, as `signalr_edge_upstream_connect_errors_total` names it.
pub fn connect_failure(e: &Error) -> ConnectFailure {
    match e.etype() {
        ErrorType::ConnectRefused => ConnectFailure::Refused,
        ErrorType::ConnectTimedout => ConnectFailure::Timeout,
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError
        | ErrorType::TLSWantX509Lookup => ConnectFailure::Tls,
        _ => ConnectFailure::Other,
    }
}

/// Whether an error after the connect is an upstream read or write timeout.
pub fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

/// Whether a request is a SignalR negotiate.
pub fn is_negotiate(method: &http::Method, path: &str) -> bool {
    *method == http::Method::POST && path.ends_with("/negotiate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failures_by_reason() {
        let of = |t| connect_failure(&Error::new(t));
        assert_eq!(of(ErrorType::ConnectRefused), ConnectFailure::Refused);
        assert_eq!(of(ErrorType::ConnectTimedout), ConnectFailure::Timeout);
        assert_eq!(of(ErrorType::TLSHandshakeFailure), ConnectFailure::Tls);
        assert_eq!(of(ErrorType::InvalidCert), ConnectFailure::Tls);
        assert_eq!(of(ErrorType::ConnectError), ConnectFailure::Other);
        assert!(is_timeout(&Error::new(ErrorType::WriteTimedout)));
        assert!(!is_timeout(&Error::new(ErrorType::ConnectionClosed)));
    }

    #[test]
    fn negotiates() {
        assert!(is_negotiate(&http::Method::POST, "/client/negotiate"));
        assert!(!is_negotiate(&http::Method::GET, "/client/negotiate"));
        assert!(!is_negotiate(&http::Method::POST, "/client/"));
    }

    #[test]
    fn a_request_counts_on_its_route_pool_and_endpoint() {
        let cfg = crate::config::parse_str(
            "listeners: [{ address: \"127.0.0.1:1000\" }]\n\
             pools: { obs: { kind: app, endpoints: [{ url: \"http://127.0.0.1:3\", name: obs1 }] } }\n\
             routes: [{ path: /obs/, pool: obs }]\n",
        )
        .unwrap();
        let rt = Runtime::compile(&cfg.service, std::path::Path::new("t.yaml"), None).unwrap();
        let pool = rt.pools[0].clone();
        let sel = Selection {
            route: Some(0),
            endpoint: Some(pool.endpoints[0].clone()),
            pool: Some(pool),
            choice: Some(crate::signalr::Rule::RoundRobin),
            ..Selection::default()
        };
        let done = Finished {
            status: 201,
            elapsed: Duration::from_millis(3),
            negotiate: true,
            proxied: true,
            kind: Kind::Plain,
            bytes: (10, 20),
        };
        record(Some(&rt), &sel, &done);
        let f = crate::metrics::families();
        let n = f
            .requests
            .with_label_values(&["/obs/", "obs", "obs1", "2xx", "round_robin"])
            .get();
        assert_eq!(n, 1);
        assert_eq!(
            f.negotiate_duration
                .with_label_values(&["obs"])
                .get_sample_count(),
            1
        );
        let bytes = |d: &str| {
            f.upstream_bytes
                .with_label_values(&["obs", "obs1", d])
                .get()
        };
        assert_eq!((bytes("to_upstream"), bytes("from_upstream")), (10, 20));
    }
}
