//! What the edge may log of a request: credentials redacted and every byte that could break or
//! forge a log line escaped. Pure functions over the bytes as received.
//!
//! Redacted: query parameters named `access_token` or `id` (the connection token), compared
//! after percent-decoding and in any case, as ASP.NET Core reads them; any parameter, or path
//! segment, that holds a JWT; pairs split by `&` or `;`.

use std::borrow::Cow;
use std::fmt::Write;

use percent_encoding::percent_decode;

use crate::signalr::keys::{ACCESS_TOKEN_PARAM, CONNECTION_ID_PARAM};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Query parameters whose values are credentials: the access token (SSE and long polling send
/// it in the query) and the connection token, which lets its holder act as that connection.
const SECRET_PARAMS: [&str; 2] = [ACCESS_TOKEN_PARAM, CONNECTION_ID_PARAM];

/// A request target (path and query as received, or an absolute URL) for a log line.
pub fn log_target(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() + 16);
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    for (i, segment) in path.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if holds_jwt(&Cow::from(percent_decode(segment))) {
            out.push_str(REDACTED);
        } else {
            escape_into(&mut out, segment);
        }
    }
    if let Some(query) = query {
        out.push('?');
        redact_query_into(&mut out, query);
    }
    out
}

/// Appends `query` with credential values redacted and the rest escaped.
fn redact_query_into(out: &mut String, query: &[u8]) {
    let mut start = 0;
    loop {
        let end = query[start..]
            .iter()
            .position(|&b| b == b'&' || b == b';')
            .map_or(query.len(), |i| start + i);
        let pair = &query[start..end];
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], Some(&pair[i + 1..])),
            None => (pair, None),
        };
        let decoded_name: Cow<'_, [u8]> = percent_decode(name).into();
        if holds_jwt(&decoded_name) {
            out.push_str(REDACTED);
        } else if is_secret_name(&decoded_name)
            || value.is_some_and(|v| holds_jwt(&Cow::from(percent_decode(v))))
        {
            escape_into(out, name);
            out.push('=');
            out.push_str(REDACTED);
        } else {
            escape_into(out, pair);
        }
        if end >= query.len() {
            return;
        }
        // The separator as received (`&` or `;`).
        out.push(query[end] as char);
        start = end + 1;
    }
}

fn is_secret_name(decoded: &[u8]) -> bool {
    SECRET_PARAMS
        .iter()
        .any(|s| decoded.eq_ignore_ascii_case(s.as_bytes()))
}

/// Whether `text` holds a JWT (JWS or JWE compact form) anywhere: a run of base64url
/// characters with at least three dot-separated parts whose first decodes to a JSON object, as
/// a token's header does (`eyJ...`). "Bearer eyJ..." holds one; `jquery.min.js` does not.
pub fn holds_jwt(text: &[u8]) -> bool {
    text.split(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
        .any(is_jwt)
}

fn is_jwt(run: &[u8]) -> bool {
    let mut parts = run.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !payload.is_empty() && header_is_json_object(header)
}

/// Whether a base64url header starts with `{` once decoded (after JSON whitespace).
fn header_is_json_object(header: &[u8]) -> bool {
    // Eight characters decode to six bytes: room for some whitespace before the brace.
    let head = &header[..header.len().min(8)];
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for &c in head {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return false,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            let byte = (bits >> nbits) as u8;
            bits &= (1 << nbits) - 1;
            match byte {
                b'{' => return true,
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => return false,
            }
        }
    }
    false
}

/// Appends `bytes` for a log field: `"` and `\` backslash-escaped, control and invisible
/// formatting characters as `\xNN` (ASCII) or `\u{N}`, and bytes that are not UTF-8 as `\xNN`.
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() || is_invisible_format(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// `bytes` escaped for a log field (see [`escape_into`]).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    escape_into(&mut out, bytes);
    out
}

/// Characters that move or hide text without being control characters: line and paragraph
/// separators, bidirectional overrides and zero-width marks, which could make a line read as
/// something it is not.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl";

    fn target(s: &str) -> String {
        log_target(s.as_bytes())
    }

    #[test]
    fn credential_parameters_in_any_case_encoding_or_separator() {
        assert_eq!(target("/c/?hub=a&ids=b"), "/c/?hub=a&ids=b");
        assert_eq!(target("/c/?hub=a&id=b"), "/c/?hub=a&id=<redacted>");
        for (query, logged) in [
            (
                "access_token=x&id=y",
                "access_token=<redacted>&id=<redacted>",
            ),
            ("ACCESS_TOKEN=x", "ACCESS_TOKEN=<redacted>"),
            ("access%5Ftoken=x", "access%5Ftoken=<redacted>"),
            ("Access%5fToken=x", "Access%5fToken=<redacted>"),
            ("%61ccess_token=x", "%61ccess_token=<redacted>"),
            ("hub=a;access_token=x", "hub=a;access_token=<redacted>"),
            ("ID=x", "ID=<redacted>"),
            ("%69d=x", "%69d=<redacted>"),
            ("access_token", "access_token=<redacted>"),
            ("access_token=", "access_token=<redacted>"),
            ("access_tokens=x&idx=y", "access_tokens=x&idx=y"),
            ("&&id=x&", "&&id=<redacted>&"),
        ] {
            assert_eq!(
                target(&format!("/?{query}")),
                format!("/?{logged}"),
                "{query}"
            );
        }
    }

    #[test]
    fn jwts_anywhere_in_the_query_or_path() {
        for (query, logged) in [
            (format!("state={JWT}"), "state=<redacted>"),
            (format!("auth=Bearer%20{JWT}"), "auth=<redacted>"),
            (format!("auth=Bearer+{JWT}"), "auth=<redacted>"),
            (format!("x={}", JWT.replace('.', "%2E")), "x=<redacted>"),
            (JWT.to_string(), "<redacted>"),
            (format!("{JWT}=1"), "<redacted>"),
            // JWE (five parts) and an unsigned token (empty signature).
            (format!("t={JWT}.a.b"), "t=<redacted>"),
            ("t=eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.".into(), "t=<redacted>"),
        ] {
            assert_eq!(
                target(&format!("/?{query}")),
                format!("/?{logged}"),
                "{query}"
            );
        }
        assert_eq!(target(&format!("/a/{JWT}/b?x=1")), "/a/<redacted>/b?x=1");
        // Dotted names that are not tokens stay.
        for kept in [
            "/js/jquery.min.js?v=1.2.3",
            "/a.b.c/?name=x.y.z",
            "/?v=e30.e30",
        ] {
            assert_eq!(target(kept), kept);
        }
    }

    #[test]
    fn jwt_headers_decode_to_an_object() {
        assert!(holds_jwt(JWT.as_bytes()));
        // `{ "` and a leading newline.
        assert!(holds_jwt(b"eyAiYWxnIjoxfQ.eyJ4IjoxfQ.s"));
        assert!(holds_jwt(b"CnsiYSI6MX0.eyJ4IjoxfQ.s"));
        for not in [
            &b"e30"[..],
            b"abc.def.ghi",
            b"eyJ.eyJ",
            b"eyJhbGci..sig",
            b"",
        ] {
            assert!(!holds_jwt(not), "{}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn fields_are_escaped() {
        assert_eq!(escape(br#"/a"b\c"#), r#"/a\"b\\c"#);
        assert_eq!(escape(b"/a\r\nb\x00\x1b\x7f"), r"/a\x0d\x0ab\x00\x1b\x7f");
        assert_eq!(escape(b"/caf\xc3\xa9/\xff\xfe"), r"/café/\xff\xfe");
        assert_eq!(
            escape("/\u{202e}x\u{2028}\u{85}".as_bytes()),
            r"/\u{202e}x\u{2028}\u{85}"
        );
        assert_eq!(
            target("/p\"a?q=\"1\"&id=\"x\""),
            r#"/p\"a?q=\"1\"&id=<redacted>"#
        );
        assert_eq!(log_target(b"/a\n?b=\x01"), r"/a\x0a?b=\x01");
    }
}
