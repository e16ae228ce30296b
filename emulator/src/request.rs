//! Request parsing for the emulator: query values, the access token and the Host name.
//!
//! Written apart from the edge's own parser on purpose: the emulator plays the service, so a bug
//! in the edge's parsing must not be mirrored here and go unnoticed. It follows ASP.NET Core
//! (`application/x-www-form-urlencoded` rules: `+` is a space) and favours clarity over speed.

use axum::http::{header, HeaderMap};

/// The query parameter the SDK adds to negotiate and connect URLs.
pub const REQUEST_ID_PARAM: &str = "asrs_request_id";
/// The query parameter that carries the token where headers cannot (SSE, browser WebSockets).
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// Every decoded value of query parameter `name`, in order (a key without `=` has value "").
pub fn query_values(query: &str, name: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The first decoded value of query parameter `name`.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The access token: `Authorization: Bearer <t>`, else the `access_token` query parameter.
pub fn access_token(headers: &HeaderMap, query: &str) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    bearer
        .or_else(|| query_value(query, ACCESS_TOKEN_PARAM))
        .filter(|t| !t.is_empty())
}

/// The token of a `Bearer` authorization value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The host name of a `Host` value, without its port (`[v6]` keeps its brackets).
pub fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        // A colon inside a bare IPv6 address is not a port separator.
        Some((name, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn query_values_are_decoded_like_a_form() {
        let q = "hub=chat&asrs_request_id=a%2Bb%3D%3D&x=1+2&empty=&bare&hub=two";
        assert_eq!(query_value(q, "hub").as_deref(), Some("chat"));
        assert_eq!(query_values(q, "hub"), ["chat", "two"]);
        assert_eq!(query_value(q, REQUEST_ID_PARAM).as_deref(), Some("a+b=="));
        assert_eq!(query_value(q, "x").as_deref(), Some("1 2"));
        assert_eq!(query_value(q, "empty").as_deref(), Some(""));
        assert_eq!(query_value(q, "bare").as_deref(), Some(""));
        assert_eq!(query_value(q, "missing"), None);
        // A name that only starts like another is another.
        assert_eq!(query_value("hubx=1", "hub"), None);
        assert_eq!(query_value("", "hub"), None);
    }

    #[test]
    fn bad_percent_escapes_do_not_fail() {
        assert_eq!(query_value("id=%zz%4", "id").as_deref(), Some("%zz%4"));
        assert_eq!(query_value("id=%FF", "id").as_deref(), Some("\u{fffd}"));
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn access_token_from_header_then_query() {
        assert_eq!(
            access_token(&headers(Some("Bearer h.p.s")), "access_token=q").as_deref(),
            Some("h.p.s")
        );
        assert_eq!(
            access_token(&headers(Some("bearer  h.p.s ")), "").as_deref(),
            Some("h.p.s")
        );
        assert_eq!(
            access_token(&headers(None), "hub=chat&access_token=a%2Eb.c").as_deref(),
            Some("a.b.c")
        );
        // Another scheme is no bearer token; the query may still carry one.
        assert_eq!(
            access_token(&headers(Some("Basic abc")), "access_token=q").as_deref(),
            Some("q")
        );
        assert_eq!(access_token(&headers(Some("Basic abc")), ""), None);
        assert_eq!(access_token(&headers(Some("Bearer ")), ""), None);
        assert_eq!(access_token(&headers(None), "access_token="), None);
        assert_eq!(access_token(&headers(None), ""), None);
    }

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(
            host_without_port("a.service.signalr.net"),
            "a.service.signalr.net"
        );
        assert_eq!(
            host_without_port("a.service.signalr.net:443"),
            "a.service.signalr.net"
        );
        assert_eq!(host_without_port("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_without_port("[::1]:7001"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("::1"), "::1");
        assert_eq!(host_without_port(""), "");
    }
}
