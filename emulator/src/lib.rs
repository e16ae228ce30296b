//! asrs-emulator: a local emulator of the Azure SignalR Service client side and of app servers,
//! for the edge's tests, benches and demo. It shares no code with the edge.

pub mod app;
pub mod hub;
pub mod instance;
pub mod request;
pub mod serve;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use app::{AppSettings, Target};
use instance::{Instance, InstanceSettings};

/// Emulator configuration (YAML for the `asrs-emulator` binary).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Emulated SignalR instances.
    #[serde(default)]
    pub instances: Vec<InstanceConfig>,
    /// Emulated app servers.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// One emulated instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Name in `X-Emulator-Instance` (defaults to the host).
    pub name: Option<String>,
    /// The host name it answers to.
    pub host: String,
    /// Address to listen on (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// AccessKey of its tokens.
    pub access_key: String,
    /// Serve TLS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// Check the token audience (default true).
    #[serde(default = "yes")]
    pub check_audience: bool,
    /// Negotiate-to-connect window.
    #[serde(default = "five_seconds", with = "humantime_serde")]
    pub connect_window: Duration,
    /// Largest hub message accepted, in bytes (ASP.NET Core's default, 32 KiB).
    #[serde(default = "max_message_size")]
    pub max_message_size: usize,
}

/// PEM certificate chain and key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// One emulated app server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Public URL of the edge.
    pub client_endpoint: String,
    /// Names (or hosts) of the instances it signs tokens for, in turn (default: all).
    #[serde(default)]
    pub instances: Vec<String>,
    /// Leave out `asrs_request_id`.
    #[serde(default)]
    pub omit_request_id: bool,
    /// Sign tokens for this audience host instead of the picked instance's.
    pub audience_host: Option<String>,
    /// Directories of static files (the demo page), searched in order.
    #[serde(default)]
    pub static_dirs: Vec<PathBuf>,
}

fn yes() -> bool {
    true
}

fn max_message_size() -> usize {
    instance::DEFAULT_MAX_MESSAGE_SIZE
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

/// A running instance.
pub struct RunningInstance {
    /// Its state (health switch, connection list).
    pub state: Arc<Instance>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// A running emulator; dropping it stops every listener.
pub struct Emulator {
    /// Instances in config order.
    pub instances: Vec<RunningInstance>,
    /// App servers' addresses in config order.
    pub apps: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Emulator {
    /// Binds every listener and starts serving on the current tokio runtime.
    pub async fn start(config: &EmulatorConfig) -> Result<Emulator, String> {
        let mut em = Emulator {
            instances: Vec::new(),
            apps: Vec::new(),
            tasks: Vec::new(),
        };
        for ic in &config.instances {
            let tls = match &ic.tls {
                Some(t) => Some(serve::tls_acceptor(&t.cert, &t.key)?),
                None => None,
            };
            let state = Instance::new(InstanceSettings {
                name: ic.name.clone().unwrap_or_else(|| ic.host.clone()),
                host: ic.host.to_ascii_lowercase(),
                access_key: ic.access_key.clone(),
                check_audience: ic.check_audience,
                connect_window: ic.connect_window,
                max_message_size: ic.max_message_size,
            });
            let listener = TcpListener::bind(ic.listen)
                .await
                .map_err(|e| format!("bind {}: {e}", ic.listen))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            em.tasks.push(tokio::spawn(serve::serve(
                listener,
                tls,
                instance::router(state.clone()),
            )));
            em.instances.push(RunningInstance { state, addr });
        }
        for ac in &config.apps {
            let mut targets = Vec::new();
            for (ic, running) in config.instances.iter().zip(&em.instances) {
                let name = ic.name.clone().unwrap_or_else(|| ic.host.clone());
                if ac.instances.is_empty()
                    || ac.instances.iter().any(|n| *n == name || *n == ic.host)
                {
                    let host = ac.audience_host.clone().unwrap_or_else(|| ic.host.clone());
                    targets.push(Target {
                        host,
                        access_key: ic.access_key.clone(),
                        instance: Some(running.state.clone()),
                    });
                }
            }
            if targets.is_empty() {
                return Err(format!(
                    "app on {}: no instance matches {:?}",
                    ac.listen, ac.instances
                ));
            }
            let router = app::router(AppSettings {
                client_endpoint: ac.client_endpoint.clone(),
                targets,
                omit_request_id: ac.omit_request_id,
                static_dirs: ac.static_dirs.clone(),
            });
            let listener = TcpListener::bind(ac.listen)
                .await
                .map_err(|e| format!("bind {}: {e}", ac.listen))?;
            em.apps
                .push(listener.local_addr().map_err(|e| e.to_string())?);
            em.tasks
                .push(tokio::spawn(serve::serve(listener, None, router)));
        }
        Ok(em)
    }
}
