//! The access log line: one per request, with secrets redacted and request fields escaped
//! (`redact`), so a line always parses the same way whatever the client sent; as text or, with
//! `log.format: json`, as one JSON object (a WebSocket's or SSE stream's line, written when it
//! ends, says why it closed).

use std::net::IpAddr;
use std::time::SystemTime;

use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::RequestHeader;
use serde::Serialize;

use super::redact::{escape, log_target};
use super::refusal::Refusal;
use crate::metrics::Kind;

/// The log target of access lines (`RUST_LOG=access=info`).
pub const TARGET: &str = "access";

/// The log target of JSON access lines: under `access`, so `RUST_LOG=access=off` turns them off
/// too; the binary's logger writes these without its prefix.
pub const JSON_TARGET: &str = "access::json";

/// One access line of the JSON format.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// When the line was written (RFC 3339, UTC).
    pub ts: String,
    /// The client address (after trusted proxies), if known.
    pub client: Option<IpAddr>,
    /// The method, escaped.
    pub method: Option<String>,
    /// The request target, credentials redacted (as the text line).
    pub path: Option<String>,
    /// The status sent (0: none).
    pub status: u16,
    /// The matched route's path.
    pub route: Option<&'a str>,
    /// The route's pool.
    pub pool: Option<&'a str>,
    /// The endpoint the request went to (or that a refusal names).
    pub endpoint: Option<&'a str>,
    /// The rule that chose it.
    pub rule: Option<&'static str>,
    /// Header to end of response (of the connection, for long-lived ones).
    pub duration_ms: Option<f64>,
    /// Why the edge answered itself.
    pub refused: Option<&'static str>,
    /// Pingora's error type, if the request ended in one.
    pub error: Option<&'static str>,
    /// `websocket`, `sse`, `long_poll` or `plain`.
    pub kind: Option<&'static str>,
    /// Body bytes sent to the endpoint (a WebSocket's: what its tunnel carried).
    pub bytes_to_upstream: u64,
    /// Body bytes received from it.
    pub bytes_from_upstream: u64,
    /// Why a WebSocket or SSE stream ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close: Option<&'static str>,
}

impl Record<'_> {
    /// The record as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Now, in RFC 3339 with milliseconds.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Why a long-lived connection (WebSocket, SSE) ended, from the error it ended with:
/// `normal` (a tunnel whose both sides closed), `upstream` (the upstream ended or failed the
/// stream), `client` (the client left or failed), `timeout` (no upstream bytes within the read
/// timeout, or a write that did not complete), `error` (anything else).
pub fn close_reason(kind: Kind, e: Option<&Error>) -> &'static str {
    let Some(e) = e else {
        return match kind {
            Kind::Sse => "upstream",
            _ => "normal",
        };
    };
    match (e.etype(), e.esource()) {
        (ErrorType::ReadTimedout | ErrorType::WriteTimedout, _) => "timeout",
        (_, ErrorSource::Downstream) => "client",
        (_, ErrorSource::Upstream) => "upstream",
        _ => "error",
    }
}

/// `METHOD TARGET` of a request as the access log and Pingora's error lines show it: the
/// target as received, credentials redacted, quotes and control bytes escaped.
pub fn request_line(req: &RequestHeader) -> String {
    format!(
        "{} {}",
        escape(req.method.as_str().as_bytes()),
        log_target(req.raw_path())
    )
}

/// The access line of a request whose header the edge refused before reading it whole (too
/// large, too slow, malformed): no method, path or route is known.
pub fn header_refused(client: Option<IpAddr>, refusal: Refusal, json: bool) {
    if json {
        let record = Record {
            ts: timestamp(),
            client,
            method: None,
            path: None,
            status: refusal.status(),
            route: None,
            pool: None,
            endpoint: None,
            rule: None,
            duration_ms: None,
            refused: Some(refusal.as_str()),
            error: None,
            kind: None,
            bytes_to_upstream: 0,
            bytes_from_upstream: 0,
            close: None,
        };
        log::info!(target: JSON_TARGET, "{}", record.to_line());
        return;
    }
    log::info!(
        target: TARGET,
        "{} \"-\" {} route=- pool=- endpoint=- rule=- ms=- refused={}",
        client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        refusal.status(),
        refusal.as_str()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_is_redacted_and_escaped() {
        let req = RequestHeader::build("GET", b"/p\"x?access_token=t&id=c&hub=h", None).unwrap();
        assert_eq!(
            request_line(&req),
            r#"GET /p\"x?access_token=<redacted>&id=<redacted>&hub=h"#
        );
        let req = RequestHeader::build("GET", b"/a\xff", None).unwrap();
        assert_eq!(request_line(&req), r"GET /a\xff");
    }

    #[test]
    fn close_reasons() {
        let down = Error::new(ErrorType::ReadError).into_down();
        let up = Error::new(ErrorType::ReadError).into_up();
        let slow = Error::new(ErrorType::ReadTimedout).into_up();
        assert_eq!(close_reason(Kind::WebSocket, None), "normal");
        assert_eq!(close_reason(Kind::Sse, None), "upstream");
        assert_eq!(close_reason(Kind::WebSocket, Some(&down)), "client");
        assert_eq!(close_reason(Kind::Sse, Some(&up)), "upstream");
        assert_eq!(close_reason(Kind::WebSocket, Some(&slow)), "timeout");
        assert_eq!(
            close_reason(Kind::Sse, Some(&Error::new(ErrorType::InternalError))),
            "error"
        );
    }

    #[test]
    fn json_record_is_one_line_with_null_for_unknowns() {
        let r = Record {
            ts: "2026-01-01T00:00:00.000Z".into(),
            client: "192.0.2.1".parse().ok(),
            method: Some("GET".into()),
            path: Some("/client/?id=<redacted>\n".into()),
            status: 101,
            route: Some("/client/"),
            pool: Some("signalr"),
            endpoint: Some("a"),
            rule: Some("pinned"),
            duration_ms: Some(1.5),
            refused: None,
            error: None,
            kind: Some("websocket"),
            bytes_to_upstream: 3,
            bytes_from_upstream: 4,
            close: Some("client"),
        };
        let line = r.to_line();
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["client"], "192.0.2.1");
        assert_eq!(v["close"], "client");
        assert!(v["refused"].is_null());
        assert_eq!(v["bytes_from_upstream"], 4);
    }
}
