//! One upstream, ready for the request path: address resolved, peer and probe prepared.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use log::warn;
use pingora_core::protocols::tls::CaType;
use pingora_core::upstreams::peer::HttpPeer;

use super::health::{now_ms, Health, HealthView, ProbeTarget, Prober};
use super::load::Load;
use super::resolve::{literal, Addresses};
use crate::config::{EndpointSpec, PassiveHealth, PoolConfig};
use crate::metrics::{EndpointMetrics, HealthMetrics};
use crate::signalr::token::TokenKey;
use crate::signalr::Candidate;

/// One upstream, ready for the request path.
#[derive(Debug)]
pub struct Endpoint {
    /// Name on the ring.
    pub name: String,
    /// Host name: Host header, SNI, token audience.
    pub host: String,
    /// `Host` header value (host, plus port when not the default).
    pub authority: HeaderValue,
    /// Resolved (or configured) address.
    pub addr: SocketAddr,
    /// The address came from DNS (a host name without a fixed `address`): the refresh task
    /// resolves it again.
    pub resolved: bool,
    /// Upstream speaks TLS.
    pub tls: bool,
    /// Health state, shared across reloads of an unchanged endpoint.
    pub health: Arc<Health>,
    /// Requests it holds now, shared across reloads of an unchanged endpoint.
    pub load: Arc<Load>,
    /// What a pair pin names: the endpoint's name and address, so a pin made before a DNS
    /// move still leads to the address that answered the negotiate (retired by the move).
    pub pin: Arc<str>,
    /// Active probe, if the pool has health checks.
    pub prober: Option<Arc<Prober>>,
    /// The pool's passive-health settings (this generation's; the state is in `health`).
    pub passive: PassiveHealth,
    /// The AccessKey its tokens are signed with (from a connection string), kept even while
    /// the pool does not verify tokens: a later reload may turn that on and retire this one.
    pub token_key: Option<TokenKey>,
    /// Its position in its pool's endpoints (where its request counters are).
    pub slot: usize,
    /// Its metric handles (the same series across reloads).
    pub metrics: EndpointMetrics,
    peer: HttpPeer,
}

impl Endpoint {
    /// Prepares endpoint `slot` of pool `pool_name` at its address (fixed, or what
    /// `addresses` says its host resolved to); `ca` is the pool's trust bundle.
    pub fn build(
        (pool_name, slot): (&str, usize),
        spec: &EndpointSpec,
        pool: &PoolConfig,
        ca: Option<Arc<CaType>>,
        addresses: &Addresses,
    ) -> Result<Endpoint, String> {
        let (addr, resolved) = match spec.address {
            Some(a) => (a, false),
            None => {
                let ip = addresses
                    .get(&spec.host)
                    .map_err(|e| format!("cannot resolve {}:{}: {e}", spec.host, spec.port))?;
                (
                    SocketAddr::new(ip, spec.port),
                    literal(&spec.host).is_none(),
                )
            }
        };
        let authority = spec.authority();
        let authority =
            HeaderValue::from_str(&authority).map_err(|_| format!("invalid host {authority:?}"))?;
        let verify = pool.tls.verify;
        let sni = if spec.tls {
            spec.host.clone()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(addr, spec.tls, sni);
        let t = &pool.timeouts;
        let o = &mut peer.options;
        o.connection_timeout = Some(t.connect);
        o.total_connection_timeout = Some(t.connect);
        o.read_timeout = Some(t.read);
        o.write_timeout = Some(t.write);
        o.idle_timeout = Some(t.idle);
        o.verify_cert = verify;
        o.verify_hostname = verify;
        o.ca = ca.clone();
        let prober = match &pool.health_check {
            None => None,
            Some(hc) => {
                let target = ProbeTarget {
                    host: &spec.host,
                    authority: authority.to_str().unwrap_or_default(),
                    tls: spec.tls,
                    verify,
                    ca,
                    addr,
                };
                Some(Arc::new(Prober::new(hc, target)?))
            }
        };
        Ok(Endpoint {
            pin: Arc::from(format!("{}@{addr}", spec.name)),
            name: spec.name.clone(),
            host: spec.host.clone(),
            authority,
            addr,
            resolved,
            tls: spec.tls,
            health: Arc::new(Health::observed(HealthMetrics::new(pool_name, &spec.name))),
            load: Arc::new(Load::default()),
            prober,
            passive: pool.passive_health,
            token_key: spec.access_key.as_deref().map(TokenKey::new),
            slot,
            metrics: EndpointMetrics::new(pool_name, &spec.name),
            peer,
        })
    }

    /// A fresh peer for one upstream request.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }

    /// Whether new requests may go here.
    pub fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    /// Counts a failed request against the endpoint (`what` failed, for the log); logs the
    /// ejection it may start.
    pub fn record_failure(&self, pool: &str, what: &str) {
        match self.health.passive_failure(&self.passive, now_ms()) {
            Some(d) => warn!(
                "pool {pool}: endpoint {} ({}) ejected for {d:?} after {} consecutive failures \
                 (the last: {what})",
                self.name, self.addr, self.passive.failures
            ),
            None => log::info!(
                "pool {pool}: endpoint {} ({}) failed: {what}",
                self.name,
                self.addr
            ),
        }
    }

    /// Records an answer that ends the endpoint's failure streak.
    pub fn record_success(&self) {
        self.health.passive_success();
    }

    /// `Retry-After` seconds for a request refused because the endpoint is unavailable: what is
    /// left of its ejection, else the probe interval (the soonest a probe can bring it back),
    /// at least 1.
    pub fn retry_after(&self) -> u64 {
        let wait = self
            .health
            .ejection_left(now_ms())
            .or(self.prober.as_ref().map(|p| p.interval))
            .unwrap_or(Duration::from_secs(1));
        retry_after_secs(wait)
    }

    /// The health state as `/status` shows it.
    pub fn health_view(&self) -> HealthView {
        self.health.view(now_ms())
    }

    /// Identity for keeping health state across reloads: same name, address, scheme and host.
    pub fn same_target(&self, other: &Endpoint) -> bool {
        self.name == other.name
            && self.addr == other.addr
            && self.tls == other.tls
            && self.host == other.host
    }

    /// `scheme://host@address`, for reload reports.
    pub fn target(&self) -> String {
        format!(
            "{}://{}@{}",
            if self.tls { "https" } else { "http" },
            self.host,
            self.addr
        )
    }
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After` has no fractions).
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl Candidate for Arc<Endpoint> {
    fn host(&self) -> &str {
        &self.host
    }

    fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    fn load(&self) -> usize {
        self.load.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(10)), 10);
    }
}
