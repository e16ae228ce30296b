//! The instance-choice rules and the chain that applies them, in the pool's order.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::keys::{ip_key, token_signature, with_audience_host, AffinityInput};
use super::ring::Ring;

/// A rule that picks the endpoint of a request. The first four are configurable
/// (`affinity:` of a SignalR pool); the last three only say how a choice was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The host in the access token's `aud` claim, when it is a pool endpoint.
    Audience,
    /// Consistent hash of the percent-decoded `asrs_request_id` query parameter.
    RequestId,
    /// Consistent hash of the access token's signature.
    Signature,
    /// Consistent hash of the client address.
    ClientIp,
    /// The next healthy endpoint in turn (app pools, or no key at all).
    #[serde(skip_deserializing)]
    RoundRobin,
    /// The token's `aud` named an endpoint a reload removed: only requests of connections it
    /// already holds go there.
    #[serde(skip_deserializing)]
    Retired,
    /// The request carries the connection ids or request id of a negotiate that an endpoint
    /// answered: it goes where the negotiate went, whatever the ring says now.
    #[serde(skip_deserializing)]
    Pinned,
}

/// The default rule order of SignalR pools.
pub const DEFAULT_RULES: [Rule; 4] = [
    Rule::Audience,
    Rule::RequestId,
    Rule::Signature,
    Rule::ClientIp,
];

impl Rule {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Audience => "audience",
            Rule::RequestId => "request_id",
            Rule::Signature => "signature",
            Rule::ClientIp => "client_ip",
            Rule::RoundRobin => "round_robin",
            Rule::Retired => "retired",
            Rule::Pinned => "pinned",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the rules need to know of an endpoint.
pub trait Candidate {
    /// The host name its tokens name in `aud`.
    fn host(&self) -> &str;
    /// Whether new requests may go there.
    fn is_healthy(&self) -> bool;
    /// Requests (and connections) it holds now, for bounded-load hashing.
    fn load(&self) -> usize {
        0
    }
}

/// A pool's rule chain: its rules in order, the ring over its endpoint names, the load factor
/// of bounded-load hashing (if on), and the round-robin cursor that ends the chain.
#[derive(Debug)]
pub struct Affinity {
    rules: Vec<Rule>,
    ring: Ring,
    bounded_load: Option<f64>,
    next: AtomicUsize,
}

impl Affinity {
    /// The chain of `rules` over endpoints named `names` (in the order `choose` gets them).
    pub fn new<S: AsRef<str>>(rules: Vec<Rule>, names: &[S]) -> Self {
        Affinity {
            rules,
            ring: Ring::new(names),
            bounded_load: None,
            next: AtomicUsize::new(0),
        }
    }

    /// Bounds the `request_id` rule's choices by load: no endpoint takes a new request at or
    /// above `c` times the average load (see [`Ring::pick_bounded`]).
    pub fn with_bounded_load(mut self, c: Option<f64>) -> Self {
        self.bounded_load = c;
        self
    }

    /// The endpoint of a request and the rule that chose it, or `None` when no endpoint is
    /// healthy. `retired` are endpoints a reload removed: reached only by the audience of a
    /// request of an existing connection, whose token is valid there only.
    pub fn choose<'e, E: Candidate>(
        &self,
        active: &'e [E],
        retired: &'e [E],
        input: &AffinityInput<'_>,
    ) -> Option<(&'e E, Rule)> {
        let healthy = |i: usize| active[i].is_healthy();
        for &rule in &self.rules {
            let picked = match rule {
                Rule::Audience => input
                    .token
                    .as_deref()
                    .and_then(|t| audience(t, active))
                    .filter(|&i| healthy(i)),
                Rule::RequestId => {
                    input
                        .request_id
                        .as_deref()
                        .and_then(|k| match self.bounded_load {
                            None => self.ring.pick(k, healthy),
                            Some(c) => self.ring.pick_bounded(k, healthy, |i| active[i].load(), c),
                        })
                }
                Rule::Signature => input
                    .token
                    .as_deref()
                    .and_then(token_signature)
                    .and_then(|s| self.ring.pick(s.as_bytes(), healthy)),
                Rule::ClientIp => input.client_ip.and_then(|ip| {
                    let (bytes, n) = ip_key(ip);
                    self.ring.pick(&bytes[..n], healthy)
                }),
                Rule::RoundRobin | Rule::Retired | Rule::Pinned => None,
            };
            if let Some(i) = picked {
                return Some((&active[i], rule));
            }
            if rule == Rule::Audience && input.existing_connection {
                if let Some(i) = input.token.as_deref().and_then(|t| audience(t, retired)) {
                    return Some((&retired[i], Rule::Retired));
                }
            }
        }
        self.round_robin(active)
            .map(|i| (&active[i], Rule::RoundRobin))
    }

    /// The next healthy endpoint in turn.
    fn round_robin<E: Candidate>(&self, active: &[E]) -> Option<usize> {
        let n = active.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| active[i].is_healthy())
    }
}

/// The index of the endpoint the token's audience names, healthy or not.
fn audience<E: Candidate>(token: &str, among: &[E]) -> Option<usize> {
    if among.is_empty() {
        return None;
    }
    with_audience_host(token, |host| {
        among
            .iter()
            .position(|e| e.host().eq_ignore_ascii_case(host))
    })
    .flatten()
}
