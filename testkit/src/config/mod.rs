//! A typed builder for the edge's YAML file, so tests say what they configure instead of
//! formatting YAML. It writes the documented file format (README, `conf/signalr-edge.yaml`) and
//! knows nothing of the edge's own config types: what the parser accepts or refuses is the
//! edge's business, and tests of parse errors keep their YAML as literal text.
//!
//! Unset options are left out of the file, so the edge's defaults apply.

mod limits;
mod pool;

use std::path::{Path, PathBuf};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

pub use limits::{ClientLimits, Limits};
pub use pool::{Endpoint, HealthCheck, Pinning, Pool, Timeouts, Tokens};

/// The whole file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EdgeConfig {
    /// Pingora's settings.
    #[serde(skip_serializing_if = "Server::is_empty")]
    pub server: Server,
    /// Where the edge accepts clients.
    pub listeners: Vec<Listener>,
    /// The admin listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    /// Peers whose `X-Forwarded-For` is believed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// Forwarding headers the edge sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<Forwarding>,
    /// Pools in the order they were added (a map in the file).
    #[serde(serialize_with = "pools_by_name")]
    pub pools: Vec<Pool>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Client, connection and request limits.
    #[serde(skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// How endpoint host names are resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<Resolver>,
    /// The access log's format (`text` or `json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSection>,
}

/// The `log` section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
}

/// The `resolver` section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resolver {
    /// Time between two resolutions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// DNS servers, `ip:port`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Longest wait for one answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The `server` section; `None` leaves the edge's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Server {
    /// Worker threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// PID file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    /// Socket that hands the listeners to a new process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_sock: Option<PathBuf>,
    /// Log file of a daemon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_log: Option<PathBuf>,
    /// The drain deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u64>,
    /// How long the final shutdown may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graceful_shutdown_timeout_seconds: Option<u64>,
}

impl Server {
    fn is_empty(&self) -> bool {
        *self == Server::default()
    }
}

/// One listening address.
#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    /// `ip:port`.
    pub address: String,
    /// Certificate and key of a TLS listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Read buffer per connection, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_buffer: Option<usize>,
    /// Connection cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

/// PEM files of a TLS listener.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerTls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl Listener {
    /// A plain listener on `address` (`ip:port`).
    pub fn new(address: impl ToString) -> Listener {
        Listener {
            address: address.to_string(),
            tls: None,
            read_buffer: None,
            max_connections: None,
        }
    }

    /// Serves TLS with these PEM files.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Listener {
        self.tls = Some(ListenerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        });
        self
    }
}

/// The `forwarding` section: headers set from the client connection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Forwarding {
    /// Set `X-Real-IP`.
    pub x_real_ip: bool,
    /// Add a `Forwarded` element.
    pub forwarded: bool,
}

/// The `admin` section.
#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    /// `ip:port`.
    pub listen: String,
    /// File holding the bearer token the listener requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding that token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

/// One route.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Host to match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix.
    pub path: String,
    /// Removed from the path before forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// Methods to match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// The pool's name.
    pub pool: String,
    /// Largest request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Requests served at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
}

impl Route {
    /// Requests under `path` go to `pool`.
    pub fn new(path: &str, pool: &str) -> Route {
        Route {
            host: None,
            path: path.to_string(),
            strip_prefix: None,
            methods: None,
            pool: pool.to_string(),
            max_body_bytes: None,
            max_in_flight: None,
        }
    }

    /// Forwards the path without `prefix` (`/signalr/client/` -> `/client/`).
    pub fn strip_prefix(mut self, prefix: &str) -> Route {
        self.strip_prefix = Some(prefix.to_string());
        self
    }

    /// Caps the request body at `bytes`.
    pub fn max_body_bytes(mut self, bytes: u64) -> Route {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// Caps the requests served at once.
    pub fn max_in_flight(mut self, n: usize) -> Route {
        self.max_in_flight = Some(n);
        self
    }

    /// Only for this `Host`.
    pub fn host(mut self, host: &str) -> Route {
        self.host = Some(host.to_string());
        self
    }

    /// Only for these methods.
    pub fn methods(mut self, methods: &[&str]) -> Route {
        self.methods = Some(methods.iter().map(|m| m.to_string()).collect());
        self
    }
}

impl EdgeConfig {
    /// An empty file: no listener, pool or route yet.
    pub fn new() -> EdgeConfig {
        EdgeConfig::default()
    }

    /// Adds a listener.
    pub fn listener(mut self, listener: Listener) -> EdgeConfig {
        self.listeners.push(listener);
        self
    }

    /// Turns the admin listener on at `listen` (`ip:port`), keeping a token set before.
    pub fn admin(mut self, listen: impl ToString) -> EdgeConfig {
        let (token_file, token_env) = self
            .admin
            .take()
            .map_or((None, None), |a| (a.token_file, a.token_env));
        self.admin = Some(Admin {
            listen: listen.to_string(),
            token_file,
            token_env,
        });
        self
    }

    /// Makes the admin listener (turned on first with `admin`) require the token in `file`.
    pub fn admin_token_file(mut self, file: &Path) -> EdgeConfig {
        let admin = self
            .admin
            .as_mut()
            .expect("admin() before admin_token_file()");
        admin.token_file = Some(file.to_path_buf());
        self
    }

    /// Believes `X-Forwarded-For` from `net` (an address or CIDR block).
    pub fn trusted_proxy(mut self, net: &str) -> EdgeConfig {
        self.trusted_proxies.push(net.to_string());
        self
    }

    /// Sets `X-Real-IP` and adds a `Forwarded` element, as asked.
    pub fn forwarding(mut self, x_real_ip: bool, forwarded: bool) -> EdgeConfig {
        self.forwarding = Some(Forwarding {
            x_real_ip,
            forwarded,
        });
        self
    }

    /// Adds a pool.
    pub fn pool(mut self, pool: Pool) -> EdgeConfig {
        self.pools.push(pool);
        self
    }

    /// Adds a route (the order is the file's: error paths say `routes[i]`).
    pub fn route(mut self, route: Route) -> EdgeConfig {
        self.routes.push(route);
        self
    }

    /// Sets the limits (`Limits::default()` leaves every default).
    pub fn limits(mut self, limits: Limits) -> EdgeConfig {
        self.limits = limits;
        self
    }

    /// Resolves endpoint host names at `nameserver` (`ip:port`) every `refresh`, waiting at
    /// most `timeout` for an answer.
    pub fn resolver(
        mut self,
        nameserver: impl ToString,
        refresh: std::time::Duration,
        timeout: std::time::Duration,
    ) -> EdgeConfig {
        let text = |d| humantime::format_duration(d).to_string();
        self.resolver = Some(Resolver {
            refresh: Some(text(refresh)),
            nameservers: vec![nameserver.to_string()],
            timeout: Some(text(timeout)),
        });
        self
    }

    /// Writes access lines as `format` (`text` or `json`).
    pub fn log_format(mut self, format: &str) -> EdgeConfig {
        self.log = Some(LogSection {
            format: format.to_string(),
        });
        self
    }

    /// Sets the worker threads.
    pub fn threads(mut self, threads: usize) -> EdgeConfig {
        self.server.threads = Some(threads);
        self
    }

    /// Sets the daemon's log file.
    pub fn error_log(mut self, path: &Path) -> EdgeConfig {
        self.server.error_log = Some(path.to_path_buf());
        self
    }

    /// The pool named `name`, to change it in place.
    pub fn pool_mut(&mut self, name: &str) -> &mut Pool {
        self.pools
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pool {name:?}"))
    }

    /// The file's text.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("the config serializes")
    }

    /// Writes the file.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_yaml()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Pools are a map by name in the file; a list here keeps the order they were added in.
fn pools_by_name<S: Serializer>(pools: &[Pool], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(pools.len()))?;
    for p in pools {
        map.serialize_entry(&p.name, p)?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writes_the_documented_format() {
        let yaml = EdgeConfig::new()
            .listener(Listener::new("127.0.0.1:8080"))
            .threads(2)
            .trusted_proxy("10.0.0.0/8")
            .pool(
                Pool::signalr("signalr")
                    .endpoint(
                        Endpoint::connection_string(
                            "Endpoint=http://a.example;AccessKey=k;Version=1.0;",
                        )
                        .address("127.0.0.1:1"),
                    )
                    .health_check(HealthCheck::new().interval(Duration::from_millis(100))),
            )
            .pool(Pool::app("app").endpoint(Endpoint::url("http://127.0.0.1:2")))
            .route(Route::new("/client/", "signalr"))
            .route(Route::new("/", "app"))
            .route(Route::new("/signalr/client/", "signalr").strip_prefix("/signalr"))
            .to_yaml();
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["server"]["threads"], 2);
        assert_eq!(v["listeners"][0]["address"], "127.0.0.1:8080");
        assert_eq!(v["trusted_proxies"][0], "10.0.0.0/8");
        let pool = &v["pools"]["signalr"];
        assert_eq!(pool["kind"], "signalr");
        assert_eq!(pool["endpoints"][0]["address"], "127.0.0.1:1");
        assert_eq!(pool["health_check"]["interval"], "100ms");
        assert!(pool["health_check"]["timeout"].is_null(), "unset: default");
        assert_eq!(
            v["pools"]["app"]["endpoints"][0]["url"],
            "http://127.0.0.1:2"
        );
        assert_eq!(v["routes"][1]["pool"], "app");
        assert!(v["routes"][1]["strip_prefix"].is_null(), "unset: none");
        assert_eq!(v["routes"][2]["strip_prefix"], "/signalr");
        assert!(v.get("admin").is_none());
        assert!(yaml.find("signalr:").unwrap() < yaml.find("app:").unwrap());
    }
}
