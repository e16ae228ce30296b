//! What a reload changes, for the log line and the `/reload` answer, and what it cannot change.

use std::fmt;

use serde::Serialize;

use crate::config::{self, Config};
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
    /// `listeners[i]` whose certificate or key changes.
    pub certificates_changed: Vec<String>,
}

impl Changes {
    /// Compares the old and new config and their compiled runtimes.
    pub fn between(old_cfg: &Config, old: &Runtime, new_cfg: &Config, new: &Runtime) -> Changes {
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
                        target(o),
                        target(e)
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
        f.write_str(&parts.join("; "))
    }
}

/// Key paths a reload cannot apply because they shape the process itself (sockets, threads,
/// privileges, the admin listener): they need a binary upgrade (`-u`).
pub fn upgrade_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let (o, n) = (&old.server, &new.server);
    let fields = [
        ("threads", o.threads != n.threads),
        ("work_stealing", o.work_stealing != n.work_stealing),
        ("pid_file", o.pid_file != n.pid_file),
        ("upgrade_sock", o.upgrade_sock != n.upgrade_sock),
        ("error_log", o.error_log != n.error_log),
        (
            "grace_period_seconds",
            o.grace_period_seconds != n.grace_period_seconds,
        ),
        (
            "graceful_shutdown_timeout_seconds",
            o.graceful_shutdown_timeout_seconds != n.graceful_shutdown_timeout_seconds,
        ),
        (
            "upstream_keepalive_pool_size",
            o.upstream_keepalive_pool_size != n.upstream_keepalive_pool_size,
        ),
        ("user", o.user != n.user),
        ("group", o.group != n.group),
    ];
    keys.extend(
        fields
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(k, _)| format!("server.{k}")),
    );
    if old.listeners.len() != new.listeners.len() {
        keys.push("listeners".into());
    } else {
        for (i, (a, b)) in old.listeners.iter().zip(&new.listeners).enumerate() {
            if a.address != b.address {
                keys.push(format!("listeners[{i}].address"));
            }
            // Certificate files may change live; turning TLS on or off may not.
            if a.tls.is_some() != b.tls.is_some() {
                keys.push(format!("listeners[{i}].tls"));
            }
        }
    }
    if old.admin != new.admin {
        keys.push("admin".into());
    }
    keys
}

fn same_settings(a: &config::Pool, b: &config::Pool) -> bool {
    let strip = |p: &config::Pool| config::Pool {
        endpoints: Vec::new(),
        ..p.clone()
    };
    strip(a) == strip(b)
}

fn target(e: &crate::upstream::Endpoint) -> String {
    format!(
        "{}://{}@{}",
        if e.tls { "https" } else { "http" },
        e.host,
        e.addr
    )
}

fn route_text(r: &config::Route) -> String {
    let mut s = String::new();
    if let Some(h) = &r.host {
        s.push_str(&h.to_ascii_lowercase());
    }
    s.push_str(&r.path);
    if let Some(ms) = &r.methods {
        let mut ms: Vec<String> = ms.iter().map(|m| m.to_ascii_uppercase()).collect();
        ms.sort();
        s.push_str(&format!(" [{}]", ms.join(",")));
    }
    s.push_str(&format!(" -> {}", r.pool));
    s
}

#[cfg(test)]
mod tests;
