//! Azure SignalR connection strings: `Endpoint=https://x.service.signalr.net;AccessKey=...;Version=1.0;`.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::values::{parse_string, EndpointUrl};

/// The parts of a connection string that the edge uses.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The service endpoint URL (`Endpoint=`), without a trailing slash.
    pub endpoint: String,
    /// The same, parsed.
    pub url: EndpointUrl,
    /// `AccessKey=`: the HMAC key of the instance's tokens (absent with AAD auth).
    pub access_key: Option<String>,
    /// `Port=`: overrides the endpoint URL's port.
    pub port: Option<u16>,
    /// `ClientEndpoint=`: the public URL clients use (usually this edge). Informational.
    pub client_endpoint: Option<String>,
}

// The access key is a secret: never print it.
impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint)
            .field(
                "access_key",
                &self.access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("port", &self.port)
            .field("client_endpoint", &self.client_endpoint)
            .finish()
    }
}

impl std::str::FromStr for ConnectionString {
    type Err = String;

    /// Parses a connection string as the config file's `connection_string:` does.
    fn from_str(s: &str) -> Result<Self, String> {
        parse(s)
    }
}

impl<'de> Deserialize<'de> for ConnectionString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, parse)
    }
}

/// Keys the SDK accepts that the edge has no use for (AAD settings and the like).
const IGNORED_KEYS: &[&str] = &[
    "authtype",
    "clientid",
    "clientsecret",
    "tenantid",
    "clientcertpath",
    "serverendpoint",
];

/// Parses a connection string; errors say which part is wrong, never echoing the key.
pub fn parse(s: &str) -> Result<ConnectionString, String> {
    let mut endpoint = None;
    let mut access_key = None;
    let mut port = None;
    let mut client_endpoint = None;
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("connection string part without '=': {:?}", redact(part)))?;
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "endpoint" => endpoint = Some(value.trim_end_matches('/').to_string()),
            "accesskey" => access_key = Some(value.to_string()),
            "version" => {
                if value != "1.0" {
                    return Err(format!(
                        "unsupported connection string Version={value} (only 1.0)"
                    ));
                }
            }
            "port" => {
                let p: u16 = value
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("invalid Port={value} in connection string"))?;
                port = Some(p);
            }
            "clientendpoint" => client_endpoint = Some(value.to_string()),
            k if IGNORED_KEYS.contains(&k) => {}
            k => return Err(format!("unknown connection string key {k:?}")),
        }
    }
    let endpoint = endpoint.ok_or("connection string has no Endpoint=")?;
    let url = EndpointUrl::parse(&endpoint).map_err(|e| format!("Endpoint=: {e}"))?;
    if access_key.as_deref() == Some("") {
        return Err("empty AccessKey= in connection string".into());
    }
    Ok(ConnectionString {
        endpoint,
        url,
        access_key,
        port,
        client_endpoint,
    })
}

/// Hides the value of a `key=value` part, for error messages.
fn redact(part: &str) -> String {
    if part.len() > 12 {
        format!(
            "{}...",
            &part[..part.char_indices().nth(8).map_or(0, |(i, _)| i)]
        )
    } else {
        part.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_string() {
        let c = parse("Endpoint=https://a.service.signalr.net;AccessKey=abc=def==;Version=1.0;")
            .unwrap();
        assert_eq!(c.endpoint, "https://a.service.signalr.net");
        assert_eq!(c.access_key.as_deref(), Some("abc=def=="));
        assert_eq!(c.port, None);
    }

    #[test]
    fn port_and_client_endpoint_any_case() {
        let c = parse("endpoint=http://localhost/;accesskey=k;port=8080;ClientEndpoint=https://edge.example.com;version=1.0")
            .unwrap();
        assert_eq!(c.endpoint, "http://localhost");
        assert_eq!(c.port, Some(8080));
        assert_eq!(
            c.client_endpoint.as_deref(),
            Some("https://edge.example.com")
        );
    }

    #[test]
    fn aad_keys_are_ignored() {
        let c = parse("Endpoint=https://a.service.signalr.net;AuthType=aad;ClientId=x;Version=1.0")
            .unwrap();
        assert_eq!(c.access_key, None);
    }

    #[test]
    fn errors() {
        assert!(parse("AccessKey=x;Version=1.0")
            .unwrap_err()
            .contains("no Endpoint"));
        assert!(parse("Endpoint=a.b;Version=1.0")
            .unwrap_err()
            .contains("http"));
        assert!(parse("Endpoint=https://a;Version=2.0")
            .unwrap_err()
            .contains("Version"));
        assert!(parse("Endpoint=https://a;Port=99999")
            .unwrap_err()
            .contains("Port"));
        assert!(parse("Endpoint=https://a;Port=0")
            .unwrap_err()
            .contains("Port"));
        assert!(parse("Endpoint=https://a;Colour=red")
            .unwrap_err()
            .contains("colour"));
        assert!(parse("Endpoint=https://a;AccessKey=")
            .unwrap_err()
            .contains("AccessKey"));
        let e = parse("Endpoint=https://a;supersecretkeyvalue").unwrap_err();
        assert!(!e.contains("keyvalue"), "{e}");
    }
}
