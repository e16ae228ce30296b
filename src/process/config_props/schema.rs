//! Strategies over the configuration schema: a base file whose every number and duration is
//! within its bounds (mostly at them), with odd strings and odd files here and there, and one
//! optional mutation that sets a single key past its bound.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use serde_yaml::{Mapping, Value};

use super::sections;
use super::values::{count, map, s};
use crate::config::bounds::*;

/// Files that TLS keys may name: a real PKI, and what must be refused.
pub struct Files {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub dir: PathBuf,
}

/// The test PKI, made once per test process.
pub fn files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("se-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = testkit::test_pki(&dir, "a.example");
        Files {
            ca: pki.ca,
            cert: pki.cert,
            key: pki.key,
            dir,
        }
    })
}

fn path(p: &std::path::Path) -> Value {
    s(p.display().to_string())
}

/// Strings a careless or hostile operator might write anywhere.
fn odd() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
        Just("\0".to_string()),
        Just("/../..//%2e%2e\\".to_string()),
        Just("x".repeat(300)),
    ]
    .boxed()
}

/// Mostly `usual`, now and then an odd string.
fn mostly(usual: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![30 => usual, 1 => odd()].boxed()
}

/// A duration within `(0, max]`, mostly at the upper bound.
fn duration(max: Duration) -> BoxedStrategy<Option<Value>> {
    let v = prop::sample::select(vec![
        "1ns".to_string(),
        "1ms".to_string(),
        "2s".to_string(),
        format!("{}s", max.as_secs() - 1),
        format!("{}ms", max.as_millis()),
        format!("{}s", max.as_secs()),
    ]);
    prop::option::of(v.prop_map(s)).boxed()
}

fn server() -> BoxedStrategy<Value> {
    (
        count(1, MAX_THREADS as u64),
        count(0, MAX_GRACE_PERIOD_SECONDS),
        count(0, MAX_SHUTDOWN_TIMEOUT_SECONDS),
        prop::sample::select(vec![0u64, 1, 256, 1024]),
        any::<bool>(),
    )
        .prop_map(|(threads, grace, shutdown, pool, stealing)| {
            map(vec![
                ("threads", threads),
                ("grace_period_seconds", grace),
                ("graceful_shutdown_timeout_seconds", shutdown),
                ("upstream_keepalive_pool_size", Some(Value::from(pool))),
                ("work_stealing", Some(Value::from(stealing))),
            ])
        })
        .boxed()
}

fn listener(port: u16) -> BoxedStrategy<Value> {
    let f = files();
    let tls = prop_oneof![
        6 => Just((f.cert.clone(), f.key.clone())),
        1 => Just((f.key.clone(), f.cert.clone())),
        1 => Just((PathBuf::from("/dev/zero"), f.key.clone())),
        1 => Just((f.cert.clone(), f.dir.clone())),
    ]
    .prop_map(|(cert, key)| map(vec![("cert", Some(path(&cert))), ("key", Some(path(&key)))]));
    (
        count(0, MAX_READ_BUFFER as u64),
        prop::option::weighted(0.2, tls),
        sections::listener_cap(),
    )
        .prop_map(move |(read_buffer, tls, cap)| {
            map(vec![
                ("address", Some(s(format!("127.0.0.1:{port}")))),
                ("read_buffer", read_buffer),
                ("tls", tls),
                ("max_connections", cap),
            ])
        })
        .boxed()
}

fn endpoint() -> BoxedStrategy<Value> {
    let host = prop::sample::select(vec![
        "a.example",
        "127.0.0.1",
        "[::1]",
        "xn--bcher-kva.example",
    ]);
    let host = mostly(host.prop_map(str::to_string).boxed());
    let key = mostly(Just("a2V5".to_string()).boxed());
    (
        host,
        any::<bool>(),
        key,
        prop::option::weighted(0.05, odd()),
        0u16..3,
    )
        .prop_map(|(host, by_string, key, name, port)| {
            let (kind, target) = if by_string {
                (
                    "connection_string",
                    format!("Endpoint=https://{host};AccessKey={key};Version=1.0;"),
                )
            } else {
                ("url", format!("http://{host}:{}", 8000 + port))
            };
            map(vec![
                (kind, Some(s(target))),
                ("address", Some(s("127.0.0.1:1"))),
                ("name", name.map(s)),
            ])
        })
        .boxed()
}

fn health_check() -> BoxedStrategy<Value> {
    let kind = prop::sample::select(vec!["http", "tcp"]).prop_map(s);
    let method = mostly(
        prop::sample::select(vec!["HEAD", "get", "OPTIONS"])
            .prop_map(str::to_string)
            .boxed(),
    );
    let probe_path =
        mostly(Just("api/health".to_string()).boxed()).prop_map(|p| s(format!("/{p}")));
    (
        kind,
        method,
        probe_path,
        duration(MAX_HEALTH_INTERVAL),
        duration(MAX_HEALTH_TIMEOUT),
        count(1, MAX_THRESHOLD as u64),
        count(1, MAX_THRESHOLD as u64),
    )
        .prop_map(|(kind, method, probe_path, interval, timeout, up, down)| {
            map(vec![
                ("type", Some(kind)),
                ("method", Some(s(method))),
                ("path", Some(probe_path)),
                ("interval", interval),
                ("timeout", timeout),
                ("healthy_threshold", up),
                ("unhealthy_threshold", down),
            ])
        })
        .boxed()
}

fn pool() -> BoxedStrategy<Value> {
    let f = files();
    let ca = prop_oneof![
        6 => Just(f.ca.clone()),
        1 => Just(f.key.clone()),
        1 => Just(PathBuf::from("/dev/zero")),
        1 => Just(f.dir.clone()),
    ]
    .prop_map(|p| map(vec![("ca_file", Some(path(&p)))]));
    let timeouts = (
        duration(MAX_CONNECT_TIMEOUT),
        duration(MAX_IO_TIMEOUT),
        duration(MAX_IO_TIMEOUT),
        duration(MAX_IO_TIMEOUT),
    )
        .prop_map(|(c, r, w, i)| map(vec![("connect", c), ("read", r), ("write", w), ("idle", i)]));
    let passive = (count(0, MAX_THRESHOLD as u64), duration(MAX_EJECTION))
        .prop_map(|(f, e)| map(vec![("failures", f), ("ejection", e)]));
    (
        prop::sample::select(vec!["signalr", "app"]),
        prop::collection::vec(endpoint(), 1..3),
        health_check(),
        passive,
        timeouts,
        prop::option::weighted(0.2, ca),
        (
            sections::tokens(),
            sections::pinning(),
            sections::bounded_load(),
        ),
    )
        .prop_map(
            |(kind, endpoints, health, passive, timeouts, tls, (tokens, pinning, c))| {
                map(vec![
                    ("kind", Some(s(kind))),
                    ("endpoints", Some(Value::Sequence(endpoints))),
                    ("health_check", Some(health)),
                    ("passive_health", Some(passive)),
                    ("timeouts", Some(timeouts)),
                    ("tls", tls),
                    // Only SignalR pools verify tokens.
                    ("tokens", tokens.filter(|_| kind == "signalr")),
                    ("pinning", pinning.filter(|_| kind == "signalr")),
                    ("bounded_load", c.filter(|_| kind == "signalr")),
                ])
            },
        )
        .boxed()
}

fn route() -> BoxedStrategy<Value> {
    let prefix = prop::sample::select(vec!["/", "/client/", "/api/"]).prop_map(str::to_string);
    let prefix = mostly(prefix.boxed()).prop_map(|p| {
        if p.starts_with('/') {
            p
        } else {
            format!("/{p}")
        }
    });
    // Valid under `/client/` only: elsewhere the file is refused by name.
    let strip = prop::sample::select(vec!["/client", "/client/", "/"]).prop_map(str::to_string);
    (
        prefix,
        prop::option::weighted(0.05, odd()),
        sections::route_caps(),
        prop::option::weighted(0.1, mostly(strip.boxed())),
    )
        .prop_map(|(prefix, host, (max_body, in_flight), strip)| {
            map(vec![
                ("path", Some(s(prefix))),
                ("strip_prefix", strip.map(s)),
                ("host", host.map(s)),
                ("pool", Some(s("p"))),
                ("max_body_bytes", max_body),
                ("max_in_flight", in_flight),
            ])
        })
        .boxed()
}

/// A whole file whose numbers and durations are all within their bounds.
pub fn base() -> BoxedStrategy<Value> {
    (
        server(),
        listener(18080),
        prop::option::of(listener(18081)),
        pool(),
        prop::collection::vec(route(), 1..3),
        sections::limits(),
        sections::resolver(),
    )
        .prop_map(|(server, first, second, p, routes, limits, resolver)| {
            let mut pools = Mapping::new();
            pools.insert(s("p"), p);
            let listeners = std::iter::once(first).chain(second).collect();
            map(vec![
                ("server", Some(server)),
                ("listeners", Some(Value::Sequence(listeners))),
                ("pools", Some(Value::Mapping(pools))),
                ("routes", Some(Value::Sequence(routes))),
                ("limits", limits),
                ("resolver", resolver),
            ])
        })
        .boxed()
}

/// One key set past its bound: the key's path, as errors name it (`listeners[0].read_buffer`),
/// and the value.
#[derive(Debug, Clone)]
pub(super) struct Mutation {
    pub path: &'static str,
    pub value: Value,
}

/// Values past `max` (or below 0) for a whole number.
fn wild_count(max: u64) -> Vec<Value> {
    let v = [max + 1, u64::MAX, 10u64.pow(19)].map(Value::from);
    [v.as_slice(), &[Value::from(-1)]].concat()
}

/// Values past `max` (or zero) for a duration.
fn wild_duration(max: Duration) -> Vec<Value> {
    let max = max.as_secs();
    let v = [
        format!("{}s", max + 1),
        format!("{max}s 1ns"),
        format!("{}s", u64::MAX),
    ];
    [v.map(s).as_slice(), &[s("10000000000000000000s"), s("0s")]].concat()
}

/// One key past its bound.
pub fn mutation() -> BoxedStrategy<Mutation> {
    let zero = || vec![Value::from(0)];
    let keys: Vec<(&'static str, Vec<Value>)> = vec![
        (
            "server.threads",
            [wild_count(MAX_THREADS as u64), zero()].concat(),
        ),
        (
            "server.grace_period_seconds",
            wild_count(MAX_GRACE_PERIOD_SECONDS),
        ),
        (
            "server.graceful_shutdown_timeout_seconds",
            wild_count(MAX_SHUTDOWN_TIMEOUT_SECONDS),
        ),
        (
            "server.upstream_keepalive_pool_size",
            wild_count(MAX_KEEPALIVE_POOL_SIZE as u64),
        ),
        (
            "listeners[0].read_buffer",
            wild_count(MAX_READ_BUFFER as u64),
        ),
        (
            "pools.p.health_check.interval",
            wild_duration(MAX_HEALTH_INTERVAL),
        ),
        (
            "pools.p.health_check.timeout",
            wild_duration(MAX_HEALTH_TIMEOUT),
        ),
        (
            "pools.p.health_check.healthy_threshold",
            [wild_count(MAX_THRESHOLD as u64), zero()].concat(),
        ),
        (
            "pools.p.health_check.unhealthy_threshold",
            [wild_count(MAX_THRESHOLD as u64), zero()].concat(),
        ),
        (
            "pools.p.passive_health.failures",
            wild_count(MAX_THRESHOLD as u64),
        ),
        (
            "pools.p.passive_health.ejection",
            wild_duration(MAX_EJECTION),
        ),
        (
            "pools.p.timeouts.connect",
            wild_duration(MAX_CONNECT_TIMEOUT),
        ),
        ("pools.p.timeouts.read", wild_duration(MAX_IO_TIMEOUT)),
        ("pools.p.timeouts.write", wild_duration(MAX_IO_TIMEOUT)),
        ("pools.p.timeouts.idle", wild_duration(MAX_IO_TIMEOUT)),
    ];
    let keys = [keys, sections::wild()].concat();
    prop::sample::select(keys)
        .prop_flat_map(|(path, values)| {
            prop::sample::select(values).prop_map(move |value| Mutation { path, value })
        })
        .boxed()
}

/// `file` with the mutation applied, or `None` if the key's parent is not in `file`.
pub fn mutate(file: &Value, m: &Mutation) -> Option<Value> {
    let mut file = file.clone();
    let keys: Vec<&str> = m
        .path
        .split(['.', '[', ']'])
        .filter(|k| !k.is_empty())
        .collect();
    let (last, parents) = keys.split_last()?;
    let mut at = &mut file;
    for key in parents {
        at = match key.parse::<usize>() {
            Ok(i) => at.get_mut(i)?,
            Err(_) => at.get_mut(*key)?,
        };
    }
    at.as_mapping_mut()?.insert(s(*last), m.value.clone());
    Some(file)
}
