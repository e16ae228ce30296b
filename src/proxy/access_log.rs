//! The access log line, with secrets redacted.

use std::borrow::Cow;

use crate::signalr::keys::ACCESS_TOKEN_PARAM;

/// The log target of access lines (`RUST_LOG=access=info`).
pub const TARGET: &str = "access";

/// Query parameters whose values are credentials: the access token (SSE and long polling send
/// it in the query) and the connection token, which lets its holder act as that connection.
const SECRET_PARAMS: [&str; 2] = [ACCESS_TOKEN_PARAM, "id"];

/// The query string with the values of credential parameters replaced by `<redacted>`.
pub fn redact_query(query: &str) -> Cow<'_, str> {
    if !query.split('&').any(|p| secret_name(p).is_some()) {
        return Cow::Borrowed(query);
    }
    let parts: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|p| match secret_name(p) {
            Some(name) => Cow::Owned(format!("{name}=<redacted>")),
            None => Cow::Borrowed(p),
        })
        .collect();
    Cow::Owned(parts.join("&"))
}

/// The access line of a request whose header the edge refused before reading it whole (too
/// large, too slow, malformed): no method, path or route is known.
pub fn header_refused(client: Option<std::net::IpAddr>, refusal: super::refusal::Refusal) {
    log::info!(
        target: TARGET,
        "{} \"-\" {} route=- pool=- endpoint=- rule=- ms=- refused={}",
        client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        refusal.status(),
        refusal.as_str()
    );
}

/// The parameter's name, if it is one of `SECRET_PARAMS`.
fn secret_name(pair: &str) -> Option<&'static str> {
    let name = pair.split_once('=').map_or(pair, |(k, _)| k);
    SECRET_PARAMS.into_iter().find(|s| *s == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(redact_query("hub=a&ids=b"), "hub=a&ids=b");
        assert_eq!(redact_query("hub=a&id=b"), "hub=a&id=<redacted>");
        assert_eq!(
            redact_query("hub=a&access_token=eyJ.secret.sig&id=b"),
            "hub=a&access_token=<redacted>&id=<redacted>"
        );
        assert_eq!(redact_query("access_token"), "access_token=<redacted>");
        assert_eq!(redact_query("access_tokens=x"), "access_tokens=x");
    }
}
