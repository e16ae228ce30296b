//! Per-request limits, decided after routing and before anything is sent upstream: the
//! client's connection and request rate, the route's body size (by `Content-Length`; a
//! chunked body is counted as it streams, see `BodyCount`) and the route's requests in flight.

use http::header::CONTENT_LENGTH;
use pingora_http::RequestHeader;

use super::refusal::Refusal;
use super::selection::Selection;
use crate::runtime::limits::GateGuard;
use crate::runtime::{Endpoint, Runtime};

/// What an admitted request holds: its place on the route, and the body it may send.
#[derive(Debug)]
pub struct Admission {
    /// The route's in-flight count, held until the request ends.
    pub gate: Option<GateGuard>,
    /// The route's body limit, for a body without `Content-Length`.
    pub max_body: u64,
}

/// Admits a request that `select` routed (`routed`), or says why not. Over-limit clients are
/// refused even where no route matches: a scanner's 404s count against its rate too.
pub fn admit(
    runtime: &Runtime,
    req: &RequestHeader,
    sel: &Selection,
    over_client_connections: bool,
    routed: Result<(), Refusal>,
) -> Result<Admission, Refusal> {
    if over_client_connections {
        return Err(Refusal::ClientConnections);
    }
    if let Some(ip) = sel.client.client_ip {
        if runtime.client_rate.observe(ip) > runtime.limits.per_client.requests {
            return Err(Refusal::ClientRate);
        }
    }
    routed?;
    let route = sel
        .route
        .and_then(|i| runtime.routes.by_index(i))
        .ok_or(Refusal::NoRoute)?;
    if declared_length(req).is_some_and(|n| n > route.max_body_bytes) {
        return Err(Refusal::BodyTooLarge);
    }
    let gate = match &route.gate {
        Some(g) => Some(g.enter().ok_or(Refusal::RouteBusy)?),
        None => None,
    };
    Ok(Admission {
        gate,
        max_body: route.max_body_bytes,
    })
}

/// The request's `Content-Length`, when it has a valid one.
fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `Retry-After` seconds of a refusal that has one; `endpoint` is the one chosen, if any.
pub fn retry_after(
    refusal: Refusal,
    runtime: Option<&Runtime>,
    endpoint: Option<&Endpoint>,
) -> Option<u64> {
    match refusal {
        Refusal::InstanceUnavailable => Some(endpoint.map_or(1, Endpoint::retry_after)),
        Refusal::ClientRate => {
            Some(runtime.map_or(1, |r| r.limits.per_client.interval.as_secs().max(1)))
        }
        Refusal::ClientConnections | Refusal::RouteBusy => Some(1),
        _ => None,
    }
}

/// Body bytes seen so far against the limit, for bodies that stream in.
#[derive(Debug, Default, Clone, Copy)]
pub struct BodyCount {
    seen: u64,
}

impl BodyCount {
    /// Adds `n` bytes; false once the total is over `max`.
    pub fn add(&mut self, n: usize, max: u64) -> bool {
        self.seen = self.seen.saturating_add(n as u64);
        self.seen <= max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::selection::select;
    use std::net::IpAddr;
    use std::path::Path;

    fn runtime(extra: &str) -> Runtime {
        let cfg = crate::config::parse_str(&format!(
            "listeners: [{{ address: \"127.0.0.1:1000\" }}]\n\
             pools: {{ app: {{ kind: app, endpoints: [{{ url: \"http://127.0.0.1:3\" }}] }} }}\n\
             routes:\n  - {{ path: /small/, pool: app, max_body_bytes: 10, max_in_flight: 1 }}\n\
             \x20 - {{ path: /, pool: app }}\n{extra}"
        ))
        .unwrap();
        Runtime::compile(&cfg.service, Path::new("t.yaml"), None).unwrap()
    }

    fn req(path: &str, length: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
        r.insert_header("host", "edge").unwrap();
        if let Some(l) = length {
            r.insert_header("content-length", l).unwrap();
        }
        r
    }

    fn check(rt: &Runtime, r: &RequestHeader, ip: &str) -> Result<Admission, Refusal> {
        let mut sel = Selection::default();
        let routed = select(rt, r, Some(ip.parse::<IpAddr>().unwrap()), &mut sel);
        admit(rt, r, &sel, false, routed)
    }

    #[test]
    fn body_limits_per_route() {
        let rt = runtime("limits: { max_body_bytes: 100 }");
        let at = |p, l| check(&rt, &req(p, l), "192.0.2.1").map(|a| a.max_body);
        assert_eq!(at("/small/x", Some("10")).unwrap(), 10);
        assert_eq!(
            at("/small/x", Some("11")).unwrap_err(),
            Refusal::BodyTooLarge
        );
        assert_eq!(at("/other", Some("100")).unwrap(), 100);
        assert_eq!(
            at("/other", Some("101")).unwrap_err(),
            Refusal::BodyTooLarge
        );
        // Without a (valid) length the body is counted as it streams.
        assert_eq!(at("/other", None).unwrap(), 100);
        assert_eq!(at("/other", Some("x")).unwrap(), 100);
        let mut count = BodyCount::default();
        assert!(count.add(60, 100) && count.add(40, 100) && !count.add(1, 100));
    }

    #[test]
    fn route_in_flight_cap() {
        let rt = runtime("");
        let held = check(&rt, &req("/small/x", None), "192.0.2.1").unwrap();
        assert!(held.gate.is_some());
        let busy = check(&rt, &req("/small/x", None), "192.0.2.2").unwrap_err();
        assert_eq!(busy, Refusal::RouteBusy);
        assert_eq!(retry_after(busy, Some(&rt), None), Some(1));
        drop(held);
        assert!(check(&rt, &req("/small/x", None), "192.0.2.2").is_ok());
    }

    #[test]
    fn client_rate_counts_every_request_even_unrouted() {
        let rt = runtime("limits: { per_client: { requests: 3, interval: 1h } }");
        let mut miss = RequestHeader::build("GET", b"/", None).unwrap();
        miss.insert_header("host", "edge").unwrap();
        for _ in 0..3 {
            assert!(check(&rt, &miss, "192.0.2.9").is_ok());
        }
        assert_eq!(
            check(&rt, &miss, "192.0.2.9").unwrap_err(),
            Refusal::ClientRate
        );
        assert_eq!(
            retry_after(Refusal::ClientRate, Some(&rt), None),
            Some(3600)
        );
        assert!(check(&rt, &miss, "192.0.2.10").is_ok(), "another client");
        let mut sel = Selection::default();
        let r = req("/x", None);
        let routed = select(&rt, &r, None, &mut sel);
        assert_eq!(
            admit(&rt, &r, &sel, true, routed).unwrap_err(),
            Refusal::ClientConnections
        );
        assert_eq!(retry_after(Refusal::NoRoute, None, None), None);
    }
}
