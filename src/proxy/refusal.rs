//! Why the edge answered a request itself instead of proxying it: one reason per local
//! answer, with its status, its access-log name, and a counter per reason since start (read
//! by `/status`, exported as `signalr_edge_refusals_total`).

use std::sync::LazyLock;

use prometheus::IntCounter;

use crate::runtime::TokenRefusal;

/// Why a request was answered by the edge. Add a variant to `ALL` too (a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Refusal {
    /// No route matches the request.
    NoRoute,
    /// The route's pool has no healthy endpoint.
    NoHealthyEndpoint,
    /// The client address holds more connections than `limits.per_client.connections`.
    ClientConnections,
    /// The client sent more requests than `limits.per_client.requests` in one interval.
    ClientRate,
    /// The request body is larger than the route's `max_body_bytes`.
    BodyTooLarge,
    /// The route already serves `max_in_flight` requests.
    RouteBusy,
    /// The request header is over `limits.max_header_bytes` or `limits.max_headers`.
    HeaderTooLarge,
    /// The request header was not complete within `limits.header_timeout`.
    HeaderTimeout,
    /// The request header could not be parsed.
    MalformedHeader,
    /// The listener holds `max_connections`: the new connection was closed unanswered.
    ListenerFull,
    /// The pool verifies tokens and the request carries none.
    MissingToken,
    /// The pool verifies tokens and the request's does not verify.
    InvalidToken,
    /// The path cannot be normalised safely (`..` above the root, `%2F`, `%00`, a bad escape).
    BadPath,
    /// An HTTP/1.1 request without `Host`.
    MissingHost,
    /// An empty or invalid `Host`, or more than one.
    BadHost,
    /// A request target that is neither origin-form nor an http(s) absolute-form URL.
    BadTarget,
    /// A method longer than the edge accepts.
    BadMethod,
    /// Admin listener: `Host` names neither the listener's address nor `localhost` (a page
    /// reaching it through DNS rebinding would name its own host).
    AdminWrongHost,
    /// Admin listener: a token is required and the request has none, or another.
    AdminUnauthorized,
    /// Admin listener: a `POST` a browser could send cross-site (neither a JSON content type
    /// nor an `X-Signalr-Edge` header, both of which need a CORS preflight it does not answer).
    AdminCrossSite,
    /// The instance the access token names is down, ejected or retired, or did not answer:
    /// `503` with `Retry-After`, so that the client negotiates again (never another instance,
    /// which would refuse the token with `401`).
    InstanceUnavailable,
}

impl Refusal {
    /// Every reason, in counter order.
    pub const ALL: [Refusal; 21] = [
        Refusal::NoRoute,
        Refusal::NoHealthyEndpoint,
        Refusal::ClientConnections,
        Refusal::ClientRate,
        Refusal::BodyTooLarge,
        Refusal::RouteBusy,
        Refusal::HeaderTooLarge,
        Refusal::HeaderTimeout,
        Refusal::MalformedHeader,
        Refusal::ListenerFull,
        Refusal::MissingToken,
        Refusal::InvalidToken,
        Refusal::BadPath,
        Refusal::MissingHost,
        Refusal::BadHost,
        Refusal::BadTarget,
        Refusal::BadMethod,
        Refusal::AdminWrongHost,
        Refusal::AdminUnauthorized,
        Refusal::AdminCrossSite,
        Refusal::InstanceUnavailable,
    ];

    /// The HTTP status of the answer.
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoRoute => 404,
            Refusal::NoHealthyEndpoint => 503,
            Refusal::ClientConnections | Refusal::ClientRate => 429,
            Refusal::BodyTooLarge => 413,
            Refusal::RouteBusy => 503,
            Refusal::HeaderTooLarge => 431,
            Refusal::HeaderTimeout => 408,
            Refusal::MalformedHeader => 400,
            // Nothing is sent: the connection is closed at once.
            Refusal::ListenerFull => 503,
            Refusal::MissingToken | Refusal::InvalidToken => 401,
            Refusal::BadPath
            | Refusal::MissingHost
            | Refusal::BadHost
            | Refusal::BadTarget
            | Refusal::BadMethod => 400,
            // Misdirected Request: this server does not answer for that authority.
            Refusal::AdminWrongHost => 421,
            Refusal::AdminUnauthorized => 401,
            Refusal::AdminCrossSite => 403,
            Refusal::InstanceUnavailable => 503,
        }
    }

    /// Headers the answer carries besides the usual ones (`Retry-After` aside).
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // As ASRS (ASP.NET Core's bearer handler) answers: no error code when no token came
            // (RFC 6750, 3.1), `invalid_token` when one did.
            Refusal::MissingToken => &[("www-authenticate", "Bearer")],
            Refusal::InvalidToken => &[("www-authenticate", "Bearer error=\"invalid_token\"")],
            _ => &[],
        }
    }

    /// The reason as the access log and `/status` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoRoute => "no_route",
            Refusal::NoHealthyEndpoint => "no_healthy_endpoint",
            Refusal::ClientConnections => "client_connections",
            Refusal::ClientRate => "client_rate",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::RouteBusy => "route_busy",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::MalformedHeader => "malformed_header",
            Refusal::ListenerFull => "listener_full",
            Refusal::MissingToken => "missing_token",
            Refusal::InvalidToken => "invalid_token",
            Refusal::BadPath => "bad_path",
            Refusal::MissingHost => "missing_host",
            Refusal::BadHost => "bad_host",
            Refusal::BadTarget => "bad_target",
            Refusal::BadMethod => "bad_method",
            Refusal::AdminWrongHost => "admin_wrong_host",
            Refusal::AdminUnauthorized => "admin_unauthorized",
            Refusal::AdminCrossSite => "admin_cross_site",
            Refusal::InstanceUnavailable => "instance_unavailable",
        }
    }

    /// The refusal of a request header Pingora answered itself with `status`.
    pub fn of_header_status(status: u16) -> Option<Refusal> {
        match status {
            431 => Some(Refusal::HeaderTooLarge),
            408 => Some(Refusal::HeaderTimeout),
            400 => Some(Refusal::MalformedHeader),
            _ => None,
        }
    }

    /// Counts one refusal for this reason.
    pub fn count(self) {
        COUNTS[self as usize].inc();
    }
}

impl From<TokenRefusal> for Refusal {
    fn from(r: TokenRefusal) -> Self {
        match r {
            TokenRefusal::Missing => Refusal::MissingToken,
            TokenRefusal::Invalid(_) => Refusal::InvalidToken,
        }
    }
}

/// Refusals per reason since the process started, indexed by `Refusal as usize`: the handles
/// of `signalr_edge_refusals_total`, every reason present from the start.
static COUNTS: LazyLock<[IntCounter; Refusal::ALL.len()]> = LazyLock::new(|| {
    let family = &crate::metrics::families().refusals;
    Refusal::ALL.map(|r| family.with_label_values(&[r.as_str()]))
});

/// Refusals so far, by reason name (every reason, zeros included).
pub fn counts() -> Vec<(&'static str, u64)> {
    Refusal::ALL
        .iter()
        .map(|r| (r.as_str(), COUNTS[*r as usize].get()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_in_counter_order() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        let names: std::collections::HashSet<_> = Refusal::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Refusal::ALL.len(), "names are unique");
        for r in Refusal::ALL {
            if let Some(back) = Refusal::of_header_status(r.status()) {
                assert!(back.status() == r.status(), "{r:?}");
            }
        }
        assert_eq!(
            Refusal::of_header_status(431),
            Some(Refusal::HeaderTooLarge)
        );
        assert_eq!(Refusal::of_header_status(502), None);
    }

    #[test]
    fn counts_by_reason() {
        let before = counts();
        Refusal::NoRoute.count();
        let after = counts();
        let of = |v: &[(&str, u64)]| v.iter().find(|(n, _)| *n == "no_route").map(|(_, c)| *c);
        assert!(of(&after) > of(&before));
    }
}
