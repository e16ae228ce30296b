//! Fuzz target `affinity`: the keys a request carries (`AffinityInput::new` over the query, the
//! `Authorization` bytes and the client address) and the rule chain that turns them into an
//! instance. Input: up to four lines, query / Authorization / IP / health of the three endpoints
//! (`1` healthy, `0` not; all healthy when absent).
#![cfg_attr(fuzzing, no_main)]

use std::net::IpAddr;

use signalr_edge::signalr::keys::{query_param, token_audience_host, CONNECTION_ID_PARAM};
use signalr_edge::signalr::{Affinity, AffinityInput, Candidate, Choice, Rule, DEFAULT_RULES};

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

struct Instance {
    host: &'static str,
    healthy: bool,
}

impl Candidate for Instance {
    fn host(&self) -> &str {
        self.host
    }

    fn is_healthy(&self) -> bool {
        self.healthy
    }
}

const HOSTS: [&str; 3] = [
    "a.service.signalr.net",
    "b.service.signalr.net",
    "c.service.signalr.net",
];

/// The address a line names: text (`10.0.0.1`, `::1`), else its raw 4 or 16 bytes.
fn ip(line: &[u8]) -> Option<IpAddr> {
    if let Some(ip) = std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()) {
        return Some(ip);
    }
    match line.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(line).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(line).ok()?)),
        _ => None,
    }
}

/// Checks the extracted keys and the choice of every rule order over three instances.
pub fn run(data: &[u8]) {
    let mut lines = data.splitn(4, |&b| b == b'\n');
    let [query, authorization, addr, health] = [(); 4].map(|_| lines.next());
    let query = query.map(String::from_utf8_lossy);
    let client_ip = addr.and_then(ip);
    let input = AffinityInput::new(query.as_deref(), authorization, client_ip);

    assert!(input.token.as_deref().is_none_or(|t| !t.is_empty()));
    assert!(input.request_id.as_deref().is_none_or(|r| !r.is_empty()));
    assert_eq!(input.client_ip, client_ip);
    let has_id = query
        .as_deref()
        .and_then(|q| query_param(q, CONNECTION_ID_PARAM))
        .is_some_and(|v| !v.is_empty());
    assert_eq!(input.existing_connection, has_id);

    let health = health.unwrap_or(b"111");
    let active: Vec<Instance> = HOSTS
        .iter()
        .enumerate()
        .map(|(i, &host)| Instance {
            host,
            healthy: health.get(i) != Some(&b'0'),
        })
        .collect();
    let retired = [Instance {
        host: "old.service.signalr.net",
        healthy: false,
    }];
    let audience = input.token.as_deref().and_then(token_audience_host);
    let orders: [&[Rule]; 3] = [
        &DEFAULT_RULES,
        &[
            Rule::ClientIp,
            Rule::Signature,
            Rule::RequestId,
            Rule::Audience,
        ],
        &[Rule::RequestId],
    ];
    for rules in orders {
        // Two chains built apart agree (every replica of the edge picks the same instance).
        let a = Affinity::new(rules.to_vec(), &HOSTS);
        let b = Affinity::new(rules.to_vec(), &HOSTS);
        let pick = |x: &Affinity| match x.choose(&active, &retired, &input) {
            Choice::To(e, rule) => Ok(Some((e.host, rule))),
            Choice::Unavailable(e) => Err(e.host),
            Choice::NoneHealthy => Ok(None),
        };
        let chosen = pick(&a);
        assert_eq!(chosen, pick(&b), "rules {rules:?}");
        match chosen {
            Ok(None) => assert!(active.iter().all(|e| !e.healthy)),
            Err(host) => {
                // Named by the token, down or retired, and the request starts a connection.
                assert!(!input.existing_connection && rules.contains(&Rule::Audience));
                assert_eq!(audience.as_deref(), Some(host));
                assert!(active.iter().all(|e| e.host != host || !e.healthy));
            }
            Ok(Some((host, Rule::Retired))) => {
                assert!(input.existing_connection && rules.contains(&Rule::Audience));
                assert_eq!(host, retired[0].host);
                assert_eq!(audience.as_deref(), Some(host));
            }
            Ok(Some((host, rule))) => {
                let e = active
                    .iter()
                    .find(|e| e.host == host)
                    .expect("an active one");
                assert!(rule == Rule::RoundRobin || rules.contains(&rule));
                if rule == Rule::Audience {
                    assert_eq!(audience.as_deref(), Some(host));
                    // Down, it still gets the requests of its existing connections.
                    assert!(e.healthy || input.existing_connection, "{host} while down");
                } else {
                    assert!(e.healthy, "{host} chosen by {rule:?} while down");
                }
            }
        }
    }
}
