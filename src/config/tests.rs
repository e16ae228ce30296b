use super::*;

const GOOD: &str = r#"
listeners:
  - address: 127.0.0.1:8080
trusted_proxies: [10.0.0.0/8]
pools:
  signalr:
    kind: signalr
    endpoints:
      - connection_string: "Endpoint=https://a.service.signalr.net;AccessKey=k1;Version=1.0;"
        address: 127.0.0.1:9001
      - url: https://b.service.signalr.net:8443
        address: 127.0.0.1:9002
    health_check: { path: /api/v1/health, interval: 2s, timeout: 500ms }
    timeouts: { read: 130s }
  app:
    kind: app
    endpoints: [{ url: "http://127.0.0.1:5000" }]
routes:
  - { path: /client/, pool: signalr }
  - { path: /, pool: app, methods: [GET, POST] }
"#;

#[test]
fn good_config_parses_with_defaults() {
    let c = parse_str(GOOD).unwrap();
    assert_eq!(c.process.server.threads, 1);
    let p = &c.service.pools["signalr"];
    assert_eq!(p.kind, PoolKind::Signalr);
    let hc = p.health_check.as_ref().unwrap();
    assert_eq!(hc.method.to_string(), "HEAD");
    assert_eq!(hc.interval, std::time::Duration::from_secs(2));
    assert_eq!(p.timeouts.read, std::time::Duration::from_secs(130));
    assert_eq!(p.timeouts.connect, std::time::Duration::from_secs(5));
    let spec = &p.endpoints[1];
    assert_eq!(
        (spec.host.as_str(), spec.port, spec.tls),
        ("b.service.signalr.net", 8443, true)
    );
    let spec = &p.endpoints[0];
    assert_eq!(spec.name, "a.service.signalr.net");
    assert_eq!(spec.access_key.as_deref(), Some("k1"));
}

/// Replaces `from` by `to` in GOOD and returns the error.
fn error_of(from: &str, to: &str) -> PathError {
    assert!(GOOD.contains(from), "{from}");
    parse_str(&GOOD.replacen(from, to, 1)).unwrap_err()
}

#[test]
fn every_error_names_its_key_path() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "listeners:",
            "listenrs:",
            "listenrs",
            "unknown field `listenrs`",
        ),
        (
            "kind: app",
            "kind: apps",
            "pools.app.kind",
            "unknown variant",
        ),
        (
            "interval: 2s",
            "interval: soon",
            "pools.signalr.health_check.interval",
            "",
        ),
        (
            "timeouts: { read: 130s }",
            "timeouts: { red: 130s }",
            "pools.signalr.timeouts.red",
            "unknown field `red`",
        ),
        (
            "127.0.0.1:8080",
            "localhost",
            "listeners[0].address",
            "ip:port",
        ),
        ("[10.0.0.0/8]", "[10.0.0.0/33]", "trusted_proxies[0]", ""),
        (
            "address: 127.0.0.1:9001",
            "address: nowhere",
            "pools.signalr.endpoints[0].address",
            "ip:port",
        ),
        (
            "url: https://b.service.signalr.net:8443",
            "url: ftp://b",
            "pools.signalr.endpoints[1].url",
            "http",
        ),
        (
            "url: https://b.service.signalr.net:8443",
            "url: https://b/x",
            "pools.signalr.endpoints[1].url",
            "path",
        ),
        (
            "Version=1.0;\"",
            "Version=3.0;\"",
            "pools.signalr.endpoints[0].connection_string",
            "Version",
        ),
        (
            "{ path: /client/, pool: signalr }",
            "{ path: /client/, pool: nope }",
            "routes[0].pool",
            "unknown pool",
        ),
        (
            "{ path: /client/, pool: signalr }",
            "{ path: client, pool: signalr }",
            "routes[0].path",
            "start with '/'",
        ),
        (
            "{ path: /client/, pool: signalr }",
            "{ path: /x/../client/, pool: signalr }",
            "routes[0].path",
            "never matches",
        ),
        (
            "{ path: /client/, pool: signalr }",
            "{ path: \"/%63lient/\", pool: signalr }",
            "routes[0].path",
            "normalised",
        ),
        (
            "trusted_proxies: [10.0.0.0/8]",
            "forwarding: { x_real_ip: yes please }",
            "forwarding.x_real_ip",
            "",
        ),
        (
            "methods: [GET, POST]",
            "methods: [GET, \"P O\"]",
            "routes[1].methods[1]",
            "invalid method",
        ),
        (
            "methods: [GET, POST]",
            "methods: []",
            "routes[1].methods",
            "empty",
        ),
        (
            "timeout: 500ms",
            "timeout: 0s",
            "pools.signalr.health_check.timeout",
            "more than 0",
        ),
        (
            "path: /api/v1/health",
            "path: health",
            "pools.signalr.health_check.path",
            "'/'",
        ),
        (
            "timeout: 500ms",
            "timeout: 1s, unhealthy_threshold: 0",
            "pools.signalr.health_check.unhealthy_threshold",
            "at least 1",
        ),
        (
            "kind: app\n",
            "kind: app\n    affinity: [request_id]\n",
            "pools.app.affinity",
            "only signalr",
        ),
        (
            "kind: signalr\n",
            "kind: signalr\n    affinity: [audience, audience]\n",
            "pools.signalr.affinity[1]",
            "twice",
        ),
        (
            "kind: signalr\n",
            "kind: signalr\n    affinity: [magic]\n",
            "pools.signalr.affinity[0]",
            "unknown variant",
        ),
        (
            "endpoints: [{ url: \"http://127.0.0.1:5000\" }]",
            "endpoints: []",
            "pools.app.endpoints",
            "at least one",
        ),
        (
            "endpoints: [{ url: \"http://127.0.0.1:5000\" }]",
            "endpoints: [{}]",
            "pools.app.endpoints[0]",
            "exactly one",
        ),
        (
            "      - url: https://b.service.signalr.net:8443\n",
            "      - url: https://a.service.signalr.net\n",
            "pools.signalr.endpoints[1]",
            "used twice",
        ),
        (
            "- { path: /, pool: app, methods: [GET, POST] }",
            "- { path: /client/, pool: app }",
            "routes[1]",
            "duplicates",
        ),
        (
            "listeners:\n  - address: 127.0.0.1:8080",
            "listeners: []",
            "listeners",
            "at least one",
        ),
    ];
    for (from, to, path, msg) in cases {
        let e = error_of(from, to);
        assert_eq!(&e.path, path, "{from} -> {to}: {e:?}");
        assert!(e.message.contains(msg), "{from} -> {to}: {e:?}");
    }
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("se-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.yaml");
    std::fs::write(
        &f,
        GOOD.replace("pool: nope", "")
            .replace("pool: signalr }", "pool: ghost }"),
    )
    .unwrap();
    let e = load(&f).unwrap_err();
    assert_eq!(e.file, f);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: routes[0].pool: unknown pool", f.display())),
        "{e}"
    );
    let missing = load(&dir.join("missing.yaml")).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn admin_section_is_off_unless_given_and_defaults_to_loopback() {
    assert_eq!(parse_str(GOOD).unwrap().process.admin, None);
    let c = parse_str(&format!("{GOOD}admin: {{}}\n")).unwrap();
    assert_eq!(c.process.admin.unwrap().to_string(), "127.0.0.1:9901");
    let c = parse_str(&format!("{GOOD}admin: {{ listen: \"127.0.0.1:7777\" }}\n")).unwrap();
    assert_eq!(c.process.admin.unwrap().to_string(), "127.0.0.1:7777");
    let cases = [
        (
            "admin: { listen: nowhere }",
            "admin.listen",
            "not an ip:port",
        ),
        (
            "admin: { listen: \"127.0.0.1:8080\" }",
            "admin.listen",
            "also a client listener",
        ),
        ("admin: { port: 1 }", "admin.port", "unknown field `port`"),
        (
            "admin: { token_file: /t, token_env: T }",
            "admin.token_env",
            "at most one of `token_file` and `token_env`",
        ),
        (
            "admin: { token_env: \"A-B\" }",
            "admin.token_env",
            "not an environment variable name",
        ),
    ];
    for (section, path, msg) in cases {
        let e = parse_str(&format!("{GOOD}{section}\n")).unwrap_err();
        assert_eq!(e.path, path, "{section}: {e:?}");
        assert!(e.message.contains(msg), "{section}: {e:?}");
    }
}

#[test]
fn tokens_are_off_by_default_and_their_settings_bounded() {
    let c = parse_str(GOOD).unwrap();
    let t = &c.service.pools["signalr"].tokens;
    assert!(!t.verify);
    assert_eq!(t.clock_skew, std::time::Duration::from_secs(30));
    let on = GOOD.replacen(
        "    timeouts: { read: 130s }",
        "    timeouts: { read: 130s }\n    tokens: { verify: true, audiences: [Shared.Example] }",
        1,
    );
    let t = &parse_str(&on).unwrap().service.pools["signalr"].tokens;
    assert!(t.verify);
    assert_eq!(t.audiences, [HostName("shared.example".into())]);
    let cases: &[(&str, &str, &str)] = &[
        (
            "clock_skew: 301s",
            "pools.signalr.tokens.clock_skew",
            "at most 300s",
        ),
        (
            "clock_skew: 18446744073709551615s",
            "pools.signalr.tokens.clock_skew",
            "",
        ),
        (
            "cache_size: 0",
            "pools.signalr.tokens.cache_size",
            "between 1 and",
        ),
        (
            "cache_size: 1000001",
            "pools.signalr.tokens.cache_size",
            "between 1 and",
        ),
        (
            "verfy: true",
            "pools.signalr.tokens",
            "unknown field `verfy`",
        ),
        (
            "audiences: [a/b]",
            "pools.signalr.tokens.audiences[0]",
            "invalid host",
        ),
    ];
    for (setting, path, msg) in cases {
        let text = GOOD.replacen(
            "    timeouts: { read: 130s }",
            &format!("    timeouts: {{ read: 130s }}\n    tokens: {{ {setting} }}"),
            1,
        );
        let e = parse_str(&text).unwrap_err();
        assert!(e.path.starts_with(path), "{setting}: {e:?}");
        assert!(e.message.contains(msg), "{setting}: {e:?}");
    }
    let app = GOOD.replacen(
        "    endpoints: [{ url: \"http://127.0.0.1:5000\" }]",
        "    endpoints: [{ url: \"http://127.0.0.1:5000\" }]\n    tokens: { verify: true }",
        1,
    );
    assert_eq!(parse_str(&app).unwrap_err().path, "pools.app.tokens");
}

#[test]
fn pinning_is_on_for_signalr_pools_and_bounded_load_off_by_default() {
    let c = parse_str(GOOD).unwrap();
    let p = &c.service.pools["signalr"];
    assert_eq!(p.pinning.ttl, std::time::Duration::from_secs(120));
    assert_eq!(p.pinning.capacity, 100_000);
    assert_eq!(p.bounded_load, None);
    assert_eq!(c.service.pools["app"].pinning.capacity, 0);
    let with = |extra: &str| {
        GOOD.replacen(
            "    timeouts: { read: 130s }",
            &format!("    timeouts: {{ read: 130s }}\n    {extra}"),
            1,
        )
    };
    let c = parse_str(&with(
        "pinning: { ttl: 30s, capacity: 5 }\n    bounded_load: 1.25",
    ))
    .unwrap();
    let p = &c.service.pools["signalr"];
    assert_eq!(
        (p.pinning.ttl.as_secs(), p.pinning.capacity, p.bounded_load),
        (30, 5, Some(1.25))
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "pinning: { ttl: 0s }",
            "pools.signalr.pinning.ttl",
            "more than 0",
        ),
        (
            "pinning: { ttl: 86401s }",
            "pools.signalr.pinning.ttl",
            "at most",
        ),
        (
            "pinning: { capacity: 1000001 }",
            "pools.signalr.pinning.capacity",
            "at most 1000000",
        ),
        (
            "pinning: { tl: 1s }",
            "pools.signalr.pinning",
            "unknown field `tl`",
        ),
        (
            "bounded_load: 0.99",
            "pools.signalr.bounded_load",
            "from 1 to 100",
        ),
        (
            "bounded_load: 101",
            "pools.signalr.bounded_load",
            "from 1 to 100",
        ),
        (
            "bounded_load: .nan",
            "pools.signalr.bounded_load",
            "from 1 to 100",
        ),
        (
            "bounded_load: .inf",
            "pools.signalr.bounded_load",
            "from 1 to 100",
        ),
        (
            "bounded_load: 2\n    pinning: { capacity: 0 }",
            "pools.signalr.bounded_load",
            "needs pinning",
        ),
        (
            "bounded_load: 2\n    affinity: [audience, signature]",
            "pools.signalr.bounded_load",
            "request_id",
        ),
    ];
    for (setting, path, msg) in cases {
        let e = parse_str(&with(setting)).unwrap_err();
        assert!(e.path.starts_with(path), "{setting}: {e:?}");
        assert!(e.message.contains(msg), "{setting}: {e:?}");
    }
    for key in ["pinning: { ttl: 1s }", "bounded_load: 1.5"] {
        let app = GOOD.replacen(
            "    endpoints: [{ url: \"http://127.0.0.1:5000\" }]",
            &format!("    endpoints: [{{ url: \"http://127.0.0.1:5000\" }}]\n    {key}"),
            1,
        );
        let e = parse_str(&app).unwrap_err();
        assert!(e.path.starts_with("pools.app."), "{key}: {e:?}");
    }
}

#[test]
fn forwarding_headers_are_off_unless_asked() {
    let f = parse_str(GOOD).unwrap().service.forwarding;
    assert!(!f.x_real_ip && !f.forwarded);
    let c = parse_str(&format!(
        "{GOOD}forwarding: {{ x_real_ip: true, forwarded: true }}\n"
    ));
    let f = c.unwrap().service.forwarding;
    assert!(f.x_real_ip && f.forwarded);
}

#[test]
fn strip_prefix_ends_at_a_segment_of_the_route_path() {
    let with = |path: &str, strip: &str| {
        parse_str(&GOOD.replacen(
            "{ path: /client/, pool: signalr }",
            &format!("{{ path: \"{path}\", pool: signalr, strip_prefix: \"{strip}\" }}"),
            1,
        ))
    };
    for (path, strip, kept) in [
        ("/signalr/client/", "/signalr", "/signalr"),
        ("/signalr/client/", "/signalr/", "/signalr"),
        ("/signalr/client/", "/signalr/client", "/signalr/client"),
        ("/signalr", "/signalr", "/signalr"),
        ("/a/b/client/", "/a/b", "/a/b"),
    ] {
        let c = with(path, strip).unwrap_or_else(|e| panic!("{path} {strip}: {e:?}"));
        let kept_as = c.service.routes[0]
            .strip_prefix
            .as_ref()
            .map(|p| p.0.as_str());
        assert_eq!(kept_as, Some(kept), "{path} {strip}");
    }
    assert_eq!(
        parse_str(GOOD).unwrap().service.routes[0].strip_prefix,
        None
    );
    for (path, strip, says) in [
        ("/signalr/client/", "/", "strips nothing"),
        ("/signalr/client/", "//", "strips nothing"),
        ("/signalr/client/", "signalr", "start with '/'"),
        ("/signalr/client/", "/signalr?x", "no query"),
        ("/signalr/client/", "/signal", "ends at a `/`"),
        ("/signalr/client/", "/other", "ends at a `/`"),
        ("/signalr/client/", "/signalr/client/x", "ends at a `/`"),
        ("/signalr/client/", "/signalr//", "ends at a `/`"),
        ("/signalrx/", "/signalr", "ends at a `/`"),
    ] {
        let e = with(path, strip).unwrap_err();
        assert_eq!(e.path, "routes[0].strip_prefix", "{path} {strip}: {e:?}");
        assert!(e.message.contains(says), "{path} {strip}: {e:?}");
    }
}

#[test]
fn route_paths_must_be_in_normal_form() {
    let with =
        |p: &str| parse_str(&GOOD.replacen("path: /client/,", &format!("path: \"{p}\","), 1));
    for ok in [
        "/client/",
        "/client",
        "/",
        "/a%20b/",
        "/a;v=1/",
        "/%C3%A9t%C3%A9/",
        "/a.b/..c",
    ] {
        assert!(with(ok).is_ok(), "{ok}: {:?}", with(ok));
    }
    for bad in [
        "/a/../b",
        "/a/./",
        "//a",
        "/a//b",
        "/a\\\\b",
        "/%63lient/",
        "/a%2fb",
        "/%e9",
        "/a?x",
    ] {
        let e = with(bad).unwrap_err();
        assert_eq!(e.path, "routes[0].path", "{bad}");
    }
}

#[test]
fn admin_key_without_a_value_is_the_default_listener() {
    for section in ["admin:", "admin: ~", "admin: null", "admin: {}"] {
        let c = parse_str(&format!("{GOOD}{section}\n")).unwrap();
        assert_eq!(
            c.process.admin.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9901"),
            "{section}"
        );
        assert_eq!(c.service.admin_token, None);
        assert_eq!(c.admin_warning(), None, "loopback needs no token");
    }
}

#[test]
fn admin_token_source_is_reloadable_and_its_absence_beyond_loopback_warned() {
    let c = parse_str(&format!("{GOOD}admin: {{ token_file: /run/t }}\n")).unwrap();
    assert_eq!(
        c.service.admin_token,
        Some(AdminTokenSource::File("/run/t".into()))
    );
    let c = parse_str(&format!("{GOOD}admin: {{ token_env: EDGE_ADMIN_TOKEN }}\n")).unwrap();
    assert_eq!(
        c.service.admin_token,
        Some(AdminTokenSource::Env("EDGE_ADMIN_TOKEN".into()))
    );
    for (section, warned) in [
        ("admin: { listen: \"0.0.0.0:9901\" }", true),
        ("admin: { listen: \"[::]:9901\" }", true),
        ("admin: { listen: \"10.0.0.1:9901\" }", true),
        ("admin: { listen: \"[::1]:9901\" }", false),
        ("admin: { listen: \"0.0.0.0:9901\", token_env: T }", false),
    ] {
        let c = parse_str(&format!("{GOOD}{section}\n")).unwrap();
        let w = c.admin_warning();
        assert_eq!(w.is_some(), warned, "{section}: {w:?}");
        if let Some(w) = w {
            assert!(w.contains("without a token"), "{w}");
        }
    }
}
