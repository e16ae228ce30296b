//! A pool's token gate: the key that verifies a token, found by its audience (an endpoint, one
//! a reload retired, or one of the pool's extra audiences), and the cache of verified tokens
//! that spares a long poll's requests a verification each. It belongs to the compiled pool, so
//! a reload (other keys, other endpoints) starts with an empty cache.

use std::collections::BTreeSet;
use std::slice;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::warn;
use pingora_memory_cache::MemoryCache;

use super::endpoint::Endpoint;
use crate::config::PoolConfig;
use crate::signalr::keys::{decode, query_param};
use crate::signalr::token::{self, TokenError, TokenKey, Verified};

/// Why the gate refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// The request carries no token (neither `Authorization: Bearer` nor `access_token`).
    Missing,
    /// The token does not verify.
    Invalid(TokenError),
}

impl From<TokenError> for TokenRefusal {
    fn from(e: TokenError) -> Self {
        TokenRefusal::Invalid(e)
    }
}

/// The longest a verified token is remembered, whatever its `exp` says.
const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

/// A verified token: the cache finds it by a hash, so a hit is confirmed by the whole token.
struct Remembered {
    token: Box<str>,
    hub: Box<str>,
}

/// The verification settings and cache of one pool.
pub struct TokenGate {
    skew: Duration,
    /// Extra audience hosts (lower-case), verified with `shared_keys`.
    audiences: Vec<String>,
    /// The pool's distinct AccessKeys.
    shared_keys: Vec<TokenKey>,
    cache: MemoryCache<String, Arc<Remembered>>,
}

impl std::fmt::Debug for TokenGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGate")
            .field("skew", &self.skew)
            .field("audiences", &self.audiences)
            .field("shared_keys", &self.shared_keys.len())
            .finish_non_exhaustive()
    }
}

/// Where the key of an audience host is.
enum Keys<'a> {
    /// These keys; the token must verify with one.
    Found(&'a [TokenKey]),
    /// A host of the pool given without an AccessKey: the edge cannot verify its tokens.
    Keyless,
    /// Not a host of this pool.
    Unknown,
}

impl TokenGate {
    /// The gate of pool `name` over its compiled `endpoints`, or `None` when the pool does not
    /// verify tokens. Says once (at start and at each reload) what it cannot verify.
    pub fn compile(name: &str, cfg: &PoolConfig, endpoints: &[Arc<Endpoint>]) -> Option<Self> {
        let t = &cfg.tokens;
        if !t.verify {
            return None;
        }
        let keys: BTreeSet<&str> = cfg
            .endpoints
            .iter()
            .filter_map(|e| e.access_key.as_deref())
            .collect();
        let keyless: Vec<&str> = endpoints
            .iter()
            .filter(|e| e.token_key.is_none())
            .map(|e| e.name.as_str())
            .collect();
        if !keyless.is_empty() {
            warn!(
                "pool {name}: tokens.verify is on, but {} has no AccessKey (a url, not a \
                 connection string): tokens naming it pass the edge unverified",
                keyless.join(", ")
            );
        }
        if keys.is_empty() && !t.audiences.is_empty() {
            warn!("pool {name}: no endpoint has an AccessKey: tokens naming tokens.audiences pass the edge unverified");
        }
        Some(TokenGate {
            skew: t.clock_skew,
            audiences: t.audiences.iter().map(|h| h.0.clone()).collect(),
            shared_keys: keys.into_iter().map(TokenKey::new).collect(),
            cache: MemoryCache::new(t.cache_size),
        })
    }

    /// Checks the token of a request whose query is `query` (for its `hub`); `active` and
    /// `retired` are the pool's endpoints, whose keys verify tokens naming them.
    pub fn check(
        &self,
        token: Option<&str>,
        query: Option<&str>,
        active: &[Arc<Endpoint>],
        retired: &[Arc<Endpoint>],
    ) -> Result<(), TokenRefusal> {
        let token = token.ok_or(TokenRefusal::Missing)?;
        let hub = query.and_then(|q| query_param(q, "hub")).map(decode);
        let hub = hub.as_deref().and_then(|h| std::str::from_utf8(h).ok());
        if let (Some(hit), _) = self.cache.get(token) {
            if *hit.token == *token {
                return match hub {
                    Some(h) if h.eq_ignore_ascii_case(&hit.hub) => Ok(()),
                    _ => Err(TokenError::Hub.into()),
                };
            }
        }
        let unverified = token::read(token)?;
        unverified.check_hub(hub)?;
        let keys = match self.keys_of(&unverified.host, active, retired) {
            Keys::Found(keys) => keys,
            // Said at start; the instance still verifies the token.
            Keys::Keyless => return Ok(()),
            Keys::Unknown => return Err(TokenError::UnknownAudience.into()),
        };
        let verified = unverified.verify(keys, self.skew)?;
        self.remember(token, verified);
        Ok(())
    }

    fn keys_of<'a>(
        &'a self,
        host: &str,
        active: &'a [Arc<Endpoint>],
        retired: &'a [Arc<Endpoint>],
    ) -> Keys<'a> {
        // A retired endpoint's tokens still verify: its connections outlive the reload.
        if let Some(e) = active
            .iter()
            .chain(retired)
            .find(|e| e.host.eq_ignore_ascii_case(host))
        {
            return e
                .token_key
                .as_ref()
                .map_or(Keys::Keyless, |k| Keys::Found(slice::from_ref(k)));
        }
        if !self.audiences.iter().any(|a| a.eq_ignore_ascii_case(host)) {
            Keys::Unknown
        } else if self.shared_keys.is_empty() {
            Keys::Keyless
        } else {
            Keys::Found(&self.shared_keys)
        }
    }

    /// Remembers a verified token until its `exp` (plus the skew), at most a day.
    fn remember(&self, token: &str, v: Verified) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let until = v.exp.saturating_add(self.skew.as_secs());
        let ttl = Duration::from_secs(until.saturating_sub(now)).min(MAX_CACHE_TTL);
        if ttl.is_zero() {
            return;
        }
        let entry = Remembered {
            token: token.into(),
            hub: v.hub.into(),
        };
        self.cache.put(token, Arc::new(entry), Some(ttl));
    }
}

#[cfg(test)]
mod tests;
