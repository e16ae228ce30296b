//! What the request path reads: the compiled generation (routes, pools with their token gates
//! and pair pins, endpoints with their health, load and keys, trusted proxies, listener
//! certificates), swapped as a whole behind an `ArcSwap` so a request sees one consistent
//! generation, and the process phase (`drain`).
//!
//! Built from `config`'s [`ServiceConfig`] only; uses `signalr` for the rule chain and token
//! verification.

mod admin_token;
pub(crate) mod drain;
mod endpoint;
mod health;
pub mod limits;
mod load;
mod pins;
mod pool;
pub mod resolve;
mod routes;
mod tls;
mod tokens;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use pingora_core::tls::sign::CertifiedKey;

use crate::config::{
    Config, ConfigError, Forwarding, Limits, LogFormat, PathError, Resolver, ServiceConfig,
};
pub use admin_token::{AdminToken, MIN_TOKEN_CHARS};
pub use endpoint::Endpoint;
pub use health::HealthView;
#[cfg(test)]
pub(crate) use health::Prober;
use limits::ClientRate;
pub use load::LoadGuard;
pub use pins::{PinKey, PinStore};
pub use pool::Pool;
use resolve::Addresses;
use routes::RouteTable;
use tls::load_certified_key;
pub use tokens::TokenRefusal;

/// One compiled configuration.
#[derive(Debug)]
pub struct Runtime {
    /// The route table.
    pub routes: RouteTable,
    /// Pools, indexed by `Route::pool`.
    pub pools: Vec<Arc<Pool>>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Forwarding headers to set.
    pub forwarding: Forwarding,
    /// Certificate and key of each listener (`None` for plain ones), by listener index.
    pub listener_certs: Vec<Option<Arc<CertifiedKey>>>,
    /// Connection cap of each listener, by listener index.
    pub listener_connections: Vec<usize>,
    /// Client, connection and request limits.
    pub limits: Limits,
    /// Requests per client in the current window (kept by a reload that keeps the window).
    pub client_rate: Arc<ClientRate>,
    /// The bearer token the admin listener requires, if any.
    pub admin_token: Option<AdminToken>,
    /// How endpoint host names are resolved again, and how often.
    pub resolver: Resolver,
    /// How access lines are written.
    pub log_format: LogFormat,
    /// 1 for the config loaded at start, one more for each successful reload.
    pub generation: u64,
}

/// The shared, swappable runtime.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

impl Runtime {
    /// Compiles a checked config, resolving its endpoint host names now (blocking);
    /// `previous` keeps health state of unchanged endpoints, and the address of a host while DNS
    /// still lists it.
    pub fn compile(
        config: &ServiceConfig,
        file: &Path,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, ConfigError> {
        let known = previous
            .map(Runtime::resolved_addresses)
            .unwrap_or_default();
        let addresses = resolve::resolve_all(config, |host| known.get(host).copied());
        Runtime::compile_with(config, file, previous, &addresses)
    }

    /// Compiles a checked config with the endpoint addresses given (`addresses`), so nothing
    /// is resolved here; `previous` keeps health state of unchanged endpoints.
    pub fn compile_with(
        config: &ServiceConfig,
        file: &Path,
        previous: Option<&Runtime>,
        addresses: &Addresses,
    ) -> Result<Runtime, ConfigError> {
        let mut pools = Vec::with_capacity(config.pools.len());
        for (name, cfg) in &config.pools {
            let old = previous.and_then(|p| p.pool(name));
            pools.push(Arc::new(
                Pool::compile(name, cfg, old, addresses).map_err(|e| e.in_file(file))?,
            ));
        }
        let mut routes = RouteTable::compile(
            &config.routes,
            |name| pools.iter().position(|p| p.name == name),
            config.limits.max_body_bytes,
            previous.map(|p| &p.routes),
        )
        .map_err(|e| e.in_file(file))?;
        routes.count_requests(&pools);
        let interval = config.limits.per_client.interval;
        let client_rate = match previous {
            Some(p) if p.client_rate.interval == interval => p.client_rate.clone(),
            _ => Arc::new(ClientRate::new(interval)),
        };
        let mut listener_certs = Vec::with_capacity(config.listener_certs.len());
        for (i, tls) in config.listener_certs.iter().enumerate() {
            listener_certs.push(match tls {
                None => None,
                Some(tls) => Some(load_certified_key(&tls.cert, &tls.key).map_err(|e| {
                    let path = match e.path.as_str() {
                        "" => format!("listeners[{i}].tls"),
                        which => format!("listeners[{i}].tls.{which}"),
                    };
                    PathError::new(path, e.message).in_file(file)
                })?),
            });
        }
        let admin_token = match &config.admin_token {
            Some(source) => Some(AdminToken::load(source).map_err(|e| e.in_file(file))?),
            None => None,
        };
        Ok(Runtime {
            routes,
            pools,
            trusted_proxies: config.trusted_proxies.clone(),
            forwarding: config.forwarding,
            listener_certs,
            listener_connections: config.listener_connections.clone(),
            limits: config.limits.clone(),
            client_rate,
            admin_token,
            resolver: config.resolver.clone(),
            log_format: config.log.format,
            generation: previous.map_or(1, |p| p.generation + 1),
        })
    }

    /// The address each host name of the active endpoints resolved to (not the fixed ones).
    pub fn resolved_addresses(&self) -> std::collections::BTreeMap<&str, std::net::IpAddr> {
        self.pools
            .iter()
            .flat_map(|p| &p.endpoints)
            .filter(|e| e.resolved)
            .map(|e| (e.host.as_str(), e.addr.ip()))
            .collect()
    }

    /// A pool by name.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.as_ref())
    }

    /// Loads, validates and compiles a config file in one step.
    pub fn load(file: &Path, previous: Option<&Runtime>) -> Result<(Config, Runtime), ConfigError> {
        let config = crate::config::load(file)?;
        let runtime = Runtime::compile(&config.service, file, previous)?;
        Ok((config, runtime))
    }
}

#[cfg(test)]
mod pool_tests;
