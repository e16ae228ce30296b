//! The `limits` section and its per-client part.

use std::time::Duration;

use serde::{Serialize, Serializer};

/// A duration as the file writes it (`100ms`, `2s`).
fn text<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.collect_str(&humantime::format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// What clients, connections and requests may hold; `None` leaves the edge's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    /// Deadline for the whole request header.
    #[serde(serialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<Duration>,
    /// Keep-alive wait for the next request.
    #[serde(serialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Wait for each read of a request body.
    #[serde(serialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub body_timeout: Option<Duration>,
    /// Wait for a client to take each write.
    #[serde(serialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<Duration>,
    /// Largest request header in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<usize>,
    /// Most header fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<usize>,
    /// Default body limit of routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Per client address.
    #[serde(skip_serializing_if = "ClientLimits::is_empty")]
    pub per_client: ClientLimits,
}

/// Limits per client address.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientLimits {
    /// Open connections per address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    /// Requests per interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<usize>,
    /// The interval requests are counted in.
    #[serde(serialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

impl ClientLimits {
    fn is_empty(&self) -> bool {
        *self == ClientLimits::default()
    }

    /// Sets what a test left unset to the most the edge accepts: tests run every client
    /// from 127.0.0.1, which the per-address limits would count as one client (a thousand
    /// requests in a second, hundreds of WebSockets). Tests of these limits set them.
    pub fn lift_unset(&mut self) {
        self.connections.get_or_insert(10_000_000);
        self.requests.get_or_insert(10_000_000);
    }
}

impl Limits {
    /// True when nothing is set (the section is left out).
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}
