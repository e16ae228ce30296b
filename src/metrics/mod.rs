//! The Prometheus metrics (`GET /metrics` on the admin listener): every family registered once
//! in the process's registry (`families`), and the label handles the request path holds
//! (`handles`), resolved when a generation is compiled so a request only adds to atomics.
//!
//! Uses `signalr` only (the rule names); every layer above may count here.

mod handles;

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use handles::unrouted;
pub use handles::{
    ConnectFailure, EndpointMetrics, HealthMetrics, Kind, OpenGuard, PoolMetrics, RequestCounters,
    StatusClass,
};

/// Every family of the edge, registered in one registry.
pub struct Families {
    registry: Registry,
    /// `signalr_edge_requests_total{route,pool,endpoint,status_class,rule}`.
    pub requests: IntCounterVec,
    /// `signalr_edge_negotiate_duration_seconds{pool}`.
    pub negotiate_duration: HistogramVec,
    /// `signalr_edge_request_duration_seconds{pool}`.
    pub request_duration: HistogramVec,
    /// `signalr_edge_connections_open{pool,endpoint,kind}`.
    pub connections_open: IntGaugeVec,
    /// `signalr_edge_connection_duration_seconds{pool,kind}`.
    pub connection_duration: HistogramVec,
    /// `signalr_edge_upstream_bytes_total{pool,endpoint,direction}`.
    pub upstream_bytes: IntCounterVec,
    /// `signalr_edge_endpoint_healthy{pool,endpoint}`, set at each scrape.
    pub endpoint_healthy: IntGaugeVec,
    /// `signalr_edge_endpoint_health_transitions_total{pool,endpoint,to}`.
    pub health_transitions: IntCounterVec,
    /// `signalr_edge_endpoint_ejections_total{pool,endpoint}`.
    pub ejections: IntCounterVec,
    /// `signalr_edge_upstream_connect_errors_total{pool,endpoint,reason}`.
    pub connect_errors: IntCounterVec,
    /// `signalr_edge_upstream_timeouts_total{pool,endpoint}`.
    pub timeouts: IntCounterVec,
    /// `signalr_edge_upstream_connections_total{pool,endpoint,reused}`.
    pub upstream_connections: IntCounterVec,
    /// `signalr_edge_reloads_total{outcome}`.
    pub reloads: IntCounterVec,
    /// `signalr_edge_upgrades_total{outcome}`.
    pub upgrades: IntCounterVec,
    /// `signalr_edge_config_generation`, set at each scrape.
    pub generation: IntGauge,
    /// `signalr_edge_draining`, set at each scrape.
    pub draining: IntGauge,
    /// `signalr_edge_refusals_total{reason}`.
    pub refusals: IntCounterVec,
    /// `signalr_edge_dns_refreshes_total`.
    pub dns_refreshes: IntCounter,
    /// `signalr_edge_dns_lookup_failures_total`.
    pub dns_lookup_failures: IntCounter,
    /// `signalr_edge_dns_endpoints_moved_total`.
    pub dns_endpoints_moved: IntCounter,
}

/// Request durations: 1 ms to about 16 s.
fn request_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 15).unwrap_or_default()
}

/// Connection lifetimes: 10 ms to 24 h.
const CONNECTION_BUCKETS: [f64; 14] = [
    0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
];

/// The families, registered on first use.
pub fn families() -> &'static Families {
    static FAMILIES: LazyLock<Families> = LazyLock::new(Families::register);
    &FAMILIES
}

impl Families {
    // The names, help texts and label sets are constants: registering them cannot fail unless
    // this function is wrong, which the unit test below catches.
    #[allow(clippy::expect_used)]
    fn register() -> Families {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid family");
            registry
                .register(Box::new(v.clone()))
                .expect("registered once");
            v
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid family");
            registry
                .register(Box::new(v.clone()))
                .expect("registered once");
            v
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            let v = HistogramVec::new(opts, labels).expect("valid family");
            registry
                .register(Box::new(v.clone()))
                .expect("registered once");
            v
        };
        let single =
            |name: &str, help: &str| counter(name, help, &[]).with_label_values::<&str>(&[]);
        let families = Families {
            requests: counter(
                "signalr_edge_requests_total",
                "Requests by route path, pool, endpoint, status class and the rule that chose the endpoint.",
                &["route", "pool", "endpoint", "status_class", "rule"],
            ),
            negotiate_duration: histogram(
                "signalr_edge_negotiate_duration_seconds",
                "SignalR negotiates (POST .../negotiate), header to end of response.",
                &["pool"],
                request_buckets(),
            ),
            request_duration: histogram(
                "signalr_edge_request_duration_seconds",
                "All requests, header to end of response (long-lived ones included).",
                &["pool"],
                request_buckets(),
            ),
            connections_open: gauge(
                "signalr_edge_connections_open",
                "Requests under way upstream by kind: websocket, sse, long_poll, plain.",
                &["pool", "endpoint", "kind"],
            ),
            connection_duration: histogram(
                "signalr_edge_connection_duration_seconds",
                "Lifetime of proxied requests by kind (WebSocket and SSE: the connection).",
                &["pool", "kind"],
                CONNECTION_BUCKETS.to_vec(),
            ),
            upstream_bytes: counter(
                "signalr_edge_upstream_bytes_total",
                "Body bytes to and from each endpoint (WebSocket tunnels included).",
                &["pool", "endpoint", "direction"],
            ),
            endpoint_healthy: gauge(
                "signalr_edge_endpoint_healthy",
                "1 when new connections may go to the endpoint (probe healthy, not ejected).",
                &["pool", "endpoint"],
            ),
            health_transitions: counter(
                "signalr_edge_endpoint_health_transitions_total",
                "Changes of an endpoint's health (probes and passive ejection).",
                &["pool", "endpoint", "to"],
            ),
            ejections: counter(
                "signalr_edge_endpoint_ejections_total",
                "Passive-health ejections of an endpoint.",
                &["pool", "endpoint"],
            ),
            connect_errors: counter(
                "signalr_edge_upstream_connect_errors_total",
                "Failed upstream connects by reason: refused, timeout, tls, other.",
                &["pool", "endpoint", "reason"],
            ),
            timeouts: counter(
                "signalr_edge_upstream_timeouts_total",
                "Upstream read and write timeouts after the connect.",
                &["pool", "endpoint"],
            ),
            upstream_connections: counter(
                "signalr_edge_upstream_connections_total",
                "Upstream connections used by requests, reused from the pool or new.",
                &["pool", "endpoint", "reused"],
            ),
            reloads: counter(
                "signalr_edge_reloads_total",
                "Reloads by outcome: ok, refused (the file), failed (the reload itself).",
                &["outcome"],
            ),
            upgrades: counter(
                "signalr_edge_upgrades_total",
                "Listener hand-offs to a new process (SIGQUIT) by outcome: ok, failed.",
                &["outcome"],
            ),
            generation: gauge(
                "signalr_edge_config_generation",
                "The runtime generation serving new requests (1 at start, +1 per reload or DNS move).",
                &[],
            )
            .with_label_values::<&str>(&[]),
            draining: gauge(
                "signalr_edge_draining",
                "1 while the process drains (after SIGTERM or a hand-off).",
                &[],
            )
            .with_label_values::<&str>(&[]),
            refusals: counter(
                "signalr_edge_refusals_total",
                "Requests the edge answered itself, by reason.",
                &["reason"],
            ),
            dns_refreshes: single(
                "signalr_edge_dns_refreshes_total",
                "DNS refresh rounds that resolved every endpoint host name.",
            ),
            dns_lookup_failures: single(
                "signalr_edge_dns_lookup_failures_total",
                "DNS lookups that failed (the host kept its last good address).",
            ),
            dns_endpoints_moved: single(
                "signalr_edge_dns_endpoints_moved_total",
                "Endpoints moved to a new address by a DNS refresh.",
            ),
            registry: registry.clone(),
        };
        let info = gauge(
            "signalr_edge_build_info",
            "Always 1; the version as a label.",
            &["version"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for outcome in ["ok", "refused", "failed"] {
            families.reloads.with_label_values(&[outcome]);
        }
        for outcome in ["ok", "failed"] {
            families.upgrades.with_label_values(&[outcome]);
        }
        families
    }

    /// The exposition text of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_registers_and_renders() {
        let f = families();
        f.generation.set(3);
        f.refusals.with_label_values(&["no_route"]).inc();
        let text = f.render();
        for name in [
            "signalr_edge_build_info{version=",
            "signalr_edge_config_generation 3",
            "signalr_edge_reloads_total{outcome=\"refused\"} 0",
            "signalr_edge_upgrades_total{outcome=\"ok\"} 0",
            "signalr_edge_dns_refreshes_total 0",
            "signalr_edge_refusals_total{reason=\"no_route\"}",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }
}
