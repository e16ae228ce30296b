use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::{Endpoint, Pool};
use crate::config::{self, HostHeader, PoolConfig};
use crate::signalr::{AffinityInput, Choice, Rule};

fn pool_config(yaml: &str) -> PoolConfig {
    let file: config::Pool = serde_yaml::from_str(yaml).unwrap();
    config::check_pool("p", &file).unwrap()
}

fn pool(yaml: &str) -> Pool {
    Pool::compile("p", &pool_config(yaml), None, &Default::default()).unwrap()
}

/// Index of an endpoint: active ones first, then retired ones.
fn index_of(p: &Pool, e: &Arc<Endpoint>) -> usize {
    let active = p.endpoints.iter().position(|x| Arc::ptr_eq(x, e));
    let retired = p.retired.iter().position(|x| Arc::ptr_eq(x, e));
    active.or(retired.map(|i| p.endpoints.len() + i)).unwrap()
}

/// The index of the endpoint `choose` picks, and the rule.
fn pick(p: &Pool, input: &AffinityInput<'_>) -> Option<(usize, Rule)> {
    match p.choose(input) {
        Choice::To(e, rule) => Some((index_of(p, e), rule)),
        _ => None,
    }
}

/// The index of the endpoint `choose` says is unavailable.
fn unavailable(p: &Pool, input: &AffinityInput<'_>) -> Option<usize> {
    match p.choose(input) {
        Choice::Unavailable(e) => Some(index_of(p, e)),
        _ => None,
    }
}

/// The endpoint of index `i`, as `index_of` counts.
fn at(p: &Pool, i: usize) -> Option<&Arc<Endpoint>> {
    p.endpoints
        .get(i)
        .or_else(|| p.retired.get(i.checked_sub(p.endpoints.len())?))
}

const SIGNALR: &str = "kind: signalr
endpoints:
  - { url: https://a.example, address: 127.0.0.1:1 }
  - { url: https://b.example, address: 127.0.0.1:2 }
  - { url: https://c.example, address: 127.0.0.1:3 }";

fn token_for(host: &str) -> String {
    let p = URL_SAFE_NO_PAD.encode(format!(r#"{{"aud":"https://{host}/client/?hub=chat"}}"#));
    format!("e30.{p}.c2ln")
}

#[test]
fn audience_then_request_id_then_round_robin() {
    let p = pool(SIGNALR);
    let auth = format!("Bearer {}", token_for("b.example"));
    let input = AffinityInput::new(Some("asrs_request_id=x"), Some(auth.as_bytes()), None);
    assert_eq!(pick(&p, &input), Some((1, Rule::Audience)));
    // The named instance is down: it is unavailable (no other instance would take its token),
    // but requests of its existing connections still go there, their only chance.
    p.endpoints[1].health.record(false, 1, 1);
    assert_eq!(unavailable(&p, &input), Some(1));
    let existing = AffinityInput::new(Some("id=conn"), Some(auth.as_bytes()), None);
    assert_eq!(pick(&p, &existing), Some((1, Rule::Audience)));
    // Without the audience rule the request id decides, and never picks it.
    let p2 = pool(&format!("{SIGNALR}\naffinity: [request_id, signature]"));
    p2.endpoints[1].health.record(false, 1, 1);
    for id in ["x", "y", "z", "w"] {
        let q = format!("asrs_request_id={id}");
        let input = AffinityInput::new(Some(&q), Some(auth.as_bytes()), None);
        let (i, rule) = pick(&p2, &input).unwrap();
        assert!(rule == Rule::RequestId && i != 1);
    }
    // A token for a host outside the pool falls through to its signature.
    let auth = format!("Bearer {}", token_for("elsewhere.example"));
    let input = AffinityInput::new(None, Some(auth.as_bytes()), None);
    assert_eq!(pick(&p, &input).unwrap().1, Rule::Signature);
    let input = AffinityInput::new(None, None, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(pick(&p, &input).unwrap().1, Rule::ClientIp);
    assert_eq!(
        pick(&p, &AffinityInput::default()).unwrap().1,
        Rule::RoundRobin
    );
    for e in &p.endpoints {
        e.health.record(false, 1, 1);
    }
    assert_eq!(
        pick(
            &p,
            &AffinityInput::new(Some("asrs_request_id=x"), None, None)
        ),
        None
    );
}

#[test]
fn endpoints_sharing_a_host_answer_for_it_together() {
    let p = pool(
        "kind: signalr
endpoints:
  - { url: https://a.example, address: 127.0.0.1:1, name: a1 }
  - { url: https://a.example, address: 127.0.0.1:2, name: a2 }
  - { url: https://b.example, address: 127.0.0.1:3 }",
    );
    let auth = format!("Bearer {}", token_for("a.example"));
    let input = AffinityInput::new(Some("asrs_request_id=x"), Some(auth.as_bytes()), None);
    assert_eq!(pick(&p, &input), Some((0, Rule::Audience)));
    // The first healthy one of those sharing the host.
    p.endpoints[0].health.record(false, 1, 1);
    assert_eq!(pick(&p, &input), Some((1, Rule::Audience)));
    // None of them healthy: unavailable (naming the first), never b.
    let ejected = crate::config::PassiveHealth {
        failures: 1,
        ejection: std::time::Duration::from_secs(60),
    };
    p.endpoints[1]
        .health
        .passive_failure(&ejected, super::health::now_ms());
    assert_eq!(unavailable(&p, &input), Some(0));
}

#[test]
fn app_pools_retry_a_failed_connect_on_each_other_healthy_endpoint_once() {
    let p = pool("kind: app\nendpoints: [{url: 'http://127.0.0.1:5001'}, {url: 'http://127.0.0.1:5002'}, {url: 'http://127.0.0.1:5003'}, {url: 'http://127.0.0.1:5004'}]");
    p.endpoints[2].health.record(false, 1, 1);
    let mut tried = Vec::new();
    let names = |e: Option<&Arc<Endpoint>>| e.map(|e| e.name.clone());
    let next = p.next_after_failure(&p.endpoints[1], &mut tried);
    assert_eq!(
        names(next),
        Some("127.0.0.1:5004".into()),
        "skips the unhealthy 5003"
    );
    let next = p.next_after_failure(&p.endpoints[3], &mut tried);
    assert_eq!(names(next), Some("127.0.0.1:5001".into()));
    let next = p.next_after_failure(&p.endpoints[0], &mut tried);
    assert_eq!(next.map(|e| e.name.as_str()), None, "each one tried once");
    assert_eq!(tried, [1, 3, 0]);
    // SignalR pools never send a request to another instance.
    let s = pool(SIGNALR);
    assert!(s
        .next_after_failure(&s.endpoints[0], &mut Vec::new())
        .is_none());
}

#[test]
fn configured_rule_order_is_followed() {
    let p = pool(&format!("{SIGNALR}\naffinity: [request_id]"));
    let auth = format!("Bearer {}", token_for("b.example"));
    let input = AffinityInput::new(Some("asrs_request_id=x"), Some(auth.as_bytes()), None);
    assert_eq!(pick(&p, &input).unwrap().1, Rule::RequestId);
}

#[test]
fn app_pools_round_robin_over_healthy_endpoints() {
    let p = pool("kind: app\nendpoints: [{url: 'http://127.0.0.1:5001'}, {url: 'http://127.0.0.1:5002'}, {url: 'http://127.0.0.1:5003'}]");
    assert_eq!(p.host_header, HostHeader::Preserve);
    assert_eq!(p.endpoints[0].name, "127.0.0.1:5001");
    let picks: Vec<usize> = (0..6)
        .map(|_| pick(&p, &AffinityInput::default()).unwrap().0)
        .collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    p.endpoints[1].health.record(false, 1, 1);
    assert!((0..6).all(|_| pick(&p, &AffinityInput::default()).unwrap().0 != 1));
}

#[test]
fn health_state_survives_recompiling_an_unchanged_endpoint() {
    let old = pool(SIGNALR);
    old.endpoints[2].health.record(false, 1, 1);
    let new = Pool::compile("p", &pool_config(SIGNALR), Some(&old), &Default::default()).unwrap();
    assert!(!new.endpoints[2].is_healthy());
    assert!(new.endpoints[0].is_healthy());
}

fn recompile(yaml: &str, previous: &Pool) -> Pool {
    Pool::compile("p", &pool_config(yaml), Some(previous), &Default::default()).unwrap()
}

#[test]
fn removed_endpoints_serve_only_their_existing_connections() {
    let two = "kind: signalr
endpoints:
  - { url: https://a.example, address: 127.0.0.1:1 }
  - { url: https://b.example, address: 127.0.0.1:2 }";
    let old = pool(SIGNALR);
    let new = recompile(two, &old);
    let names: Vec<&str> = new.retired.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["c.example"]);
    let auth = format!("Bearer {}", token_for("c.example"));
    // A connect or long poll of a connection c holds still reaches c.
    let existing = AffinityInput::new(
        Some("asrs_request_id=x&id=conn"),
        Some(auth.as_bytes()),
        None,
    );
    let (i, rule) = pick(&new, &existing).unwrap();
    assert_eq!((i, rule), (2, Rule::Retired));
    assert_eq!(at(&new, i).unwrap().name, "c.example");
    assert!(Arc::ptr_eq(at(&new, i).unwrap(), &old.endpoints[2]));
    // A negotiate (a new connection) for it is answered unavailable: no instance the new
    // config has would accept its token.
    let fresh = AffinityInput::new(Some("asrs_request_id=x"), Some(auth.as_bytes()), None);
    assert_eq!(unavailable(&new, &fresh), Some(2));
    // Retired endpoints stay retired over later reloads, and come back when configured again.
    let one = "kind: signalr\nendpoints: [{ url: https://a.example, address: 127.0.0.1:1 }]";
    let newer = recompile(one, &new);
    let names: Vec<&str> = newer.retired.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["b.example", "c.example"]);
    assert_eq!(at(&newer, 5).map(|e| e.name.as_str()), None);
    let back = recompile(SIGNALR, &newer);
    assert!(back.retired.is_empty());
    assert_eq!(pick(&back, &existing), Some((2, Rule::Audience)));
}

#[test]
fn bounded_load_moves_request_ids_off_a_loaded_endpoint_and_loads_survive_reloads() {
    let yaml = format!("{SIGNALR}\naffinity: [request_id]\nbounded_load: 1.25");
    let p = pool(&yaml);
    let input = AffinityInput::new(Some("asrs_request_id=x"), None, None);
    let (first, rule) = pick(&p, &input).unwrap();
    assert_eq!(rule, Rule::RequestId);
    // Its endpoint holds 4 requests, the others none: the bound is ceil(1.25 × 5 / 3) = 3.
    let held: Vec<_> = (0..4).map(|_| p.endpoints[first].load.hold()).collect();
    let (moved, rule) = pick(&p, &input).unwrap();
    assert_ne!(moved, first);
    assert_eq!(rule, Rule::RequestId);
    // Without the bound, the same pool keeps it there.
    let plain = pool(&format!("{SIGNALR}\naffinity: [request_id]"));
    for e in &plain.endpoints {
        assert_eq!(e.load.get(), 0);
    }
    assert_eq!(pick(&plain, &input).unwrap().0, first);
    // A reload keeps the counts of unchanged endpoints.
    let again = recompile(&yaml, &p);
    assert_eq!(again.endpoints[first].load.get(), 4);
    drop(held);
    assert_eq!(again.endpoints[first].load.get(), 0);
    assert_eq!(pick(&again, &input).unwrap().0, first);
}

#[test]
fn a_pin_made_before_an_address_move_leads_to_the_old_address() {
    let yaml = |port: u16| {
        format!(
            "kind: signalr\naffinity: [request_id]\nendpoints:\n\
             \x20 - {{ url: https://a.example, address: 127.0.0.1:1 }}\n\
             \x20 - {{ url: https://b.example, address: 127.0.0.1:{port} }}"
        )
    };
    let old = pool(&yaml(2));
    let b = &old.endpoints[1];
    old.pin_negotiate(b, Some(b"r1"), None);
    // b.example moves (a reload or a DNS change): its old address is retired, and a request
    // of the connection its negotiate made still goes there; a new connection goes to the new.
    let new = recompile(&yaml(9), &old);
    assert_eq!(new.retired.len(), 1);
    assert!(Arc::ptr_eq(&new.retired[0], b));
    let existing = AffinityInput::new(Some("asrs_request_id=r1&id=c"), None, None);
    match new.choose(&existing) {
        Choice::To(e, Rule::Pinned) => assert_eq!(e.addr.port(), 2),
        other => panic!("{other:?}"),
    }
    let fresh = AffinityInput::new(Some("asrs_request_id=r2"), None, None);
    let (e, _) = new.choose(&fresh).chosen().unwrap();
    assert_ne!(e.addr.port(), 2, "nothing new goes to the retired address");
}
