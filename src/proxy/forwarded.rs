//! Client address and `X-Forwarded-*` headers, trusting only configured proxies.

use std::net::IpAddr;

use ipnet::IpNet;

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
