//! The immutable compiled state the request path reads: routes, pools, trusted proxies.
//! Swapped as a whole behind an `ArcSwap`, so a request sees one consistent generation.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use pingora_core::tls::sign::CertifiedKey;

use crate::config::{Config, ConfigError, PathError};
use crate::listener_tls::load_certified_key;
use crate::routing::RouteTable;
use crate::upstream::Pool;

/// One compiled configuration.
#[derive(Debug)]
pub struct Runtime {
    /// The route table.
    pub routes: RouteTable,
    /// Pools, indexed by `Route::pool`.
    pub pools: Vec<Arc<Pool>>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Certificate and key of each listener (`None` for plain ones), by listener index.
    pub listener_certs: Vec<Option<Arc<CertifiedKey>>>,
    /// 1 for the config loaded at start, one more for each successful reload.
    pub generation: u64,
}

/// The shared, swappable runtime.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

impl Runtime {
    /// Compiles a validated config; `previous` keeps health state of unchanged endpoints.
    pub fn compile(
        config: &Config,
        file: &Path,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, ConfigError> {
        let mut pools = Vec::with_capacity(config.pools.len());
        for (name, cfg) in &config.pools {
            let old = previous.and_then(|p| p.pool(name));
            pools.push(Arc::new(
                Pool::compile(name, cfg, old).map_err(|e| e.in_file(file))?,
            ));
        }
        let routes = RouteTable::compile(&config.routes, |name| {
            pools.iter().position(|p| p.name == name)
        })
        .map_err(|e| e.in_file(file))?;
        let mut listener_certs = Vec::with_capacity(config.listeners.len());
        for (i, l) in config.listeners.iter().enumerate() {
            listener_certs.push(match &l.tls {
                None => None,
                Some(tls) => {
                    Some(load_certified_key(&tls.cert, &tls.key).map_err(|m| {
                        PathError::new(format!("listeners[{i}].tls"), m).in_file(file)
                    })?)
                }
            });
        }
        Ok(Runtime {
            routes,
            pools,
            trusted_proxies: config.trusted_proxies.clone(),
            listener_certs,
            generation: previous.map_or(1, |p| p.generation + 1),
        })
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
        let runtime = Runtime::compile(&config, file, previous)?;
        Ok((config, runtime))
    }
}
