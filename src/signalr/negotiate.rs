//! What a negotiate answer tells about the connection it creates: the ids its later requests
//! carry as `id=` (`connectionToken` from negotiate version 1 on, `connectionId` before).
//! Read from the answer's bytes as they pass, within a bound, never changing them.

use serde::Deserialize;

/// The most bytes of a negotiate answer that are read for its ids (ASRS answers some 300;
/// a larger body is passed on unread).
pub const MAX_NEGOTIATE_BODY: usize = 16 * 1024;

/// The path suffix of the client negotiate (after any prefix the client endpoint has).
const NEGOTIATE_SUFFIX: &str = "/client/negotiate";

/// Whether a request starts a SignalR connection: `POST .../client/negotiate`. `path` is the
/// routed path, without the query.
pub fn is_negotiate(method: &http::Method, path: &str) -> bool {
    method == http::Method::POST && path.ends_with(NEGOTIATE_SUFFIX)
}

/// The ids of a negotiated connection; either may be absent (never empty).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NegotiatedIds {
    /// `connectionId`: the `id=` of negotiate version 0 clients.
    pub connection_id: Option<String>,
    /// `connectionToken`: the `id=` of negotiate version 1 clients.
    pub connection_token: Option<String>,
}

impl NegotiatedIds {
    /// Both ids that are present.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        [&self.connection_id, &self.connection_token]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "connectionId")]
    connection_id: Option<String>,
    #[serde(rename = "connectionToken")]
    connection_token: Option<String>,
}

/// The ids of a whole negotiate answer, or `None` when it is not a JSON object carrying at
/// least one (an error answer, a redirect to another service, garbage, a truncated body).
pub fn parse_negotiate(body: &[u8]) -> Option<NegotiatedIds> {
    if body.len() > MAX_NEGOTIATE_BODY {
        return None;
    }
    // serde_json limits nesting (128 levels), so no body can exhaust the stack.
    let a: Answer = serde_json::from_slice(body).ok()?;
    let keep = |s: Option<String>| s.filter(|s| !s.is_empty());
    let ids = NegotiatedIds {
        connection_id: keep(a.connection_id),
        connection_token: keep(a.connection_token),
    };
    (ids.connection_id.is_some() || ids.connection_token.is_some()).then_some(ids)
}

/// Collects a negotiate answer's body chunk by chunk, up to [`MAX_NEGOTIATE_BODY`], and says
/// its ids as soon as the bytes so far parse: before the last chunk is passed on, so the
/// client cannot send its connect before the ids are known.
#[derive(Debug, Default)]
pub struct NegotiateCapture {
    buf: Vec<u8>,
    done: bool,
}

impl NegotiateCapture {
    /// Adds a chunk; the ids once the body so far is a whole answer (only once), else `None`.
    pub fn push(&mut self, chunk: &[u8]) -> Option<NegotiatedIds> {
        if self.done || chunk.is_empty() {
            return None;
        }
        if self.buf.len() + chunk.len() > MAX_NEGOTIATE_BODY {
            // Too large to be an ASRS answer: give up and free the buffer.
            self.done = true;
            self.buf = Vec::new();
            return None;
        }
        self.buf.extend_from_slice(chunk);
        let ids = parse_negotiate(&self.buf)?;
        self.done = true;
        self.buf = Vec::new();
        Some(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASRS: &str = r#"{"negotiateVersion":1,"connectionId":"cid-1","connectionToken":"ctok-1","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#;

    #[test]
    fn negotiate_requests() {
        use http::Method;
        assert!(is_negotiate(&Method::POST, "/client/negotiate"));
        assert!(is_negotiate(&Method::POST, "/signalr/client/negotiate"));
        assert!(!is_negotiate(&Method::GET, "/client/negotiate"));
        assert!(!is_negotiate(&Method::POST, "/client/"));
        assert!(!is_negotiate(&Method::POST, "/chat/negotiate"));
        assert!(!is_negotiate(&Method::POST, "/client/negotiate/x"));
    }

    #[test]
    fn reads_both_ids_of_an_asrs_answer() {
        let ids = parse_negotiate(ASRS.as_bytes()).unwrap();
        assert_eq!(ids.connection_id.as_deref(), Some("cid-1"));
        assert_eq!(ids.connection_token.as_deref(), Some("ctok-1"));
        assert_eq!(ids.iter().collect::<Vec<_>>(), ["cid-1", "ctok-1"]);
        // Version 0: the connection id only.
        let v0 = parse_negotiate(br#"{"negotiateVersion":0,"connectionId":"c0"}"#).unwrap();
        assert_eq!(v0.iter().collect::<Vec<_>>(), ["c0"]);
    }

    #[test]
    fn anything_else_has_no_ids_and_nothing_panics() {
        let deep = "[".repeat(10_000);
        let huge = format!(
            r#"{{"connectionId":"x","pad":"{}"}}"#,
            "p".repeat(MAX_NEGOTIATE_BODY)
        );
        for body in [
            "",
            "null",
            "[]",
            "{}",
            "not json",
            r#"{"connectionId":""}"#,
            r#"{"connectionId":42}"#,
            r#"{"url":"https://other.service.signalr.net/client/","accessToken":"t"}"#,
            r#"{"error":"Negotiate failed"}"#,
            &ASRS[..ASRS.len() - 1],
            &deep,
            &huge,
        ] {
            assert_eq!(parse_negotiate(body.as_bytes()), None, "{body:.40}");
        }
        assert_eq!(parse_negotiate(&[0xff, 0xfe, b'{']), None);
    }

    #[test]
    fn capture_answers_once_the_body_is_whole() {
        let mut c = NegotiateCapture::default();
        let (a, b) = ASRS.as_bytes().split_at(40);
        assert_eq!(c.push(a), None);
        let ids = c.push(b).unwrap();
        assert_eq!(ids.connection_token.as_deref(), Some("ctok-1"));
        // Once answered, later chunks (there should be none) change nothing.
        assert_eq!(c.push(b"{}"), None);
        assert!(c.buf.is_empty());
    }

    #[test]
    fn capture_gives_up_past_its_bound() {
        let mut c = NegotiateCapture::default();
        let chunk = vec![b' '; 4096];
        for _ in 0..4 {
            assert_eq!(c.push(&chunk), None);
        }
        assert_eq!(c.push(b"x"), None);
        assert!(c.done && c.buf.capacity() == 0);
        // Even a whole answer after that is not read.
        assert_eq!(c.push(ASRS.as_bytes()), None);
    }
}
