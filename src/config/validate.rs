//! Semantic checks that serde cannot express; each error names its key path.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::connstr;
use super::schema::*;
use super::PathError;

/// An endpoint after its URL or connection string was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Ring name: the configured name, else the host name (with the port when not the default).
    pub name: String,
    /// Upstream speaks TLS.
    pub tls: bool,
    /// Host name: the `Host` header, the SNI and the token audience it answers to.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Fixed address that overrides DNS.
    pub address: Option<SocketAddr>,
    /// The instance's AccessKey, when given by a connection string.
    pub access_key: Option<String>,
}

/// Reads one endpoint entry; `path` is its key path, for errors.
pub fn parse_endpoint(e: &Endpoint, path: &str) -> Result<EndpointSpec, PathError> {
    let (url, port_override, access_key, url_path) = match (&e.url, &e.connection_string) {
        (Some(u), None) => (u.clone(), None, None, format!("{path}.url")),
        (None, Some(cs)) => {
            let c = connstr::parse(cs)
                .map_err(|m| PathError::new(format!("{path}.connection_string"), m))?;
            (
                c.endpoint,
                c.port,
                c.access_key,
                format!("{path}.connection_string"),
            )
        }
        _ => {
            return Err(PathError::new(
                path,
                "give exactly one of `url` or `connection_string`",
            ))
        }
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|err| PathError::new(&url_path, format!("invalid URL {url:?}: {err}")))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(PathError::new(
                &url_path,
                format!("URL {url:?} must start with http:// or https://"),
            ))
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| PathError::new(&url_path, format!("URL {url:?} has no host")))?
        .to_ascii_lowercase();
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(PathError::new(
            &url_path,
            format!("URL {url:?} must not have a path or query"),
        ));
    }
    let port = port_override
        .or(uri.port_u16())
        .unwrap_or(if tls { 443 } else { 80 });
    let address = match &e.address {
        None => None,
        Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
            PathError::new(
                format!("{path}.address"),
                format!("{a:?} is not an ip:port address"),
            )
        })?),
    };
    let default_port = if tls { 443 } else { 80 };
    let name = match &e.name {
        Some(n) if n.trim().is_empty() => {
            return Err(PathError::new(format!("{path}.name"), "must not be empty"))
        }
        Some(n) => n.clone(),
        None if port == default_port => host.clone(),
        // Two app servers on one host differ by port only.
        None => format!("{host}:{port}"),
    };
    Ok(EndpointSpec {
        name,
        tls,
        host,
        port,
        address,
        access_key,
    })
}

/// Checks everything that serde's types do not.
pub fn validate(c: &Config) -> Result<(), PathError> {
    if c.server.threads == 0 {
        return Err(PathError::new("server.threads", "must be at least 1"));
    }
    if c.listeners.is_empty() {
        return Err(PathError::new(
            "listeners",
            "at least one listener is needed",
        ));
    }
    let mut seen = HashSet::new();
    for (i, l) in c.listeners.iter().enumerate() {
        let addr: SocketAddr = l.address.parse().map_err(|_| {
            PathError::new(
                format!("listeners[{i}].address"),
                format!("{:?} is not an ip:port address", l.address),
            )
        })?;
        if !seen.insert(addr) {
            return Err(PathError::new(
                format!("listeners[{i}].address"),
                format!("{addr} is listed twice"),
            ));
        }
    }
    if let Some(admin) = &c.admin {
        let addr: SocketAddr = admin.listen.parse().map_err(|_| {
            PathError::new(
                "admin.listen",
                format!("{:?} is not an ip:port address", admin.listen),
            )
        })?;
        if seen.contains(&addr) {
            return Err(PathError::new(
                "admin.listen",
                format!("{addr} is also a client listener"),
            ));
        }
    }
    if c.pools.is_empty() {
        return Err(PathError::new("pools", "at least one pool is needed"));
    }
    for (name, pool) in &c.pools {
        validate_pool(name, pool)?;
    }
    if c.routes.is_empty() {
        return Err(PathError::new("routes", "at least one route is needed"));
    }
    let mut keys = HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if !r.path.starts_with('/') {
            return Err(PathError::new(
                format!("{path}.path"),
                format!("{:?} must start with '/'", r.path),
            ));
        }
        if !c.pools.contains_key(&r.pool) {
            let known: Vec<&str> = c.pools.keys().map(String::as_str).collect();
            return Err(PathError::new(
                format!("{path}.pool"),
                format!("unknown pool {:?} (pools: {})", r.pool, known.join(", ")),
            ));
        }
        if let Some(h) = &r.host {
            if h.is_empty() || h.contains('/') {
                return Err(PathError::new(
                    format!("{path}.host"),
                    format!("invalid host {h:?}"),
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
            for (j, m) in ms.iter().enumerate() {
                let method =
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        PathError::new(
                            format!("{path}.methods[{j}]"),
                            format!("invalid method {m:?}"),
                        )
                    })?;
                methods.push(method.to_string());
            }
            methods.sort();
        }
        let key = (
            r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            r.path.clone(),
            methods,
        );
        if !keys.insert(key) {
            return Err(PathError::new(
                path,
                "duplicates an earlier route (same host, path and methods)",
            ));
        }
    }
    Ok(())
}

fn validate_pool(name: &str, pool: &Pool) -> Result<(), PathError> {
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
    for (i, e) in pool.endpoints.iter().enumerate() {
        let ep_path = format!("{path}.endpoints[{i}]");
        let spec = parse_endpoint(e, &ep_path)?;
        if !names.insert(spec.name.clone()) {
            return Err(PathError::new(
                ep_path,
                format!(
                    "endpoint name {:?} is used twice in this pool; set `name`",
                    spec.name
                ),
            ));
        }
    }
    if let Some(rules) = &pool.affinity {
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
    }
    if let Some(hc) = &pool.health_check {
        let hp = format!("{path}.health_check");
        if http::Method::from_bytes(hc.method.as_bytes()).is_err() {
            return Err(PathError::new(
                format!("{hp}.method"),
                format!("invalid method {:?}", hc.method),
            ));
        }
        if !hc.path.starts_with('/') {
            return Err(PathError::new(format!("{hp}.path"), "must start with '/'"));
        }
        if hc.interval.is_zero() {
            return Err(PathError::new(
                format!("{hp}.interval"),
                "must be more than 0",
            ));
        }
        if hc.timeout.is_zero() {
            return Err(PathError::new(
                format!("{hp}.timeout"),
                "must be more than 0",
            ));
        }
        if hc.healthy_threshold == 0 {
            return Err(PathError::new(
                format!("{hp}.healthy_threshold"),
                "must be at least 1",
            ));
        }
        if hc.unhealthy_threshold == 0 {
            return Err(PathError::new(
                format!("{hp}.unhealthy_threshold"),
                "must be at least 1",
            ));
        }
    }
    let t = &pool.timeouts;
    for (key, d) in [
        ("connect", t.connect),
        ("read", t.read),
        ("write", t.write),
        ("idle", t.idle),
    ] {
        if d.is_zero() {
            return Err(PathError::new(
                format!("{path}.timeouts.{key}"),
                "must be more than 0",
            ));
        }
    }
    Ok(())
}
