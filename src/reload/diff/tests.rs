use std::path::Path;

use super::*;
use crate::config::Address;
use crate::config::{self, Config};

const OLD: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
pools:
  signalr:
    kind: signalr
    endpoints:
      - { url: http://a.example, address: "127.0.0.1:1" }
      - { url: http://b.example, address: "127.0.0.1:2" }
      - { url: http://c.example, address: "127.0.0.1:3" }
  app:
    kind: app
    endpoints: [{ url: "http://127.0.0.1:5000" }]
  old:
    kind: app
    endpoints: [{ url: "http://127.0.0.1:5001" }]
routes:
  - { path: /client/, pool: signalr }
  - { path: /, pool: app, methods: [get, POST] }
  - { path: /old/, pool: old }
"#;

const NEW: &str = r#"
listeners: [{ address: "127.0.0.1:8080" }]
trusted_proxies: [10.0.0.0/8]
pools:
  signalr:
    kind: signalr
    endpoints:
      - { url: http://a.example, address: "127.0.0.1:1" }
      - { url: http://b.example, address: "127.0.0.1:22" }
      - { url: http://d.example, address: "127.0.0.1:4" }
  app:
    kind: app
    endpoints: [{ url: "http://127.0.0.1:5000" }]
    timeouts: { read: 10s }
  fresh:
    kind: app
    endpoints: [{ url: "http://127.0.0.1:5002" }]
routes:
  - { path: /client/, pool: signalr }
  - { path: /, pool: app, methods: [POST, GET] }
  - { host: Example.com, path: /fresh/, pool: fresh }
"#;

fn compiled(yaml: &str, previous: Option<&Runtime>) -> (Config, Runtime) {
    let cfg = config::parse_str(yaml).unwrap();
    let rt = Runtime::compile(&cfg.service, Path::new("t.yaml"), previous).unwrap();
    (cfg, rt)
}

#[test]
fn changes_name_pools_endpoints_and_routes() {
    let (oc, or) = compiled(OLD, None);
    let (nc, nr) = compiled(NEW, Some(&or));
    let c = Changes::between(&oc.service, &or, &nc.service, &nr);
    assert_eq!(c.pools_added, ["fresh"]);
    assert_eq!(c.pools_removed, ["old"]);
    assert_eq!(c.pools_changed, ["app"]);
    assert_eq!(c.endpoints_added, ["signalr/d.example (127.0.0.1:4)"]);
    assert_eq!(c.endpoints_removed, ["signalr/c.example"]);
    assert_eq!(
        c.endpoints_changed,
        ["signalr/b.example (http://b.example@127.0.0.1:2 -> http://b.example@127.0.0.1:22)"]
    );
    // Method order and case do not make a route new.
    assert_eq!(c.routes_added, ["example.com/fresh/ -> fresh"]);
    assert_eq!(c.routes_removed, ["/old/ -> old"]);
    assert!(c.trusted_proxies_changed);
    assert!(c.certificates_changed.is_empty());
    assert_eq!(
        c.to_string(),
        "pools +fresh -old ~app; endpoints +signalr/d.example (127.0.0.1:4) -signalr/c.example \
         ~signalr/b.example (http://b.example@127.0.0.1:2 -> http://b.example@127.0.0.1:22); \
         routes +example.com/fresh/ -> fresh -/old/ -> old; trusted_proxies changed"
    );
    assert_eq!(nr.generation, 2);
}

#[test]
fn limits_are_reloadable_and_named() {
    let (oc, or) = compiled(OLD, None);
    for change in [
        "limits: { header_timeout: 5s }\n",
        "limits: { per_client: { requests: 10 } }\n",
    ] {
        let (nc, nr) = compiled(&format!("{OLD}{change}"), Some(&or));
        let c = Changes::between(&oc.service, &or, &nc.service, &nr);
        assert!(c.limits_changed, "{change}");
        assert_eq!(c.to_string(), "limits changed");
    }
    let capped = OLD
        .replace(
            "{ path: /old/, pool: old }",
            "{ path: /old/, pool: old, max_in_flight: 5 }",
        )
        .replace(
            "\"127.0.0.1:8080\" }",
            "\"127.0.0.1:8080\", max_connections: 9 }",
        );
    let (nc, nr) = compiled(&capped, Some(&or));
    let c = Changes::between(&oc.service, &or, &nc.service, &nr);
    assert_eq!(c.to_string(), "limits changed");
    // A listener's cap is not a process setting: no upgrade needed.
    assert!(upgrade_only_changes(&oc.process, &nc.process).is_empty());
}

#[test]
fn the_same_file_changes_nothing() {
    let (oc, or) = compiled(OLD, None);
    let (nc, nr) = compiled(OLD, Some(&or));
    let c = Changes::between(&oc.service, &or, &nc.service, &nr);
    assert!(c.is_empty());
    assert_eq!(c.to_string(), "nothing changed");
}

#[test]
fn sockets_threads_and_admin_need_an_upgrade() {
    let old = config::parse_str(OLD).unwrap().process;
    assert!(upgrade_only_changes(&old, &old).is_empty());
    let mut new = old.clone();
    new.listeners[0].address = Address::parse("127.0.0.1:8081").unwrap();
    new.server.threads = 4;
    new.admin = Some(Address(config::DEFAULT_ADMIN_LISTEN));
    assert_eq!(
        upgrade_only_changes(&old, &new),
        ["server.threads", "listeners[0].address", "admin"]
    );
    let with_tls = |cert: &str| {
        let text = OLD.replace(
            r#"address: "127.0.0.1:8080" }"#,
            &format!(r#"address: "127.0.0.1:8080", tls: {{ cert: {cert}.pem, key: k.pem }} }}"#),
        );
        config::parse_str(&text).unwrap().process
    };
    let new = with_tls("c");
    assert_eq!(upgrade_only_changes(&old, &new), ["listeners[0].tls"]);
    // Other certificate files for a TLS listener are fine: they are not process settings.
    assert!(upgrade_only_changes(&new, &with_tls("c2")).is_empty());
    let mut more = old.clone();
    more.listeners.push(old.listeners[0].clone());
    assert_eq!(upgrade_only_changes(&old, &more), ["listeners"]);
    // Every process setting counts, the read buffer too.
    let mut buffered = old.clone();
    buffered.listeners[0].read_buffer = Some(4096);
    assert_eq!(
        upgrade_only_changes(&old, &buffered),
        ["listeners[0].read_buffer"]
    );
}

#[test]
fn a_strip_prefix_change_is_a_route_change() {
    let (oc, or) = compiled(OLD, None);
    let stripped = OLD.replace(
        "{ path: /old/, pool: old }",
        "{ path: /old/, pool: old, strip_prefix: /old }",
    );
    let (nc, nr) = compiled(&stripped, Some(&or));
    let c = Changes::between(&oc.service, &or, &nc.service, &nr);
    assert_eq!(c.routes_added, ["/old/ -> old (strip /old)"]);
    assert_eq!(c.routes_removed, ["/old/ -> old"]);
}
