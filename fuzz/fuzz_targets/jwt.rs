//! Fuzz target `jwt`: the token readers (`with_audience_host`, `token_audience_host`,
//! `token_signature`). The input is tried as a whole token, and as the JSON payload of one, so
//! the mutations reach the JSON scanner. The fast scanner must agree with a full JSON parse
//! wherever that parse succeeds.
#![cfg_attr(fuzzing, no_main)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use signalr_edge::signalr::keys::{token_audience_host, token_signature, with_audience_host};

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

/// The claims as the full JSON parse of the edge reads them.
#[derive(Deserialize)]
struct Claims {
    aud: Option<Audience>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A token with `payload` as its JSON.
fn token_of(payload: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    format!("{header}.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
}

/// The first `aud` of a token by a full JSON parse, when the payload is valid JSON claims.
fn reference_audience(token: &str) -> Option<String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts[1].is_empty() || parts[2].is_empty() {
        return None;
    }
    let json = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice::<Claims>(&json).ok()?.aud? {
        Audience::One(a) => Some(a),
        Audience::Many(v) => v.into_iter().next(),
    }
}

fn check(token: &str) {
    let host = token_audience_host(token);
    assert_eq!(host, with_audience_host(token, str::to_ascii_lowercase));
    if let Some(h) = &host {
        assert!(!h.is_empty() && !h.contains(['/', '?', '#', '@']), "{h:?}");
        assert_eq!(h, &h.to_ascii_lowercase());
    }
    if let Some(aud) = reference_audience(token) {
        // The same audience written plainly: whatever shape the token had, the host agrees.
        let plain = serde_json::to_vec(&serde_json::json!({ "aud": aud })).expect("json");
        assert_eq!(host, token_audience_host(&token_of(&plain)), "aud {aud:?}");
    }
    match token_signature(token) {
        Some(s) => {
            assert!(!s.is_empty() && !s.contains('.') && token.ends_with(s));
            assert_eq!(token.matches('.').count(), 2);
        }
        None => assert!(host.is_none()),
    }
}

/// Checks the input as a token and as a token's payload.
pub fn run(data: &[u8]) {
    check(&String::from_utf8_lossy(data));
    check(&token_of(data));
}
