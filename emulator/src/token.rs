//! Access tokens as ASRS issues and checks them: HS256/HS512 JWTs keyed by the AccessKey string.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims the emulator reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// `https://<instance-host>/client/?hub=<hub>`.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default)]
    pub iat: u64,
    /// Not before.
    #[serde(default)]
    pub nbf: u64,
    /// The user id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameid: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The audience ASRS expects for `host` and `hub`.
pub fn audience(host: &str, hub: &str) -> String {
    format!("https://{host}/client/?hub={}", hub.to_ascii_lowercase())
}

/// Signs a client token (HS256) for `aud`.
pub fn sign(key: &str, aud: &str, user: Option<&str>, lifetime: Duration) -> String {
    let t = now();
    let claims = Claims {
        aud: aud.to_string(),
        exp: t + lifetime.as_secs(),
        iat: t,
        nbf: t,
        nameid: user.map(str::to_string),
    };
    // Signing with an HMAC key cannot fail for a well-formed header and serializable claims.
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap_or_default()
}

/// Verifies signature (HS256 or HS512), `exp`, `nbf`, and `aud` when `expected_aud` is given.
pub fn verify(token: &str, key: &str, expected_aud: Option<&str>) -> Result<Claims, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if !matches!(header.alg, Algorithm::HS256 | Algorithm::HS512) {
        return Err(format!("algorithm {:?} is not accepted", header.alg));
    }
    let mut v = Validation::new(header.alg);
    v.validate_nbf = true;
    v.leeway = 5;
    match expected_aud {
        Some(aud) => v.set_audience(&[aud]),
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&["exp", "aud"]);
    decode::<Claims>(token, &DecodingKey::from_secret(key.as_bytes()), &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let aud = audience("a.example", "Chat");
        assert_eq!(aud, "https://a.example/client/?hub=chat");
        let t = sign("k1", &aud, Some("u1"), Duration::from_secs(60));
        let c = verify(&t, "k1", Some(&aud)).unwrap();
        assert_eq!(c.nameid.as_deref(), Some("u1"));
        assert!(verify(&t, "k2", Some(&aud)).is_err(), "wrong key");
        assert!(
            verify(&t, "k1", Some("https://b.example/client/?hub=chat")).is_err(),
            "wrong aud"
        );
        assert!(verify(&t, "k1", None).is_ok(), "aud check off");
        assert!(verify("garbage", "k1", None).is_err());
    }

    fn encode_with(alg: Algorithm, exp: u64) -> String {
        let claims = Claims {
            aud: audience("a.example", "chat"),
            exp,
            iat: 0,
            nbf: 0,
            nameid: None,
        };
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(b"k1")).unwrap()
    }

    #[test]
    fn hs512_is_accepted_and_expiry_is_enforced() {
        let aud = audience("a.example", "chat");
        assert!(verify(&encode_with(Algorithm::HS512, now() + 60), "k1", Some(&aud)).is_ok());
        let expired = encode_with(Algorithm::HS256, now() - 60);
        assert!(verify(&expired, "k1", Some(&aud))
            .unwrap_err()
            .contains("Expired"));
        assert!(verify(&encode_with(Algorithm::HS384, now() + 60), "k1", None).is_err());
    }
}
