//! The label handles the request path holds, resolved once per pool, endpoint and route when a
//! generation is compiled (or, for the request counters' many combinations, on first use): a
//! request then only adds to atomics. Handles of the same labels are the same series, so an
//! unchanged endpoint keeps counting across reloads.

use std::sync::OnceLock;

use prometheus::{Histogram, IntCounter, IntGauge};

use super::families;
use crate::signalr::Rule;

/// What a proxied request is, for the open connections and their lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// An upgrade (WebSocket).
    WebSocket,
    /// A SignalR Server-Sent Events stream.
    Sse,
    /// A SignalR long-polling `GET`.
    LongPoll,
    /// Anything else.
    #[default]
    Plain,
}

impl Kind {
    /// Every kind, in handle order.
    pub const ALL: [Kind; 4] = [Kind::WebSocket, Kind::Sse, Kind::LongPoll, Kind::Plain];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WebSocket => "websocket",
            Kind::Sse => "sse",
            Kind::LongPoll => "long_poll",
            Kind::Plain => "plain",
        }
    }

    /// Whether the access log writes one line when the connection ends, with its close reason.
    pub fn is_long_lived(self) -> bool {
        matches!(self, Kind::WebSocket | Kind::Sse)
    }
}

/// The class of a response status; `none` when no answer was written (the client left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusClass(usize);

const CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

impl StatusClass {
    /// The class of `status` (0: none written).
    pub fn of(status: u16) -> StatusClass {
        StatusClass(match status {
            100..=599 => usize::from(status / 100),
            _ => 0,
        })
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        CLASSES[self.0]
    }
}

/// Why an upstream connect failed, as the metric names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Connection refused.
    Refused,
    /// No connection within the connect timeout.
    Timeout,
    /// The TLS handshake or certificate failed.
    Tls,
    /// Anything else.
    Other,
}

impl ConnectFailure {
    const ALL: [ConnectFailure; 4] = [
        ConnectFailure::Refused,
        ConnectFailure::Timeout,
        ConnectFailure::Tls,
        ConnectFailure::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::Tls => "tls",
            ConnectFailure::Other => "other",
        }
    }
}

/// One endpoint's handles.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    open: [IntGauge; 4],
    /// Body bytes sent to the endpoint.
    pub to_upstream: IntCounter,
    /// Body bytes received from it.
    pub from_upstream: IntCounter,
    connect_errors: [IntCounter; 4],
    /// Read and write timeouts after the connect.
    pub timeouts: IntCounter,
    /// Upstream connections used: new, reused.
    connections: [IntCounter; 2],
}

impl EndpointMetrics {
    /// The handles of endpoint `endpoint` of pool `pool`.
    pub fn new(pool: &str, endpoint: &str) -> EndpointMetrics {
        let f = families();
        let pe = [pool, endpoint];
        EndpointMetrics {
            open: Kind::ALL.map(|k| {
                f.connections_open
                    .with_label_values(&[pool, endpoint, k.as_str()])
            }),
            to_upstream: f
                .upstream_bytes
                .with_label_values(&[pool, endpoint, "to_upstream"]),
            from_upstream: f
                .upstream_bytes
                .with_label_values(&[pool, endpoint, "from_upstream"]),
            connect_errors: ConnectFailure::ALL.map(|r| {
                f.connect_errors
                    .with_label_values(&[pool, endpoint, r.as_str()])
            }),
            timeouts: f.timeouts.with_label_values(&pe),
            connections: ["false", "true"].map(|reused| {
                f.upstream_connections
                    .with_label_values(&[pool, endpoint, reused])
            }),
        }
    }

    /// Counts one open request of `kind` until the guard is dropped.
    pub fn open(&self, kind: Kind) -> OpenGuard {
        let gauge = self.open[kind as usize].clone();
        gauge.inc();
        OpenGuard(gauge)
    }

    /// Counts a failed connect.
    pub fn connect_failed(&self, why: ConnectFailure) {
        self.connect_errors[why as usize].inc();
    }

    /// Counts an upstream connection a request used.
    pub fn connected(&self, reused: bool) {
        self.connections[usize::from(reused)].inc();
    }
}

/// An open request on an endpoint's gauge; the gauge goes down when this is dropped.
#[derive(Debug)]
pub struct OpenGuard(IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The health counters of one endpoint, held by its health state.
#[derive(Debug, Clone)]
pub struct HealthMetrics {
    /// Changes to healthy.
    pub to_healthy: IntCounter,
    /// Changes to unhealthy.
    pub to_unhealthy: IntCounter,
    /// Passive-health ejections.
    pub ejections: IntCounter,
}

impl HealthMetrics {
    /// The handles of endpoint `endpoint` of pool `pool`.
    pub fn new(pool: &str, endpoint: &str) -> HealthMetrics {
        let f = families();
        HealthMetrics {
            to_healthy: f
                .health_transitions
                .with_label_values(&[pool, endpoint, "healthy"]),
            to_unhealthy: f
                .health_transitions
                .with_label_values(&[pool, endpoint, "unhealthy"]),
            ejections: f.ejections.with_label_values(&[pool, endpoint]),
        }
    }
}

/// One pool's handles.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    /// All requests.
    pub request_duration: Histogram,
    /// SignalR negotiates.
    pub negotiate_duration: Histogram,
    connection_duration: [Histogram; 4],
}

impl PoolMetrics {
    /// The handles of pool `pool` (`-`: requests without one).
    pub fn new(pool: &str) -> PoolMetrics {
        let f = families();
        PoolMetrics {
            request_duration: f.request_duration.with_label_values(&[pool]),
            negotiate_duration: f.negotiate_duration.with_label_values(&[pool]),
            connection_duration: Kind::ALL
                .map(|k| f.connection_duration.with_label_values(&[pool, k.as_str()])),
        }
    }

    /// The lifetime histogram of `kind`.
    pub fn connection_duration(&self, kind: Kind) -> &Histogram {
        &self.connection_duration[kind as usize]
    }
}

/// Rule slots: the rules, then none (`-`).
const RULES: usize = 8;

fn rule_slot(rule: Option<Rule>) -> (usize, &'static str) {
    match rule {
        Some(r) => (r as usize, r.as_str()),
        None => (RULES - 1, "-"),
    }
}

type Row = [[OnceLock<Option<IntCounter>>; RULES]; CLASSES.len()];

/// The request counters of one route: a row per endpoint of its pool, and one for requests
/// without an endpoint (`-`); each counter resolved on its first request.
#[derive(Debug)]
pub struct RequestCounters {
    route: String,
    pool: String,
    endpoints: Vec<String>,
    rows: Box<[Row]>,
}

impl RequestCounters {
    /// The counters of a route with path `route` to pool `pool` and its `endpoints`' names
    /// (`-` for requests without route or pool).
    pub fn new(route: &str, pool: &str, endpoints: Vec<String>) -> RequestCounters {
        let rows = (0..=endpoints.len()).map(|_| Row::default()).collect();
        RequestCounters {
            route: route.to_string(),
            pool: pool.to_string(),
            endpoints,
            rows,
        }
    }

    /// Counts a request answered with `class`, proxied to endpoint `slot` (its position in the
    /// pool) named `name`, chosen by `rule`. An endpoint outside the pool's current list (a
    /// retired one) is counted by name, resolving its counter each time.
    pub fn count(&self, endpoint: Option<(usize, &str)>, class: StatusClass, rule: Option<Rule>) {
        let (r, rule_name) = rule_slot(rule);
        let (row, name) = match endpoint {
            None => (self.endpoints.len(), "-"),
            Some((slot, name)) if self.endpoints.get(slot).is_some_and(|n| n == name) => {
                (slot, name)
            }
            Some((_, name)) => {
                let labels = [&self.route, &self.pool, name, class.as_str(), rule_name];
                if let Ok(c) = families().requests.get_metric_with_label_values(&labels) {
                    c.inc();
                }
                return;
            }
        };
        let Some(cell) = self.rows.get(row).map(|row| &row[class.0][r]) else {
            return;
        };
        let counter = cell.get_or_init(|| {
            let labels = [&self.route, &self.pool, name, class.as_str(), rule_name];
            families()
                .requests
                .get_metric_with_label_values(&labels)
                .ok()
        });
        if let Some(c) = counter {
            c.inc();
        }
    }
}

/// The counters of requests no route matched.
pub fn unrouted() -> &'static RequestCounters {
    static UNROUTED: std::sync::LazyLock<RequestCounters> =
        std::sync::LazyLock::new(|| RequestCounters::new("-", "-", Vec::new()));
    &UNROUTED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let names: Vec<_> = [0, 101, 200, 304, 404, 503, 600, 99]
            .map(|s| StatusClass::of(s).as_str())
            .into();
        assert_eq!(
            names,
            ["none", "1xx", "2xx", "3xx", "4xx", "5xx", "none", "none"]
        );
    }

    #[test]
    fn rule_slots_fit() {
        for r in [
            Rule::Audience,
            Rule::RequestId,
            Rule::Signature,
            Rule::ClientIp,
            Rule::RoundRobin,
            Rule::Retired,
            Rule::Pinned,
        ] {
            assert!((r as usize) < RULES - 1, "{r:?}");
        }
    }

    #[test]
    fn request_counters_share_series_by_labels() {
        let f = families();
        let labels = ["/t/", "tp", "e1", "2xx", "pinned"];
        let before = f.requests.with_label_values(&labels).get();
        let a = RequestCounters::new("/t/", "tp", vec!["e0".into(), "e1".into()]);
        a.count(Some((1, "e1")), StatusClass::of(200), Some(Rule::Pinned));
        // A later generation's counters (a reload) continue the same series.
        let b = RequestCounters::new("/t/", "tp", vec!["e1".into()]);
        b.count(Some((0, "e1")), StatusClass::of(204), Some(Rule::Pinned));
        // A retired endpoint (not at its slot any more) is counted by name.
        b.count(Some((1, "e1")), StatusClass::of(200), Some(Rule::Pinned));
        assert_eq!(f.requests.with_label_values(&labels).get(), before + 3);
        a.count(None, StatusClass::of(503), None);
        assert_eq!(
            f.requests
                .with_label_values(&["/t/", "tp", "-", "5xx", "-"])
                .get(),
            1
        );
    }

    #[test]
    fn open_guard_counts_until_dropped() {
        let m = EndpointMetrics::new("gp", "ge");
        let g = families()
            .connections_open
            .with_label_values(&["gp", "ge", "sse"]);
        let guard = m.open(Kind::Sse);
        assert_eq!(g.get(), 1);
        drop(guard);
        assert_eq!(g.get(), 0);
    }
}
