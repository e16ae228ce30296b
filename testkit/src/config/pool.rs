//! Pools and what they hold: endpoints, health checks, timeouts, upstream TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// A duration as the file writes it (`100ms`, `2s`).
fn text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// One pool; its name is the key in the file's `pools` map.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    /// The pool's name.
    #[serde(skip)]
    pub name: String,
    /// `signalr` or `app`.
    pub kind: &'static str,
    /// The upstreams.
    pub endpoints: Vec<Endpoint>,
    /// Affinity rules in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Vec<String>>,
    /// `endpoint` or `preserve`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// Active health checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Passive health: `{ failures, ejection }`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive_health: Option<PassiveHealth>,
    /// Upstream timeouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    /// Upstream TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// Access-token verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// Pair pinning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinning: Option<Pinning>,
    /// The load factor of bounded-load hashing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounded_load: Option<f64>,
}

impl Pool {
    fn new(name: &str, kind: &'static str) -> Pool {
        Pool {
            name: name.to_string(),
            kind,
            endpoints: Vec::new(),
            affinity: None,
            host_header: None,
            health_check: None,
            passive_health: None,
            timeouts: None,
            tls: None,
            tokens: None,
            pinning: None,
            bounded_load: None,
        }
    }

    /// A pool of SignalR instances (sticky choice, `Host` rewritten).
    pub fn signalr(name: &str) -> Pool {
        Pool::new(name, "signalr")
    }

    /// A pool of app servers (round robin, client `Host` kept).
    pub fn app(name: &str) -> Pool {
        Pool::new(name, "app")
    }

    /// Adds an endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Pool {
        self.endpoints.push(endpoint);
        self
    }

    /// Sets the affinity rules (`audience`, `request_id`, `signature`, `client_ip`).
    pub fn affinity(mut self, rules: &[&str]) -> Pool {
        self.affinity = Some(rules.iter().map(|r| r.to_string()).collect());
        self
    }

    /// Sets the `Host` sent upstream (`endpoint` or `preserve`).
    pub fn host_header(mut self, mode: &str) -> Pool {
        self.host_header = Some(mode.to_string());
        self
    }

    /// Probes the endpoints.
    pub fn health_check(mut self, check: HealthCheck) -> Pool {
        self.health_check = Some(check);
        self
    }

    /// Ejects an endpoint for `ejection` after `failures` consecutive failed requests
    /// (`failures: 0` turns passive health off).
    pub fn passive_health(mut self, failures: usize, ejection: Duration) -> Pool {
        self.passive_health = Some(PassiveHealth {
            failures,
            ejection: text(ejection),
        });
        self
    }

    /// Sets the upstream timeouts (an empty `Timeouts` writes `timeouts: {}`).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Pool {
        self.timeouts = Some(timeouts);
        self
    }

    /// Trusts the CAs in this PEM file for the upstreams' certificates.
    pub fn ca_file(mut self, path: &Path) -> Pool {
        self.tls.get_or_insert_with(UpstreamTls::default).ca_file = Some(path.to_path_buf());
        self
    }

    /// Sets the access-token verification (`Tokens::verify()` turns it on).
    pub fn tokens(mut self, tokens: Tokens) -> Pool {
        self.tokens = Some(tokens);
        self
    }

    /// Sets pair pinning (`Pinning::off()` turns it off).
    pub fn pinning(mut self, pinning: Pinning) -> Pool {
        self.pinning = Some(pinning);
        self
    }

    /// Turns bounded-load hashing on with load factor `c`.
    pub fn bounded_load(mut self, c: f64) -> Pool {
        self.bounded_load = Some(c);
        self
    }

    /// Turns upstream certificate verification on or off.
    pub fn verify(mut self, verify: bool) -> Pool {
        self.tls.get_or_insert_with(UpstreamTls::default).verify = Some(verify);
        self
    }
}

/// One upstream: a URL or an ASRS connection string.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// Name on the hash ring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `http(s)://host[:port]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `Endpoint=...;AccessKey=...;Version=1.0;`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    /// `ip:port` to connect to instead of resolving the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Endpoint {
    fn empty() -> Endpoint {
        Endpoint {
            name: None,
            url: None,
            connection_string: None,
            address: None,
        }
    }

    /// An endpoint by URL.
    pub fn url(url: impl ToString) -> Endpoint {
        Endpoint {
            url: Some(url.to_string()),
            ..Endpoint::empty()
        }
    }

    /// An endpoint by ASRS connection string.
    pub fn connection_string(s: impl ToString) -> Endpoint {
        Endpoint {
            connection_string: Some(s.to_string()),
            ..Endpoint::empty()
        }
    }

    /// Connects to `addr` (`ip:port`) instead of resolving the host: a private endpoint.
    pub fn address(mut self, addr: impl ToString) -> Endpoint {
        self.address = Some(addr.to_string());
        self
    }

    /// Sets its name on the ring.
    pub fn name(mut self, name: &str) -> Endpoint {
        self.name = Some(name.to_string());
        self
    }
}

/// Health-check settings; unset ones keep the edge's defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthCheck {
    /// `http` or `tcp`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Probe method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Probe path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Timeout of one probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Successes that make an endpoint healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<usize>,
    /// Failures that make an endpoint unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<usize>,
}

impl HealthCheck {
    /// The edge's default probe.
    pub fn new() -> HealthCheck {
        HealthCheck::default()
    }

    /// Probes by TCP (and TLS) connect instead of HTTP.
    pub fn tcp(mut self) -> HealthCheck {
        self.kind = Some("tcp".into());
        self
    }

    /// Probes `method path`.
    pub fn request(mut self, method: &str, path: &str) -> HealthCheck {
        self.method = Some(method.into());
        self.path = Some(path.into());
        self
    }

    /// Time between probes.
    pub fn interval(mut self, d: Duration) -> HealthCheck {
        self.interval = Some(text(d));
        self
    }

    /// Timeout of one probe.
    pub fn timeout(mut self, d: Duration) -> HealthCheck {
        self.timeout = Some(text(d));
        self
    }

    /// Successes that make an endpoint healthy.
    pub fn healthy_threshold(mut self, n: usize) -> HealthCheck {
        self.healthy_threshold = Some(n);
        self
    }

    /// Failures that make an endpoint unhealthy.
    pub fn unhealthy_threshold(mut self, n: usize) -> HealthCheck {
        self.unhealthy_threshold = Some(n);
        self
    }
}

/// Passive-health settings.
#[derive(Debug, Clone, Serialize)]
pub struct PassiveHealth {
    /// Consecutive failures that eject an endpoint.
    pub failures: usize,
    /// How long it stays out.
    pub ejection: String,
}

/// Access-token verification; unset options keep the edge's defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tokens {
    /// Verify tokens at the edge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<String>,
    /// Audience hosts accepted besides the endpoints'.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Verified tokens remembered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<usize>,
}

impl Tokens {
    /// Verification on, with the edge's defaults.
    pub fn verify() -> Tokens {
        Tokens {
            verify: Some(true),
            ..Tokens::default()
        }
    }

    /// Also accepts tokens naming `host` (signed with any key of the pool).
    pub fn audience(mut self, host: &str) -> Tokens {
        self.audiences.push(host.to_string());
        self
    }

    /// Clock skew allowed on `exp` and `nbf`.
    pub fn clock_skew(mut self, d: Duration) -> Tokens {
        self.clock_skew = Some(text(d));
        self
    }
}

/// Pair pinning; unset options keep the edge's defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pinning {
    /// A pin's life after its last use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Pins remembered; `0` is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
}

impl Pinning {
    /// Pinning off (`capacity: 0`).
    pub fn off() -> Pinning {
        Pinning {
            capacity: Some(0),
            ..Pinning::default()
        }
    }

    /// A pin's life after its last use.
    pub fn ttl(mut self, d: Duration) -> Pinning {
        self.ttl = Some(text(d));
        self
    }
}

/// Upstream timeouts; unset ones keep the edge's defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeouts {
    /// Connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// Any wait for upstream bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    /// One upstream write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    /// Idle pooled connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
}

impl Timeouts {
    /// The edge's defaults.
    pub fn new() -> Timeouts {
        Timeouts::default()
    }

    /// Connect timeout.
    pub fn connect(mut self, d: Duration) -> Timeouts {
        self.connect = Some(text(d));
        self
    }

    /// Read timeout.
    pub fn read(mut self, d: Duration) -> Timeouts {
        self.read = Some(text(d));
        self
    }

    /// Write timeout.
    pub fn write(mut self, d: Duration) -> Timeouts {
        self.write = Some(text(d));
        self
    }

    /// Idle time of pooled connections.
    pub fn idle(mut self, d: Duration) -> Timeouts {
        self.idle = Some(text(d));
        self
    }
}

/// Upstream TLS settings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamTls {
    /// Verify the upstream certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// PEM bundle of CAs to trust.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}
