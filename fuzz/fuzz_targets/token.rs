//! Fuzz target `token`: access-token verification (`signalr::token::{read, Unverified::verify}`).
//! The input is tried as a whole token, and as the JSON payload of an HS256 token signed with a
//! known key, so the mutations reach the claims with a valid signature. The audience `read`
//! takes agrees with the one the instance choice reads (`keys::token_audience_host`); a token
//! signed with the key never fails on its signature, and no key but its own verifies it.
#![cfg_attr(fuzzing, no_main)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{crypto, Algorithm, EncodingKey};
use signalr_edge::signalr::keys::token_audience_host;
use signalr_edge::signalr::token::{read, TokenError, TokenKey};

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

const KEY: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH";

/// An HS256 token with `payload` as its JSON, signed with [`KEY`].
fn signed(payload: &[u8]) -> Option<String> {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let message = format!("{head}.{}", URL_SAFE_NO_PAD.encode(payload));
    let key = EncodingKey::from_secret(KEY.as_bytes());
    let sig = crypto::sign(message.as_bytes(), &key, Algorithm::HS256).ok()?;
    Some(format!("{message}.{sig}"))
}

/// Checks one token; `ours` says it is signed with [`KEY`].
fn check(token: &str, ours: bool) {
    let Ok(unverified) = read(token) else { return };
    assert!(!unverified.host.is_empty() && !unverified.hub.is_empty());
    assert_eq!(unverified.host, unverified.host.to_ascii_lowercase());
    assert_eq!(unverified.hub, unverified.hub.to_ascii_lowercase());
    // The instance choice reads the same audience host, by its own faster path.
    assert_eq!(
        token_audience_host(token).as_deref(),
        Some(unverified.host.as_str())
    );
    assert!(unverified
        .check_hub(Some(&unverified.hub.to_ascii_uppercase()))
        .is_ok());
    let skew = Duration::from_secs(30);
    let other = unverified.verify(&[TokenKey::new("another-key")], skew);
    let mine = unverified.verify(&[TokenKey::new(KEY)], skew);
    if ours {
        assert_ne!(
            mine,
            Err(TokenError::Signature),
            "a token signed with the key"
        );
        assert!(other.is_err(), "verified with a key that did not sign it");
        if let Ok(v) = &mine {
            assert_eq!(v.hub, unverified.hub);
        }
    } else {
        assert!(other.is_err() || mine.is_err());
    }
}

/// Checks the input as a token and as a signed token's payload.
pub fn run(data: &[u8]) {
    check(&String::from_utf8_lossy(data), false);
    if let Some(token) = signed(data) {
        check(&token, true);
    }
}
