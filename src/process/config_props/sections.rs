//! Strategies for the keys the other parts of issue 11 added: the `limits` section, the
//! listener and route caps, and a SignalR pool's `tokens`, `pinning` and `bounded_load`. Their bounds live in
//! `config::limits` and `config::check` (private there) and are repeated here: values at and
//! inside them, so that most generated files are accepted.

use std::time::Duration;

use proptest::prelude::*;
use serde_yaml::Value;

use super::values::{count, map, s};

/// `config::limits::MAX_COUNT`: connections, requests and in-flight requests.
const MAX_COUNT: u64 = 10_000_000;
/// `config::limits::MAX_BODY_BYTES`: 1 TiB.
const MAX_BODY_BYTES: u64 = 1 << 40;

/// A duration within `min..=max`, mostly at a bound.
fn between(min: Duration, max: Duration) -> BoxedStrategy<Option<Value>> {
    // Whole seconds in the middle: `per_client.interval` must be.
    let mid = Duration::from_secs(((min + max) / 2).as_secs());
    let v = prop::sample::select(vec![min, mid, max]);
    let v = v.prop_map(|d: Duration| s(format!("{}ms", d.as_millis())));
    prop::option::of(v).boxed()
}

/// The `limits` section, or none.
pub fn limits() -> BoxedStrategy<Option<Value>> {
    let (ms, s1, hour, day) = (
        Duration::from_millis(1),
        Duration::from_secs(1),
        Duration::from_secs(3600),
        Duration::from_secs(24 * 3600),
    );
    let per_client = (count(1, MAX_COUNT), count(1, MAX_COUNT), between(s1, hour))
        .prop_map(|(c, r, i)| map(vec![("connections", c), ("requests", r), ("interval", i)]));
    let section = (
        (
            between(ms, hour),
            between(s1, day),
            between(ms, day),
            between(ms, day),
        ),
        (
            count(1024, 1024 * 1024 - 1),
            count(1, 256),
            count(0, MAX_BODY_BYTES),
        ),
        prop::option::of(per_client),
    )
        .prop_map(
            |((header, idle, body, send), (bytes, fields, max_body), per_client)| {
                map(vec![
                    ("header_timeout", header),
                    ("idle_timeout", idle),
                    ("body_timeout", body),
                    ("send_timeout", send),
                    ("max_header_bytes", bytes),
                    ("max_headers", fields),
                    ("max_body_bytes", max_body),
                    ("per_client", per_client),
                ])
            },
        );
    prop::option::weighted(0.7, section).boxed()
}

/// A listener's `max_connections`, or none.
pub fn listener_cap() -> BoxedStrategy<Option<Value>> {
    count(1, MAX_COUNT)
}

/// A route's `max_body_bytes` and `max_in_flight`.
pub fn route_caps() -> BoxedStrategy<(Option<Value>, Option<Value>)> {
    (count(0, MAX_BODY_BYTES), count(1, MAX_COUNT)).boxed()
}

/// A SignalR pool's `tokens`, or none.
pub fn tokens() -> BoxedStrategy<Option<Value>> {
    let skew = prop::option::of(prop::sample::select(vec!["0s", "30s", "300s"]).prop_map(s));
    let audiences = prop::sample::select(vec![vec![], vec!["contoso.service.signalr.net"]]);
    let audiences = audiences.prop_map(|a| Value::Sequence(a.into_iter().map(s).collect()));
    let section = (
        any::<bool>(),
        skew,
        prop::option::of(audiences),
        count(1, 1_000_000),
    )
        .prop_map(|(verify, skew, audiences, cache)| {
            map(vec![
                ("verify", Some(Value::from(verify))),
                ("clock_skew", skew),
                ("audiences", audiences),
                ("cache_size", cache),
            ])
        });
    prop::option::weighted(0.5, section).boxed()
}

/// The `resolver` section, or none. (The generated endpoints all have an `address`: nothing
/// is resolved, whatever the nameservers.)
pub fn resolver() -> BoxedStrategy<Option<Value>> {
    let nameservers = prop::sample::select(vec![
        vec![],
        vec!["127.0.0.1:53"],
        vec!["[::1]:5353", "10.0.0.2:53"],
    ])
    .prop_map(|ns| Value::Sequence(ns.into_iter().map(s).collect()));
    let section = (
        between(Duration::from_millis(100), Duration::from_secs(24 * 3600)),
        between(Duration::from_millis(1), Duration::from_secs(60)),
        prop::option::of(nameservers),
    )
        .prop_map(|(refresh, timeout, nameservers)| {
            map(vec![
                ("refresh", refresh),
                ("timeout", timeout),
                ("nameservers", nameservers),
            ])
        });
    prop::option::weighted(0.5, section).boxed()
}

/// A SignalR pool's `pinning` (`config::bounds`: `ttl` up to a day, `capacity` up to a
/// million, `0` off), or none.
pub fn pinning() -> BoxedStrategy<Option<Value>> {
    let section = (
        between(Duration::from_millis(1), Duration::from_secs(24 * 3600)),
        count(0, 1_000_000),
    )
        .prop_map(|(ttl, capacity)| map(vec![("ttl", ttl), ("capacity", capacity)]));
    prop::option::weighted(0.5, section).boxed()
}

/// A SignalR pool's `bounded_load` (1 to 100), or none; it needs pinning and `request_id`,
/// so some files that have it are refused.
pub fn bounded_load() -> BoxedStrategy<Option<Value>> {
    let c = prop::sample::select(vec![1.0, 1.25, 100.0]).prop_map(Value::from);
    prop::option::weighted(0.3, c).boxed()
}

/// Keys of these sections past their bounds (each error names the key).
pub fn wild() -> Vec<(&'static str, Vec<Value>)> {
    let durations = |max: &str| vec![s("0s"), s(max), s(format!("{}s", u64::MAX))];
    let counts = |max: u64| vec![Value::from(0), Value::from(max + 1), Value::from(u64::MAX)];
    vec![
        ("limits.header_timeout", durations("3601s")),
        ("limits.send_timeout", durations("86401s")),
        (
            "limits.per_client.interval",
            [durations("3601s"), vec![s("1500ms")]].concat(),
        ),
        ("limits.max_headers", counts(256)),
        ("limits.per_client.connections", counts(MAX_COUNT)),
        ("pools.p.tokens.cache_size", counts(1_000_000)),
        ("pools.p.pinning.ttl", durations("86401s")),
        ("pools.p.pinning.capacity", counts(1_000_000)[1..].to_vec()),
        (
            "pools.p.bounded_load",
            vec![Value::from(0.5), Value::from(100.5), Value::from(f64::NAN)],
        ),
        ("listeners[0].max_connections", counts(MAX_COUNT)),
        (
            "resolver.refresh",
            [durations("86401s"), vec![s("99ms")]].concat(),
        ),
        ("resolver.timeout", durations("61s")),
    ]
}
