//! The compiled route table: optional host + path prefix (+ methods) to a pool.

use http::Method;

use std::sync::Arc;

use super::limits::RouteGate;
use super::pool::Pool;
use crate::config::{self, PathError};
use crate::metrics::RequestCounters;

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the config file (`routes[i]`), for logs.
    pub index: usize,
    /// Lower-cased host to match, if any.
    pub host: Option<String>,
    /// Path prefix.
    pub prefix: String,
    /// Removed from the routed path before forwarding (`strip_prefix`, no trailing `/`).
    pub strip_prefix: Option<String>,
    /// Methods to match, if restricted.
    pub methods: Option<Vec<Method>>,
    /// Index of the pool in the runtime.
    pub pool: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: u64,
    /// Cap on requests in flight, if the route has one.
    pub gate: Option<RouteGate>,
    /// Its request counters (set once its pool is known).
    pub requests: Option<Arc<RequestCounters>>,
}

impl Route {
    /// What identifies the route across reloads: host, prefix and methods.
    fn same_place(&self, other: &Route) -> bool {
        let methods = |r: &Route| {
            let mut ms: Option<Vec<String>> = r
                .methods
                .as_ref()
                .map(|ms| ms.iter().map(|m| m.as_str().to_owned()).collect());
            if let Some(ms) = ms.as_mut() {
                ms.sort();
            }
            ms
        };
        self.host == other.host && self.prefix == other.prefix && methods(self) == methods(other)
    }

    fn matches(&self, host: Option<&str>, path: &str, method: &Method) -> bool {
        path.starts_with(self.prefix.as_str())
            && self
                .host
                .as_deref()
                .is_none_or(|h| host.is_some_and(|req| req.eq_ignore_ascii_case(h)))
            && self.methods.as_ref().is_none_or(|ms| ms.contains(method))
    }
}

/// Routes ordered so that the first match is the best one.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Compiles the routes; `pool_index` maps a pool name to its runtime index, `max_body` is
    /// the default body limit, and a route of `previous` in the same place keeps counting its
    /// requests in flight.
    pub fn compile(
        routes: &[config::Route],
        pool_index: impl Fn(&str) -> Option<usize>,
        max_body: u64,
        previous: Option<&RouteTable>,
    ) -> Result<Self, PathError> {
        let mut out = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let pool = pool_index(&r.pool).ok_or_else(|| {
                PathError::new(
                    format!("routes[{i}].pool"),
                    format!("unknown pool {:?}", r.pool),
                )
            })?;
            let mut route = Route {
                index: i,
                host: r.host.as_ref().map(|h| h.0.clone()),
                prefix: r.path.0.clone(),
                strip_prefix: r.strip_prefix.as_ref().map(|p| p.0.clone()),
                methods: r
                    .methods
                    .as_ref()
                    .map(|ms| ms.iter().map(|m| m.0.clone()).collect()),
                pool,
                max_body_bytes: r.max_body_bytes.unwrap_or(max_body),
                gate: None,
                requests: None,
            };
            if let Some(max) = r.max_in_flight {
                let open = previous
                    .and_then(|t| t.routes.iter().find(|o| o.same_place(&route)))
                    .and_then(|o| o.gate.as_ref())
                    .map(RouteGate::counter);
                route.gate = Some(RouteGate::new(max, open));
            }
            out.push(route);
        }
        // Longest prefix first; at equal length, host-specific before any-host, then
        // method-restricted before any-method; then file order (the sort is stable).
        out.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.prefix.len()),
                r.host.is_none(),
                r.methods.is_none(),
            )
        });
        Ok(RouteTable { routes: out })
    }

    /// Gives each route the request counters of its path and its pool's endpoints.
    pub fn count_requests(&mut self, pools: &[Arc<Pool>]) {
        for r in &mut self.routes {
            if let Some(pool) = pools.get(r.pool) {
                let names = pool.endpoints.iter().map(|e| e.name.clone()).collect();
                r.requests = Some(Arc::new(RequestCounters::new(&r.prefix, &pool.name, names)));
            }
        }
    }

    /// The route at `routes[index]` of the file.
    pub fn by_index(&self, index: usize) -> Option<&Route> {
        self.routes.iter().find(|r| r.index == index)
    }

    /// The best route for a request; `host` may carry a port, which is ignored.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Option<&Route> {
        let host = host.map(strip_port);
        self.routes.iter().find(|r| r.matches(host, path, method))
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.split_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> RouteTable {
        let routes: Vec<config::Route> = serde_yaml::from_str(yaml).unwrap();
        let pools = ["signalr", "app", "admin"];
        RouteTable::compile(&routes, |p| pools.iter().position(|x| *x == p), 1, None).unwrap()
    }

    fn pool_of(t: &RouteTable, host: Option<&str>, path: &str, m: Method) -> Option<usize> {
        t.find(host, path, &m).map(|r| r.pool)
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let t = table("[{path: /, pool: app}, {path: /client/, pool: signalr}, {path: /client/negotiate, pool: admin}]");
        assert_eq!(pool_of(&t, None, "/client/?hub=x", Method::GET), Some(0));
        assert_eq!(
            pool_of(&t, None, "/client/negotiate", Method::POST),
            Some(2)
        );
        assert_eq!(pool_of(&t, None, "/chat/negotiate", Method::POST), Some(1));
    }

    #[test]
    fn host_and_methods() {
        let t = table(
            "[{host: Chat.Example.com, path: /, pool: app},
              {path: /client/, pool: signalr, methods: [get, POST, delete]},
              {path: /client/, pool: admin}]",
        );
        assert_eq!(
            pool_of(&t, Some("chat.example.com:8443"), "/x", Method::GET),
            Some(1)
        );
        assert_eq!(
            pool_of(&t, Some("other.example.com"), "/x", Method::GET),
            None
        );
        assert_eq!(pool_of(&t, None, "/x", Method::GET), None);
        assert_eq!(pool_of(&t, None, "/client/", Method::DELETE), Some(0));
        assert_eq!(pool_of(&t, None, "/client/", Method::PUT), Some(2));
    }

    #[test]
    fn strip_prefix_is_compiled_without_its_trailing_slash() {
        let t = table(
            "[{path: /signalr/client/, pool: signalr, strip_prefix: /signalr/}, {path: /, pool: app}]",
        );
        let strip = |path: &str| {
            t.find(None, path, &Method::GET)
                .and_then(|r| r.strip_prefix.clone())
        };
        assert_eq!(strip("/signalr/client/?hub=x").as_deref(), Some("/signalr"));
        assert_eq!(strip("/client/"), None);
    }

    #[test]
    fn unmatched_is_none() {
        let t = table("[{path: /client/, pool: signalr}]");
        assert_eq!(pool_of(&t, None, "/clien", Method::GET), None);
        assert_eq!(pool_of(&t, None, "/", Method::GET), None);
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.b:1"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}
