//! The file format: what an operator writes, with every value already typed (see `values`).
//! `check` turns it into the typed [`Config`](super::Config) the rest of the edge uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::connstr::ConnectionString;
use super::limits::Limits;
use super::values::{AbsPath, Address, EndpointUrl, EnvName, HostName, Method, StripPrefix};
use crate::signalr::Rule;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Pingora server settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Where the edge accepts client traffic.
    pub listeners: Vec<Listener>,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDR blocks).
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Forwarding headers set from the client connection besides `X-Forwarded-*`.
    #[serde(default)]
    pub forwarding: Forwarding,
    /// Upstream pools by name.
    pub pools: BTreeMap<String, Pool>,
    /// Routes, matched by host and longest path prefix.
    pub routes: Vec<Route>,
    /// The admin listener (reload, readiness, counters); off when the key is absent. `admin:`
    /// with nothing under it is the default listener, like `admin: {}`.
    #[serde(default, deserialize_with = "admin_or_default")]
    pub admin: Option<AdminSection>,
    /// What clients, connections and requests may hold (see `limits`).
    #[serde(default)]
    pub limits: Limits,
    /// How endpoint host names are resolved, at load and again on a schedule.
    #[serde(default)]
    pub resolver: Resolver,
    /// The access log's format. Reloadable.
    #[serde(default)]
    pub log: LogSection,
}

/// The access log (`RUST_LOG` target `access`): its format. Reloadable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` (one `key=value` line per request) or `json` (one JSON object per line).
    pub format: LogFormat,
}

/// How access lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `client "METHOD target" status key=value...`, after the logger's prefix.
    #[default]
    Text,
    /// One JSON object per line, without the logger's prefix.
    Json,
}

/// Resolution of endpoint host names (those without a fixed `address`): at load, at each
/// reload, and again every `refresh`, so a DNS change (a private endpoint's failover) is seen
/// without a reload. Reloadable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resolver {
    /// Time between two resolutions of every endpoint host name.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// DNS servers (`ip:port`) asked over UDP (TCP for long answers), in order; none: the
    /// system's resolver (`/etc/hosts`, `/etc/resolv.conf`), as at load.
    pub nameservers: Vec<Address>,
    /// Longest wait for one answer of a nameserver.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// Default of `resolver.refresh`.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            refresh: DEFAULT_DNS_REFRESH,
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// A present `admin` key is a listener even when YAML gives it no value (`admin:` is null):
/// an operator who wrote the key meant one, and silently having none would be a surprise.
fn admin_or_default<'de, D>(d: D) -> Result<Option<AdminSection>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Some(
        Option::<AdminSection>::deserialize(d)?.unwrap_or_default(),
    ))
}

/// The admin listener: `POST /reload`, `GET /readyz`, `GET /healthz`, `GET /status`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// `ip:port` to bind; loopback by default.
    pub listen: Address,
    /// A file holding the bearer token that `/reload` and `/status` require (none: no token).
    pub token_file: Option<PathBuf>,
    /// An environment variable holding that token, instead of a file.
    pub token_env: Option<EnvName>,
}

/// Where the admin listener binds when the section gives no address.
pub const DEFAULT_ADMIN_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: Address(DEFAULT_ADMIN_LISTEN),
            token_file: None,
            token_env: None,
        }
    }
}

/// Forwarding headers the edge sets on request of the operator. `Forwarded` and `X-Real-IP`
/// from peers that are not trusted proxies are removed either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forwarding {
    /// Set `X-Real-IP` to the client address.
    pub x_real_ip: bool,
    /// Add an RFC 7239 `Forwarded` element (`for`, `proto`, `host`) for the client connection.
    pub forwarded: bool,
}

/// Pingora's own server settings, with defaults that suit an edge daemon. All of them shape the
/// process, so a reload cannot change them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Let idle worker threads steal tasks (off: fewer cross-core wake-ups).
    pub work_stealing: bool,
    /// PID file written when running as a daemon.
    pub pid_file: PathBuf,
    /// Unix socket used to hand listeners to a new process on `-u`.
    pub upgrade_sock: PathBuf,
    /// Error log file when daemonized (stderr otherwise).
    pub error_log: Option<PathBuf>,
    /// The drain deadline: seconds an old process keeps its connections after it stops
    /// accepting (on SIGQUIT or SIGTERM). It exits as soon as none are left; at the deadline the
    /// remaining ones (WebSockets, SSE) are closed.
    pub grace_period_seconds: u64,
    /// Seconds the final shutdown may take.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Idle upstream connections kept for reuse, per worker thread.
    pub upstream_keepalive_pool_size: usize,
    /// Drop privileges to this user after binding (daemon mode).
    pub user: Option<String>,
    /// Drop privileges to this group after binding (daemon mode).
    pub group: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            threads: 1,
            work_stealing: false,
            pid_file: PathBuf::from("/tmp/signalr-edge.pid"),
            upgrade_sock: PathBuf::from("/tmp/signalr-edge-upgrade.sock"),
            error_log: None,
            grace_period_seconds: 30,
            graceful_shutdown_timeout_seconds: 10,
            upstream_keepalive_pool_size: 256,
            user: None,
            group: None,
        }
    }
}

/// One listening address, optionally with TLS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `ip:port` to bind.
    pub address: Address,
    /// Serve TLS with this certificate and key.
    pub tls: Option<ListenerTls>,
    /// User-space read buffer per connection in bytes. Default: none on plain TCP, where the
    /// HTTP layer reads straight from the socket (saving a copy and 64 KiB per connection), and
    /// Pingora's 64 KiB on TLS, which reads in 16 KiB records.
    pub read_buffer: Option<usize>,
    /// Open connections on this listener; beyond it a new connection is closed at once.
    /// Reloadable.
    pub max_connections: Option<usize>,
}

/// Certificate and key for a TLS listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// What kind of upstreams a pool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// Azure SignalR Service instances: sticky choice, Host rewrite.
    Signalr,
    /// Application servers: round robin.
    App,
}

/// The `Host` header sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostHeader {
    /// The endpoint's own host name (required by ASRS, which is multi-tenant).
    Endpoint,
    /// The client's `Host`, unchanged.
    Preserve,
}

/// A named group of upstream endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// `signalr` or `app`.
    pub kind: PoolKind,
    /// The upstreams.
    pub endpoints: Vec<Endpoint>,
    /// Instance-choice rules in order (SignalR pools only).
    pub affinity: Option<Vec<Rule>>,
    /// `Host` sent upstream: `endpoint` (default for SignalR) or `preserve` (default for app).
    pub host_header: Option<HostHeader>,
    /// Active health checks.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Passive health: endpoints that keep failing real requests are ejected for a while.
    #[serde(default)]
    pub passive_health: PassiveHealth,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Upstream TLS settings.
    #[serde(default)]
    pub tls: UpstreamTls,
    /// Access-token verification at the edge (SignalR pools only).
    pub tokens: Option<Tokens>,
    /// Pair pinning: where a negotiate went, its connect and later requests follow (SignalR
    /// pools only; on by default there).
    pub pinning: Option<Pinning>,
    /// Consistent hashing with bounded loads for the `request_id` rule: no endpoint takes a
    /// new request above this factor of the average load (SignalR pools only; off when absent).
    pub bounded_load: Option<f64>,
}

/// One upstream, as a URL or an ASRS connection string.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Stable name used by the hash ring (defaults to the host name).
    pub name: Option<String>,
    /// `http(s)://host[:port]`.
    pub url: Option<EndpointUrl>,
    /// `Endpoint=https://...;AccessKey=...;Version=1.0;[Port=..;][ClientEndpoint=..;]`.
    pub connection_string: Option<ConnectionString>,
    /// `ip:port` to connect to instead of resolving the host (a private endpoint).
    pub address: Option<Address>,
}

/// Which probe a health check sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// An HTTP request that must answer 200.
    Http,
    /// A TCP (and TLS, for https endpoints) connection.
    Tcp,
}

/// Active health-check settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// `http` or `tcp`.
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// HTTP method of the probe.
    pub method: Method,
    /// Path (and query) of the probe.
    pub path: AbsPath,
    /// Time between probes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Connect and read timeout of one probe.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy endpoint healthy.
    pub healthy_threshold: usize,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: usize,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Http,
            method: Method(http::Method::HEAD),
            path: AbsPath("/api/health".into()),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        }
    }
}

/// Passive health (outlier detection), like nginx's `max_fails`/`fail_timeout`: `failures`
/// consecutive failed requests (connect errors and timeouts, no response header within the read
/// timeout, `5xx` to a SignalR negotiate) take an endpoint out of new requests for `ejection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealth {
    /// Consecutive failures that eject an endpoint; `0` turns passive health off.
    pub failures: usize,
    /// How long an ejected endpoint gets no new requests.
    #[serde(with = "humantime_serde")]
    pub ejection: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        PassiveHealth {
            failures: 3,
            ejection: Duration::from_secs(10),
        }
    }
}

/// Upstream timeouts. Defaults suit SignalR: pings every 15 s, long polls held up to 100 s.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// Longest wait for upstream bytes, on any read (long polls, SSE, WebSocket frames).
    #[serde(with = "humantime_serde")]
    pub read: Duration,
    /// Longest wait for one upstream write.
    #[serde(with = "humantime_serde")]
    pub write: Duration,
    /// How long an idle pooled upstream connection is kept.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(120),
            write: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

/// Upstream TLS verification.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// Verify the upstream certificate chain and name.
    pub verify: bool,
    /// PEM bundle of CAs to trust instead of the system roots (private CAs, tests).
    pub ca_file: Option<PathBuf>,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            verify: true,
            ca_file: None,
        }
    }
}

/// Access-token verification at the edge, per SignalR pool: every request routed to the pool
/// (but CORS preflights) must carry a client token that one of its AccessKeys signed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tokens {
    /// Verify tokens here, answering `401` without reaching an instance (off by default).
    pub verify: bool,
    /// How far the edge's clock may be from the token issuer's, on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Audience hosts accepted besides the endpoints' own (geo-replicas behind one resource
    /// name): a token naming one must be signed with one of the pool's AccessKeys.
    pub audiences: Vec<HostName>,
    /// Verified tokens remembered, so that a long poll's requests are not verified again.
    pub cache_size: usize,
}

/// Default of `tokens.clock_skew`.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            verify: false,
            clock_skew: DEFAULT_CLOCK_SKEW,
            audiences: Vec::new(),
            cache_size: 10_000,
        }
    }
}

/// Pair pinning of a SignalR pool: the endpoint that answered a negotiate is remembered, by
/// the connection's ids and the request id, for the requests of that connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pinning {
    /// How long a pin lives after its last use (a long poll refreshes it at each poll).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Pins remembered at most (about 3 per connection); `0` turns pinning off.
    pub capacity: usize,
}

impl Default for Pinning {
    fn default() -> Self {
        Pinning {
            ttl: Duration::from_secs(120),
            capacity: 100_000,
        }
    }
}

/// One route: optional host, path prefix, optional methods, and the pool they go to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Match this `Host` only (case-insensitive, port ignored).
    pub host: Option<HostName>,
    /// Path prefix; the longest matching prefix wins.
    pub path: AbsPath,
    /// Removed from the path before forwarding (`/signalr/client/x` -> `/client/x`), for a
    /// reverse-proxy URL with a path; a prefix of `path` ending at a `/`.
    pub strip_prefix: Option<StripPrefix>,
    /// Match these methods only.
    pub methods: Option<Vec<Method>>,
    /// Name of the pool that serves the route.
    pub pool: String,
    /// Largest request body in bytes (default `limits.max_body_bytes`); `413` beyond.
    pub max_body_bytes: Option<u64>,
    /// Requests (WebSockets and SSE streams included, for as long as they last) the route
    /// serves at once; `503` beyond. No cap by default.
    pub max_in_flight: Option<usize>,
}
