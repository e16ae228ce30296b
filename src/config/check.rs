//! From the file format to the typed [`Config`]: the checks serde cannot express (lists that
//! must not be empty, names used twice, references between sections), defaults that depend on
//! other keys, and the split into process and service settings. Each error names its key path.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::bounds;
use super::file::AdminSection;
use super::file::{Endpoint, File, HostHeader, Pinning, Pool, PoolKind, Tokens};
use super::limits::DEFAULT_LISTENER_CONNECTIONS;
use super::limits::{check_body, check_limits, check_range, MAX_COUNT};
use super::typed::{
    AdminTokenSource, Config, EndpointSpec, ListenerSocket, PoolConfig, ProcessConfig,
    ServiceConfig,
};
use super::PathError;
use crate::signalr::{Rule, DEFAULT_RULES};

/// Checks a parsed file and splits it into process and service settings.
pub fn check(f: File) -> Result<Config, PathError> {
    bounds::process(&f)?;
    if f.listeners.is_empty() {
        return Err(PathError::new(
            "listeners",
            "at least one listener is needed",
        ));
    }
    let mut seen = HashSet::new();
    for (i, l) in f.listeners.iter().enumerate() {
        if let Some(n) = l.max_connections {
            check_range(&format!("listeners[{i}].max_connections"), n, 1, MAX_COUNT)?;
        }
        if !seen.insert(l.address) {
            return Err(PathError::new(
                format!("listeners[{i}].address"),
                format!("{} is listed twice", l.address),
            ));
        }
    }
    if let Some(admin) = &f.admin {
        if seen.contains(&admin.listen) {
            return Err(PathError::new(
                "admin.listen",
                format!("{} is also a client listener", admin.listen),
            ));
        }
    }
    if f.pools.is_empty() {
        return Err(PathError::new("pools", "at least one pool is needed"));
    }
    let mut pools = BTreeMap::new();
    for (name, pool) in &f.pools {
        pools.insert(name.clone(), check_pool(name, pool)?);
    }
    check_routes(&f)?;
    check_limits(&f.limits)?;
    bounds::resolver(&f.resolver)?;
    let admin_token = f.admin.as_ref().map(admin_token).transpose()?.flatten();
    let process = ProcessConfig {
        server: f.server,
        listeners: f
            .listeners
            .iter()
            .map(|l| ListenerSocket {
                address: l.address,
                tls: l.tls.is_some(),
                read_buffer: l.read_buffer,
            })
            .collect(),
        admin: f.admin.map(|a| a.listen),
    };
    let service = ServiceConfig {
        admin_token,
        trusted_proxies: f.trusted_proxies,
        forwarding: f.forwarding,
        pools,
        routes: f.routes,
        listener_connections: f
            .listeners
            .iter()
            .map(|l| l.max_connections.unwrap_or(DEFAULT_LISTENER_CONNECTIONS))
            .collect(),
        listener_certs: f.listeners.into_iter().map(|l| l.tls).collect(),
        limits: f.limits,
        resolver: f.resolver,
        log: f.log,
    };
    Ok(Config { process, service })
}

/// Where the admin token comes from: a file or an environment variable, not both.
fn admin_token(a: &AdminSection) -> Result<Option<AdminTokenSource>, PathError> {
    match (&a.token_file, &a.token_env) {
        (Some(_), Some(_)) => Err(PathError::new(
            "admin.token_env",
            "give at most one of `token_file` and `token_env`",
        )),
        (Some(f), None) => Ok(Some(AdminTokenSource::File(f.clone()))),
        (None, Some(e)) => Ok(Some(AdminTokenSource::Env(e.0.clone()))),
        (None, None) => Ok(None),
    }
}

fn check_routes(f: &File) -> Result<(), PathError> {
    if f.routes.is_empty() {
        return Err(PathError::new("routes", "at least one route is needed"));
    }
    let mut keys = HashSet::new();
    for (i, r) in f.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if !f.pools.contains_key(&r.pool) {
            let known: Vec<&str> = f.pools.keys().map(String::as_str).collect();
            return Err(PathError::new(
                format!("{path}.pool"),
                format!("unknown pool {:?} (pools: {})", r.pool, known.join(", ")),
            ));
        }
        if let Some(n) = r.max_body_bytes {
            check_body(&format!("{path}.max_body_bytes"), n)?;
        }
        if let Some(n) = r.max_in_flight {
            check_range(&format!("{path}.max_in_flight"), n, 1, MAX_COUNT)?;
        }
        if !is_normal_prefix(&r.path.0) {
            return Err(PathError::new(
                format!("{path}.path"),
                format!(
                    "{:?} never matches: requests are routed on their normalised path, which has \
                     no `.` or `..` segment, `//`, `\\`, `?` or escape of a letter, digit or `-._~`, \
                     and upper-case hex in escapes",
                    r.path.0
                ),
            ));
        }
        if let Some(strip) = &r.strip_prefix {
            if !is_segment_prefix(&r.path.0, &strip.0) {
                return Err(PathError::new(
                    format!("{path}.strip_prefix"),
                    format!(
                        "{:?} must be a prefix of the route's path {:?} that ends at a `/` \
                         (every path the route matches starts with it)",
                        strip.0, r.path.0
                    ),
                ));
            }
        }
        let mut methods = Vec::new();
        if let Some(ms) = &r.methods {
            if ms.is_empty() {
                return Err(PathError::new(
                    format!("{path}.methods"),
                    "must not be empty (omit it to match every method)",
                ));
            }
            methods = ms.clone();
            methods.sort();
        }
        if !keys.insert((r.host.clone(), r.path.clone(), methods)) {
            return Err(PathError::new(
                path,
                "duplicates an earlier route (same host, path and methods)",
            ));
        }
    }
    Ok(())
}

/// Whether `prefix` (no trailing `/`) starts `path` and ends where a segment of it does:
/// `/signalr` of `/signalr/client/` or of `/signalr`, not of `/signalrx/`.
fn is_segment_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether a route prefix is in the form request paths are normalised to (`proxy::path`), which
/// is the only form a normalised path can start with.
fn is_normal_prefix(p: &str) -> bool {
    let segments: Vec<&str> = p.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, s) in segments.iter().enumerate() {
        // Only the last segment may be empty: the prefix's trailing slash.
        if (s.is_empty() && i != last) || matches!(s.split(';').next(), Some("." | "..")) {
            return false;
        }
    }
    let b = p.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\\' | b'?' => return false,
            b'%' => {
                let upper_hex = |j: usize| {
                    b.get(j).and_then(|&d| {
                        char::from(d)
                            .to_digit(16)
                            .filter(|_| !d.is_ascii_lowercase())
                    })
                };
                let (Some(hi), Some(lo)) = (upper_hex(i + 1), upper_hex(i + 2)) else {
                    return false;
                };
                // Normalisation decodes these, or refuses them.
                let byte = (hi << 4 | lo) as u8;
                if byte.is_ascii_alphanumeric() || b"-._~/\\\0".contains(&byte) {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Reads one endpoint entry; `path` is its key path, for errors.
pub fn endpoint_spec(e: &Endpoint, path: &str) -> Result<EndpointSpec, PathError> {
    let (url, port_override, access_key) = match (&e.url, &e.connection_string) {
        (Some(u), None) => (u, None, None),
        (None, Some(cs)) => (&cs.url, cs.port, cs.access_key.clone()),
        _ => {
            return Err(PathError::new(
                path,
                "give exactly one of `url` or `connection_string`",
            ))
        }
    };
    let port = port_override
        .or(url.port)
        .unwrap_or_else(|| url.default_port());
    let name = match &e.name {
        Some(n) if n.trim().is_empty() => {
            return Err(PathError::new(format!("{path}.name"), "must not be empty"))
        }
        Some(n) => n.clone(),
        None if port == url.default_port() => url.host.clone(),
        // Two app servers on one host differ by port only.
        None => format!("{}:{port}", url.host),
    };
    Ok(EndpointSpec {
        name,
        tls: url.tls,
        host: url.host.clone(),
        port,
        address: e.address.map(|a| a.0),
        access_key,
    })
}

/// Checks one pool entry and applies its defaults.
pub fn check_pool(name: &str, pool: &Pool) -> Result<PoolConfig, PathError> {
    let path = format!("pools.{name}");
    if name.is_empty() {
        return Err(PathError::new("pools", "pool names must not be empty"));
    }
    if pool.endpoints.is_empty() {
        return Err(PathError::new(
            format!("{path}.endpoints"),
            "at least one endpoint is needed",
        ));
    }
    let mut names = HashSet::new();
    let mut endpoints = Vec::with_capacity(pool.endpoints.len());
    for (i, e) in pool.endpoints.iter().enumerate() {
        let ep_path = format!("{path}.endpoints[{i}]");
        let spec = endpoint_spec(e, &ep_path)?;
        if !names.insert(spec.name.clone()) {
            return Err(PathError::new(
                ep_path,
                format!(
                    "endpoint name {:?} is used twice in this pool; set `name`",
                    spec.name
                ),
            ));
        }
        endpoints.push(spec);
    }
    let rules = check_rules(&path, pool)?;
    bounds::pool(&path, pool)?;
    let tokens = check_tokens(&path, pool)?;
    let pinning = check_pinning(&path, pool)?;
    let bounded_load = check_bounded_load(&path, pool, &rules, &pinning)?;
    Ok(PoolConfig {
        kind: pool.kind,
        endpoints,
        rules,
        host_header: pool.host_header.unwrap_or(match pool.kind {
            PoolKind::Signalr => HostHeader::Endpoint,
            PoolKind::App => HostHeader::Preserve,
        }),
        health_check: pool.health_check.clone(),
        passive_health: pool.passive_health,
        timeouts: pool.timeouts.clone(),
        tls: pool.tls.clone(),
        tokens,
        pinning,
        bounded_load,
    })
}

/// The pool's pinning: on by default for SignalR pools, never for app pools (they have no
/// negotiate/connect pairs).
fn check_pinning(path: &str, pool: &Pool) -> Result<Pinning, PathError> {
    match (&pool.pinning, pool.kind) {
        (Some(_), PoolKind::App) => Err(PathError::new(
            format!("{path}.pinning"),
            "only signalr pools pin negotiate/connect pairs",
        )),
        (Some(p), PoolKind::Signalr) => Ok(p.clone()),
        (None, PoolKind::Signalr) => Ok(Pinning::default()),
        (None, PoolKind::App) => Ok(Pinning {
            capacity: 0,
            ..Pinning::default()
        }),
    }
}

/// The load factor of bounded-load hashing. It moves request ids off their hashed endpoint,
/// so the connect of a pair can only find its negotiate's endpoint through a pin.
fn check_bounded_load(
    path: &str,
    pool: &Pool,
    rules: &[Rule],
    pinning: &Pinning,
) -> Result<Option<f64>, PathError> {
    let Some(c) = pool.bounded_load else {
        return Ok(None);
    };
    let key = format!("{path}.bounded_load");
    if pool.kind != PoolKind::Signalr {
        return Err(PathError::new(key, "only signalr pools hash request ids"));
    }
    if !rules.contains(&Rule::RequestId) {
        return Err(PathError::new(
            key,
            "bounds the request_id rule, which `affinity` does not list",
        ));
    }
    if pinning.capacity == 0 {
        return Err(PathError::new(
            key,
            "needs pinning (pinning.capacity above 0): the connect of a pair would not find \
             the endpoint its negotiate was moved to",
        ));
    }
    Ok(Some(c))
}

/// Most clock skew `tokens.clock_skew` allows (ASP.NET Core's default): more would keep
/// expired tokens alive for long.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Most entries `tokens.cache_size` allows (about 1 KiB each at most).
pub const MAX_TOKEN_CACHE: usize = 1_000_000;

/// The pool's token settings; only SignalR pools verify tokens.
fn check_tokens(path: &str, pool: &Pool) -> Result<Tokens, PathError> {
    let Some(t) = &pool.tokens else {
        return Ok(Tokens::default());
    };
    let path = format!("{path}.tokens");
    if pool.kind != PoolKind::Signalr {
        return Err(PathError::new(
            path,
            "only signalr pools verify tokens (app servers check their own credentials)",
        ));
    }
    if t.clock_skew > MAX_CLOCK_SKEW {
        return Err(PathError::new(
            format!("{path}.clock_skew"),
            format!("must be at most {}s", MAX_CLOCK_SKEW.as_secs()),
        ));
    }
    check_range(
        &format!("{path}.cache_size"),
        t.cache_size,
        1,
        MAX_TOKEN_CACHE,
    )?;
    Ok(t.clone())
}

/// The pool's instance-choice rules, with the default order for SignalR pools.
fn check_rules(path: &str, pool: &Pool) -> Result<Vec<Rule>, PathError> {
    let Some(rules) = &pool.affinity else {
        return Ok(match pool.kind {
            PoolKind::Signalr => DEFAULT_RULES.to_vec(),
            PoolKind::App => Vec::new(),
        });
    };
    if pool.kind != PoolKind::Signalr {
        return Err(PathError::new(
            format!("{path}.affinity"),
            "only signalr pools choose instances by affinity",
        ));
    }
    if rules.is_empty() {
        return Err(PathError::new(
            format!("{path}.affinity"),
            "must name at least one rule",
        ));
    }
    let mut seen = HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        if !seen.insert(r) {
            return Err(PathError::new(
                format!("{path}.affinity[{i}]"),
                format!("{r:?} is listed twice"),
            ));
        }
    }
    Ok(rules.clone())
}
