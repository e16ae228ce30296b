//! A compiled pool: its endpoints, the ones a reload retired, the rule chain over them, its
//! token gate and its pair pins.

use std::sync::Arc;

use super::endpoint::Endpoint;
use super::pins::{PinKey, PinStore};
use super::resolve::Addresses;
use super::tls::load_ca_file;
use super::tokens::{TokenGate, TokenRefusal};
use crate::config::{HostHeader, PathError, PoolConfig, PoolKind};
use crate::metrics::PoolMetrics;
use crate::signalr::negotiate::NegotiatedIds;
use crate::signalr::{Affinity, AffinityInput, Choice, Rule};

/// A compiled pool.
#[derive(Debug)]
pub struct Pool {
    /// Name from config.
    pub name: String,
    /// SignalR or app.
    pub kind: PoolKind,
    /// Endpoints in config order (the ring's order).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Endpoints earlier generations had and this one does not (removed, or moved to another
    /// address by a reload or a DNS change): no new connections, no health checks, but
    /// requests of their existing connections (found by token audience or by pin) still go
    /// there, so a reload does not break a long-polling client or a connect in flight.
    pub retired: Vec<Arc<Endpoint>>,
    /// What `Host` goes upstream.
    pub host_header: HostHeader,
    affinity: Affinity,
    /// Verifies access tokens, when the pool asks for it.
    pub(super) tokens: Option<TokenGate>,
    /// Where negotiates went, for their connections' later requests (when pinning is on).
    pub pins: Option<Arc<PinStore>>,
    /// Its duration histograms.
    pub metrics: PoolMetrics,
}

impl Pool {
    /// Compiles a configured pool; `previous` lends health state to unchanged endpoints;
    /// `addresses` holds what the endpoints' host names resolved to.
    pub fn compile(
        name: &str,
        cfg: &PoolConfig,
        previous: Option<&Pool>,
        addresses: &Addresses,
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
            let mut ep = Endpoint::build((name, i), spec, cfg, ca.clone(), addresses)
                .map_err(|m| PathError::new(format!("{path}.endpoints[{i}]"), m))?;
            if let Some(old) =
                previous.and_then(|p| p.endpoints.iter().find(|o| o.same_target(&ep)))
            {
                ep.health = old.health.clone();
                ep.load = old.load.clone();
            }
            endpoints.push(Arc::new(ep));
        }
        let retired = previous.map_or_else(Vec::new, |p| {
            p.endpoints
                .iter()
                .chain(&p.retired)
                .filter(|o| !endpoints.iter().any(|e| e.same_target(o)))
                .cloned()
                .collect()
        });
        let names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
        let tokens = TokenGate::compile(name, cfg, &endpoints);
        let pins = PinStore::carry(previous.and_then(|p| p.pins.as_ref()), &cfg.pinning);
        Ok(Pool {
            name: name.to_string(),
            kind: cfg.kind,
            affinity: Affinity::new(cfg.rules.clone(), &names).with_bounded_load(cfg.bounded_load),
            endpoints,
            retired,
            host_header: cfg.host_header,
            tokens,
            pins,
            metrics: PoolMetrics::new(name),
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

    /// The endpoint of a request and the rule that chose it, or why there is none. A pin
    /// comes first; the rule chain decides without one.
    pub fn choose(&self, input: &AffinityInput<'_>) -> Choice<'_, Arc<Endpoint>> {
        if let Some(ep) = self.pinned(input) {
            return Choice::To(ep, Rule::Pinned);
        }
        self.affinity.choose(&self.endpoints, &self.retired, input)
    }

    /// The healthy endpoint a pin names for this request's `id=`, else its request id; a pin
    /// renews on use. A retired endpoint serves only requests of existing connections (a
    /// negotiate is a new one); a pinned endpoint that is gone, or down for a new connection,
    /// leaves the choice to the rules.
    fn pinned(&self, input: &AffinityInput<'_>) -> Option<&Arc<Endpoint>> {
        let pins = self.pins.as_ref()?;
        let keys = [
            input.connection_id.as_deref().map(PinKey::Connection),
            input.request_id.as_deref().map(PinKey::RequestId),
        ];
        let (key, name) = keys
            .into_iter()
            .flatten()
            .find_map(|k| pins.find(k).map(|name| (k, name)))?;
        let retired = if input.existing_connection {
            &self.retired[..]
        } else {
            &[]
        };
        let ep = self
            .endpoints
            .iter()
            .chain(retired)
            .find(|e| *e.pin == *name)
            // A request of an existing connection can succeed only there (if it is down, the
            // answer is the 503 naming it); a new one may start elsewhere.
            .filter(|e| input.existing_connection || e.is_healthy())?;
        pins.pin(key, &name);
        Some(ep)
    }

    /// Remembers that `endpoint` answered a negotiate with request id `request_id` (as soon as
    /// its status is known) and, once its body is read, the connection `ids` it created.
    pub fn pin_negotiate(
        &self,
        endpoint: &Endpoint,
        request_id: Option<&[u8]>,
        ids: Option<&NegotiatedIds>,
    ) {
        let Some(pins) = &self.pins else {
            return;
        };
        let name = &endpoint.pin;
        if let Some(r) = request_id {
            pins.pin(PinKey::RequestId(r), name);
        }
        for id in ids.iter().flat_map(|ids| ids.iter()) {
            pins.pin(PinKey::Connection(id.as_bytes()), name);
        }
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
