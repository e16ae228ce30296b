//! Upstream pools and endpoints, compiled from config: addresses resolved, peers prepared.

pub mod checker;
pub mod health;
pub mod tls;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::HeaderValue;
use pingora_core::protocols::tls::CaType;
use pingora_core::upstreams::peer::HttpPeer;

use crate::affinity::{ip_key, token_signature, with_audience_host, AffinityInput};
use crate::config::{self, AffinityRule, EndpointSpec, HostHeader, PathError, PoolKind};
use crate::ring::Ring;
use health::{Health, ProbeTarget, Prober};

/// Which rule chose the endpoint of a request (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The token's `aud` named the endpoint.
    Audience,
    /// Hash of `asrs_request_id`.
    RequestId,
    /// Hash of the token signature.
    Signature,
    /// Hash of the client address.
    ClientIp,
    /// Round robin (app pools, or no key at all).
    RoundRobin,
    /// The token's `aud` named an endpoint a reload removed: only requests of connections it
    /// already holds go there.
    Retired,
}

impl Choice {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Audience => "audience",
            Choice::RequestId => "request_id",
            Choice::Signature => "signature",
            Choice::ClientIp => "client_ip",
            Choice::RoundRobin => "round_robin",
            Choice::Retired => "retired",
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// Upstream speaks TLS.
    pub tls: bool,
    /// Health state, shared across reloads of an unchanged endpoint.
    pub health: Arc<Health>,
    /// Active probe, if the pool has health checks.
    pub prober: Option<Arc<Prober>>,
    peer: HttpPeer,
}

impl Endpoint {
    /// A fresh peer for one upstream request.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }

    /// Whether new requests may go here.
    pub fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    /// Identity for keeping health state across reloads: same name, address, scheme and host.
    pub fn same_target(&self, other: &Endpoint) -> bool {
        self.name == other.name
            && self.addr == other.addr
            && self.tls == other.tls
            && self.host == other.host
    }
}

/// A compiled pool.
#[derive(Debug)]
pub struct Pool {
    /// Name from config.
    pub name: String,
    /// SignalR or app.
    pub kind: PoolKind,
    /// Endpoints in config order (ring indexes refer to these).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Endpoints earlier generations had and this one does not: no new connections, no health
    /// checks, but requests of their existing connections (found by token audience) still go
    /// there, so a reload does not break a long-polling client or a connect in flight.
    /// Indexes past `endpoints` refer to these.
    pub retired: Vec<Arc<Endpoint>>,
    /// What `Host` goes upstream.
    pub host_header: HostHeader,
    rules: Vec<AffinityRule>,
    ring: Ring,
    next: AtomicUsize,
}

/// The default rule order of SignalR pools.
pub const DEFAULT_RULES: [AffinityRule; 4] = [
    AffinityRule::Audience,
    AffinityRule::RequestId,
    AffinityRule::Signature,
    AffinityRule::ClientIp,
];

impl Pool {
    /// Compiles a configured pool; `previous` lends health state to unchanged endpoints.
    pub fn compile(
        name: &str,
        cfg: &config::Pool,
        previous: Option<&Pool>,
    ) -> Result<Pool, PathError> {
        let path = format!("pools.{name}");
        let ca = match &cfg.tls.ca_file {
            None => None,
            Some(f) => Some(
                tls::load_ca_file(f)
                    .map_err(|m| PathError::new(format!("{path}.tls.ca_file"), m))?,
            ),
        };
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        for (i, e) in cfg.endpoints.iter().enumerate() {
            let ep_path = format!("{path}.endpoints[{i}]");
            let spec = config::parse_endpoint(e, &ep_path)?;
            let mut ep =
                build_endpoint(&spec, cfg, ca.clone()).map_err(|m| PathError::new(&ep_path, m))?;
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
        let ring = Ring::new(&names);
        let rules = match cfg.kind {
            PoolKind::Signalr => cfg
                .affinity
                .clone()
                .unwrap_or_else(|| DEFAULT_RULES.to_vec()),
            PoolKind::App => Vec::new(),
        };
        let host_header = cfg.host_header.unwrap_or(match cfg.kind {
            PoolKind::Signalr => HostHeader::Endpoint,
            PoolKind::App => HostHeader::Preserve,
        });
        Ok(Pool {
            name: name.to_string(),
            kind: cfg.kind,
            endpoints,
            retired,
            host_header,
            rules,
            ring,
            next: AtomicUsize::new(0),
        })
    }

    /// Chooses the endpoint of a request, or `None` when no endpoint is healthy.
    pub fn choose(&self, input: &AffinityInput<'_>) -> Option<(usize, Choice)> {
        let healthy = |i: usize| self.endpoints[i].is_healthy();
        for rule in &self.rules {
            let picked = match rule {
                AffinityRule::Audience => input
                    .token
                    .as_deref()
                    .and_then(|t| {
                        with_audience_host(t, |host| {
                            self.endpoints
                                .iter()
                                .position(|e| e.host.eq_ignore_ascii_case(host))
                        })
                    })
                    .flatten()
                    .filter(|&i| healthy(i))
                    .map(|i| (i, Choice::Audience)),
                AffinityRule::RequestId => input
                    .request_id
                    .as_deref()
                    .and_then(|k| self.ring.pick(k, healthy))
                    .map(|i| (i, Choice::RequestId)),
                AffinityRule::Signature => input
                    .token
                    .as_deref()
                    .and_then(token_signature)
                    .and_then(|s| self.ring.pick(s.as_bytes(), healthy))
                    .map(|i| (i, Choice::Signature)),
                AffinityRule::ClientIp => input.client_ip.and_then(|ip| {
                    let (bytes, n) = ip_key(ip);
                    self.ring
                        .pick(&bytes[..n], healthy)
                        .map(|i| (i, Choice::ClientIp))
                }),
            };
            if picked.is_some() {
                return picked;
            }
            if *rule == AffinityRule::Audience && input.existing_connection {
                if let Some(i) = self.retired_audience(input) {
                    return Some((self.endpoints.len() + i, Choice::Retired));
                }
            }
        }
        self.round_robin().map(|i| (i, Choice::RoundRobin))
    }

    /// The endpoint of index `i` as `choose` returns it (retired ones follow the active ones).
    pub fn endpoint(&self, i: usize) -> Option<&Arc<Endpoint>> {
        self.endpoints
            .get(i)
            .or_else(|| self.retired.get(i.checked_sub(self.endpoints.len())?))
    }

    /// The retired endpoint the token's audience names. Its health is not checked any more:
    /// the token is valid there only, so any other choice fails for sure.
    fn retired_audience(&self, input: &AffinityInput<'_>) -> Option<usize> {
        if self.retired.is_empty() {
            return None;
        }
        with_audience_host(input.token.as_deref()?, |host| {
            self.retired
                .iter()
                .position(|e| e.host.eq_ignore_ascii_case(host))
        })
        .flatten()
    }

    /// The next healthy endpoint in turn.
    fn round_robin(&self) -> Option<usize> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.endpoints[i].is_healthy())
    }
}

/// Resolves and prepares one endpoint.
fn build_endpoint(
    spec: &EndpointSpec,
    cfg: &config::Pool,
    ca: Option<Arc<CaType>>,
) -> Result<Endpoint, String> {
    let addr = match spec.address {
        Some(a) => a,
        None => (spec.host.as_str(), spec.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}:{}: {e}", spec.host, spec.port))?
            .next()
            .ok_or_else(|| format!("{} has no address", spec.host))?,
    };
    let default_port = if spec.tls { 443 } else { 80 };
    let authority = if spec.port == default_port {
        spec.host.clone()
    } else {
        format!("{}:{}", spec.host, spec.port)
    };
    let authority =
        HeaderValue::from_str(&authority).map_err(|_| format!("invalid host {authority:?}"))?;
    let verify = cfg.tls.verify;
    let sni = if spec.tls {
        spec.host.clone()
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(addr, spec.tls, sni);
    let t = &cfg.timeouts;
    let o = &mut peer.options;
    o.connection_timeout = Some(t.connect);
    o.total_connection_timeout = Some(t.connect);
    o.read_timeout = Some(t.read);
    o.write_timeout = Some(t.write);
    o.idle_timeout = Some(t.idle);
    o.verify_cert = verify;
    o.verify_hostname = verify;
    o.ca = ca.clone();
    let prober = match &cfg.health_check {
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
        name: spec.name.clone(),
        host: spec.host.clone(),
        authority,
        addr,
        tls: spec.tls,
        health: Arc::new(Health::default()),
        prober,
        peer,
    })
}

#[cfg(test)]
mod tests;
