//! Client address and forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`), trusting
//! only configured proxies: from any other peer, incoming forwarding headers are replaced or
//! removed, never passed on.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::FORWARDED;
use ipnet::IpNet;
use pingora_core::Result;
use pingora_http::RequestHeader;

use crate::config::Forwarding;

/// One hop as the upstream should hear of it.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The TCP peer, if known.
    pub peer: Option<IpAddr>,
    /// Whether the peer is a trusted proxy, whose forwarding headers are kept.
    pub peer_trusted: bool,
    /// The client address after trusted-proxy processing.
    pub client: Option<IpAddr>,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The authority the request was routed by (`X-Forwarded-Host`, `Forwarded: host=`).
    pub host: Option<&'a str>,
}

/// Sets the forwarding headers of an upstream request for `hop`, with the optional ones that
/// `opts` asks for.
pub fn apply(upstream: &mut RequestHeader, hop: &Hop<'_>, opts: Forwarding) -> Result<()> {
    let trusted = hop.peer_trusted;
    if let Some(peer) = hop.peer {
        let existing = upstream
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let xff = forwarded_for(peer, existing, trusted);
        upstream.insert_header("x-forwarded-for", xff)?;
    }
    if !(trusted && upstream.headers.contains_key("x-forwarded-proto")) {
        upstream.insert_header("x-forwarded-proto", if hop.tls { "https" } else { "http" })?;
    }
    if !(trusted && upstream.headers.contains_key("x-forwarded-host")) {
        match hop.host {
            Some(h) => upstream.insert_header("x-forwarded-host", h)?,
            None => {
                upstream.remove_header("x-forwarded-host");
            }
        }
    }
    if opts.forwarded {
        let mut value = String::new();
        if trusted {
            for v in upstream.headers.get_all(FORWARDED) {
                if let Ok(v) = v.to_str() {
                    value.push_str(v);
                    value.push_str(", ");
                }
            }
        }
        forwarded_element(&mut value, hop);
        upstream.insert_header(FORWARDED, value)?;
    } else if !trusted {
        upstream.remove_header(&FORWARDED);
    }
    match hop.client {
        Some(client) if opts.x_real_ip => upstream.insert_header("x-real-ip", ip_string(client))?,
        _ if !trusted => {
            upstream.remove_header("x-real-ip");
        }
        _ => {}
    }
    Ok(())
}

/// Appends the RFC 7239 element for `hop`: `for=...;proto=...;host=...`.
fn forwarded_element(out: &mut String, hop: &Hop<'_>) {
    match hop.peer {
        Some(IpAddr::V4(ip)) => {
            let _ = write!(out, "for={ip}");
        }
        // An IPv6 node is bracketed, and then quoted: `[` is not a token character.
        Some(IpAddr::V6(ip)) => {
            let _ = write!(out, "for=\"[{ip}]\"");
        }
        None => out.push_str("for=unknown"),
    }
    out.push_str(if hop.tls {
        ";proto=https"
    } else {
        ";proto=http"
    });
    if let Some(host) = hop.host {
        out.push_str(";host=");
        let token = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if token {
            out.push_str(host);
        } else {
            // A checked authority has no `"` or `\`; escape them anyway.
            out.push('"');
            for c in host.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client address: the peer, or, when the peer is trusted, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let Some(xff) = xff else { return peer };
    let mut client = peer;
    for part in xff.rsplit(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip, trusted) {
                    break;
                }
            }
            // A malformed hop ends the chain of trust.
            Err(_) => break,
        }
    }
    client
}

/// The `X-Forwarded-For` to send upstream: the trusted chain plus the peer.
pub fn forwarded_for(peer: IpAddr, existing: Option<&str>, peer_trusted: bool) -> String {
    match existing {
        Some(x) if peer_trusted && !x.trim().is_empty() => format!("{}, {peer}", x.trim()),
        _ => ip_string(peer),
    }
}

/// `ip.to_string()`, without the formatting machinery for IPv4 (once per proxied request).
fn ip_string(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn ipv4_strings_match_display() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_string(ip), ip.to_string());
        }
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let t = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(peer, Some("1.2.3.4"), &t), peer);
        assert_eq!(forwarded_for(peer, Some("1.2.3.4"), false), "203.0.113.9");
    }

    fn upstream(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn header(r: &RequestHeader, name: &str) -> Option<String> {
        let all: Vec<&str> = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        (!all.is_empty()).then(|| all.join(" | "))
    }

    const SPOOFED: &[(&str, &str)] = &[
        ("forwarded", "for=1.2.3.4;host=evil"),
        ("x-real-ip", "1.2.3.4"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-host", "evil"),
    ];

    fn hop(peer: &str, trusted: bool, client: &str) -> Hop<'static> {
        Hop {
            peer: Some(peer.parse().unwrap()),
            peer_trusted: trusted,
            client: Some(client.parse().unwrap()),
            tls: false,
            host: Some("edge.example:8080"),
        }
    }

    #[test]
    fn untrusted_forwarding_headers_go() {
        let mut r = upstream(SPOOFED);
        let h = hop("203.0.113.9", false, "203.0.113.9");
        apply(&mut r, &h, Forwarding::default()).unwrap();
        assert_eq!(header(&r, "forwarded"), None);
        assert_eq!(header(&r, "x-real-ip"), None);
        assert_eq!(
            header(&r, "x-forwarded-for").as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            header(&r, "x-forwarded-host").as_deref(),
            Some("edge.example:8080")
        );
        assert_eq!(header(&r, "x-forwarded-proto").as_deref(), Some("http"));
        // Asked for: set from the peer, never from the client's headers.
        let mut r = upstream(SPOOFED);
        let all = Forwarding {
            x_real_ip: true,
            forwarded: true,
        };
        apply(&mut r, &h, all).unwrap();
        assert_eq!(
            header(&r, "forwarded").as_deref(),
            Some("for=203.0.113.9;proto=http;host=\"edge.example:8080\"")
        );
        assert_eq!(header(&r, "x-real-ip").as_deref(), Some("203.0.113.9"));
    }

    #[test]
    fn trusted_forwarding_headers_are_kept_or_extended() {
        let h = hop("10.1.1.1", true, "1.2.3.4");
        let mut r = upstream(SPOOFED);
        apply(&mut r, &h, Forwarding::default()).unwrap();
        assert_eq!(
            header(&r, "forwarded").as_deref(),
            Some("for=1.2.3.4;host=evil")
        );
        assert_eq!(header(&r, "x-real-ip").as_deref(), Some("1.2.3.4"));
        assert_eq!(header(&r, "x-forwarded-host").as_deref(), Some("evil"));
        let mut r = upstream(&[("forwarded", "for=1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        let all = Forwarding {
            x_real_ip: true,
            forwarded: true,
        };
        let h = Hop {
            peer: Some("2001:db8::1".parse().unwrap()),
            client: Some("2.2.2.2".parse().unwrap()),
            tls: true,
            host: Some("a.example"),
            ..h
        };
        apply(&mut r, &h, all).unwrap();
        assert_eq!(
            header(&r, "forwarded").as_deref(),
            Some("for=1.1.1.1, for=2.2.2.2, for=\"[2001:db8::1]\";proto=https;host=a.example")
        );
        assert_eq!(header(&r, "x-real-ip").as_deref(), Some("2.2.2.2"));
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right() {
        let t = nets(&["10.0.0.0/8", "192.168.1.1/32"]);
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, Some("1.2.3.4, 5.6.7.8, 192.168.1.1"), &t).to_string(),
            "5.6.7.8"
        );
        assert_eq!(client_ip(peer, None, &t), peer);
        assert_eq!(
            client_ip(peer, Some("garbage, 10.2.2.2"), &t).to_string(),
            "10.2.2.2"
        );
        assert_eq!(
            client_ip(peer, Some(" 2001:db8::1 "), &t).to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            forwarded_for(peer, Some("1.2.3.4"), true),
            "1.2.3.4, 10.1.1.1"
        );
        assert_eq!(forwarded_for(peer, Some(" "), true), "10.1.1.1");
    }
}
