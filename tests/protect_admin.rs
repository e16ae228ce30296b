//! The admin listener (issue 11, item 6), probed over raw sockets as a browser page, a DNS
//! rebinding page and a client without the token would reach it: each gets the strict answer
//! (`403`, `421`, `401`), no reload happens, and the edge keeps serving. Also: `admin:` with
//! no value is the default listener, and a listener beyond loopback without a token is
//! warned about at start.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use testkit::*;

/// Pools and routes that are never used: these tests talk to the admin listener.
fn config() -> EdgeConfig {
    EdgeConfig::new()
        .pool(Pool::app("app").endpoint(Endpoint::url("http://127.0.0.1:9")))
        .route(Route::new("/app/", "app"))
}

/// Sends `head` (request line and headers, without the blank line) with `Connection: close`
/// to `port` and returns the status and the whole answer.
fn raw(port: u16, head: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{head}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?} for {head:?}"));
    (status, answer)
}

/// A site running one edge process with `config` (completed by `site.config`), ready.
async fn started(site: &EdgeSite, config: &EdgeConfig) -> EdgeProcess {
    config.write(&site.conf());
    let mut p = site.spawn("edge", false);
    site.wait_ready(&mut p).await;
    p
}

/// `(generation, reloads ok, refusals by reason)` from `/status`, asked the way a tool does.
fn status(port: u16, auth: &str) -> (u64, u64, serde_json::Value) {
    let (code, answer) = raw(
        port,
        &format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}{auth}"),
    );
    assert_eq!(code, 200, "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    (
        v["generation"].as_u64().unwrap(),
        v["reloads"]["ok"].as_u64().unwrap(),
        v["refusals"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_and_foreign_hosts_are_refused() {
    let site = EdgeSite::new();
    let mut edge = started(&site, &site.config(&config(), 0)).await;
    let port = site.admin_port;
    let host = format!("Host: 127.0.0.1:{port}");
    let (generation, reloads, _) = status(port, "");

    // What a form or a `fetch` without preflight on another site can send.
    for content_type in [
        "",
        "\r\nContent-Type: text/plain",
        "\r\nContent-Type: application/x-www-form-urlencoded",
        "\r\nContent-Type: multipart/form-data; boundary=x",
    ] {
        let head = format!("POST /reload HTTP/1.1\r\n{host}\r\nOrigin: http://evil.example{content_type}\r\nContent-Length: 0");
        let (code, answer) = raw(port, &head);
        assert_eq!(code, 403, "{content_type:?}: {answer}");
    }
    // The preflight a cross-site JSON or custom-header request needs is not granted.
    let (code, answer) = raw(
        port,
        &format!("OPTIONS /reload HTTP/1.1\r\n{host}\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-signalr-edge"),
    );
    assert!(code >= 400, "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("access-control-allow"),
        "{answer}"
    );
    // DNS rebinding: the page's own host name, with the right port, or none at all.
    for bad_host in [
        format!("Host: evil.example:{port}"),
        "Host: evil.example".to_string(),
        format!("Host: 127.0.0.2:{port}"),
        "Host: localhost:1".to_string(),
    ] {
        for request in ["POST /reload", "GET /status", "GET /healthz"] {
            let head = format!("{request} HTTP/1.1\r\n{bad_host}\r\nX-Signalr-Edge: 1");
            let (code, answer) = raw(port, &head);
            assert_eq!(code, 421, "{request} {bad_host}: {answer}");
        }
    }
    let (code, _) = raw(port, "POST /reload HTTP/1.0\r\nX-Signalr-Edge: 1");
    assert_eq!(code, 421, "no Host at all");

    // None of that reloaded anything; the edge and its admin listener still serve.
    let (now, ok, refusals) = status(port, "");
    assert_eq!(
        (now, ok),
        (generation, reloads),
        "a refused request reloaded"
    );
    assert_eq!(
        refusals["admin_cross_site"], 5,
        "4 posts, 1 preflight: {refusals}"
    );
    assert_eq!(refusals["admin_wrong_host"], 13, "{refusals}");
    let (code, _) = raw(site.port, "GET /nowhere HTTP/1.1\r\nHost: a");
    assert_eq!(code, 404, "the proxy still answers");

    // What tools send: the custom header, or a JSON body, from an accepted Host.
    for head in [
        format!("POST /reload HTTP/1.1\r\n{host}\r\nX-Signalr-Edge: 1"),
        format!("POST /reload HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json; charset=utf-8"),
        "POST /reload HTTP/1.1\r\nHost: localhost\r\nX-Signalr-Edge: 1".to_string(),
    ] {
        let (code, answer) = raw(port, &head);
        assert_eq!(code, 200, "{answer}");
    }
    let (code, _) = site.reload().await;
    assert_eq!(code, 200, "the testkit's reload");
    let (now, ok, _) = status(port, "");
    assert_eq!((now, ok), (generation + 4, reloads + 4));
    let log = edge.log();
    assert!(
        log.contains("admin: refused POST from 127.0.0.1: admin_cross_site (403)"),
        "{log}"
    );
    edge.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_and_rotates_by_reload() {
    let site = EdgeSite::new();
    let token_file = site.dir.join("admin.token");
    let (old, new) = ("old-admin-token-0123456789", "new-admin-token-9876543210");
    std::fs::write(&token_file, format!("{old}\n")).unwrap();
    let config = site.config(&config(), 0).admin_token_file(&token_file);
    let mut edge = started(&site, &config).await;
    let port = site.admin_port;
    let host = format!("Host: 127.0.0.1:{port}");
    let auth = |t: &str| format!("\r\nAuthorization: Bearer {t}");

    for (request, credential) in [
        ("POST /reload", String::new()),
        ("POST /reload", auth("wrong-admin-token-000000")),
        ("POST /reload", format!("\r\nAuthorization: Basic {old}")),
        ("GET /status", String::new()),
        ("GET /status", auth(&old[1..])),
    ] {
        let head = format!("{request} HTTP/1.1\r\n{host}\r\nX-Signalr-Edge: 1{credential}");
        let (code, answer) = raw(port, &head);
        assert_eq!(code, 401, "{request} {credential:?}: {answer}");
        assert!(
            answer.contains("www-authenticate: Bearer realm=\"signalr-edge admin\""),
            "{answer}"
        );
    }
    // Orchestrators probe these without credentials; they change nothing.
    for probe in ["GET /healthz", "GET /readyz"] {
        let (code, answer) = raw(port, &format!("{probe} HTTP/1.1\r\n{host}"));
        assert_eq!(code, 200, "{probe}: {answer}");
    }
    let (generation, reloads, refusals) = status(port, &auth(old));
    assert_eq!(refusals["admin_unauthorized"], 5, "{refusals}");
    // The token does not replace the other checks.
    let (code, _) = raw(
        port,
        &format!("POST /reload HTTP/1.1\r\n{host}{}", auth(old)),
    );
    assert_eq!(code, 403, "a token but no tool header");

    // Rotation: a new file, reloaded with the old token; then only the new one works.
    std::fs::write(&token_file, new).unwrap();
    let head = format!(
        "POST /reload HTTP/1.1\r\n{host}\r\nX-Signalr-Edge: 1{}",
        auth(old)
    );
    let (code, answer) = raw(port, &head);
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("\"admin_token_changed\":true"), "{answer}");
    let (code, _) = raw(port, &head);
    assert_eq!(code, 401, "the old token after rotation");
    let (now, ok, _) = status(port, &auth(new));
    assert_eq!((now, ok), (generation + 1, reloads + 1));
    // A reload that cannot read the token file changes nothing.
    std::fs::remove_file(&token_file).unwrap();
    let head = format!(
        "POST /reload HTTP/1.1\r\n{host}\r\nX-Signalr-Edge: 1{}",
        auth(new)
    );
    let (code, answer) = raw(port, &head);
    assert_eq!(code, 422, "{answer}");
    assert!(answer.contains("admin.token_file"), "{answer}");
    let (now, _, _) = status(port, &auth(new));
    assert_eq!(now, generation + 1);

    edge.assert_running();
    let log = edge.log();
    for secret in [old, new] {
        assert!(!log.contains(secret), "the token in the log:\n{log}");
    }
}

/// `-t` reads the token like a start does, names the key without showing the token, and warns
/// about a listener beyond loopback without one.
#[test]
fn check_reads_the_token_and_names_the_key() {
    let dir = TempDir::new("admin-t");
    let file = dir.join("edge.yaml");
    let base = config().listener(Listener::new("127.0.0.1:1")).to_yaml();
    let check = |admin: &str| {
        std::fs::write(&file, format!("{base}admin: {admin}\n")).unwrap();
        let out = std::process::Command::new(edge_binary())
            .args(["-t", "-c"])
            .arg(&file)
            .env("SE_PROTECT_ADMIN_SHORT", "short-token")
            .env_remove("SE_PROTECT_ADMIN_UNSET")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), text)
    };
    let (ok, text) = check("{ token_env: SE_PROTECT_ADMIN_UNSET }");
    assert!(
        !ok && text.contains("admin.token_env: $SE_PROTECT_ADMIN_UNSET is not set"),
        "{text}"
    );
    let (ok, text) = check("{ token_env: SE_PROTECT_ADMIN_SHORT }");
    assert!(!ok && text.contains("at least 16 characters"), "{text}");
    assert!(!text.contains("short-token"), "{text}");
    let (ok, text) = check("{ token_file: /dev/zero }");
    assert!(
        !ok && text
            .contains("admin.token_file: /dev/zero is a character device, not a regular file"),
        "{text}"
    );
    // A file that passes, on every address without a token: `-t` warns as a start would.
    let (ok, text) = check("{ listen: \"0.0.0.0:1\" }");
    assert!(
        ok && text.contains(
            "warning: admin listener 0.0.0.0:1 is reachable beyond loopback without a token"
        ),
        "{text}"
    );
}

/// `admin:` with nothing under it binds the default address, as `admin: {}` does. (If another
/// process holds 127.0.0.1:9901, the edge's refusal to start names that address instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_key_without_a_value_gets_the_default_listener() {
    let site = EdgeSite::new();
    let mut c = site.config(&config(), 0);
    c.admin = None;
    std::fs::write(site.conf(), format!("{}admin:\n", c.to_yaml())).unwrap();
    let edge = site.spawn("edge", false);
    let listening = "admin listener on http://127.0.0.1:9901";
    let taken = "admin listener 127.0.0.1:9901: cannot bind";
    let log = wait_for(Duration::from_secs(20), "the admin listener's line", || {
        let log = edge.log();
        (log.contains(listening) || log.contains(taken)).then_some(log)
    })
    .await;
    if log.contains(listening) {
        let (code, answer) = raw(9901, "GET /status HTTP/1.1\r\nHost: 127.0.0.1:9901");
        assert_eq!(code, 200, "{answer}");
        assert!(
            answer.contains(&format!("\"pid\":{},", edge.pid())),
            "{answer}"
        );
    } else {
        eprintln!("127.0.0.1:9901 is taken here; the edge tried to bind it: {taken}");
    }
}

/// A listener on every address without a token is warned about at start, and one with a token
/// is not; either way it answers only to its own addresses and `localhost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_beyond_loopback_without_a_token_is_warned_about() {
    let warning = "is reachable beyond loopback without a token";
    let site = EdgeSite::new();
    let port = site.admin_port;
    let open = site.config(&config(), 0).admin(format!("0.0.0.0:{port}"));
    let mut edge = started(&site, &open).await;
    edge.wait_log(warning, Duration::from_secs(5)).await;
    let (code, _) = raw(
        port,
        &format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
    );
    assert_eq!(code, 200, "the address the client reached");
    let (code, _) = raw(
        port,
        &format!("GET /healthz HTTP/1.1\r\nHost: 0.0.0.0:{port}"),
    );
    assert_eq!(code, 421, "not an address a client reaches");
    drop(edge);

    let site = EdgeSite::new();
    let token_file = site.dir.join("admin.token");
    std::fs::write(&token_file, "an-admin-token-of-some-length").unwrap();
    let closed = site
        .config(&config(), 0)
        .admin(format!("0.0.0.0:{}", site.admin_port))
        .admin_token_file(&token_file);
    let mut edge = started(&site, &closed).await;
    edge.wait_log("admin listener on http://", Duration::from_secs(5))
        .await;
    assert!(!edge.log().contains(warning), "{}", edge.log());
}
