//! What kind of connection a request is, for the open-connection gauges and the access log:
//! an upgrade is a WebSocket; a `GET` asking for `text/event-stream` is an SSE stream; a
//! SignalR `GET .../client/?id=` otherwise is a long poll; anything else is plain.

use http::header::ACCEPT;
use http::Method;
use pingora_http::RequestHeader;

use crate::metrics::Kind;

/// The kind of `req`; `upgrade` says whether it asks for a protocol upgrade.
pub fn classify(req: &RequestHeader, upgrade: bool) -> Kind {
    if upgrade {
        return Kind::WebSocket;
    }
    if req.method != Method::GET {
        return Kind::Plain;
    }
    let event_stream = req.headers.get(ACCEPT).is_some_and(|v| {
        v.as_bytes()
            .windows(17)
            .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
    });
    if event_stream {
        return Kind::Sse;
    }
    let client_path = req.uri.path().ends_with("/client/") || req.uri.path().ends_with("/client");
    let has_id = req
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("id=")));
    if client_path && has_id {
        Kind::LongPoll
    } else {
        Kind::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, accept: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build(method, target.as_bytes(), None).unwrap();
        if let Some(a) = accept {
            r.insert_header("accept", a).unwrap();
        }
        r
    }

    #[test]
    fn kinds_of_signalr_transports() {
        let ws = req("GET", "/client/?hub=chat&id=abc", None);
        assert_eq!(classify(&ws, true), Kind::WebSocket);
        let sse = req("GET", "/client/?hub=chat&id=abc", Some("Text/Event-Stream"));
        assert_eq!(classify(&sse, false), Kind::Sse);
        let poll = req("GET", "/client/?hub=chat&id=abc&_=1", Some("*/*"));
        assert_eq!(classify(&poll, false), Kind::LongPoll);
        let prefixed = req("GET", "/signalr/client/?id=abc", None);
        assert_eq!(classify(&prefixed, false), Kind::LongPoll);
        // Sends, negotiates and anything without a connection id are plain.
        for (m, t) in [
            ("POST", "/client/?hub=chat&id=abc"),
            ("POST", "/client/negotiate?hub=chat"),
            ("GET", "/client/?hub=chat"),
            ("GET", "/client/?hub=chat&xid=abc"),
            ("GET", "/api/items?id=3"),
            ("DELETE", "/client/?id=abc"),
        ] {
            assert_eq!(classify(&req(m, t, None), false), Kind::Plain, "{m} {t}");
        }
    }
}
