//! The typed configuration the edge runs on, split by what a change to it needs: the process
//! settings only a binary upgrade can change, and the service a reload swaps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;

use super::file::{Forwarding, HealthCheck, HostHeader, ListenerTls, LogSection, PoolKind, Route};
use super::file::{PassiveHealth, Pinning, Resolver, ServerSection, Timeouts, Tokens, UpstreamTls};
use super::limits::Limits;
use super::values::Address;
use crate::signalr::Rule;

/// A checked configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Sockets, threads, privileges, the admin listener: fixed for the life of the process.
    pub process: ProcessConfig,
    /// Pools, routes, trust and certificates: what a reload may change.
    pub service: ServiceConfig,
}

/// What shapes the process itself. A reload that changes any of it is refused: every field
/// here is compared (see `reload::diff`), so a new one is upgrade-only without further ado.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessConfig {
    /// Pingora's server settings.
    pub server: ServerSection,
    /// The listening sockets.
    pub listeners: Vec<ListenerSocket>,
    /// The admin listener's address, if any.
    pub admin: Option<Address>,
}

impl Config {
    /// A warning when the admin listener is reachable beyond loopback without a token: anyone
    /// who can reach it could reload the file and read `/status`.
    pub fn admin_warning(&self) -> Option<String> {
        let listen = self.process.admin?;
        if listen.0.ip().is_loopback() || self.service.admin_token.is_some() {
            return None;
        }
        Some(format!(
            "admin listener {listen} is reachable beyond loopback without a token: set \
             admin.token_file or admin.token_env, or listen on 127.0.0.1"
        ))
    }
}

/// One listening socket, without its certificate (which a reload may rotate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerSocket {
    /// Where it listens.
    pub address: Address,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// User-space read buffer per connection (see the file format's `read_buffer`).
    pub read_buffer: Option<usize>,
}

/// What a reload swaps: compiled into a `runtime::Runtime`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Where the admin listener's bearer token is read from, if it requires one. Read when a
    /// generation is compiled, so a reload rotates it (the listener itself is process state).
    pub admin_token: Option<AdminTokenSource>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Forwarding headers to set.
    pub forwarding: Forwarding,
    /// Pools by name.
    pub pools: BTreeMap<String, PoolConfig>,
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// Certificate files of each listener (`None` for plain ones), by listener index.
    pub listener_certs: Vec<Option<ListenerTls>>,
    /// Connection cap of each listener, by listener index.
    pub listener_connections: Vec<usize>,
    /// Client, connection and request limits.
    pub limits: Limits,
    /// How endpoint host names are resolved, and how often again.
    pub resolver: Resolver,
    /// The access log's format.
    pub log: LogSection,
}

/// Where the admin token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenSource {
    /// A file (`admin.token_file`).
    File(PathBuf),
    /// An environment variable (`admin.token_env`).
    Env(String),
}

/// A pool with its defaults applied and its endpoints read.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// `signalr` or `app`.
    pub kind: PoolKind,
    /// The upstreams, in file order.
    pub endpoints: Vec<EndpointSpec>,
    /// Instance-choice rules in order (empty for app pools).
    pub rules: Vec<Rule>,
    /// `Host` sent upstream.
    pub host_header: HostHeader,
    /// Active health checks.
    pub health_check: Option<HealthCheck>,
    /// Passive health: ejection of endpoints that fail requests.
    pub passive_health: PassiveHealth,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Upstream TLS settings.
    pub tls: UpstreamTls,
    /// Access-token verification (`verify: false` unless the file turns it on).
    pub tokens: Tokens,
    /// Pair pinning (`capacity: 0`, off, for app pools).
    pub pinning: Pinning,
    /// The load factor of bounded-load hashing, when on.
    pub bounded_load: Option<f64>,
}

/// One endpoint, from its URL or connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Ring name: the configured name, else the host name (with the port when not the default).
    pub name: String,
    /// Upstream speaks TLS.
    pub tls: bool,
    /// Host name: the `Host` header, the SNI and the token audience it answers to.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Fixed address that overrides DNS.
    pub address: Option<SocketAddr>,
    /// The instance's AccessKey, when given by a connection string.
    pub access_key: Option<String>,
}

impl EndpointSpec {
    /// The `Host` header value: the host, plus the port when not the scheme's default.
    pub fn authority(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
