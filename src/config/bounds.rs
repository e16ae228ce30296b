//! The upper (and lower) bound of every number and duration in the file, so that whatever
//! `-t` accepts can neither overflow, abort nor panic at run time: a duration added to an
//! `Instant`, a count that sizes an allocation or a thread pool. Each bound is far beyond any
//! sane setting and far below what breaks; the README's Protection section lists them.

use std::time::Duration;

use super::file::{File, HealthCheck, PassiveHealth, Pool, Resolver, Timeouts};
use super::PathError;

/// `server.threads`: Pingora runs one event loop per thread (and the health checks as many
/// again); more than the cores only adds contention.
pub const MAX_THREADS: usize = 1024;
/// `server.grace_period_seconds`: the drain deadline, one day (WebSockets live for hours).
pub const MAX_GRACE_PERIOD_SECONDS: u64 = 24 * 3600;
/// `server.graceful_shutdown_timeout_seconds`: one hour for the runtimes to stop.
pub const MAX_SHUTDOWN_TIMEOUT_SECONDS: u64 = 3600;
/// `server.upstream_keepalive_pool_size`, per worker thread.
pub const MAX_KEEPALIVE_POOL_SIZE: usize = 65_536;
/// `upstream_keepalive_pool_size × threads`: Pingora sizes one map for the whole pool up front.
pub const MAX_KEEPALIVE_POOL_TOTAL: usize = 1 << 20;
/// `listeners[].read_buffer`: allocated for every connection at accept (Pingora's is 64 KiB).
pub const MAX_READ_BUFFER: usize = 1 << 20;
/// `health_check.interval`.
pub const MAX_HEALTH_INTERVAL: Duration = Duration::from_secs(3600);
/// `health_check.timeout` (a probe may take twice this: connect, then the answer).
pub const MAX_HEALTH_TIMEOUT: Duration = Duration::from_secs(300);
/// `health_check.healthy_threshold` and `unhealthy_threshold`.
pub const MAX_THRESHOLD: usize = 1000;
/// `passive_health.ejection`: an hour out of service is the most one streak should cost.
pub const MAX_EJECTION: Duration = Duration::from_secs(3600);
/// `timeouts.connect`.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// `timeouts.read`, `timeouts.write` and `timeouts.idle`: one day.
pub const MAX_IO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `resolver.refresh`, least: each refresh asks every host name again.
pub const MIN_DNS_REFRESH: Duration = Duration::from_millis(100);
/// `resolver.refresh`, most.
pub const MAX_DNS_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// `resolver.timeout`.
pub const MAX_DNS_TIMEOUT: Duration = Duration::from_secs(60);
/// `resolver.nameservers`: each is asked in turn before a lookup fails.
pub const MAX_NAMESERVERS: usize = 16;

/// Checks the `resolver` section against its bounds.
pub fn resolver(r: &Resolver) -> Result<(), PathError> {
    duration("resolver.refresh", r.refresh, MAX_DNS_REFRESH)?;
    if r.refresh < MIN_DNS_REFRESH {
        return Err(PathError::new(
            "resolver.refresh",
            format!("must be at least {MIN_DNS_REFRESH:?} (got {:?})", r.refresh),
        ));
    }
    duration("resolver.timeout", r.timeout, MAX_DNS_TIMEOUT)?;
    count(
        "resolver.nameservers",
        r.nameservers.len(),
        0,
        MAX_NAMESERVERS,
    )
}
/// `pinning.ttl`: one day (a pin's life after its last use).
pub const MAX_PIN_TTL: Duration = Duration::from_secs(24 * 3600);
/// `pinning.capacity`: pins remembered per pool (each a hash and a name, some 100 bytes).
pub const MAX_PINS: usize = 1_000_000;
/// `bounded_load`, from no slack at all (every endpoint at the average) to a bound so loose
/// that it is plain hashing.
pub const BOUNDED_LOAD: std::ops::RangeInclusive<f64> = 1.0..=100.0;

/// Checks the numbers of the process settings (`server`, `listeners`) against their bounds.
pub fn process(f: &File) -> Result<(), PathError> {
    let s = &f.server;
    count("server.threads", s.threads, 1, MAX_THREADS)?;
    count(
        "server.grace_period_seconds",
        s.grace_period_seconds,
        0,
        MAX_GRACE_PERIOD_SECONDS,
    )?;
    count(
        "server.graceful_shutdown_timeout_seconds",
        s.graceful_shutdown_timeout_seconds,
        0,
        MAX_SHUTDOWN_TIMEOUT_SECONDS,
    )?;
    count(
        "server.upstream_keepalive_pool_size",
        s.upstream_keepalive_pool_size,
        0,
        MAX_KEEPALIVE_POOL_SIZE,
    )?;
    // Both factors are bounded above, so the product cannot overflow.
    let total = s.upstream_keepalive_pool_size * s.threads;
    if total > MAX_KEEPALIVE_POOL_TOTAL {
        return Err(PathError::new(
            "server.upstream_keepalive_pool_size",
            format!(
                "{} per thread × {} threads = {total} pooled connections, more than \
                 {MAX_KEEPALIVE_POOL_TOTAL}",
                s.upstream_keepalive_pool_size, s.threads
            ),
        ));
    }
    for (i, l) in f.listeners.iter().enumerate() {
        if let Some(n) = l.read_buffer {
            count(
                &format!("listeners[{i}].read_buffer"),
                n,
                0,
                MAX_READ_BUFFER,
            )?;
        }
    }
    Ok(())
}

/// Checks the durations and thresholds of the pool at `path` against their bounds.
pub fn pool(path: &str, pool: &Pool) -> Result<(), PathError> {
    if let Some(hc) = &pool.health_check {
        health(&format!("{path}.health_check"), hc)?;
    }
    if let Some(p) = &pool.pinning {
        duration(&format!("{path}.pinning.ttl"), p.ttl, MAX_PIN_TTL)?;
        count(&format!("{path}.pinning.capacity"), p.capacity, 0, MAX_PINS)?;
    }
    if let Some(c) = pool.bounded_load {
        // NaN is in no range: `contains` is false for it.
        if !BOUNDED_LOAD.contains(&c) {
            return Err(PathError::new(
                format!("{path}.bounded_load"),
                format!(
                    "must be from {} to {} (got {c})",
                    BOUNDED_LOAD.start(),
                    BOUNDED_LOAD.end()
                ),
            ));
        }
    }
    passive(&format!("{path}.passive_health"), &pool.passive_health)?;
    timeouts(&format!("{path}.timeouts"), &pool.timeouts)
}

fn health(path: &str, hc: &HealthCheck) -> Result<(), PathError> {
    duration(
        &format!("{path}.interval"),
        hc.interval,
        MAX_HEALTH_INTERVAL,
    )?;
    duration(&format!("{path}.timeout"), hc.timeout, MAX_HEALTH_TIMEOUT)?;
    for (key, n) in [
        ("healthy_threshold", hc.healthy_threshold),
        ("unhealthy_threshold", hc.unhealthy_threshold),
    ] {
        count(&format!("{path}.{key}"), n, 1, MAX_THRESHOLD)?;
    }
    Ok(())
}

fn passive(path: &str, p: &PassiveHealth) -> Result<(), PathError> {
    // 0 turns it off; the ejection is bounded either way, so turning it on is a safe edit.
    count(&format!("{path}.failures"), p.failures, 0, MAX_THRESHOLD)?;
    duration(&format!("{path}.ejection"), p.ejection, MAX_EJECTION)
}

fn timeouts(path: &str, t: &Timeouts) -> Result<(), PathError> {
    duration(&format!("{path}.connect"), t.connect, MAX_CONNECT_TIMEOUT)?;
    for (key, d) in [("read", t.read), ("write", t.write), ("idle", t.idle)] {
        duration(&format!("{path}.{key}"), d, MAX_IO_TIMEOUT)?;
    }
    Ok(())
}

/// A whole number within `min..=max`; the error names `path` and the bound.
pub fn count<T>(path: &str, n: T, min: T, max: T) -> Result<(), PathError>
where
    T: PartialOrd + std::fmt::Display,
{
    if n < min {
        return Err(PathError::new(path, format!("must be at least {min}")));
    }
    if n > max {
        return Err(PathError::new(
            path,
            format!("must be at most {max} (got {n})"),
        ));
    }
    Ok(())
}

/// A duration more than zero and at most `max`; the error names `path` and the bound.
pub fn duration(path: &str, d: Duration, max: Duration) -> Result<(), PathError> {
    if d.is_zero() {
        return Err(PathError::new(path, "must be more than 0"));
    }
    if d > max {
        return Err(PathError::new(
            path,
            format!("must be at most {max:?} (got {d:?})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, DEFAULT_DNS_REFRESH};

    /// A file with every bounded key, each set by `{name}` placeholders.
    fn file(values: &[(&str, &str)]) -> String {
        let mut text = r#"
server:
  threads: {threads}
  grace_period_seconds: {grace}
  graceful_shutdown_timeout_seconds: {shutdown}
  upstream_keepalive_pool_size: {pool}
listeners:
  - address: 127.0.0.1:8080
    read_buffer: {read_buffer}
pools:
  p:
    kind: app
    endpoints: [{ url: "http://127.0.0.1:5000" }]
    health_check:
      interval: {interval}
      timeout: {timeout}
      healthy_threshold: {healthy}
      unhealthy_threshold: {unhealthy}
    passive_health: { failures: {failures}, ejection: {ejection} }
    timeouts: { connect: {connect}, read: {read}, write: {write}, idle: {idle} }
routes: [{ path: /, pool: p }]
"#
        .to_string();
        let defaults = [
            ("threads", "1"),
            ("grace", "30"),
            ("shutdown", "10"),
            ("pool", "256"),
            ("read_buffer", "4096"),
            ("interval", "5s"),
            ("timeout", "2s"),
            ("healthy", "1"),
            ("unhealthy", "2"),
            ("failures", "3"),
            ("ejection", "10s"),
            ("connect", "5s"),
            ("read", "120s"),
            ("write", "30s"),
            ("idle", "60s"),
        ];
        for (name, default) in defaults {
            let value = values
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(default, |(_, v)| v);
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    #[test]
    fn the_resolver_keys_have_their_ranges_and_name_themselves() {
        let base = "listeners: [{ address: \"127.0.0.1:8080\" }]\npools:\n  p:\n    kind: app\n    endpoints: [{ url: \"http://127.0.0.1:5000\" }]\nroutes: [{ path: /, pool: p }]\n";
        let r = parse_str(base).unwrap().service.resolver;
        assert_eq!((r.refresh, r.nameservers.len()), (DEFAULT_DNS_REFRESH, 0));
        let with = |section: &str| parse_str(&format!("{base}resolver: {{ {section} }}\n"));
        let r = with("refresh: 100ms, timeout: 60s, nameservers: [\"127.0.0.1:53\"]")
            .unwrap()
            .service
            .resolver;
        assert_eq!((r.refresh, r.timeout), (MIN_DNS_REFRESH, MAX_DNS_TIMEOUT));
        assert!(with("refresh: 24h").is_ok());
        let many = vec!["\"10.0.0.1:53\""; MAX_NAMESERVERS + 1].join(", ");
        for (section, path, message) in [
            ("refresh: 99ms", "resolver.refresh", "at least 100ms"),
            ("refresh: 0s", "resolver.refresh", "more than 0"),
            ("refresh: 86401s", "resolver.refresh", "at most 86400s"),
            ("timeout: 0s", "resolver.timeout", "more than 0"),
            ("timeout: 61s", "resolver.timeout", "at most 60s"),
            (
                &format!("nameservers: [{many}]"),
                "resolver.nameservers",
                "at most 16",
            ),
            ("nameservers: [dns.example]", "resolver.nameservers[0]", ""),
            ("ttl: 5s", "resolver.ttl", "unknown field"),
        ] {
            let e = with(section).unwrap_err();
            assert_eq!(e.path, path, "{section}: {e:?}");
            assert!(e.message.contains(message), "{section}: {e:?}");
        }
    }

    #[test]
    fn every_maximum_is_accepted() {
        let max = [
            ("threads", "1024"),
            ("grace", "86400"),
            ("shutdown", "3600"),
            ("pool", "1024"),
            ("read_buffer", "1048576"),
            ("interval", "1h"),
            ("timeout", "5m"),
            ("healthy", "1000"),
            ("unhealthy", "1000"),
            ("failures", "1000"),
            ("ejection", "1h"),
            ("connect", "5m"),
            ("read", "24h"),
            ("write", "1day"),
            ("idle", "86400s"),
        ];
        let c = parse_str(&file(&max)).unwrap();
        assert_eq!(c.process.server.threads, MAX_THREADS);
        assert_eq!(c.process.listeners[0].read_buffer, Some(MAX_READ_BUFFER));
        let min = [
            ("grace", "0"),
            ("shutdown", "0"),
            ("pool", "0"),
            ("read_buffer", "0"),
            ("failures", "0"),
        ];
        parse_str(&file(&min)).unwrap();
        parse_str(&file(&[("threads", "1"), ("pool", "65536")])).unwrap();
    }

    #[test]
    fn the_crashers_and_every_value_past_its_bound_name_their_key() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // The values of issue 11, each a crash at run time before.
            (
                "interval",
                "18446744073709551615s",
                "pools.p.health_check.interval",
                "at most 3600s",
            ),
            (
                "timeout",
                "10000000000000000000s",
                "pools.p.health_check.timeout",
                "at most 300s",
            ),
            (
                "read_buffer",
                "1000000000000000",
                "listeners[0].read_buffer",
                "at most 1048576",
            ),
            (
                "threads",
                "18446744073709551615",
                "server.threads",
                "at most 1024",
            ),
            (
                "grace",
                "18446744073709551615",
                "server.grace_period_seconds",
                "at most 86400",
            ),
            // One past each bound.
            ("threads", "0", "server.threads", "at least 1"),
            ("threads", "1025", "server.threads", "at most 1024"),
            (
                "grace",
                "86401",
                "server.grace_period_seconds",
                "at most 86400",
            ),
            (
                "shutdown",
                "3601",
                "server.graceful_shutdown_timeout_seconds",
                "at most 3600",
            ),
            (
                "pool",
                "65537",
                "server.upstream_keepalive_pool_size",
                "at most 65536",
            ),
            (
                "read_buffer",
                "1048577",
                "listeners[0].read_buffer",
                "at most 1048576",
            ),
            (
                "interval",
                "3601s",
                "pools.p.health_check.interval",
                "at most 3600s",
            ),
            (
                "interval",
                "0s",
                "pools.p.health_check.interval",
                "more than 0",
            ),
            (
                "timeout",
                "301s",
                "pools.p.health_check.timeout",
                "at most 300s",
            ),
            (
                "healthy",
                "1001",
                "pools.p.health_check.healthy_threshold",
                "at most 1000",
            ),
            (
                "unhealthy",
                "0",
                "pools.p.health_check.unhealthy_threshold",
                "at least 1",
            ),
            (
                "unhealthy",
                "18446744073709551615",
                "pools.p.health_check.unhealthy_threshold",
                "at most 1000",
            ),
            (
                "failures",
                "1001",
                "pools.p.passive_health.failures",
                "at most 1000",
            ),
            (
                "ejection",
                "3601s",
                "pools.p.passive_health.ejection",
                "at most 3600s",
            ),
            (
                "ejection",
                "0s",
                "pools.p.passive_health.ejection",
                "more than 0",
            ),
            (
                "connect",
                "301s",
                "pools.p.timeouts.connect",
                "at most 300s",
            ),
            ("read", "86401s", "pools.p.timeouts.read", "at most 86400s"),
            (
                "write",
                "18446744073709551615s",
                "pools.p.timeouts.write",
                "at most 86400s",
            ),
            ("idle", "0s", "pools.p.timeouts.idle", "more than 0"),
        ];
        for (name, value, path, message) in cases {
            let e = parse_str(&file(&[(name, value)])).unwrap_err();
            assert_eq!(&e.path, path, "{name} = {value}: {e:?}");
            assert!(e.message.contains(message), "{name} = {value}: {e:?}");
        }
        // Within bounds each, too many pooled connections together.
        let e = parse_str(&file(&[("threads", "1024"), ("pool", "1025")])).unwrap_err();
        assert_eq!(e.path, "server.upstream_keepalive_pool_size");
        assert!(
            e.message.contains("1025 per thread × 1024 threads"),
            "{e:?}"
        );
    }
}
