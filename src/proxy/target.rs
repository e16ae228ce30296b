//! Request hygiene before routing: the method, the request target and `Host`, checked once and
//! turned into what routing and forwarding use (the authority and the normalised path), or the
//! reason for a `400`.
//!
//! - A method longer than [`MAX_METHOD_LEN`] is refused (the parser already allows only token
//!   characters; the longest registered method is 17).
//! - The target is origin-form (`/path`) or absolute-form with an `http` or `https` scheme.
//! - An HTTP/1.1 request has exactly one `Host` (RFC 9112 3.2), and a `Host` is a valid
//!   authority: a DNS-style name, an IPv4 or bracketed IPv6 address, and an optional port.
//! - The authority is the absolute-form target's when there is one, else `Host` (RFC 9112
//!   3.2.2): requests are routed by it and forwarded with it. (Pingora already answers `400`
//!   when both are present and differ, before any hook runs.)
//! - The path is normalised (`path`) and, when that changes it or the target was absolute-form,
//!   the upstream gets the normalised origin-form target; the query is kept as it came.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use http::header::HOST;
use http::Version;
use pingora_http::authority::{raw_target_authority, RawTargetAuthority};
use pingora_http::RequestHeader;

use super::path::normalize;
use super::refusal::Refusal;

/// The longest method accepted, in bytes.
pub const MAX_METHOD_LEN: usize = 32;

/// The longest authority accepted: a 253-byte DNS name, a colon and a port.
const MAX_AUTHORITY_LEN: usize = 253 + 6;

/// A checked request target.
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// What the request is routed by and forwarded with (`Host` of `preserve` pools,
    /// `X-Forwarded-Host`): the absolute-form target's authority, else `Host`.
    pub authority: Option<&'a str>,
    /// The normalised path (no query).
    pub path: Cow<'a, str>,
    /// The origin-form target to send upstream instead of the client's (normalised path and
    /// the query as it came), when they differ.
    pub rewrite: Option<String>,
}

/// Checks `req` and gives what routing and forwarding use, or why it gets a `400`.
pub fn check(req: &RequestHeader) -> Result<Target<'_>, Refusal> {
    if req.method.as_str().len() > MAX_METHOD_LEN {
        return Err(Refusal::BadMethod);
    }
    let target_authority = target_authority(req)?;
    let mut hosts = req.headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(Refusal::BadHost),
        (Some(h), None) => Some(
            h.to_str()
                .ok()
                .filter(|h| valid_authority(h))
                .ok_or(Refusal::BadHost)?,
        ),
        (None, _) => None,
    };
    // HTTP/2 carries the authority in the target (`:authority`); HTTP/1.0 may omit it.
    if host.is_none() && req.version == Version::HTTP_11 {
        return Err(Refusal::MissingHost);
    }
    if !req.raw_path_is_utf8() {
        return Err(Refusal::BadPath);
    }
    let path = normalize(req.uri.path()).map_err(|_| Refusal::BadPath)?;
    let rewrite = (target_authority.is_some() || matches!(path, Cow::Owned(_)))
        .then(|| origin_form(&path, req.uri.query()));
    Ok(Target {
        authority: target_authority.or(host),
        path,
        rewrite,
    })
}

/// The origin-form target of `path` and the query as it came.
pub fn origin_form(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

/// The path to forward for the normalised `path` of a request whose route strips `prefix`
/// (no trailing `/`): what follows it, always starting with `/` (`/signalr` -> `/`), or `None`
/// when `prefix` does not end at a segment of `path` (a route `/signalr` also matches
/// `/signalrx`, which is then forwarded as it is).
pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    match path.strip_prefix(prefix)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// The authority of a request that [`check`] accepted, as `check` gave it.
pub fn authority(req: &RequestHeader) -> Option<&str> {
    let target = match raw_target_authority(req.raw_path()).authority() {
        Some(a) => std::str::from_utf8(a).ok(),
        None => req.uri.authority().map(|a| a.as_str()),
    };
    target.or_else(|| req.headers.get(HOST).and_then(|h| h.to_str().ok()))
}

/// The authority of an absolute-form target, after checking the target's form.
fn target_authority(req: &RequestHeader) -> Result<Option<&str>, Refusal> {
    if req.version == Version::HTTP_2 {
        // Pingora's HTTP/2 server puts `:authority` into the URI and checks it.
        return Ok(req.uri.authority().map(|a| a.as_str()));
    }
    let raw = req.raw_path();
    match raw_target_authority(raw) {
        RawTargetAuthority::Absolute {
            scheme, authority, ..
        } => {
            let http =
                scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
            match std::str::from_utf8(authority) {
                Ok(a) if http && valid_authority(a) => Ok(Some(a)),
                _ => Err(Refusal::BadTarget),
            }
        }
        RawTargetAuthority::AmbiguousAuthority => Err(Refusal::BadTarget),
        // Origin-form only: asterisk-form (`OPTIONS *`) asks nothing of a proxy, and other
        // shapes would reach the URI as `/`.
        RawTargetAuthority::None if raw.first() == Some(&b'/') => Ok(None),
        RawTargetAuthority::None => Err(Refusal::BadTarget),
    }
}

/// `host[:port]`: a name of letters, digits, `-`, `.` and `_`, an IPv4 address (which is such a
/// name) or a bracketed IPv6 address, and a port of 1 to 5 digits up to 65535.
pub fn valid_authority(a: &str) -> bool {
    if a.is_empty() || a.len() > MAX_AUTHORITY_LEN {
        return false;
    }
    let (host_ok, rest) = if let Some(v6) = a.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, rest)) => (addr.parse::<Ipv6Addr>().is_ok(), rest),
            None => return false,
        }
    } else {
        let end = a.find(':').unwrap_or(a.len());
        let host = &a[..end];
        let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        (!host.is_empty() && host.bytes().all(name), &a[end..])
    };
    host_ok
        && match rest.strip_prefix(':') {
            None => rest.is_empty(),
            Some(port) => {
                (1..=5).contains(&port.len())
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && port.parse::<u16>().is_ok()
            }
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &[u8], version: Version, hosts: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build(method, target, None).unwrap();
        r.set_version(version);
        for h in hosts {
            r.append_header(HOST, *h).unwrap();
        }
        r
    }

    /// Authority, path and rewrite of a GET over HTTP/1.1.
    type Checked = (Option<String>, String, Option<String>);

    fn check11(target: &str, hosts: &[&str]) -> Result<Checked, Refusal> {
        let r = req("GET", target.as_bytes(), Version::HTTP_11, hosts);
        check(&r).map(|t| {
            (
                t.authority.map(str::to_owned),
                t.path.into_owned(),
                t.rewrite,
            )
        })
    }

    fn authority_of(r: &RequestHeader) -> Option<String> {
        let a = check(r).unwrap().authority;
        assert_eq!(a, authority(r), "check and authority agree");
        a.map(str::to_owned)
    }

    #[test]
    fn authorities() {
        for a in [
            "a",
            "edge.example.com",
            "EDGE.example:8443",
            "10.0.0.1:80",
            "[::1]",
            "[2001:db8::7]:443",
            "my_host",
        ] {
            assert!(valid_authority(a), "{a}");
        }
        let long = "a".repeat(300);
        for a in [
            "",
            " ",
            "a b",
            "a:",
            ":80",
            "a:65536",
            "a:123456",
            "a:8x",
            "u@a",
            "a/b",
            "[::1",
            "[nope]",
            "[::1]x",
            "a,b",
            "a\"b",
            long.as_str(),
        ] {
            assert!(!valid_authority(a), "{a:?}");
        }
    }

    #[test]
    fn origin_form_with_host() {
        let r = req(
            "GET",
            b"/client/negotiate?hub=a",
            Version::HTTP_11,
            &["edge:8080"],
        );
        let t = check(&r).unwrap();
        assert_eq!(t.authority, Some("edge:8080"));
        assert_eq!(authority(&r), t.authority);
        assert!(matches!(t.path, Cow::Borrowed("/client/negotiate")));
        assert_eq!(t.rewrite, None, "a normal target is forwarded as it came");
        let (_, path, rewrite) = check11("/public/%2e%2e/internal/x?a=%2e%2e/&b", &["e"]).unwrap();
        assert_eq!(path, "/internal/x");
        assert_eq!(
            rewrite.as_deref(),
            Some("/internal/x?a=%2e%2e/&b"),
            "query untouched"
        );
    }

    #[test]
    fn prefixes_are_stripped_at_segment_boundaries() {
        for (path, prefix, want) in [
            (
                "/signalr/client/negotiate",
                "/signalr",
                Some("/client/negotiate"),
            ),
            ("/signalr/client/", "/signalr", Some("/client/")),
            ("/signalr", "/signalr", Some("/")),
            ("/signalr/", "/signalr", Some("/")),
            ("/a/b/client/", "/a/b", Some("/client/")),
            ("/signalr/client/", "/signalr/client", Some("/")),
            ("/signalrx/client/", "/signalr", None),
            ("/client/", "/signalr", None),
            ("/", "/signalr", None),
        ] {
            assert_eq!(strip_prefix(path, prefix), want, "{path} {prefix}");
        }
        // What is left of the normalised path keeps its form; the query is the client's.
        let (_, path, _) = check11("/signalr/./client//%7Ex?a=%2e%2e/&b", &["e"]).unwrap();
        let rest = strip_prefix(&path, "/signalr").unwrap();
        assert_eq!(
            origin_form(rest, Some("a=%2e%2e/&b")),
            "/client/~x?a=%2e%2e/&b"
        );
        assert_eq!(origin_form("/", None), "/");
    }

    #[test]
    fn host_rules() {
        assert_eq!(check11("/x", &[]), Err(Refusal::MissingHost));
        assert_eq!(check11("/x", &[""]), Err(Refusal::BadHost));
        assert_eq!(check11("/x", &["a b"]), Err(Refusal::BadHost));
        assert_eq!(check11("/x", &["a", "b"]), Err(Refusal::BadHost));
        let r = req("GET", b"/x", Version::HTTP_10, &[]);
        assert_eq!(authority_of(&r), None, "HTTP/1.0 may omit Host");
    }

    #[test]
    fn absolute_form() {
        let (authority, _, rewrite) =
            check11("http://Internal.example/x/../y?q", &["Internal.example"]).unwrap();
        assert_eq!(authority.as_deref(), Some("Internal.example"));
        assert_eq!(rewrite.as_deref(), Some("/y?q"), "origin-form upstream");
        let (_, path, rewrite) = check11("HTTPS://a:8443", &["a:8443"]).unwrap();
        assert_eq!((path.as_str(), rewrite.as_deref()), ("/", Some("/")));
        let r = req("GET", b"http://a.example/x", Version::HTTP_10, &[]);
        assert_eq!(
            authority_of(&r).as_deref(),
            Some("a.example"),
            "the target's"
        );
        for t in [
            "ftp://a/x",
            "ws://a/x",
            "http://a b/x",
            "http://u@a/x",
            "*",
            "x/y",
        ] {
            assert_eq!(check11(t, &["a"]), Err(Refusal::BadTarget), "{t}");
        }
    }

    #[test]
    fn methods_and_paths() {
        let long = "G".repeat(MAX_METHOD_LEN + 1);
        let r = req(&long, b"/x", Version::HTTP_11, &["a"]);
        assert_eq!(check(&r), Err(Refusal::BadMethod));
        let ok = "G".repeat(MAX_METHOD_LEN);
        assert!(check(&req(&ok, b"/x", Version::HTTP_11, &["a"])).is_ok());
        assert_eq!(check11("/../x", &["a"]), Err(Refusal::BadPath));
        assert_eq!(check11("/a%2fb", &["a"]), Err(Refusal::BadPath));
        let r = req("GET", b"/a\xff", Version::HTTP_11, &["a"]);
        assert_eq!(check(&r), Err(Refusal::BadPath));
    }
}
