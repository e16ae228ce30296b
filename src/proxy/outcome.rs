//! Passive health's reading of one upstream exchange, free of Pingora's session: what counts
//! against an endpoint, what ends its failure streak, and when a failed SignalR request gets
//! the edge's `503` naming its instance instead of Pingora's bare `502`.

use http::Method;
use pingora_core::ErrorType;

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
/// `fail_to_connect`): no response header within the read timeout counts (an instance that
/// accepts but never answers); a client leaving, a body refused or a pooled connection the
/// instance had closed do not.
pub fn of_proxy_error(etype: &ErrorType, header_seen: bool) -> Outcome {
    match etype {
        ErrorType::ReadTimedout if !header_seen => Outcome::Failure,
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
    let negotiate = *method == Method::POST && path.ends_with("/negotiate");
    if kind == PoolKind::Signalr && negotiate {
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
    fn only_a_silent_instance_counts_among_proxy_errors() {
        assert_eq!(
            of_proxy_error(&ErrorType::ReadTimedout, false),
            Outcome::Failure
        );
        // A long poll or SSE stream that went quiet after its header is not a failure.
        assert_eq!(
            of_proxy_error(&ErrorType::ReadTimedout, true),
            Outcome::Neutral
        );
        for e in [
            ErrorType::ConnectionClosed,
            ErrorType::WriteError,
            ErrorType::HTTPStatus(413),
        ] {
            assert_eq!(of_proxy_error(&e, false), Outcome::Neutral, "{e:?}");
        }
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
