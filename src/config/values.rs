//! Typed values read at the serde boundary: each string of the file is parsed once, here, and a
//! bad one fails deserialization at its own key path.

use std::fmt;
use std::net::SocketAddr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Reads a string and parses it with `parse`, whose error message becomes the serde error.
pub(super) fn parse_string<'de, D, T>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    parse(&s).map_err(D::Error::custom)
}

/// An `ip:port` socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address(pub SocketAddr);

impl Address {
    /// Parses `ip:port`.
    pub fn parse(s: &str) -> Result<Address, String> {
        s.parse()
            .map(Address)
            .map_err(|_| format!("{s:?} is not an ip:port address"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, Address::parse)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// An HTTP method, written in any case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Method(pub http::Method);

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, |m| {
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map(Method)
                .map_err(|_| format!("invalid method {m:?}"))
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl PartialOrd for Method {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Method {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_str().cmp(other.0.as_str())
    }
}

/// A path (with optional query) that starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AbsPath(pub String);

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, |p| {
            if p.starts_with('/') {
                Ok(AbsPath(p.to_string()))
            } else {
                Err(format!("{p:?} must start with '/'"))
            }
        })
    }
}

/// A path prefix a route removes before forwarding (`strip_prefix`): starts with `/`, is not
/// `/`, has no query; one trailing `/` is dropped, so `/signalr/` strips like `/signalr`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StripPrefix(pub String);

impl StripPrefix {
    /// Parses a prefix as the file gives it.
    pub fn parse(p: &str) -> Result<StripPrefix, String> {
        if !p.starts_with('/') {
            return Err(format!("{p:?} must start with '/'"));
        }
        if p.contains('?') {
            return Err(format!("{p:?} is a path prefix: no query"));
        }
        // Kept without its trailing slash: what is left after it keeps its leading `/`.
        let trimmed = p.strip_suffix('/').unwrap_or(p);
        if trimmed.is_empty() || trimmed == "/" {
            return Err(format!(
                "{p:?} strips nothing: give the prefix to remove, e.g. /signalr"
            ));
        }
        Ok(StripPrefix(trimmed.to_string()))
    }
}

impl<'de> Deserialize<'de> for StripPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, StripPrefix::parse)
    }
}

/// The name of an environment variable: `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvName(pub String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, |n| {
            let mut chars = n.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(EnvName(n.to_string()))
            } else {
                Err(format!("{n:?} is not an environment variable name"))
            }
        })
    }
}

/// A host name to match, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostName(pub String);

impl<'de> Deserialize<'de> for HostName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, |h| {
            if h.is_empty() || h.contains('/') {
                Err(format!("invalid host {h:?}"))
            } else {
                Ok(HostName(h.to_ascii_lowercase()))
            }
        })
    }
}

/// An upstream base URL, `http(s)://host[:port]`, with no path or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    /// `https`.
    pub tls: bool,
    /// Lower-cased host name.
    pub host: String,
    /// The port, when the URL gives one.
    pub port: Option<u16>,
}

impl EndpointUrl {
    /// Parses `http(s)://host[:port][/]`.
    pub fn parse(url: &str) -> Result<EndpointUrl, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|err| format!("invalid URL {url:?}: {err}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("URL {url:?} must start with http:// or https://")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("URL {url:?} has no host"))?
            .to_ascii_lowercase();
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!("URL {url:?} must not have a path or query"));
        }
        Ok(EndpointUrl {
            tls,
            host,
            port: uri.port_u16(),
        })
    }

    /// The scheme's default port.
    pub fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }
}

impl<'de> Deserialize<'de> for EndpointUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_string(d, EndpointUrl::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefixes() {
        let p = |s: &str| StripPrefix::parse(s).map(|p| p.0);
        assert_eq!(p("/signalr").as_deref(), Ok("/signalr"));
        assert_eq!(
            p("/signalr/").as_deref(),
            Ok("/signalr"),
            "one trailing slash dropped"
        );
        assert_eq!(p("/a/b").as_deref(), Ok("/a/b"));
        for bad in ["/", "", "signalr", "/signalr?x", "//"] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        let u = EndpointUrl::parse("HTTPS://A.Example:8443/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "a.example", Some(8443))
        );
        assert_eq!(EndpointUrl::parse("http://b").unwrap().default_port(), 80);
        for bad in ["ftp://b", "https://b/x", "https://b?q", "b", "http://"] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_sort_and_read_any_case() {
        let mut ms: Vec<Method> = serde_yaml::from_str("[post, GET, Delete]").unwrap();
        ms.sort();
        let names: Vec<String> = ms.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["DELETE", "GET", "POST"]);
        assert!(serde_yaml::from_str::<Method>("\"P O\"").is_err());
    }
}
