use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const KEY: &str = "an-access-key-of-the-usual-length-0123456789abcdef";
const AUD: &str = "https://a.service.signalr.net/client/?hub=chat";
const SKEW: Duration = Duration::from_secs(30);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign_with(alg: Algorithm, key: &str, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// A token as the SDK writes it: HS256, valid for an hour from now.
fn sdk_token(key: &str, aud: &str) -> String {
    let t = now();
    sign_with(
        Algorithm::HS256,
        key,
        json!({"aud": aud, "iat": t, "nbf": t, "exp": t + 3600, "nameid": "u1"}),
    )
}

fn keys(k: &str) -> Vec<TokenKey> {
    vec![TokenKey::new(k)]
}

/// The whole check as a pool makes it, for one key and the request's hub.
fn check(token: &str, key: &str, hub: &str) -> Result<Verified, TokenError> {
    let t = read(token)?;
    t.check_hub(Some(hub))?;
    t.verify(&keys(key), SKEW)
}

/// A token with a hand-written header and payload and a signature that is not one.
fn unsigned(header: &str, payload: &str) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

#[test]
fn a_good_token_verifies_with_its_hub_and_expiry() {
    let t = sdk_token(KEY, AUD);
    let u = read(&t).unwrap();
    assert_eq!(
        (u.host.as_str(), u.hub.as_str()),
        ("a.service.signalr.net", "chat")
    );
    let v = check(&t, KEY, "Chat").unwrap();
    assert_eq!(v.hub, "chat");
    assert!(v.exp > now());
    // HS512 too, and a port or an upper-case host in the audience.
    let t = sign_with(
        Algorithm::HS512,
        KEY,
        json!({"aud": "https://A.Service.SignalR.net:443/client/?hub=Chat", "exp": now() + 60}),
    );
    assert_eq!(read(&t).unwrap().host, "a.service.signalr.net");
    assert!(check(&t, KEY, "chat").is_ok());
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused_beyond_the_skew() {
    let t = now();
    let token = |exp: u64, nbf: u64| {
        sign_with(
            Algorithm::HS256,
            KEY,
            json!({"aud": AUD, "exp": exp, "nbf": nbf}),
        )
    };
    assert_eq!(
        check(&token(t - 120, t - 600), KEY, "chat"),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check(&token(t + 600, t + 120), KEY, "chat"),
        Err(TokenError::NotYetValid)
    );
    // Within the skew either way: a clock a few seconds off does not refuse a fresh token.
    assert!(check(&token(t - 10, t - 600), KEY, "chat").is_ok());
    assert!(check(&token(t + 600, t + 10), KEY, "chat").is_ok());
    // Without `exp` a token never expires: refused.
    let no_exp = sign_with(Algorithm::HS256, KEY, json!({"aud": AUD}));
    assert!(check(&no_exp, KEY, "chat").is_err());
    let text_exp = sign_with(Algorithm::HS256, KEY, json!({"aud": AUD, "exp": "never"}));
    assert!(check(&text_exp, KEY, "chat").is_err());
}

#[test]
fn the_wrong_key_is_refused_and_the_right_one_among_several_is_found() {
    let t = sdk_token(KEY, AUD);
    assert_eq!(check(&t, "another-key", "chat"), Err(TokenError::Signature));
    let u = read(&t).unwrap();
    let several = [TokenKey::new("k1"), TokenKey::new(KEY), TokenKey::new("k3")];
    assert!(u.verify(&several, SKEW).is_ok());
    assert_eq!(u.verify(&[], SKEW), Err(TokenError::Signature));
    // An expired token signed with another key says so by its signature, not its expiry.
    let old = sign_with(Algorithm::HS256, "other", json!({"aud": AUD, "exp": 1}));
    assert_eq!(check(&old, KEY, "chat"), Err(TokenError::Signature));
}

#[test]
fn other_algorithms_and_alg_none_are_refused() {
    let claims = json!({"aud": AUD, "exp": now() + 60});
    let hs384 = sign_with(Algorithm::HS384, KEY, claims.clone());
    assert_eq!(read(&hs384).unwrap_err(), TokenError::Algorithm);
    let payload = claims.to_string();
    let rs256 = unsigned(r#"{"alg":"RS256","typ":"JWT"}"#, &payload);
    assert_eq!(read(&rs256).unwrap_err(), TokenError::Algorithm);
    for none in ["none", "None", "NONE"] {
        let t = unsigned(&format!(r#"{{"alg":"{none}","typ":"JWT"}}"#), &payload);
        assert!(read(&t).is_err(), "{none}");
        let empty_sig = format!("{}.", t.rsplit_once('.').unwrap().0);
        assert!(read(&empty_sig).is_err(), "{none} without signature");
    }
    // An HS256 header over a forged signature: read, then refused by the key.
    let forged = unsigned(r#"{"alg":"HS256","typ":"JWT"}"#, &payload);
    assert_eq!(check(&forged, KEY, "chat"), Err(TokenError::Signature));
}

#[test]
fn the_audience_names_its_host_and_hub() {
    let other_host = sdk_token(KEY, "https://b.service.signalr.net/client/?hub=chat");
    assert_eq!(read(&other_host).unwrap().host, "b.service.signalr.net");
    let t = sdk_token(KEY, AUD);
    assert_eq!(check(&t, KEY, "admin"), Err(TokenError::Hub));
    assert_eq!(read(&t).unwrap().check_hub(None), Err(TokenError::Hub));
    // Hub names percent-encoded in the audience, and an ApplicationName prefix.
    let enc = sdk_token(KEY, "https://a.service.signalr.net/client/?hub=my%5Fhub");
    assert!(check(&enc, KEY, "my_hub").is_ok());
    let arr = sign_with(
        Algorithm::HS256,
        KEY,
        json!({"aud": [AUD, "https://b.example/client/?hub=x"], "exp": now() + 60}),
    );
    assert_eq!(read(&arr).unwrap().host, "a.service.signalr.net");
    assert!(check(&arr, KEY, "chat").is_ok());
}

#[test]
fn audiences_that_are_not_client_audiences_are_refused() {
    for aud in [
        json!("https://a.service.signalr.net/server/?hub=chat"),
        json!("https://a.service.signalr.net/api/v1/hubs/chat"),
        json!("https://a.service.signalr.net/client/?hub="),
        json!("https://a.service.signalr.net/client/"),
        json!("https://a.service.signalr.net/client/chat?hub=chat"),
        json!("a.service.signalr.net/client/?hub=chat"),
        json!("https:///client/?hub=chat"),
        json!([]),
        json!(42),
    ] {
        let t = sign_with(
            Algorithm::HS256,
            KEY,
            json!({"aud": aud, "exp": now() + 60}),
        );
        assert!(read(&t).is_err(), "{aud}");
    }
    let no_aud = sign_with(Algorithm::HS256, KEY, json!({"exp": now() + 60}));
    assert_eq!(read(&no_aud).unwrap_err(), TokenError::Audience);
}

#[test]
fn garbage_is_malformed() {
    let long = format!("{}.{}.sig", "h".repeat(MAX_TOKEN_LEN), "p");
    let dup = unsigned(
        r#"{"alg":"HS256"}"#,
        &format!(r#"{{"aud":"{AUD}","aud":"https://b.example/client/?hub=chat","exp":1}}"#),
    );
    for t in [
        "",
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "a..c",
        "a.b.",
        "!!!.!!!.!!!",
        &unsigned("not json", "{}"),
        &unsigned(r#"{"alg":"HS256"}"#, "not json"),
        &long,
        &dup,
    ] {
        let got = read(t).map(|u| u.verify(&keys(KEY), SKEW));
        assert!(matches!(got, Err(_) | Ok(Err(_))), "{t}");
    }
    assert_eq!(read(&long).unwrap_err(), TokenError::Malformed);
    assert_eq!(read(&dup).unwrap_err(), TokenError::Malformed);
}

#[test]
fn keys_are_never_printed() {
    let k = TokenKey::new("very-secret-key");
    assert!(!format!("{k:?}").contains("secret"));
}
