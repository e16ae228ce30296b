//! Config that cannot crash the edge (issue 11, item 4). Each value that crashed the running
//! edge before is refused by `-t` (exit 1) and by `POST /reload` (422), naming its key, and
//! the edge goes on serving and health-checking; files that cannot be read within a bound
//! (devices, FIFOs, directories, huge or deeply nested files) are refused at once; and files
//! at the bounds start, serve, reload and drain on SIGTERM without a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use asrs_emulator::Emulator;
use serde_yaml::Value;
use signalr_edge::config::bounds;
use testkit::*;

/// Longest a `-t` run may take: far more than a bounded check needs (milliseconds), far less
/// than the unbounded ones took (4 MB of nested `[` over 2 minutes, `/dev/zero` until memory
/// ran out, a FIFO for ever).
const CHECK_LIMIT: Duration = Duration::from_secs(30);

/// Each value that crashed the edge at run time, where it goes, and the key the error names.
const CRASHERS: &[(&str, &str, &str)] = &[
    (
        "pools.signalr.health_check.interval",
        "18446744073709551615s",
        "Instant overflow: health checks stop for good",
    ),
    (
        "pools.signalr.health_check.timeout",
        "10000000000000000000s",
        "panics on every probe",
    ),
    (
        "listeners[0].read_buffer",
        "1000000000000000",
        "aborts on the first connection",
    ),
    ("server.threads", "18446744073709551615", "panics at start"),
    (
        "server.grace_period_seconds",
        "18446744073709551615",
        "panics on SIGTERM",
    ),
    (
        "server.graceful_shutdown_timeout_seconds",
        "18446744073709551615",
        "panics at shutdown",
    ),
    (
        "server.upstream_keepalive_pool_size",
        "18446744073709551615",
        "aborts at start",
    ),
    (
        "pools.signalr.timeouts.connect",
        "18446744073709551615s",
        "unbounded",
    ),
    (
        "pools.signalr.timeouts.read",
        "18446744073709551615s",
        "unbounded",
    ),
    (
        "pools.signalr.timeouts.write",
        "18446744073709551615s",
        "unbounded",
    ),
    (
        "pools.signalr.timeouts.idle",
        "18446744073709551615s",
        "unbounded",
    ),
    (
        "pools.signalr.health_check.unhealthy_threshold",
        "18446744073709551615",
        "never flips",
    ),
];

/// `text` with the key at `path` (`a.b[0].c`) set to `value`, read as YAML.
fn set(text: &str, path: &str, value: &str) -> String {
    let mut doc: Value = serde_yaml::from_str(text).unwrap();
    let mut at = &mut doc;
    let keys: Vec<&str> = path.split('.').collect();
    for (i, key) in keys.iter().enumerate() {
        let (key, index) = match key.split_once('[') {
            Some((k, rest)) => (
                k,
                Some(rest.trim_end_matches(']').parse::<usize>().unwrap()),
            ),
            None => (*key, None),
        };
        if i + 1 == keys.len() && index.is_none() {
            at[key] = serde_yaml::from_str(value).unwrap();
            break;
        }
        if at.get(key).is_none() {
            at[key] = Value::Mapping(Default::default());
        }
        at = &mut at[key];
        if let Some(index) = index {
            at = &mut at[index];
            if i + 1 == keys.len() {
                *at = serde_yaml::from_str(value).unwrap();
            }
        }
    }
    serde_yaml::to_string(&doc).unwrap()
}

/// One SignalR pool (`emulated` instances, or a closed port), probed every 100 ms.
fn config(em: Option<&Emulator>) -> EdgeConfig {
    let hc = HealthCheck::new()
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_secs(1))
        .unhealthy_threshold(1)
        .healthy_threshold(1);
    let pool = match em {
        Some(em) => signalr_pool(em),
        None => Pool::signalr("signalr").endpoint(
            Endpoint::connection_string("Endpoint=http://a.example;AccessKey=k;Version=1.0;")
                .address("127.0.0.1:1"),
        ),
    };
    EdgeConfig::new()
        .pool(pool.health_check(hc).timeouts(Timeouts::new()))
        .route(Route::new("/client/", "signalr"))
}

/// Runs `signalr-edge -t -c file`, failing if it takes longer than `CHECK_LIMIT`.
fn check(file: &Path) -> Output {
    let mut child = Command::new(edge_binary())
        .args(["-t", "-c"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CHECK_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "-t -c {} did not finish within {CHECK_LIMIT:?}",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// `-t` on `file` exits 1 and its one error line starts with `prefix`.
fn refused(file: &Path, prefix: &str) -> String {
    let out = check(file);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{}: {err}", file.display());
    assert!(err.starts_with(prefix), "{}: {err}", file.display());
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn check_refuses_every_crasher_naming_its_key() {
    let dir = TempDir::new("crashers");
    let good = config(None)
        .listener(Listener::new("127.0.0.1:1"))
        .to_yaml();
    let file = dir.join("edge.yaml");
    std::fs::write(&file, &good).unwrap();
    assert!(check(&file).status.success(), "the base file is good");
    for (key, value, was) in CRASHERS {
        std::fs::write(&file, set(&good, key, value)).unwrap();
        let err = refused(&file, &format!("signalr-edge: {}: {key}: ", file.display()));
        assert!(err.contains("must be at most"), "{key} ({was}): {err}");
    }
}

#[test]
fn check_refuses_files_it_cannot_read_within_a_bound() {
    let dir = TempDir::new("files");
    let good = config(None)
        .listener(Listener::new("127.0.0.1:1"))
        .to_yaml();
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let huge = dir.join("huge.pem");
    std::fs::write(&huge, vec![b'#'; 2 << 20]).unwrap();
    let file = dir.join("edge.yaml");
    let shown = |p: &Path| p.display().to_string();
    let cases: Vec<(&str, PathBuf, String)> = vec![
        (
            "pools.signalr.tls.ca_file",
            "/dev/zero".into(),
            "/dev/zero is a character device, not a regular file".into(),
        ),
        (
            "pools.signalr.tls.ca_file",
            fifo.clone(),
            format!("{} is a FIFO, not a regular file", shown(&fifo)),
        ),
        (
            "pools.signalr.tls.ca_file",
            dir.0.clone(),
            format!("{} is a directory, not a regular file", shown(&dir.0)),
        ),
        (
            "pools.signalr.tls.ca_file",
            huge.clone(),
            format!("{} is larger than 1048576 bytes", shown(&huge)),
        ),
    ];
    for (key, path, message) in &cases {
        let text = set(&good, key, &format!("{:?}", shown(path)));
        std::fs::write(&file, text).unwrap();
        refused(
            &file,
            &format!("signalr-edge: {}: {key}: {message}", shown(&file)),
        );
    }
    // The admin token file: a FIFO used to hold -t and every reload for ever.
    std::fs::write(
        &file,
        set(&good, "admin.token_file", &format!("{:?}", shown(&fifo))),
    )
    .unwrap();
    let message = format!("{} is a FIFO, not a regular file", shown(&fifo));
    refused(
        &file,
        &format!(
            "signalr-edge: {}: admin.token_file: {message}",
            shown(&file)
        ),
    );
    // A listener's certificate and key: each error names its own key.
    let pki = test_pki(&dir.0, "edge.test");
    for (cert, key, bad) in [
        ("/dev/zero".into(), pki.key.clone(), "cert"),
        (pki.cert.clone(), fifo.clone(), "key"),
    ] {
        let listener = Listener::new("127.0.0.1:1").tls(&cert, &key);
        std::fs::write(&file, config(None).listener(listener).to_yaml()).unwrap();
        let err = refused(
            &file,
            &format!("signalr-edge: {}: listeners[0].tls.{bad}: ", shown(&file)),
        );
        assert!(err.contains("not a regular file"), "{err}");
    }
    // The file itself.
    refused(
        Path::new("/dev/zero"),
        "signalr-edge: /dev/zero: /dev/zero is a character device",
    );
    refused(
        &fifo,
        &format!("signalr-edge: {0}: {0} is a FIFO", shown(&fifo)),
    );
    refused(
        &dir.0,
        &format!("signalr-edge: {0}: {0} is a directory", shown(&dir.0)),
    );
    let big = format!("{good}\n{}", "# padding\n".repeat(500_000));
    std::fs::write(&file, big).unwrap();
    refused(
        &file,
        &format!(
            "signalr-edge: {0}: {0} is larger than 4194304 bytes",
            shown(&file)
        ),
    );
    // Nesting, before the YAML parser reads it all: 41 s for the first in the
    // issue's run (3.7 s in a debug build here).
    let deep = [
        ("[".repeat(100_000), 1),
        (format!("listeners:\n{}x\n", "- ".repeat(100_000)), 2),
    ];
    for (text, line) in deep {
        std::fs::write(&file, text).unwrap();
        let nested = format!("YAML nested deeper than 64 levels (line {line})");
        refused(&file, &format!("signalr-edge: {}: {nested}", shown(&file)));
    }
}

/// Negotiates through `site` until `healthy` says the instance answered (or was avoided).
async fn negotiate_status(site: &EdgeSite) -> u16 {
    let token = token("key-a", "a.service.signalr.net", "chat");
    negotiate(
        &http(),
        &site.url(""),
        "hub=chat&asrs_request_id=r1",
        &token,
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_every_crasher_and_the_edge_keeps_serving_and_checking() {
    let em = emulator(vec![instance("a", "key-a", true)]).await;
    let site = EdgeSite::new();
    let base = config(Some(&em));
    site.write(&base, 0);
    let good = std::fs::read_to_string(site.conf()).unwrap();
    let mut edge = site.spawn("edge", false);
    site.wait_ready(&mut edge).await;
    assert_eq!(negotiate_status(&site).await, 200);
    let negotiations = em.instances[0].state.negotiations();
    for (key, value, was) in CRASHERS {
        std::fs::write(site.conf(), set(&good, key, value)).unwrap();
        let (code, report) = site.reload().await;
        assert_eq!(code, 422, "{key} ({was}): {report}");
        let error = report["error"].as_str().unwrap();
        let expected = format!("{}: {key}: must be at most", site.conf().display());
        assert!(error.starts_with(&expected), "{key}: {error}");
        assert_eq!(report["generation"], 1, "nothing changed");
        assert_eq!(negotiate_status(&site).await, 200, "serving after {key}");
    }
    // A read buffer within bounds is still a process setting: a reload refuses the change.
    std::fs::write(site.conf(), set(&good, "listeners[0].read_buffer", "4096")).unwrap();
    let (code, report) = site.reload().await;
    assert_eq!(code, 422, "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("listeners[0].read_buffer: a reload cannot change listeners[0].read_buffer"),
        "{error}"
    );
    let status = site.status().await;
    assert_eq!(status["reloads"]["failed"], CRASHERS.len() + 1, "{status}");
    assert_eq!(status["health_checks"]["scheduler_restarts"], 0, "{status}");
    // Only our own requests reached the instance.
    assert_eq!(
        em.instances[0].state.negotiations(),
        negotiations + CRASHERS.len() as u64
    );
    // The health checks still run: the instance goes down, and comes back.
    em.instances[0].state.set_healthy(false);
    wait_for(
        Duration::from_secs(10),
        "the edge to see the instance down",
        || edge.log().contains("is unhealthy").then_some(()),
    )
    .await;
    assert_eq!(negotiate_status(&site).await, 503);
    em.instances[0].state.set_healthy(true);
    wait_for(
        Duration::from_secs(10),
        "the edge to see the instance up",
        || edge.log().contains("is healthy again").then_some(()),
    )
    .await;
    assert_eq!(negotiate_status(&site).await, 200);
    edge.assert_running();
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
}

/// Files at the bounds: every upper bound (the client limits' and tokens' too); every lower
/// bound the edge still serves with; and the upper bounds on a TLS listener with TCP probes.
fn extremes(em: &Emulator, site: &EdgeSite) -> Vec<(&'static str, String, bool)> {
    let max = |d: Duration| format!("{}s", d.as_secs());
    let upper = [
        ("server.threads", bounds::MAX_THREADS.to_string()),
        (
            "server.upstream_keepalive_pool_size",
            (bounds::MAX_KEEPALIVE_POOL_TOTAL / bounds::MAX_THREADS).to_string(),
        ),
        (
            "server.grace_period_seconds",
            bounds::MAX_GRACE_PERIOD_SECONDS.to_string(),
        ),
        (
            "server.graceful_shutdown_timeout_seconds",
            bounds::MAX_SHUTDOWN_TIMEOUT_SECONDS.to_string(),
        ),
        (
            "listeners[0].read_buffer",
            bounds::MAX_READ_BUFFER.to_string(),
        ),
        (
            "pools.signalr.health_check.interval",
            max(bounds::MAX_HEALTH_INTERVAL),
        ),
        (
            "pools.signalr.health_check.timeout",
            max(bounds::MAX_HEALTH_TIMEOUT),
        ),
        (
            "pools.signalr.health_check.healthy_threshold",
            bounds::MAX_THRESHOLD.to_string(),
        ),
        (
            "pools.signalr.health_check.unhealthy_threshold",
            bounds::MAX_THRESHOLD.to_string(),
        ),
        (
            "pools.signalr.timeouts.connect",
            max(bounds::MAX_CONNECT_TIMEOUT),
        ),
        ("pools.signalr.timeouts.read", max(bounds::MAX_IO_TIMEOUT)),
        ("pools.signalr.timeouts.write", max(bounds::MAX_IO_TIMEOUT)),
        ("pools.signalr.timeouts.idle", max(bounds::MAX_IO_TIMEOUT)),
    ];
    // The upper bounds of the client limits and token keys (their sections' own checks), in
    // the first file only: a million-entry token cache takes a second to build in a debug
    // build, at start and at each reload.
    let sections = [
        ("limits.header_timeout", "1h"),
        ("limits.idle_timeout", "24h"),
        ("limits.body_timeout", "24h"),
        ("limits.send_timeout", "24h"),
        ("limits.max_header_bytes", "1048575"),
        ("limits.max_headers", "256"),
        ("limits.max_body_bytes", "1099511627776"),
        ("limits.per_client.connections", "10000000"),
        ("limits.per_client.requests", "10000000"),
        ("limits.per_client.interval", "3600s"),
        ("listeners[0].max_connections", "10000000"),
        ("routes[0].max_body_bytes", "1099511627776"),
        ("routes[0].max_in_flight", "10000000"),
        ("pools.signalr.tokens.verify", "true"),
        ("pools.signalr.tokens.clock_skew", "300s"),
        ("pools.signalr.tokens.cache_size", "1000000"),
        ("pools.signalr.pinning.ttl", "86400s"),
        ("pools.signalr.pinning.capacity", "1000000"),
        ("pools.signalr.bounded_load", "100"),
    ]
    .map(|(k, v)| (k, v.to_string()));
    let all_upper = [upper.as_slice(), &sections].concat();
    let lower = [
        ("server.threads", "1"),
        ("server.upstream_keepalive_pool_size", "0"),
        ("server.grace_period_seconds", "0"),
        ("server.graceful_shutdown_timeout_seconds", "0"),
        ("listeners[0].read_buffer", "0"),
        ("pools.signalr.health_check.interval", "1ns"),
        ("pools.signalr.health_check.healthy_threshold", "1"),
        ("pools.signalr.health_check.unhealthy_threshold", "1"),
        ("pools.signalr.pinning.ttl", "1ns"),
        ("pools.signalr.pinning.capacity", "1"),
        ("pools.signalr.bounded_load", "1"),
    ];
    let pki = test_pki(&site.dir.0, "edge.test");
    let tls = config(Some(em)).listener(site.listener().tls(&pki.cert, &pki.key));
    let with = |text: String, values: &[(&str, String)]| {
        values.iter().fold(text, |t, (k, v)| set(&t, k, v))
    };
    let tcp = [("pools.signalr.health_check.type", "tcp".to_string())];
    let tls_upper = [upper.as_slice(), &tcp].concat();
    vec![
        (
            "upper bounds",
            with(site.text(&config(Some(em)), 0), &all_upper),
            false,
        ),
        (
            "lower bounds",
            with(
                site.text(&config(Some(em)), 0),
                &lower.map(|(k, v)| (k, v.to_string())),
            ),
            false,
        ),
        (
            "upper bounds, TLS listener, TCP probes",
            with(site.text(&tls, 0), &tls_upper),
            true,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_at_the_bounds_start_serve_reload_and_drain_without_a_panic() {
    let em = emulator(vec![instance("a", "key-a", true)]).await;
    let site = EdgeSite::new();
    for (what, text, tls) in extremes(&em, &site) {
        std::fs::write(site.conf(), &text).unwrap();
        assert!(check(&site.conf()).status.success(), "{what}: -t");
        let mut edge = site.spawn(what, false);
        site.wait_ready(&mut edge).await;
        let token = token("key-a", "a.service.signalr.net", "chat");
        let client = if tls {
            reqwest::Client::builder()
                .add_root_certificate(testkit::certs::root_certificate(&site.dir.join("ca.pem")))
                .resolve("edge.test", ([127, 0, 0, 1], site.port).into())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap()
        } else {
            http()
        };
        let base = if tls {
            format!("https://edge.test:{}", site.port)
        } else {
            site.url("")
        };
        let answer = negotiate(&client, &base, "hub=chat&asrs_request_id=r1", &token).await;
        assert_eq!(
            (answer.status, answer.instance.as_str()),
            (200, "a"),
            "{what}"
        );
        drop(client);
        let (code, report) = site.reload().await;
        assert_eq!(code, 200, "{what}: {report}");
        send_signal(edge.pid(), "HUP");
        edge.wait_log("reload (SIGHUP) ok", Duration::from_secs(10))
            .await;
        send_signal(edge.pid(), "TERM");
        edge.wait_exit(Duration::from_secs(20)).await;
        let log = edge.log();
        // With no deadline (the lower bound) the drain ends at once, else when idle.
        let drained = ["drain: no connections left", "drain: deadline reached"];
        assert!(drained.iter().any(|d| log.contains(d)), "{what}: {log}");
        assert!(!log.contains("panicked"), "{what}: {log}");
    }
}
