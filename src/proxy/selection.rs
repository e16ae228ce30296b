//! The per-request decision, free of Pingora's session: hygiene (`target`), then route, pool,
//! the pool's token check, endpoint and the rule that chose it, from the request header and the
//! peer address. The proxy calls it once per request.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION};
use http::Method;
use log::debug;
use pingora_http::RequestHeader;

use super::forwarded;
use super::pinning::{self, NegotiateWatch};
use super::refusal::Refusal;
use super::target;
use crate::runtime::{Endpoint, LoadGuard, Pool, Runtime};
use crate::signalr::{AffinityInput, Choice, Rule};

/// Who the client is, from the peer address and trusted forwarding headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client {
    /// The TCP peer.
    pub peer_ip: Option<IpAddr>,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// The client address after trusted-proxy processing.
    pub client_ip: Option<IpAddr>,
}

/// The outcome of routing and instance choice.
#[derive(Debug, Default)]
pub struct Selection {
    /// Who the client is.
    pub client: Client,
    /// Index of the matched route.
    pub route: Option<usize>,
    /// The route's pool (also set when no endpoint is healthy, to name it in the 503).
    pub pool: Option<Arc<Pool>>,
    /// The chosen endpoint (on an `instance_unavailable` refusal: the one the token names).
    pub endpoint: Option<Arc<Endpoint>>,
    /// The rule that chose it.
    pub choice: Option<Rule>,
    /// The origin-form target to send upstream instead of the client's: the normalised path
    /// that was routed (see `target`), less the route's `strip_prefix`.
    pub rewrite: Option<String>,
    /// The request counted on its endpoint's load, to its end.
    pub load: Option<LoadGuard>,
    /// A negotiate whose answer pins its endpoint (pools that pin).
    pub negotiate: Option<NegotiateWatch>,
}

impl Client {
    /// Resolves the client address of a request from `peer_ip`.
    pub fn of(runtime: &Runtime, req: &RequestHeader, peer_ip: Option<IpAddr>) -> Client {
        let Some(peer) = peer_ip else {
            return Client::default();
        };
        let xff = req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Client {
            peer_ip,
            peer_trusted: forwarded::is_trusted(peer, &runtime.trusted_proxies),
            client_ip: Some(forwarded::client_ip(peer, xff, &runtime.trusted_proxies)),
        }
    }
}

/// Routes `req` and picks its endpoint; `sel` keeps what was decided even on a local answer.
pub fn select(
    runtime: &Runtime,
    req: &RequestHeader,
    peer_ip: Option<IpAddr>,
    sel: &mut Selection,
) -> Result<(), Refusal> {
    sel.client = Client::of(runtime, req, peer_ip);
    let target = target::check(req)?;
    let route = runtime
        .routes
        .find(target.authority, &target.path, &req.method)
        .ok_or(Refusal::NoRoute)?;
    sel.route = Some(route.index);
    sel.rewrite = route
        .strip_prefix
        .as_deref()
        .and_then(|prefix| target::strip_prefix(&target.path, prefix))
        .map(|rest| target::origin_form(rest, req.uri.query()))
        .or(target.rewrite);
    let pool = runtime.pools.get(route.pool).ok_or(Refusal::NoRoute)?;
    let input = AffinityInput::new(
        req.uri.query(),
        req.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        sel.client.client_ip,
    );
    sel.pool = Some(pool.clone());
    if !is_cors_preflight(req) {
        pool.check_token(&input, req.uri.query()).map_err(|r| {
            debug!("pool {}: access token refused: {r:?}", pool.name);
            Refusal::from(r)
        })?;
    }
    match pool.choose(&input) {
        Choice::To(endpoint, rule) => {
            sel.load = Some(endpoint.load.hold());
            sel.negotiate = pinning::watch(pool, rule, &req.method, &target.path, &input);
            sel.endpoint = Some(endpoint.clone());
            sel.choice = Some(rule);
            Ok(())
        }
        Choice::Unavailable(endpoint) => {
            // Kept to name it in the answer and the access log; nothing is sent there.
            sel.endpoint = Some(endpoint.clone());
            sel.choice = Some(Rule::Audience);
            Err(Refusal::InstanceUnavailable)
        }
        Choice::NoneHealthy => Err(Refusal::NoHealthyEndpoint),
    }
}

/// A browser's CORS preflight: it never carries credentials, and the instance answers it.
fn is_cors_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    fn runtime() -> Runtime {
        let cfg = config::parse_str(
            "listeners: [{ address: \"127.0.0.1:0\" }]\n\
             trusted_proxies: [10.0.0.0/8]\n\
             pools:\n  signalr:\n    kind: signalr\n    endpoints:\n\
             \x20     - { url: \"http://a.service.signalr.net\", address: \"127.0.0.1:1\" }\n\
             \x20     - { url: \"http://b.service.signalr.net\", address: \"127.0.0.1:2\" }\n\
             \x20 app:\n    kind: app\n    endpoints: [{ url: \"http://127.0.0.1:3\" }]\n\
             routes:\n  - { path: /client/, pool: signalr }\n  - { path: /app/, pool: app }\n\
             \x20 - { path: /signalr/client/, pool: signalr, strip_prefix: /signalr }\n",
        )
        .unwrap();
        Runtime::compile(&cfg.service, Path::new("t.yaml"), None).unwrap()
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn routes_chooses_and_resolves_the_client() {
        let rt = runtime();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let mut sel = Selection::default();
        let r = req(
            "/client/negotiate?hub=chat&asrs_request_id=abc",
            &[("host", "edge"), ("x-forwarded-for", "192.0.2.7")],
        );
        select(&rt, &r, ip("10.1.2.3"), &mut sel).unwrap();
        assert_eq!(sel.route, Some(0));
        assert_eq!(sel.choice, Some(Rule::RequestId));
        assert!(sel.client.peer_trusted);
        assert_eq!(sel.client.client_ip, ip("192.0.2.7"));
        let first = sel.endpoint.as_ref().unwrap().name.clone();
        // The request counts on its endpoint's load until the selection drops.
        let ep = sel.endpoint.clone().unwrap();
        assert_eq!(ep.load.get(), 1);
        assert!(
            sel.negotiate.is_some(),
            "a negotiate of a pinning pool is watched"
        );
        // The same request id picks the same endpoint, from any client.
        let mut again = Selection::default();
        select(&rt, &r, ip("198.51.100.1"), &mut again).unwrap();
        assert_eq!(again.endpoint.as_ref().unwrap().name, first);
        assert_eq!(ep.load.get(), 2);
        assert_eq!(again.client.client_ip, ip("198.51.100.1"));
        drop((sel, again));
        assert_eq!(ep.load.get(), 0);
        // No route: 404, and the client is still known for the access log.
        let mut miss = Selection::default();
        let r = req("/nowhere", &[("host", "edge")]);
        assert_eq!(
            select(&rt, &r, ip("10.0.0.1"), &mut miss),
            Err(Refusal::NoRoute)
        );
        assert!(miss.client.client_ip.is_some() && miss.route.is_none());
    }

    #[test]
    fn a_verifying_pool_refuses_before_choosing_and_lets_preflights_through() {
        let cfg = config::parse_str(
            "listeners: [{ address: \"127.0.0.1:0\" }]\n\
             pools:\n  signalr:\n    kind: signalr\n    tokens: { verify: true }\n    endpoints:\n\
             \x20     - { connection_string: \"Endpoint=http://a.example;AccessKey=k;Version=1.0;\", address: \"127.0.0.1:1\" }\n\
             routes:\n  - { path: /client/, pool: signalr }\n\
             \x20 - { path: /signalr/client/, pool: signalr, strip_prefix: /signalr }\n",
        )
        .unwrap();
        let rt = Runtime::compile(&cfg.service, Path::new("t.yaml"), None).unwrap();
        let good = asrs_emulator::token::sign(
            "k",
            &asrs_emulator::token::audience("a.example", "chat"),
            None,
            std::time::Duration::from_secs(60),
        );
        let bearer = format!("Bearer {good}");
        let cases = [
            (
                "POST",
                "/client/negotiate?hub=chat",
                Some(bearer.as_str()),
                Ok(()),
            ),
            (
                "POST",
                "/client/negotiate?hub=chat",
                None,
                Err(Refusal::MissingToken),
            ),
            // Behind a prefix the token is the same: its audience is the instance's
            // `/client/?hub=`, and the hub comes from the query.
            (
                "POST",
                "/signalr/client/negotiate?hub=chat",
                Some(bearer.as_str()),
                Ok(()),
            ),
            (
                "GET",
                "/signalr/client/?hub=other&id=1",
                Some(&bearer),
                Err(Refusal::InvalidToken),
            ),
            (
                "GET",
                "/client/?hub=other&id=1",
                Some(&bearer),
                Err(Refusal::InvalidToken),
            ),
            (
                "POST",
                "/client/negotiate?hub=chat",
                Some("Bearer x.y.z"),
                Err(Refusal::InvalidToken),
            ),
        ];
        for (method, uri, auth, want) in cases {
            let mut r = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
            r.insert_header("host", "edge").unwrap();
            if let Some(a) = auth {
                r.insert_header("authorization", a).unwrap();
            }
            let mut sel = Selection::default();
            assert_eq!(
                select(&rt, &r, None, &mut sel),
                want,
                "{method} {uri} {auth:?}"
            );
            // A refused token has its pool (for the access log) and no endpoint.
            assert!(sel.pool.is_some());
            assert_eq!(sel.endpoint.is_some(), want.is_ok());
        }
        // A CORS preflight never carries credentials: the instance answers it.
        let mut preflight =
            RequestHeader::build("OPTIONS", b"/client/negotiate?hub=chat", None).unwrap();
        preflight
            .insert_header("access-control-request-method", "POST")
            .unwrap();
        preflight.insert_header("host", "edge").unwrap();
        assert_eq!(
            select(&rt, &preflight, None, &mut Selection::default()),
            Ok(())
        );
        let mut plain_options =
            RequestHeader::build("OPTIONS", b"/client/?hub=chat", None).unwrap();
        plain_options.insert_header("host", "edge").unwrap();
        assert_eq!(
            select(&rt, &plain_options, None, &mut Selection::default()),
            Err(Refusal::MissingToken)
        );
    }

    #[test]
    fn a_prefixed_route_forwards_without_its_prefix_and_chooses_as_unprefixed() {
        let rt = runtime();
        let ip = Some("192.0.2.1".parse::<IpAddr>().unwrap());
        let chosen = |uri: &str| {
            let mut sel = Selection::default();
            select(&rt, &req(uri, &[("host", "edge")]), ip, &mut sel).unwrap();
            let endpoint = sel.endpoint.map(|e| e.name.clone()).unwrap();
            (sel.route, sel.rewrite, endpoint, sel.choice)
        };
        let query = "hub=chat&asrs_request_id=a%2Bb";
        let (route, rewrite, prefixed, rule) =
            chosen(&format!("/signalr/client/negotiate?{query}"));
        assert_eq!(route, Some(2));
        assert_eq!(rewrite, Some(format!("/client/negotiate?{query}")));
        assert_eq!(rule, Some(Rule::RequestId));
        // The same request id picks the same instance with or without the prefix.
        let (_, plain_rewrite, plain, _) = chosen(&format!("/client/negotiate?{query}"));
        assert_eq!((plain_rewrite, plain), (None, prefixed.clone()));
        // Routed on the normalised path, forwarded without the prefix, query untouched.
        let (route, rewrite, ..) = chosen("/%73ignalr//client/./?id=%2e&hub=chat");
        assert_eq!(route, Some(2));
        assert_eq!(rewrite.as_deref(), Some("/client/?id=%2e&hub=chat"));
        let (route, rewrite, ..) = chosen("http://edge/signalr/client/?hub=chat");
        assert_eq!(route, Some(2));
        assert_eq!(rewrite.as_deref(), Some("/client/?hub=chat"));
    }

    #[test]
    fn a_token_for_a_down_instance_is_answered_unavailable_naming_it() {
        let rt = runtime();
        let token = asrs_emulator::token::sign(
            "k",
            &asrs_emulator::token::audience("b.service.signalr.net", "chat"),
            None,
            std::time::Duration::from_secs(60),
        );
        let bearer = format!("Bearer {token}");
        let negotiate = req(
            "/client/negotiate?hub=chat&asrs_request_id=x",
            &[("host", "edge"), ("authorization", &bearer)],
        );
        let mut sel = Selection::default();
        select(&rt, &negotiate, None, &mut sel).unwrap();
        assert_eq!(sel.endpoint.as_ref().unwrap().name, "b.service.signalr.net");
        rt.pools[1].endpoints[1].health.set(false);
        let mut sel = Selection::default();
        assert_eq!(
            select(&rt, &negotiate, None, &mut sel),
            Err(Refusal::InstanceUnavailable)
        );
        assert_eq!(sel.endpoint.unwrap().name, "b.service.signalr.net");
        // A request of an existing connection still goes to its instance: nowhere else knows it.
        let poll = req(
            "/client/?hub=chat&id=c1",
            &[("host", "edge"), ("authorization", &bearer)],
        );
        let mut sel = Selection::default();
        select(&rt, &poll, None, &mut sel).unwrap();
        assert_eq!(sel.endpoint.unwrap().name, "b.service.signalr.net");
    }

    #[test]
    fn hygiene_comes_first_and_the_normalised_path_is_routed() {
        let rt = runtime();
        let ip = Some("192.0.2.1".parse::<IpAddr>().unwrap());
        let mut sel = Selection::default();
        let r = req("/client/../app/x?id=1", &[("host", "edge")]);
        select(&rt, &r, ip, &mut sel).unwrap();
        assert_eq!(sel.route, Some(1), "routed as /app/x");
        assert_eq!(sel.rewrite.as_deref(), Some("/app/x?id=1"));
        let mut sel = Selection::default();
        let r = req("/client/negotiate", &[]);
        assert_eq!(select(&rt, &r, ip, &mut sel), Err(Refusal::MissingHost));
        assert!(
            sel.client.client_ip.is_some(),
            "the client is known for the access log"
        );
        let mut sel = Selection::default();
        let r = req("/client/../../app/", &[("host", "edge")]);
        assert_eq!(select(&rt, &r, ip, &mut sel), Err(Refusal::BadPath));
    }
}
