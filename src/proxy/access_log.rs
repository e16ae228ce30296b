//! The access log line: one per request, with secrets redacted and request fields escaped
//! (`redact`), so a line always parses the same way whatever the client sent.

use pingora_http::RequestHeader;

use super::redact::{escape, log_target};

/// The log target of access lines (`RUST_LOG=access=info`).
pub const TARGET: &str = "access";

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
pub fn header_refused(client: Option<std::net::IpAddr>, refusal: super::refusal::Refusal) {
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
}
