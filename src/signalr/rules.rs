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

    /// The endpoint of a request and the rule that chose it. `retired` are endpoints a reload
    /// removed. When the token's audience names endpoints (by host; several may share one) the
    /// answer is theirs alone: the first healthy one; else, for a request of an existing
    /// connection, the first of them anyway (it can succeed nowhere else), and for a new one
    /// `Unavailable` (any other instance would refuse the token). A retired endpoint is reached
    /// only by requests of its existing connections.
    pub fn choose<'e, E: Candidate>(
        &self,
        active: &'e [E],
        retired: &'e [E],
        input: &AffinityInput<'_>,
    ) -> Choice<'e, E> {
        let healthy = |i: usize| active[i].is_healthy();
        for &rule in &self.rules {
            let picked = match rule {
                Rule::Audience => match input.token.as_deref() {
                    Some(t) => match self.by_audience(t, active, retired, input) {
                        Some(choice) => return choice,
                        None => None,
                    },
                    None => None,
                },
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
                return Choice::To(&active[i], rule);
            }
        }
        match self.round_robin(active) {
            Some(i) => Choice::To(&active[i], Rule::RoundRobin),
            None => Choice::NoneHealthy,
        }
    }

    /// The audience rule's answer, or `None` when the token names no endpoint of the pool.
    fn by_audience<'e, E: Candidate>(
        &self,
        token: &str,
        active: &'e [E],
        retired: &'e [E],
        input: &AffinityInput<'_>,
    ) -> Option<Choice<'e, E>> {
        let existing = input.existing_connection;
        if let Some(named) = audience(token, active) {
            return Some(match named {
                Named::Healthy(i) => Choice::To(&active[i], Rule::Audience),
                Named::Down(i) if existing => Choice::To(&active[i], Rule::Audience),
                Named::Down(i) => Choice::Unavailable(&active[i]),
            });
        }
        let i = audience(token, retired)?.index();
        Some(if existing {
            Choice::To(&retired[i], Rule::Retired)
        } else {
            Choice::Unavailable(&retired[i])
        })
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

/// What the rule chain decided.
#[derive(Debug)]
pub enum Choice<'e, E> {
    /// This endpoint, chosen by this rule.
    To(&'e E, Rule),
    /// The token names this endpoint and it cannot take a new connection (down, or retired):
    /// the client should negotiate again rather than be sent to an instance that refuses it.
    Unavailable(&'e E),
    /// No endpoint of the pool is healthy.
    NoneHealthy,
}

impl<'e, E> Choice<'e, E> {
    /// The endpoint and rule, when one was chosen.
    pub fn chosen(self) -> Option<(&'e E, Rule)> {
        match self {
            Choice::To(e, rule) => Some((e, rule)),
            Choice::Unavailable(_) | Choice::NoneHealthy => None,
        }
    }
}

/// The endpoint a token's audience names.
enum Named {
    /// The first healthy endpoint with that host.
    Healthy(usize),
    /// The first endpoint with that host; none of them is healthy.
    Down(usize),
}

impl Named {
    fn index(&self) -> usize {
        match *self {
            Named::Healthy(i) | Named::Down(i) => i,
        }
    }
}

/// The endpoint among `among` that the token's audience names, if any.
fn audience<E: Candidate>(token: &str, among: &[E]) -> Option<Named> {
    if among.is_empty() {
        return None;
    }
    with_audience_host(token, |host| {
        let mut first = None;
        for (i, e) in among.iter().enumerate() {
            if e.host().eq_ignore_ascii_case(host) {
                if e.is_healthy() {
                    return Some(Named::Healthy(i));
                }
                first.get_or_insert(Named::Down(i));
            }
        }
        first
    })
    .flatten()
}
