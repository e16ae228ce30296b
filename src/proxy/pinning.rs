//! Pair pinning on the request path: a negotiate that a hashing rule routed, in a pool that
//! pins, is watched, and once its endpoint answers `200` the pool remembers that endpoint by the
//! negotiate's request id (at the status) and by the connection ids in the body (as soon as the
//! body parses, before its last bytes reach the client). The body passes unchanged. The lookup
//! side is `Pool::choose`.

use pingora_http::ResponseHeader;

use crate::runtime::{Endpoint, Pool};
use crate::signalr::negotiate::{is_negotiate, NegotiateCapture};
use crate::signalr::{AffinityInput, Rule};

/// What is known of a negotiate on its way: its request id, and its answer's body so far.
#[derive(Debug, Default)]
pub struct NegotiateWatch {
    request_id: Option<Vec<u8>>,
    capture: Option<NegotiateCapture>,
}

/// A watch for `method path` when it is a negotiate that `rule` sent to its endpoint and
/// `pool` pins; `None` otherwise. A negotiate the audience rule placed needs no pin: its
/// connection's token names that endpoint in every later request.
pub fn watch(
    pool: &Pool,
    rule: Rule,
    method: &http::Method,
    path: &str,
    input: &AffinityInput<'_>,
) -> Option<NegotiateWatch> {
    let hashed = !matches!(rule, Rule::Audience | Rule::Retired);
    (hashed && pool.pins.is_some() && is_negotiate(method, path)).then(|| NegotiateWatch {
        request_id: input.request_id.as_deref().map(<[u8]>::to_vec),
        capture: None,
    })
}

impl NegotiateWatch {
    /// The endpoint answered with `resp`: a `200` pins the request id and starts reading the
    /// body, unless it is encoded (then only the request id is pinned).
    pub fn on_response(&mut self, resp: &ResponseHeader, pool: &Pool, endpoint: &Endpoint) {
        if resp.status.as_u16() != 200 {
            return;
        }
        pool.pin_negotiate(endpoint, self.request_id.as_deref(), None);
        let encoded = resp
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if !encoded {
            self.capture = Some(NegotiateCapture::default());
        }
    }

    /// A chunk of the answer's body on its way to the client; pins the connection ids once
    /// the body so far parses.
    pub fn on_body(&mut self, chunk: &[u8], pool: &Pool, endpoint: &Endpoint) {
        let Some(capture) = &mut self.capture else {
            return;
        };
        if let Some(ids) = capture.push(chunk) {
            pool.pin_negotiate(endpoint, None, Some(&ids));
            self.capture = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::sync::Arc;

    fn pool(extra: &str) -> Pool {
        let yaml = format!(
            "kind: signalr\naffinity: [request_id]\n{extra}endpoints:\n\
             \x20 - {{ url: http://a.example, address: 127.0.0.1:1 }}\n\
             \x20 - {{ url: http://b.example, address: 127.0.0.1:2 }}\n"
        );
        let file: config::Pool = serde_yaml::from_str(&yaml).unwrap();
        Pool::compile(
            "p",
            &config::check_pool("p", &file).unwrap(),
            None,
            &Default::default(),
        )
        .unwrap()
    }

    fn ok(encoding: Option<&str>) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        if let Some(e) = encoding {
            r.insert_header("content-encoding", e).unwrap();
        }
        r
    }

    const BODY: &str = r#"{"negotiateVersion":1,"connectionId":"cid","connectionToken":"t%2B1","availableTransports":[]}"#;

    /// Negotiates `query` on `pool` with endpoint `ep` answering `status` and `BODY` in two
    /// chunks.
    fn negotiate(pool: &Pool, ep: usize, query: &str, resp: ResponseHeader) {
        let input = AffinityInput::new(Some(query), None, None);
        let post = &http::Method::POST;
        let mut w = watch(pool, Rule::RequestId, post, "/client/negotiate", &input).unwrap();
        let ep = &pool.endpoints[ep];
        w.on_response(&resp, pool, ep);
        let (a, b) = BODY.as_bytes().split_at(30);
        w.on_body(a, pool, ep);
        w.on_body(b, pool, ep);
    }

    /// The endpoint index and rule `query` gets.
    fn route(pool: &Pool, query: &str) -> (usize, Rule) {
        let input = AffinityInput::new(Some(query), None, None);
        let (e, rule) = pool.choose(&input).chosen().unwrap();
        let i = pool.endpoints.iter().position(|x| Arc::ptr_eq(x, e));
        (i.unwrap(), rule)
    }

    /// The endpoint the ring gives `rid`, and the other one.
    fn ring_and_other(pool: &Pool, rid: &str) -> (usize, usize) {
        let (i, rule) = route(pool, &format!("asrs_request_id={rid}"));
        assert_eq!(rule, Rule::RequestId);
        (i, 1 - i)
    }

    #[test]
    fn later_requests_follow_the_negotiate_by_id_and_request_id() {
        let p = pool("");
        let (_, other) = ring_and_other(&p, "r1");
        // The negotiate went elsewhere than the ring says now (the ring changed since).
        negotiate(&p, other, "hub=chat&asrs_request_id=r1", ok(None));
        assert_eq!(
            route(&p, "hub=chat&asrs_request_id=r1&id=x"),
            (other, Rule::Pinned)
        );
        // The connection token as the client sends it (percent-encoded), without a request id.
        assert_eq!(route(&p, "hub=chat&id=t%252B1"), (other, Rule::Pinned));
        assert_eq!(route(&p, "id=cid"), (other, Rule::Pinned));
        assert_ne!(route(&p, "id=unknown").1, Rule::Pinned);
        // The pinned endpoint goes down: a new connection (a negotiate) is the rules' to place,
        // a request of an existing one still goes to its instance (it can succeed nowhere
        // else; a failed connect there is answered 503); back up, the pin holds for both.
        p.endpoints[other].health.record(false, 1, 1);
        assert_eq!(route(&p, "asrs_request_id=r1").1, Rule::RequestId);
        assert_eq!(
            route(&p, "id=cid&asrs_request_id=r1"),
            (other, Rule::Pinned)
        );
        p.endpoints[other].health.record(true, 1, 1);
        assert_eq!(route(&p, "id=cid"), (other, Rule::Pinned));
    }

    #[test]
    fn only_a_200_negotiate_of_a_pinning_pool_pins() {
        let p = pool("");
        let (_, other) = ring_and_other(&p, "r2");
        let mut refused = ResponseHeader::build(401, None).unwrap();
        refused.insert_header("content-length", "0").unwrap();
        negotiate(&p, other, "asrs_request_id=r2", refused);
        assert_eq!(route(&p, "asrs_request_id=r2&id=cid").1, Rule::RequestId);
        // An encoded body is not read: the request id pins, the ids do not.
        negotiate(&p, other, "asrs_request_id=r2", ok(Some("gzip")));
        assert_eq!(route(&p, "asrs_request_id=r2"), (other, Rule::Pinned));
        assert_ne!(route(&p, "id=cid").1, Rule::Pinned);
        let input = AffinityInput::new(Some("asrs_request_id=r2"), None, None);
        let (post, n) = (&http::Method::POST, "/client/negotiate");
        assert!(watch(&p, Rule::RequestId, post, "/client/", &input).is_none());
        assert!(watch(&p, Rule::RequestId, &http::Method::GET, n, &input).is_none());
        // The audience rule needs no pin; the hashing rules and a pin itself do.
        assert!(watch(&p, Rule::Audience, post, n, &input).is_none());
        for rule in [
            Rule::Signature,
            Rule::ClientIp,
            Rule::RoundRobin,
            Rule::Pinned,
        ] {
            assert!(watch(&p, rule, post, n, &input).is_some(), "{rule}");
        }
        let off = pool("pinning: { capacity: 0 }\n");
        assert!(off.pins.is_none());
        assert!(watch(&off, Rule::RequestId, post, n, &input).is_none());
    }

    #[test]
    fn pins_survive_a_reload_that_adds_an_endpoint() {
        let two = pool("");
        negotiate(&two, 0, "asrs_request_id=r3", ok(None));
        let yaml = "kind: signalr\naffinity: [request_id]\nendpoints:\n\
             \x20 - { url: http://a.example, address: 127.0.0.1:1 }\n\
             \x20 - { url: http://b.example, address: 127.0.0.1:2 }\n\
             \x20 - { url: http://c.example, address: 127.0.0.1:3 }\n";
        let file: config::Pool = serde_yaml::from_str(yaml).unwrap();
        let three = Pool::compile(
            "p",
            &config::check_pool("p", &file).unwrap(),
            Some(&two),
            &Default::default(),
        )
        .unwrap();
        assert!(Arc::ptr_eq(
            two.pins.as_ref().unwrap(),
            three.pins.as_ref().unwrap()
        ));
        let input = AffinityInput::new(Some("id=cid"), None, None);
        let (e, rule) = three.choose(&input).chosen().unwrap();
        assert_eq!((e.name.as_str(), rule), ("a.example", Rule::Pinned));
    }
}
