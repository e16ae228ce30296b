//! What a reload changes, for the log line and the `/reload` answer, and what it cannot change.

use std::fmt;

use serde::Serialize;

use crate::config::{PoolConfig, ProcessConfig, Route, ServiceConfig};
use crate::runtime::Runtime;

/// The difference between two generations, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Pools the new file adds.
    pub pools_added: Vec<String>,
    /// Pools the new file removes.
    pub pools_removed: Vec<String>,
    /// Pools whose settings (other than endpoints) change.
    pub pools_changed: Vec<String>,
    /// `pool/endpoint (address)` added to a pool both files have.
    pub endpoints_added: Vec<String>,
    /// `pool/endpoint` removed from a pool both files have (retired: it keeps its connections).
    pub endpoints_removed: Vec<String>,
    /// `pool/endpoint (old -> new)`: same name, another address, scheme or host.
    pub endpoints_changed: Vec<String>,
    /// Routes only the new file has.
    pub routes_added: Vec<String>,
    /// Routes only the old file has.
    pub routes_removed: Vec<String>,
    /// Whether `trusted_proxies` changes.
    pub trusted_proxies_changed: bool,
    /// Whether a limit changes (`limits`, a listener's `max_connections`, a route's limits).
    pub limits_changed: bool,
    /// Whether `forwarding` changes.
    pub forwarding_changed: bool,
    /// `listeners[i]` whose certificate or key changes.
    pub certificates_changed: Vec<String>,
    /// Whether the admin listener's token is set, removed or replaced (never its value).
    pub admin_token_changed: bool,
    /// Whether the `resolver` section changes.
    pub resolver_changed: bool,
    /// Whether the `log` section changes.
    pub log_changed: bool,
}

impl Changes {
    /// Compares the old and new config and their compiled runtimes.
    pub fn between(
        old_cfg: &ServiceConfig,
        old: &Runtime,
        new_cfg: &ServiceConfig,
        new: &Runtime,
    ) -> Changes {
        let mut c = Changes::default();
        for (name, pool) in &new_cfg.pools {
            match old_cfg.pools.get(name) {
                None => c.pools_added.push(name.clone()),
                Some(o) if !same_settings(o, pool) => c.pools_changed.push(name.clone()),
                Some(_) => {}
            }
        }
        c.pools_removed = old_cfg
            .pools
            .keys()
            .filter(|n| !new_cfg.pools.contains_key(*n))
            .cloned()
            .collect();
        for pool in &new.pools {
            let Some(before) = old.pool(&pool.name) else {
                continue;
            };
            for e in &pool.endpoints {
                match before.endpoints.iter().find(|o| o.name == e.name) {
                    None => c
                        .endpoints_added
                        .push(format!("{}/{} ({})", pool.name, e.name, e.addr)),
                    Some(o) if !o.same_target(e) => c.endpoints_changed.push(format!(
                        "{}/{} ({} -> {})",
                        pool.name,
                        e.name,
                        o.target(),
                        e.target()
                    )),
                    Some(_) => {}
                }
            }
            for o in &before.endpoints {
                if !pool.endpoints.iter().any(|e| e.name == o.name) {
                    c.endpoints_removed
                        .push(format!("{}/{}", pool.name, o.name));
                }
            }
        }
        let old_routes: Vec<String> = old_cfg.routes.iter().map(route_text).collect();
        let new_routes: Vec<String> = new_cfg.routes.iter().map(route_text).collect();
        c.routes_added = new_routes
            .iter()
            .filter(|r| !old_routes.contains(r))
            .cloned()
            .collect();
        c.routes_removed = old_routes
            .iter()
            .filter(|r| !new_routes.contains(r))
            .cloned()
            .collect();
        c.trusted_proxies_changed = old_cfg.trusted_proxies != new_cfg.trusted_proxies;
        // A route both files have, with other limits (added and removed ones are named above).
        let route_limits_changed = new_cfg.routes.iter().any(|n| {
            old_cfg.routes.iter().any(|o| {
                route_text(o) == route_text(n)
                    && (o.max_body_bytes, o.max_in_flight) != (n.max_body_bytes, n.max_in_flight)
            })
        });
        c.limits_changed = old_cfg.limits != new_cfg.limits
            || old_cfg.listener_connections != new_cfg.listener_connections
            || route_limits_changed;
        c.forwarding_changed = old_cfg.forwarding != new_cfg.forwarding;
        c.resolver_changed = old_cfg.resolver != new_cfg.resolver;
        c.log_changed = old_cfg.log != new_cfg.log;
        c.admin_token_changed = match (&old.admin_token, &new.admin_token) {
            (Some(o), Some(n)) => !o.same_as(n),
            (o, n) => o.is_some() != n.is_some(),
        };
        for (i, (o, n)) in old
            .listener_certs
            .iter()
            .zip(&new.listener_certs)
            .enumerate()
        {
            if let (Some(o), Some(n)) = (o, n) {
                // The key must match the leaf certificate (checked at load), so the chain says it all.
                if o.cert != n.cert {
                    c.certificates_changed.push(format!("listeners[{i}]"));
                }
            }
        }
        c
    }

    /// True when the new generation behaves like the old one.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing changed");
        }
        let mut parts = Vec::new();
        let mut list = |what: &str, items: &[(&str, &Vec<String>)]| {
            let words: Vec<String> = items
                .iter()
                .flat_map(|(sign, v)| v.iter().map(move |x| format!("{sign}{x}")))
                .collect();
            if !words.is_empty() {
                parts.push(format!("{what} {}", words.join(" ")));
            }
        };
        list(
            "pools",
            &[
                ("+", &self.pools_added),
                ("-", &self.pools_removed),
                ("~", &self.pools_changed),
            ],
        );
        list(
            "endpoints",
            &[
                ("+", &self.endpoints_added),
                ("-", &self.endpoints_removed),
                ("~", &self.endpoints_changed),
            ],
        );
        list(
            "routes",
            &[("+", &self.routes_added), ("-", &self.routes_removed)],
        );
        list("certificates", &[("~", &self.certificates_changed)]);
        if self.trusted_proxies_changed {
            parts.push("trusted_proxies changed".into());
        }
        if self.limits_changed {
            parts.push("limits changed".into());
        }
        if self.forwarding_changed {
            parts.push("forwarding changed".into());
        }
        if self.admin_token_changed {
            parts.push("admin token changed".into());
        }
        if self.resolver_changed {
            parts.push("resolver changed".into());
        }
        if self.log_changed {
            parts.push("log changed".into());
        }
        f.write_str(&parts.join("; "))
    }
}

/// Key paths a reload cannot apply because they shape the process itself (sockets, threads,
/// privileges, the admin listener): they need a binary upgrade (`-u`). Every field of
/// [`ProcessConfig`] counts, so a new one cannot be silently ignored by a reload.
pub fn upgrade_only_changes(old: &ProcessConfig, new: &ProcessConfig) -> Vec<String> {
    let mut keys = Vec::new();
    match (serde_yaml::to_value(old), serde_yaml::to_value(new)) {
        (Ok(a), Ok(b)) => differing_keys(&a, &b, String::new(), &mut keys),
        // Cannot happen (plain data); refuse rather than let a change through unseen.
        _ if old != new => keys.push("server".into()),
        _ => {}
    }
    keys
}

/// Appends the key paths where `a` and `b` differ, in `a`'s key order.
fn differing_keys(
    a: &serde_yaml::Value,
    b: &serde_yaml::Value,
    path: String,
    out: &mut Vec<String>,
) {
    use serde_yaml::Value;
    if a == b {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) if x.len() == y.len() => {
            for (k, va) in x {
                let key = join(k.as_str().unwrap_or("?"));
                match y.get(k) {
                    Some(vb) => differing_keys(va, vb, key, out),
                    None => out.push(key),
                }
            }
        }
        (Value::Sequence(x), Value::Sequence(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differing_keys(va, vb, format!("{path}[{i}]"), out);
            }
        }
        _ => out.push(path),
    }
}

fn same_settings(a: &PoolConfig, b: &PoolConfig) -> bool {
    let strip = |p: &PoolConfig| PoolConfig {
        endpoints: Vec::new(),
        ..p.clone()
    };
    strip(a) == strip(b)
}

fn route_text(r: &Route) -> String {
    let mut s = String::new();
    if let Some(h) = &r.host {
        s.push_str(&h.0);
    }
    s.push_str(&r.path.0);
    if let Some(ms) = &r.methods {
        let mut ms: Vec<String> = ms.iter().map(ToString::to_string).collect();
        ms.sort();
        s.push_str(&format!(" [{}]", ms.join(",")));
    }
    s.push_str(&format!(" -> {}", r.pool));
    if let Some(p) = &r.strip_prefix {
        s.push_str(&format!(" (strip {})", p.0));
    }
    s
}

#[cfg(test)]
mod tests;
