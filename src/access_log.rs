//! The access log line, with secrets redacted.

use std::borrow::Cow;

use crate::affinity::ACCESS_TOKEN_PARAM;

/// The log target of access lines (`RUST_LOG=access=info`).
pub const TARGET: &str = "access";

/// The query string with the `access_token` value replaced by `<redacted>`.
pub fn redact_query(query: &str) -> Cow<'_, str> {
    if !query
        .split('&')
        .any(|p| p.starts_with(ACCESS_TOKEN_PARAM) && is_token_pair(p))
    {
        return Cow::Borrowed(query);
    }
    let parts: Vec<&str> = query
        .split('&')
        .map(|p| {
            if is_token_pair(p) {
                "access_token=<redacted>"
            } else {
                p
            }
        })
        .collect();
    Cow::Owned(parts.join("&"))
}

fn is_token_pair(pair: &str) -> bool {
    pair.split_once('=').map_or(pair, |(k, _)| k) == ACCESS_TOKEN_PARAM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(redact_query("hub=a&id=b"), "hub=a&id=b");
        assert_eq!(
            redact_query("hub=a&access_token=eyJ.secret.sig&id=b"),
            "hub=a&access_token=<redacted>&id=b"
        );
        assert_eq!(redact_query("access_token"), "access_token=<redacted>");
        assert_eq!(redact_query("access_tokens=x"), "access_tokens=x");
    }
}
