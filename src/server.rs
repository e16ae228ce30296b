//! Builds and runs the Pingora server from a config file.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use log::info;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;

use crate::config::{Config, ServerSection};
use crate::proxy::EdgeProxy;
use crate::runtime::{Runtime, SharedRuntime};
use crate::upstream::checker::HealthChecker;

/// How the process was asked to run.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    /// Daemonize (`-d`).
    pub daemon: bool,
    /// Take the listeners over from a running old process (`-u`).
    pub upgrade: bool,
}

/// Pingora's `ServerConf` from our `server:` section.
pub fn server_conf(s: &ServerSection, daemon: bool) -> ServerConf {
    ServerConf {
        daemon,
        threads: s.threads,
        work_stealing: s.work_stealing,
        pid_file: s.pid_file.display().to_string(),
        upgrade_sock: s.upgrade_sock.display().to_string(),
        error_log: s.error_log.as_ref().map(|p| p.display().to_string()),
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        user: s.user.clone(),
        group: s.group.clone(),
        ..ServerConf::default()
    }
}

/// Builds the server (listeners, proxy, health checks) without running it.
pub fn build(config: &Config, runtime: Runtime, flags: &RunFlags) -> Result<Server, String> {
    let opt = Opt {
        upgrade: flags.upgrade,
        daemon: flags.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config.server, flags.daemon));
    server.bootstrap();
    let state: SharedRuntime = Arc::new(ArcSwap::from_pointee(runtime));
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        EdgeProxy::new(state.clone()),
        "signalr-edge",
    );
    for (i, l) in config.listeners.iter().enumerate() {
        let mut listener = ListenerConfig::tcp(l.address.as_str());
        if let Some(tls) = &l.tls {
            let (cert, key) = (
                tls.cert.display().to_string(),
                tls.key.display().to_string(),
            );
            let settings = TlsSettings::intermediate(&cert, &key)
                .map_err(|e| format!("listeners[{i}].tls: {e}"))?;
            listener = listener.tls(settings);
        }
        let read = l.read_buffer.or(l.tls.is_none().then_some(0));
        if let Some(read) = read {
            listener = listener.l4_buffer(L4BufferSettings::default().read(read));
        }
        proxy.add_listener(listener);
        info!(
            "listening on {}{}",
            l.address,
            if l.tls.is_some() { " (TLS)" } else { "" }
        );
    }
    server.add_service(proxy);
    server.add_service(background_service(
        "health checks",
        HealthChecker::new(state),
    ));
    Ok(server)
}

/// Loads `file` and runs the edge until it is told to stop.
pub fn run(file: &Path, flags: RunFlags) -> Result<(), String> {
    let (config, runtime) = Runtime::load(file, None).map_err(|e| e.to_string())?;
    let server = build(&config, runtime, &flags)?;
    server.run_forever()
}
