//! The `limits` section: what one client, one connection and one request may hold, with
//! defaults that stop slowloris, header floods, large bodies and connection floods but never
//! break SignalR (15 s pings, 100 s long polls, 32 KiB messages, hours-long WebSockets and SSE).
//! Every value is bounded here, so a file that passes `-t` cannot overflow a deadline or a
//! counter at run time. All of it is reloadable.

use std::time::Duration;

use serde::Deserialize;

use super::PathError;

/// Limits on clients, connections and requests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The whole request header (request line and fields) must arrive within this time: from
    /// its first byte on a keep-alive connection, from the accept on a new one. A started
    /// header that is late gets `408`; a new connection that sends nothing is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request (whole seconds).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest wait for each read of a request body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Longest a write to a client may wait for it to read (a client that stops reading is
    /// closed after it).
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Largest request header in bytes (request line and fields); `431` beyond.
    pub max_header_bytes: usize,
    /// Most header fields in a request; `431` beyond.
    pub max_headers: usize,
    /// Largest request body in bytes, for routes that do not set their own; `413` beyond.
    pub max_body_bytes: u64,
    /// Per client address.
    pub per_client: ClientLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // nginx's client_header_timeout is 60 s; 10 s is HAProxy's usual `timeout
            // http-request` and far above what any real client needs for a header.
            header_timeout: Duration::from_secs(10),
            // Pingora's own first-request wait, under nginx's 75 s keepalive_timeout.
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            // nginx's send_timeout. SignalR sends pings every 15 s, so a live client reads.
            send_timeout: Duration::from_secs(60),
            // nginx's large_client_header_buffers allow 4 x 8 KiB; a SignalR request carries
            // a token (1-2 KiB) in the query or in Authorization.
            max_header_bytes: 32 * 1024,
            // Apache's LimitRequestFields; browsers send about 20.
            max_headers: 100,
            // nginx's client_max_body_size. SignalR negotiate bodies are empty and a long-poll
            // send carries messages of up to 32 KiB (the hub's default maximum).
            max_body_bytes: 1024 * 1024,
            per_client: ClientLimits::default(),
        }
    }
}

/// Limits per client address.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Open connections per TCP peer address (IPv6: per /64). Peers in `trusted_proxies` are
    /// exempt: they carry many clients. Beyond it, the connection's request gets `429`.
    pub connections: usize,
    /// Requests per `interval` per client address (after `trusted_proxies`; IPv6: per /64);
    /// `429` with `Retry-After` beyond.
    pub requests: usize,
    /// The window `requests` are counted in (whole seconds, at least 1 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            // Room for an office behind one NAT address; one attacker address cannot hold
            // more than this many sockets.
            connections: 256,
            // A SignalR client makes a few requests a second at most (long polling: a poll
            // and a send); a whole NAT'd office reconnecting at once fits.
            requests: 500,
            interval: Duration::from_secs(1),
        }
    }
}

/// Default connection cap of each listener.
pub const DEFAULT_LISTENER_CONNECTIONS: usize = 50_000;

/// Upper bounds: far above any sensible setting, low enough that no deadline or counter built
/// from them overflows.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(3600);
/// Pingora's own ceilings for a request header.
const HEADER_BYTES: (usize, usize) = (1024, 1024 * 1024 - 1);
const HEADER_FIELDS: usize = 256;
/// 1 TiB: a body limit above it means none.
pub const MAX_BODY_BYTES: u64 = 1 << 40;
/// Connections and in-flight requests: counters stay far from overflow.
pub const MAX_COUNT: usize = 10_000_000;

/// Checks the section; errors name `limits.<key>`.
pub fn check_limits(l: &Limits) -> Result<(), PathError> {
    for (key, d, max) in [
        ("header_timeout", l.header_timeout, MAX_HEADER_TIMEOUT),
        ("idle_timeout", l.idle_timeout, MAX_TIMEOUT),
        ("body_timeout", l.body_timeout, MAX_TIMEOUT),
        ("send_timeout", l.send_timeout, MAX_TIMEOUT),
    ] {
        check_duration(&format!("limits.{key}"), d, Duration::from_millis(1), max)?;
    }
    // Pingora's keep-alive wait is counted in whole seconds.
    check_duration(
        "limits.idle_timeout",
        l.idle_timeout,
        Duration::from_secs(1),
        MAX_TIMEOUT,
    )?;
    check_range(
        "limits.max_header_bytes",
        l.max_header_bytes,
        HEADER_BYTES.0,
        HEADER_BYTES.1,
    )?;
    check_range("limits.max_headers", l.max_headers, 1, HEADER_FIELDS)?;
    check_body("limits.max_body_bytes", l.max_body_bytes)?;
    let c = &l.per_client;
    check_range("limits.per_client.connections", c.connections, 1, MAX_COUNT)?;
    check_range("limits.per_client.requests", c.requests, 1, MAX_COUNT)?;
    // pingora-limits' Rate needs whole-second windows: below 1 s it can panic at a reset.
    check_duration(
        "limits.per_client.interval",
        c.interval,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    )?;
    if c.interval.subsec_nanos() != 0 {
        return Err(PathError::new(
            "limits.per_client.interval",
            "must be whole seconds",
        ));
    }
    Ok(())
}

/// Checks a body limit (of the section or a route).
pub fn check_body(path: &str, n: u64) -> Result<(), PathError> {
    if n > MAX_BODY_BYTES {
        return Err(PathError::new(
            path,
            format!("must be at most {MAX_BODY_BYTES} (1 TiB)"),
        ));
    }
    Ok(())
}

/// Checks that `n` lies in `min..=max`.
pub fn check_range(path: &str, n: usize, min: usize, max: usize) -> Result<(), PathError> {
    if n < min || n > max {
        return Err(PathError::new(
            path,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

fn check_duration(path: &str, d: Duration, min: Duration, max: Duration) -> Result<(), PathError> {
    if d < min || d > max {
        return Err(PathError::new(
            path,
            format!("must be between {min:?} and {max:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(yaml: &str) -> Result<Limits, String> {
        let l: Limits = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        check_limits(&l).map_err(|e| format!("{}: {}", e.path, e.message))?;
        Ok(l)
    }

    #[test]
    fn defaults_pass_and_suit_signalr() {
        let l = limits("{}").unwrap();
        assert_eq!(l, Limits::default());
        // Long polls are held ~100 s but their bytes flow; pings every 15 s.
        assert!(l.send_timeout > Duration::from_secs(15));
        assert!(l.max_body_bytes >= 32 * 1024);
        assert!(l.header_timeout <= Duration::from_secs(10));
    }

    #[test]
    fn every_value_is_bounded_and_named() {
        for (yaml, key) in [
            ("{header_timeout: 0s}", "limits.header_timeout"),
            ("{header_timeout: 2h}", "limits.header_timeout"),
            ("{idle_timeout: 500ms}", "limits.idle_timeout"),
            (
                "{send_timeout: 18446744073709551615s}",
                "limits.send_timeout",
            ),
            ("{body_timeout: 2days}", "limits.body_timeout"),
            ("{max_header_bytes: 10}", "limits.max_header_bytes"),
            ("{max_header_bytes: 1048576}", "limits.max_header_bytes"),
            ("{max_headers: 0}", "limits.max_headers"),
            ("{max_headers: 257}", "limits.max_headers"),
            (
                "{max_body_bytes: 18446744073709551615}",
                "limits.max_body_bytes",
            ),
            (
                "{per_client: {connections: 0}}",
                "limits.per_client.connections",
            ),
            (
                "{per_client: {requests: 100000000}}",
                "limits.per_client.requests",
            ),
            (
                "{per_client: {interval: 500ms}}",
                "limits.per_client.interval",
            ),
            (
                "{per_client: {interval: 1500ms}}",
                "limits.per_client.interval",
            ),
        ] {
            let err = limits(yaml).unwrap_err();
            assert!(err.starts_with(&format!("{key}:")), "{yaml}: {err}");
        }
        assert!(limits("{max_body_bytes: 0, per_client: {interval: 10s}}").is_ok());
        assert!(limits("{max_header_bytes: 1048575, max_headers: 256}").is_ok());
    }
}
