//! Who may use the admin listener: the checks every admin request passes before its route, a
//! pure function of the request head and the address its connection reached.
//!
//! 1. `Host` must be the listener's address (`ip:port`, the address the client connected
//!    to, so a listener on `0.0.0.0` answers to each of its addresses) or `localhost[:port]`;
//!    a port, when given, must be the listener's. Else `421`: a browser page that reached the
//!    listener through DNS rebinding sends its own host name.
//! 2. With a token configured, `Authorization: Bearer <token>`, except on `GET`/`HEAD`
//!    `/healthz` and `/readyz`, which change nothing and which orchestrators probe without
//!    credentials, and `/`, the status page, which holds no data (its script asks for the
//!    token and sends it with each request). Else `401`.
//! 3. Any other method than `GET`/`HEAD` needs `Content-Type: application/json` or an
//!    `X-Signalr-Edge` header: a browser sends neither cross-site without a CORS preflight,
//!    which the listener does not answer, so a form or `fetch` on another site cannot reload.
//!    Else `403`.

use std::net::{IpAddr, SocketAddr};

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, Method};

use crate::proxy::refusal::Refusal;
use crate::runtime::AdminToken;

/// The header that marks a request as sent by a tool, not a browser page.
pub const TOOL_HEADER: &str = "x-signalr-edge";

/// Whether an admin request may reach its route; `local` is the address its connection
/// reached, `token` the one the current generation requires.
pub fn check(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    local: SocketAddr,
    token: Option<&AdminToken>,
) -> Result<(), Refusal> {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| host_names_listener(h, local)) {
        return Err(Refusal::AdminWrongHost);
    }
    let safe = *method == Method::GET || *method == Method::HEAD;
    let probe = safe && matches!(path, "/healthz" | "/readyz" | "/");
    if let (Some(token), false) = (token, probe) {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        if !presented.is_some_and(|p| token.matches(p)) {
            return Err(Refusal::AdminUnauthorized);
        }
    }
    if !safe && !headers.contains_key(TOOL_HEADER) && !is_json(headers) {
        return Err(Refusal::AdminCrossSite);
    }
    Ok(())
}

/// Whether `host` (a `Host` value) is `localhost` or `local`'s address, with `local`'s port
/// if any.
fn host_names_listener(host: &str, local: SocketAddr) -> bool {
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    if port.is_some_and(|p| p != local.port()) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // An IPv4 client of a dual-stack listener arrives on `::ffff:a.b.c.d`.
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical() == local.ip().to_canonical())
}

/// `host[:port]` or `[v6]:port` into the name (brackets removed) and the port.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    (!name.is_empty()).then_some((name, port))
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Whether the request says its body is JSON, a type no cross-site form can send.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminTokenSource;

    const TOKEN: &str = "an-admin-token-of-some-length";

    fn local() -> SocketAddr {
        "127.0.0.1:9901".parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn token() -> AdminToken {
        std::env::set_var("SE_ADMIN_GUARD_TEST_TOKEN", TOKEN);
        AdminToken::load(&AdminTokenSource::Env("SE_ADMIN_GUARD_TEST_TOKEN".into())).unwrap()
    }

    fn post(h: &[(&'static str, &str)], token: Option<&AdminToken>) -> Result<(), Refusal> {
        check(&Method::POST, "/reload", &headers(h), local(), token)
    }

    #[test]
    fn host_must_name_the_listener_or_localhost() {
        let get = |host: &str, local: &str| {
            let h = headers(&[("host", host)]);
            check(&Method::GET, "/status", &h, local.parse().unwrap(), None)
        };
        for ok in [
            "127.0.0.1:9901",
            "127.0.0.1",
            "localhost:9901",
            "LocalHost",
            "localhost",
        ] {
            assert_eq!(get(ok, "127.0.0.1:9901"), Ok(()), "{ok}");
        }
        for (ok, local) in [
            ("[::1]:9901", "[::1]:9901"),
            ("10.1.2.3:9901", "10.1.2.3:9901"),
            ("127.0.0.1:9901", "[::ffff:127.0.0.1]:9901"),
        ] {
            assert_eq!(get(ok, local), Ok(()), "{ok} on {local}");
        }
        for bad in [
            "evil.example:9901",
            "evil.example",
            "localhost:9902",
            "127.0.0.1:80",
            "127.0.0.2:9901",
            "localhost.:9901",
            "127.0.0.1:",
            "127.0.0.1:+9901",
            "[::1",
            "user@127.0.0.1:9901",
            "",
        ] {
            assert_eq!(
                get(bad, "127.0.0.1:9901"),
                Err(Refusal::AdminWrongHost),
                "{bad:?}"
            );
        }
        let no_host = check(&Method::GET, "/status", &HeaderMap::new(), local(), None);
        assert_eq!(no_host, Err(Refusal::AdminWrongHost));
    }

    #[test]
    fn posts_need_json_or_the_tool_header() {
        let host = ("host", "127.0.0.1:9901");
        for ok in [
            [host, ("content-type", "application/json")],
            [host, ("content-type", "Application/JSON; charset=utf-8")],
            [host, ("x-signalr-edge", "1")],
        ] {
            assert_eq!(post(&ok, None), Ok(()), "{ok:?}");
        }
        // What a form or a no-preflight `fetch` from another site can send.
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
        ] {
            assert_eq!(
                post(&[host, ("content-type", bad)], None),
                Err(Refusal::AdminCrossSite),
                "{bad}"
            );
        }
        assert_eq!(post(&[host], None), Err(Refusal::AdminCrossSite));
        let h = headers(&[host]);
        assert_eq!(check(&Method::GET, "/status", &h, local(), None), Ok(()));
        assert_eq!(
            check(&Method::DELETE, "/reload", &h, local(), None),
            Err(Refusal::AdminCrossSite)
        );
    }

    #[test]
    fn a_configured_token_is_required_except_for_probes() {
        let t = token();
        let host = ("host", "localhost:9901");
        let tool = ("x-signalr-edge", "1");
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            post(&[host, tool, ("authorization", &bearer)], Some(&t)),
            Ok(())
        );
        let lower = format!("bearer  {TOKEN}");
        assert_eq!(
            post(&[host, tool, ("authorization", &lower)], Some(&t)),
            Ok(())
        );
        for bad in [
            "".to_string(),
            TOKEN.to_string(),
            format!("Basic {TOKEN}"),
            format!("Bearer {TOKEN}x"),
            "Bearer".to_string(),
        ] {
            let h = [host, tool, ("authorization", bad.as_str())];
            assert_eq!(
                post(&h, Some(&t)),
                Err(Refusal::AdminUnauthorized),
                "{bad:?}"
            );
        }
        assert_eq!(
            post(&[host, tool], Some(&t)),
            Err(Refusal::AdminUnauthorized)
        );
        let h = headers(&[host]);
        for (method, path, want) in [
            (Method::GET, "/healthz", Ok(())),
            (Method::HEAD, "/readyz", Ok(())),
            (Method::GET, "/status", Err(Refusal::AdminUnauthorized)),
            (Method::GET, "/metrics", Err(Refusal::AdminUnauthorized)),
            (Method::POST, "/healthz", Err(Refusal::AdminUnauthorized)),
            // The status page holds no data: its script sends the token with each request.
            (Method::GET, "/", Ok(())),
            (Method::POST, "/", Err(Refusal::AdminUnauthorized)),
        ] {
            assert_eq!(
                check(&method, path, &h, local(), Some(&t)),
                want,
                "{method} {path}"
            );
        }
        // The Host check comes first: a rebinding page learns nothing about the token.
        let h = headers(&[("host", "evil.example:9901")]);
        assert_eq!(
            check(&Method::GET, "/healthz", &h, local(), Some(&t)),
            Err(Refusal::AdminWrongHost)
        );
    }
}
