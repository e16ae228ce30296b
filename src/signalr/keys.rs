//! Pure functions from a request's parts to the keys that choose its SignalR instance.
//!
//! Nothing here verifies a token (that is `token`'s job, where a pool asks for it): the rules
//! only read where the token says it is valid (`aud`) and use stable parts of the request as
//! hash keys.

use std::borrow::Cow;
use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use percent_encoding::percent_decode_str;
use serde::Deserialize;

/// The query parameter the SignalR SDK adds to tie negotiate and connect together.
pub const REQUEST_ID_PARAM: &str = "asrs_request_id";
/// The query parameter that names an existing connection (its connection token).
pub const CONNECTION_ID_PARAM: &str = "id";
/// The query parameter that carries the token where headers cannot (SSE, browser WebSockets).
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// The first value of query parameter `name`, still percent-encoded.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    // Byte scanning: this runs on every request, and `split`/`split_once` cost several times more.
    let (bytes, key) = (query.as_bytes(), name.as_bytes());
    let mut start = 0;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'&')
            .map_or(bytes.len(), |i| start + i);
        let pair = &bytes[start..end];
        if pair.starts_with(key) {
            match pair.get(key.len()) {
                None => return Some(""),
                // Slicing next to an ASCII '=' or '&' always lands on a char boundary.
                Some(b'=') => return Some(&query[start + key.len() + 1..end]),
                Some(_) => {}
            }
        }
        if end >= bytes.len() {
            return None;
        }
        start = end + 1;
    }
}

/// Percent-decodes a query value (`+` stays `+`: the SDK encodes with `%2B`).
pub fn decode(v: &str) -> Cow<'_, [u8]> {
    percent_decode_str(v).into()
}

/// The access token: `Authorization: Bearer <t>`, else the `access_token` query parameter.
pub fn access_token<'a>(
    authorization: Option<&'a [u8]>,
    query: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    if let Some(t) = authorization.and_then(bearer) {
        return Some(Cow::Borrowed(t));
    }
    let raw = query_param(query?, ACCESS_TOKEN_PARAM)?;
    let t = percent_decode_str(raw).decode_utf8().ok()?;
    (!t.is_empty()).then_some(t)
}

/// The token of a `Bearer` authorization header (scheme case-insensitive).
fn bearer(h: &[u8]) -> Option<&str> {
    let h = std::str::from_utf8(h).ok()?.trim();
    let (scheme, token) = h.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The signature part of a JWT (`header.payload.signature`), if it has three non-empty parts.
pub fn token_signature(token: &str) -> Option<&str> {
    jwt_parts(token).map(|(_, s)| s)
}

/// Payload and signature of a JWT with three parts, the last two non-empty.
fn jwt_parts(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.split('.');
    let (_h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !p.is_empty() && !s.is_empty()).then_some((p, s))
}

#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    aud: Option<Audience<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

/// The lower-cased host of the token's (first) `aud` URL, such as `a.service.signalr.net`.
pub fn token_audience_host(token: &str) -> Option<String> {
    with_audience_host(token, str::to_ascii_lowercase)
}

/// Calls `f` with the host of the token's (first) `aud` URL, as written (compare it ignoring
/// ASCII case). Allocation-free for tokens up to 1 KiB: it runs on every SignalR request.
pub fn with_audience_host<R>(token: &str, f: impl FnOnce(&str) -> R) -> Option<R> {
    let payload = jwt_parts(token)?.0.trim_end_matches('=');
    let mut stack = [0u8; 1024];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if base64::decoded_len_estimate(payload.len()) <= stack.len() {
        &mut stack
    } else {
        heap.resize(base64::decoded_len_estimate(payload.len()), 0);
        &mut heap
    };
    let n = URL_SAFE_NO_PAD.decode_slice(payload, buf).ok()?;
    let json = &buf[..n];
    if let Some(aud) = plain_audience(json) {
        return url_host(aud).map(f);
    }
    let claims: Claims = serde_json::from_slice(json).ok()?;
    let aud = match claims.aud? {
        Audience::One(a) => a,
        Audience::Many(v) => v.into_iter().next()?,
    };
    url_host(&aud).map(f)
}

/// The `aud` value of a JSON object when it is a plain string at the top level (the SDK's
/// shape); `None` sends the caller to the full JSON parser (arrays, escapes, anything odd).
fn plain_audience(json: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"aud\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)?;
    let skip_ws = |mut i: usize| {
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    // Only a key of the top-level object: outside strings, at depth 1, after `{` or `,`.
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in &json[..at] {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => depth += 1,
            (false, _, b'}' | b']') => depth = depth.saturating_sub(1),
            (false, _, _) => {}
        }
    }
    let before = json[..at].iter().rev().find(|b| !b.is_ascii_whitespace());
    if in_string || depth != 1 || !matches!(before, Some(b'{' | b',')) {
        return None;
    }
    let colon = skip_ws(at + KEY.len());
    let quote = skip_ws((json.get(colon) == Some(&b':')).then_some(colon + 1)?);
    let value = json
        .get(quote + 1..)
        .filter(|_| json.get(quote) == Some(&b'"'))?;
    let end = value.iter().position(|&b| b == b'"' || b == b'\\')?;
    if value[end] == b'\\' {
        return None;
    }
    std::str::from_utf8(&value[..end]).ok()
}

/// The host of an absolute `scheme://host[:port]/...` URL.
pub(super) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

/// Everything the instance-choice rules read from one request, extracted once.
#[derive(Debug, Default)]
pub struct AffinityInput<'a> {
    /// The access token, from header or query.
    pub token: Option<Cow<'a, str>>,
    /// The percent-decoded `asrs_request_id`.
    pub request_id: Option<Cow<'a, [u8]>>,
    /// The client address (after trusted-proxy processing).
    pub client_ip: Option<IpAddr>,
    /// The request belongs to an existing SignalR connection (it carries `id=`): a connect,
    /// a long poll, a send or a stop, as opposed to a negotiate that starts a new one.
    pub existing_connection: bool,
    /// The percent-decoded `id` (the connection token, or id, of an existing connection).
    pub connection_id: Option<Cow<'a, [u8]>>,
}

impl<'a> AffinityInput<'a> {
    /// Extracts the inputs from the query string, `Authorization` header and client address.
    pub fn new(
        query: Option<&'a str>,
        authorization: Option<&'a [u8]>,
        client_ip: Option<IpAddr>,
    ) -> Self {
        let request_id = query
            .and_then(|q| query_param(q, REQUEST_ID_PARAM))
            .filter(|v| !v.is_empty())
            .map(decode);
        let connection_id = query
            .and_then(|q| query_param(q, CONNECTION_ID_PARAM))
            .filter(|v| !v.is_empty())
            .map(decode);
        AffinityInput {
            token: access_token(authorization, query),
            request_id,
            client_ip,
            existing_connection: connection_id.is_some(),
            connection_id,
        }
    }
}

/// The client address as hash-key bytes (16 bytes for v6, 4 for v4).
pub fn ip_key(ip: IpAddr) -> ([u8; 16], usize) {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (b, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(payload.as_bytes());
        format!("{h}.{p}.c2lnbmF0dXJl")
    }

    #[test]
    fn query_params() {
        let q = "hub=chat&asrs.op=%2Fchat&asrs_request_id=ed8NhkhwAAA%3D&id=x&flag";
        assert_eq!(query_param(q, "hub"), Some("chat"));
        assert_eq!(query_param(q, "asrs_request_id"), Some("ed8NhkhwAAA%3D"));
        assert_eq!(query_param(q, "flag"), Some(""));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("xasrs_request_id=1", "asrs_request_id"), None);
    }

    #[test]
    fn request_id_is_decoded_and_encodings_agree() {
        let a = AffinityInput::new(Some("hub=c&asrs_request_id=ed8N%2Bh%2FwAAA%3D"), None, None);
        let b = AffinityInput::new(Some("asrs_request_id=ed8N+h/wAAA=&hub=c"), None, None);
        assert_eq!(a.request_id.as_deref(), Some(&b"ed8N+h/wAAA="[..]));
        assert_eq!(a.request_id, b.request_id);
        let lower = AffinityInput::new(Some("asrs_request_id=ed8N%2bh%2fwAAA%3d"), None, None);
        assert_eq!(lower.request_id, a.request_id);
        assert!(
            AffinityInput::new(Some("asrs_request_id=&hub=c"), None, None)
                .request_id
                .is_none()
        );
        assert!(AffinityInput::new(Some("hub=c"), None, None)
            .request_id
            .is_none());
        assert!(AffinityInput::new(None, None, None).request_id.is_none());
    }

    #[test]
    fn connection_id_is_decoded_and_marks_an_existing_connection() {
        let a = AffinityInput::new(Some("hub=c&id=ab%2Bc%3D%3D&asrs_request_id=r"), None, None);
        assert_eq!(a.connection_id.as_deref(), Some(&b"ab+c=="[..]));
        assert!(a.existing_connection);
        for q in ["hub=c&id=", "hub=c", "xid=1"] {
            let n = AffinityInput::new(Some(q), None, None);
            assert!(n.connection_id.is_none() && !n.existing_connection, "{q}");
        }
    }

    #[test]
    fn token_from_header_then_query() {
        let q = Some("hub=c&access_token=from.query.sig");
        assert_eq!(
            access_token(Some(b"Bearer from.header.sig"), q).as_deref(),
            Some("from.header.sig")
        );
        assert_eq!(
            access_token(Some(b"bearer   x.y.z "), None).as_deref(),
            Some("x.y.z")
        );
        assert_eq!(access_token(None, q).as_deref(), Some("from.query.sig"));
        assert_eq!(
            access_token(Some(b"Basic dXNlcjpwdw=="), q).as_deref(),
            Some("from.query.sig")
        );
        assert_eq!(access_token(Some(b"Bearer "), None), None);
        assert_eq!(access_token(Some(&[0xff, 0xfe]), None), None);
        assert_eq!(access_token(None, Some("access_token=")), None);
        assert_eq!(
            access_token(None, Some("access_token=a%2Eb.c")).as_deref(),
            Some("a.b.c")
        );
    }

    #[test]
    fn audience_host() {
        let t = jwt(r#"{"aud":"https://B.service.signalr.net/client/?hub=chat","exp":1}"#);
        assert_eq!(
            token_audience_host(&t).as_deref(),
            Some("b.service.signalr.net")
        );
        let t = jwt(r#"{"aud":["https://a.example:8443/client/?hub=x","https://z"]}"#);
        assert_eq!(token_audience_host(&t).as_deref(), Some("a.example"));
        let t = jwt(r#"{"aud":"https://[::1]:9/client/"}"#);
        assert_eq!(token_audience_host(&t).as_deref(), Some("::1"));
        let t = jwt(r#"{"aud":"https://user@h.example/x"}"#);
        assert_eq!(token_audience_host(&t).as_deref(), Some("h.example"));
        // Shapes the fast path leaves to the JSON parser, with the same answers.
        let t = jwt(r#"{ "sub" : "x", "aud" : "https:\/\/E.example\/client\/" }"#);
        assert_eq!(token_audience_host(&t).as_deref(), Some("e.example"));
        let t =
            jwt(r#"{"nested":{"aud":"https://wrong.example/"},"aud":"https://right.example/"}"#);
        assert_eq!(token_audience_host(&t).as_deref(), Some("right.example"));
        let long = format!(
            r#"{{"pad":"{}","aud":"https://long.example/"}}"#,
            "p".repeat(2000)
        );
        assert_eq!(
            token_audience_host(&jwt(&long)).as_deref(),
            Some("long.example")
        );
    }

    #[test]
    fn plain_audience_fast_path() {
        assert_eq!(
            plain_audience(br#"{"aud":"https://a/","exp":1}"#),
            Some("https://a/")
        );
        assert_eq!(plain_audience(br#"{"exp":1, "aud" : "x"}"#), Some("x"));
        assert_eq!(plain_audience(br#"{"aud":["x"]}"#), None);
        assert_eq!(plain_audience(br#"{"aud":"a\/b"}"#), None);
        assert_eq!(plain_audience(br#"{"n":{"aud":"x"}}"#), None);
        assert_eq!(plain_audience(br#"{"n":"\"aud\":\"x\""}"#), None);
        assert_eq!(plain_audience(br#"{"aud":"unterminated"#), None);
    }

    #[test]
    fn garbage_tokens_have_no_audience() {
        for t in [
            "",
            "not-a-jwt",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.!!!.c",
            &jwt("not json"),
            &jwt(r#"{"sub":"x"}"#),
            &jwt(r#"{"aud":42}"#),
            &jwt(r#"{"aud":"no-scheme"}"#),
            &jwt(r#"{"aud":[]}"#),
            &jwt(r#"{"aud":"https:///path"}"#),
        ] {
            assert_eq!(token_audience_host(t), None, "{t}");
        }
    }

    #[test]
    fn signature_part() {
        assert_eq!(token_signature("h.p.s"), Some("s"));
        assert_eq!(token_signature("h.p."), None);
        assert_eq!(token_signature("h.p"), None);
        assert_eq!(token_signature("h.p.s.x"), None);
    }

    #[test]
    fn ip_keys_differ_by_family() {
        let (a, n) = ip_key("10.0.0.1".parse().unwrap());
        assert_eq!(&a[..n], &[10, 0, 0, 1]);
        let (_, n6) = ip_key("::1".parse().unwrap());
        assert_eq!(n6, 16);
    }
}
