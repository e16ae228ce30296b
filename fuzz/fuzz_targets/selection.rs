//! Fuzz target `selection`: arbitrary request heads, parsed as Pingora does (httparse, then a
//! `RequestHeader`), through the route table and the instance choice (`proxy::selection::select`)
//! of a fixed runtime, from a trusted and an untrusted peer.
#![cfg_attr(fuzzing, no_main)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use pingora_http::RequestHeader;
use signalr_edge::config::parse_str;
use signalr_edge::proxy::refusal::Refusal;
use signalr_edge::proxy::selection::{select, Selection};
use signalr_edge::runtime::Runtime;
use signalr_edge::signalr::keys::{query_param, CONNECTION_ID_PARAM};
use signalr_edge::signalr::Rule;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

const CONFIG: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
trusted_proxies: [10.0.0.0/8]
pools:
  signalr:
    kind: signalr
    endpoints:
      - { connection_string: "Endpoint=https://a.service.signalr.net;AccessKey=a2V5LWE;Version=1.0", address: "127.0.0.1:1" }
      - { url: "https://b.service.signalr.net", address: "127.0.0.1:2" }
      - { url: "https://c.service.signalr.net", address: "127.0.0.1:3" }
  app:
    kind: app
    endpoints: [{ url: "http://127.0.0.1:5000" }, { url: "http://127.0.0.1:5001" }]
routes:
  - { path: /client/, pool: signalr }
  - { host: chat.example.com, path: /api/, methods: [GET, POST], pool: app }
  - { path: /, pool: app }
  - { path: /signalr/client/, pool: signalr, strip_prefix: /signalr }
"#;

/// The runtime every input is routed by; endpoint `c` is down.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let cfg = parse_str(CONFIG).expect("the fixed config parses");
        let rt = Runtime::compile(&cfg.service, Path::new("fuzz.yaml"), None).expect("compiles");
        rt.pools[rt
            .pools
            .iter()
            .position(|p| p.name == "signalr")
            .expect("pool")]
        .endpoints[2]
            .health
            .set(false);
        rt
    })
}

/// The request head as Pingora's HTTP/1 server builds it, or `None` where it refuses it.
fn request(data: &[u8]) -> Option<RequestHeader> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(data) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let mut head = RequestHeader::build(
        req.method.unwrap_or(""),
        req.path.unwrap_or("").as_bytes(),
        Some(req.headers.len()),
    )
    .ok()?;
    for h in req.headers.iter() {
        let value = http::HeaderValue::from_bytes(h.value).ok()?;
        head.append_header(h.name.to_string(), value).ok()?;
    }
    Some(head)
}

/// Routes one request head from each kind of peer.
pub fn run(data: &[u8]) {
    let Some(req) = request(data) else { return };
    let rt = runtime();
    let peers: [Option<IpAddr>; 3] = [
        None,
        Some(IpAddr::from([10, 1, 2, 3])),
        Some(IpAddr::from([192, 0, 2, 9])),
    ];
    for peer in peers {
        let mut sel = Selection::default();
        let answer = select(rt, &req, peer, &mut sel);
        assert_eq!(sel.client.peer_ip, peer);
        if peer == Some(IpAddr::from([192, 0, 2, 9])) {
            // An untrusted peer is the client, whatever it forwards.
            assert_eq!(sel.client.client_ip, peer);
            assert!(!sel.client.peer_trusted);
        }
        match answer {
            Ok(()) => {
                let route = sel.route.expect("a route");
                let pool = sel.pool.as_ref().expect("a pool");
                let ep = sel.endpoint.as_ref().expect("an endpoint");
                let rule = sel.choice.expect("a rule");
                // A down instance named by the token still gets its existing connections'.
                let existing = req
                    .uri
                    .query()
                    .and_then(|q| query_param(q, CONNECTION_ID_PARAM))
                    .is_some_and(|v| !v.is_empty());
                assert!(
                    ep.is_healthy()
                        || rule == Rule::Retired
                        || (rule == Rule::Audience && existing)
                );
                assert!(pool.endpoints.iter().any(|e| e.name == ep.name));
                // Routing went by the normalised path, sent upstream in place of the client's
                // (less the prefix of the route that strips one).
                let routed = match sel.rewrite.as_deref() {
                    Some(target) => target.split('?').next().unwrap_or_default(),
                    None => req.uri.path(),
                };
                let routed_under = match route {
                    0 | 3 => "/client/",
                    _ => "/",
                };
                assert!(routed.starts_with(routed_under), "{routed:?}");
                // And it is in normal form: no empty or dot segments left (see proxy/path.rs).
                assert!(!routed.contains("//"), "{routed:?}");
                assert!(
                    !routed.split('/').any(|s| s == "." || s == ".."),
                    "{routed:?}"
                );
                if rule != Rule::RoundRobin {
                    // Sticky rules pick the same instance again.
                    let mut again = Selection::default();
                    select(rt, &req, peer, &mut again).expect("routed again");
                    assert_eq!(
                        again.endpoint.map(|e| e.name.clone()),
                        Some(ep.name.clone())
                    );
                }
            }
            Err(Refusal::NoHealthyEndpoint) => {
                panic!("every pool of the fixed runtime has a healthy endpoint")
            }
            Err(Refusal::NoRoute) => assert!(sel.route.is_none() && sel.endpoint.is_none()),
            // Only c is down: a new connection whose token names it is told so, naming it.
            Err(Refusal::InstanceUnavailable) => {
                let ep = sel.endpoint.as_ref().expect("the named instance");
                assert_eq!(ep.name, "c.service.signalr.net");
                assert!(!ep.is_healthy());
            }
            // Other refusals (request hygiene, limits, tokens) are the edge's to give.
            #[allow(unreachable_patterns)]
            Err(_) => {}
        }
    }
}
