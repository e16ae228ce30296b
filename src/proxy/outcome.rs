//! Passive health's reading of one upstream exchange, free of Pingora's session: what counts
//! against an endpoint, what ends its failure streak, and when a failed SignalR request gets
//! the edge's `503` naming its instance instead of Pingora's bare `502`.

use http::Method;
use pingora_core::ErrorType;

use super::observe::is_negotiate;
use crate::config::PoolKind;

/// What an exchange says about the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counts against it.
    Failure,
    /// Ends its failure streak.
    Success,
    /// Says nothing about its health.
    Neutral,
}

/// An error after the connection was made (a connect error always counts, see
/// `fail_to_connect`), from the upstream's side, before any response header: no header
/// within the read timeout (an instance that accepts but never answers), or a fresh connection
/// closed or reset under the request (an instance that died mid-request). A client leaving, a
/// body refused, an error after the header (a long poll or stream that ends) and a pooled
/// connection the instance had closed while idle (`reused`: the keep-alive race) do not.
pub fn of_proxy_error(
    etype: &ErrorType,
    from_upstream: bool,
    header_seen: bool,
    reused: bool,
) -> Outcome {
    if !from_upstream || header_seen {
        return Outcome::Neutral;
    }
    match etype {
        ErrorType::ReadTimedout => Outcome::Failure,
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError if !reused => {
            Outcome::Failure
        }
        _ => Outcome::Neutral,
    }
}

/// A response header: a `5xx` to a SignalR negotiate counts (the instance cannot take new
/// connections); any other answer below 500 ends the streak; other `5xx` are the
/// application's business.
pub fn of_response(kind: PoolKind, method: &Method, path: &str, status: u16) -> Outcome {
    if status < 500 {
        return Outcome::Success;
    }
    if kind == PoolKind::Signalr && is_negotiate(method, path) {
        Outcome::Failure
    } else {
        Outcome::Neutral
    }
}

/// Whether a request that failed upstream gets the edge's `503` naming its instance: a
/// SignalR request whose instance failed before answering (and which the edge did not refuse
/// itself). It must not be retried elsewhere, and `503` + `Retry-After` tells the client to
/// negotiate again, where a `502` says nothing.
pub fn answer_unavailable(kind: PoolKind, upstream_failed: bool, header_seen: bool) -> bool {
    kind == PoolKind::Signalr && upstream_failed && !header_seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_or_dying_instance_counts_among_proxy_errors() {
        let fresh = |e: ErrorType| of_proxy_error(&e, true, false, false);
        assert_eq!(fresh(ErrorType::ReadTimedout), Outcome::Failure);
        // Reset or closed under a request on a fresh connection: the instance died.
        for e in [
            ErrorType::ConnectionClosed,
            ErrorType::ReadError,
            ErrorType::WriteError,
        ] {
            assert_eq!(fresh(e.clone()), Outcome::Failure, "{e:?}");
            // On a pooled connection it is the keep-alive race, not the instance.
            assert_eq!(of_proxy_error(&e, true, false, true), Outcome::Neutral);
        }
        // A long poll or SSE stream that went quiet or ended after its header is not a failure.
        assert_eq!(
            of_proxy_error(&ErrorType::ReadTimedout, true, true, false),
            Outcome::Neutral
        );
        // Nor is the client's side, or a body the edge refused.
        assert_eq!(
            of_proxy_error(&ErrorType::ReadError, false, false, false),
            Outcome::Neutral
        );
        assert_eq!(fresh(ErrorType::HTTPStatus(413)), Outcome::Neutral);
    }

    #[test]
    fn five_hundreds_count_on_signalr_negotiates_only() {
        let post = Method::POST;
        let s = PoolKind::Signalr;
        assert_eq!(
            of_response(s, &post, "/client/negotiate", 503),
            Outcome::Failure
        );
        assert_eq!(
            of_response(s, &post, "/client/negotiate", 500),
            Outcome::Failure
        );
        assert_eq!(
            of_response(s, &post, "/client/negotiate", 200),
            Outcome::Success
        );
        assert_eq!(
            of_response(s, &post, "/client/negotiate", 404),
            Outcome::Success
        );
        assert_eq!(
            of_response(s, &Method::GET, "/client/", 101),
            Outcome::Success
        );
        assert_eq!(of_response(s, &post, "/client/", 500), Outcome::Neutral);
        assert_eq!(
            of_response(s, &Method::GET, "/client/negotiate", 500),
            Outcome::Neutral
        );
        assert_eq!(
            of_response(PoolKind::App, &post, "/chat/negotiate", 500),
            Outcome::Neutral
        );
        assert_eq!(
            of_response(PoolKind::App, &post, "/chat/negotiate", 200),
            Outcome::Success
        );
    }

    #[test]
    fn the_503_is_for_signalr_requests_whose_instance_never_answered() {
        assert!(answer_unavailable(PoolKind::Signalr, true, false));
        assert!(!answer_unavailable(PoolKind::Signalr, true, true));
        assert!(!answer_unavailable(PoolKind::Signalr, false, false));
        assert!(!answer_unavailable(PoolKind::App, true, false));
    }
}
