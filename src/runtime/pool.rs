//! A compiled pool: its endpoints, the ones a reload retired, the rule chain over them, and
//! its token gate.

use std::sync::Arc;

use super::endpoint::Endpoint;
use super::tls::load_ca_file;
use super::tokens::{TokenGate, TokenRefusal};
use crate::config::{HostHeader, PathError, PoolConfig, PoolKind};
use crate::signalr::{Affinity, AffinityInput, Choice};

/// A compiled pool.
#[derive(Debug)]
pub struct Pool {
    /// Name from config.
    pub name: String,
    /// SignalR or app.
    pub kind: PoolKind,
    /// Endpoints in config order (the ring's order).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Endpoints earlier generations had and this one does not: no new connections, no health
    /// checks, but requests of their existing connections (found by token audience) still go
    /// there, so a reload does not break a long-polling client or a connect in flight.
    pub retired: Vec<Arc<Endpoint>>,
    /// What `Host` goes upstream.
    pub host_header: HostHeader,
    affinity: Affinity,
    /// Verifies access tokens, when the pool asks for it.
    pub(super) tokens: Option<TokenGate>,
}

impl Pool {
    /// Compiles a configured pool; `previous` lends health state to unchanged endpoints.
    pub fn compile(
        name: &str,
        cfg: &PoolConfig,
        previous: Option<&Pool>,
    ) -> Result<Pool, PathError> {
        let path = format!("pools.{name}");
        let ca = match &cfg.tls.ca_file {
            None => None,
            Some(f) => Some(
                load_ca_file(f).map_err(|m| PathError::new(format!("{path}.tls.ca_file"), m))?,
            ),
        };
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        for (i, spec) in cfg.endpoints.iter().enumerate() {
            let mut ep = Endpoint::build(spec, cfg, ca.clone())
                .map_err(|m| PathError::new(format!("{path}.endpoints[{i}]"), m))?;
            if let Some(old) =
                previous.and_then(|p| p.endpoints.iter().find(|o| o.same_target(&ep)))
            {
                ep.health = old.health.clone();
            }
            endpoints.push(Arc::new(ep));
        }
        let retired = previous.map_or_else(Vec::new, |p| {
            p.endpoints
                .iter()
                .chain(&p.retired)
                .filter(|o| !endpoints.iter().any(|e| e.name == o.name))
                .cloned()
                .collect()
        });
        let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
        let tokens = TokenGate::compile(name, cfg, &endpoints);
        Ok(Pool {
            name: name.to_string(),
            kind: cfg.kind,
            affinity: Affinity::new(cfg.rules.clone(), &names),
            endpoints,
            retired,
            host_header: cfg.host_header,
            tokens,
        })
    }

    /// Checks the access token `input` carries, when the pool verifies tokens; `query` is the
    /// request's (its `hub` must be the token's).
    pub fn check_token(
        &self,
        input: &AffinityInput<'_>,
        query: Option<&str>,
    ) -> Result<(), TokenRefusal> {
        match &self.tokens {
            None => Ok(()),
            Some(gate) => gate.check(
                input.token.as_deref(),
                query,
                &self.endpoints,
                &self.retired,
            ),
        }
    }

    /// The endpoint of a request and the rule that chose it, or why there is none.
    pub fn choose(&self, input: &AffinityInput<'_>) -> Choice<'_, Arc<Endpoint>> {
        self.affinity.choose(&self.endpoints, &self.retired, input)
    }

    /// The endpoint to try after a connect to `failed` failed, for app pools (nothing was sent,
    /// so another app server may take the request); `tried` collects the endpoints tried so
    /// far, which bounds the retries by the pool's size. SignalR pools never retry elsewhere:
    /// the connection lives on one instance.
    pub fn next_after_failure(
        &self,
        failed: &Arc<Endpoint>,
        tried: &mut Vec<usize>,
    ) -> Option<&Arc<Endpoint>> {
        if self.kind != PoolKind::App {
            return None;
        }
        let at = self.endpoints.iter().position(|e| Arc::ptr_eq(e, failed))?;
        if !tried.contains(&at) {
            tried.push(at);
        }
        let next = next_untried(self.endpoints.len(), at, tried, |i| {
            self.endpoints[i].is_healthy()
        })?;
        Some(&self.endpoints[next])
    }
}

/// The first healthy endpoint after `at` (wrapping) that is not in `tried`.
fn next_untried(
    n: usize,
    at: usize,
    tried: &[usize],
    healthy: impl Fn(usize) -> bool,
) -> Option<usize> {
    (1..n)
        .map(|k| (at + k) % n)
        .find(|i| !tried.contains(i) && healthy(*i))
}
