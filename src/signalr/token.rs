//! Access-token verification as ASRS does it: an HS256 or HS512 JWT signed with the UTF-8 bytes
//! of the instance's AccessKey, with `exp`, an optional `nbf`, and an `aud` written by the SDK as
//! `https://<instance host>/client/?hub=<hub>`.
//!
//! Two steps, so that the caller can pick the key by the audience: [`read`] takes the algorithm
//! and the audience from the token without trusting them, [`Unverified::verify`] then checks the
//! signature over the very bytes they came from, and the times.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::keys::{decode, query_param, url_host};

/// Tokens longer than this are refused unread: SDK tokens are a few hundred bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// An instance's AccessKey, ready to check signatures.
#[derive(Clone)]
pub struct TokenKey(DecodingKey);

impl TokenKey {
    /// The key of tokens signed with `access_key` (its UTF-8 bytes are the HMAC secret).
    pub fn new(access_key: &str) -> TokenKey {
        TokenKey(DecodingKey::from_secret(access_key.as_bytes()))
    }
}

// A secret: never printed.
impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT with a readable header and payload and a numeric `exp` (or longer than
    /// [`MAX_TOKEN_LEN`]).
    Malformed,
    /// Signed with another algorithm than HS256 or HS512 (`none` included).
    Algorithm,
    /// No `aud`, or one that is not `scheme://host/client/?hub=<hub>`.
    Audience,
    /// The audience names another hub than the request's `hub` parameter.
    Hub,
    /// The audience names a host the pool does not serve.
    UnknownAudience,
    /// The signature does not match any key of the audience.
    Signature,
    /// `exp` has passed (beyond the clock skew).
    Expired,
    /// `nbf` is still ahead (beyond the clock skew).
    NotYetValid,
}

impl TokenError {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Algorithm => "algorithm",
            TokenError::Audience => "audience",
            TokenError::Hub => "hub",
            TokenError::UnknownAudience => "unknown_audience",
            TokenError::Signature => "signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token whose algorithm is acceptable and whose audience is readable, not yet verified.
#[derive(Debug)]
pub struct Unverified<'a> {
    token: &'a str,
    alg: Algorithm,
    /// The audience's host, lower-cased: whose key must have signed the token.
    pub host: String,
    /// The audience's hub, percent-decoded and lower-cased.
    pub hub: String,
}

/// What a verified token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The hub it is valid for (lower-cased).
    pub hub: String,
    /// When it expires (Unix seconds, before any clock skew).
    pub exp: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Payload {
    aud: Option<Audience>,
}

#[derive(Deserialize)]
struct Expiry {
    exp: u64,
}

/// Reads the algorithm and the audience of `token`, trusting neither yet.
pub fn read(token: &str) -> Result<Unverified<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if sig.is_empty() {
        return Err(TokenError::Malformed);
    }
    // `alg: none` and names jsonwebtoken does not know fail here, as unreadable headers.
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !matches!(header.alg, Algorithm::HS256 | Algorithm::HS512) {
        return Err(TokenError::Algorithm);
    }
    let json = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    let claims: Payload = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    // The first audience, as the instance-choice rule reads it.
    let aud = match claims.aud.ok_or(TokenError::Audience)? {
        Audience::One(a) => a,
        Audience::Many(v) => v.into_iter().next().ok_or(TokenError::Audience)?,
    };
    let (host, hub) = client_audience(&aud).ok_or(TokenError::Audience)?;
    Ok(Unverified {
        token,
        alg: header.alg,
        host,
        hub,
    })
}

/// Host and hub of a client audience `scheme://host[:port]/client/?hub=<hub>`, lower-cased.
fn client_audience(aud: &str) -> Option<(String, String)> {
    let host = url_host(aud)?;
    let rest = aud.split_once("://")?.1;
    let path_at = rest.find(['/', '?', '#'])?;
    let (path, query) = rest[path_at..].split_once('?')?;
    if !matches!(path, "/client/" | "/client") {
        return None;
    }
    let hub = query_param(query.split('#').next()?, "hub")?;
    let hub = String::from_utf8(decode(hub).into_owned()).ok()?;
    (!hub.is_empty()).then(|| (host.to_ascii_lowercase(), hub.to_ascii_lowercase()))
}

impl Unverified<'_> {
    /// Checks that the audience names `hub`, the request's `hub` parameter (percent-decoded);
    /// SignalR hub names are case-insensitive.
    pub fn check_hub(&self, hub: Option<&str>) -> Result<(), TokenError> {
        match hub {
            Some(h) if h.eq_ignore_ascii_case(&self.hub) => Ok(()),
            _ => Err(TokenError::Hub),
        }
    }

    /// Verifies the signature with each of `keys` in turn (the audience's instance, or the
    /// pool's keys for a shared audience), then `exp` and `nbf` allowing `skew` either way.
    pub fn verify(&self, keys: &[TokenKey], skew: Duration) -> Result<Verified, TokenError> {
        let mut v = Validation::new(self.alg);
        v.leeway = skew.as_secs();
        v.validate_nbf = true;
        // The audience was read from the payload this signature covers, and checked by the caller.
        v.validate_aud = false;
        for key in keys {
            match jsonwebtoken::decode::<Expiry>(self.token, &key.0, &v) {
                Ok(data) => {
                    return Ok(Verified {
                        hub: self.hub.clone(),
                        exp: data.claims.exp,
                    })
                }
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                    ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                    _ => return Err(TokenError::Malformed),
                },
            }
        }
        Err(TokenError::Signature)
    }
}

#[cfg(test)]
mod tests;
