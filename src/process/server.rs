//! Builds and runs the Pingora server from a config file.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use log::{info, warn};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;

use super::control::ControlService;
use super::dns::DnsRefresh;
use super::drain::TrackedApp;
use super::health_checks::HealthChecker;
use super::listener_tls::CertResolver;
use super::ops::Ops;
use super::signals::{self, EdgeSignals};
use super::Exit;
use crate::config::{Config, ServerSection};
use crate::proxy::connection::ConnectionLimits;
use crate::proxy::EdgeProxy;
use crate::reload::Reloader;
use crate::runtime::{Runtime, SharedRuntime};

/// Pingora's own grace period runs this much past our drain deadline: it is only a fallback,
/// the drain ends the process itself (at once when idle, else at the deadline).
const PINGORA_GRACE_MARGIN: u64 = 2;

/// How the process was asked to run.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    /// Daemonize (`-d`).
    pub daemon: bool,
    /// Take the listeners over from a running old process (`-u`).
    pub upgrade: bool,
    /// Reload when the configuration file changes (`--watch`).
    pub watch: bool,
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
        grace_period_seconds: Some(s.grace_period_seconds.saturating_add(PINGORA_GRACE_MARGIN)),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        user: s.user.clone(),
        group: s.group.clone(),
        // A daemon keeps the working directory, so relative paths still work on reload.
        working_directory: if daemon {
            std::env::current_dir().ok()
        } else {
            None
        },
        ..ServerConf::default()
    }
}

/// A built server, ready to run.
pub struct EdgeServer {
    server: Server,
    ops: Arc<Ops>,
}

impl EdgeServer {
    /// Runs until drained or stopped, then ends the process through its `Exit`.
    pub fn run(self) -> ! {
        let exit = self.ops.exit;
        self.server.run(RunArgs {
            shutdown_signal: Box::new(EdgeSignals::new(self.ops)),
        });
        exit(0)
    }
}

/// Builds the server (listeners, proxy, admin, health checks, DNS refresh) without running it. `file` is
/// the configuration file reloads read; `exit` ends the process when it is done.
pub fn build(
    config: &Config,
    runtime: Runtime,
    file: &Path,
    flags: &RunFlags,
    exit: Exit,
) -> Result<EdgeServer, String> {
    let process = &config.process;
    // Read now, right after the load, so a change while the server starts is not missed.
    let watch = flags.watch.then(|| super::watch::fingerprint(file));
    let opt = Opt {
        upgrade: flags.upgrade,
        daemon: flags.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&process.server, flags.daemon));
    // With -u this waits for the old process to send its listening sockets.
    server.bootstrap();
    let state: SharedRuntime = Arc::new(ArcSwap::from_pointee(runtime));
    let ops = Arc::new(Ops::new(
        Reloader::new(file, config.clone(), state.clone()),
        &process.server.upgrade_sock,
        std::time::Duration::from_secs(process.server.grace_period_seconds),
        flags.upgrade,
        exit,
    ));
    let proxy = pingora_proxy::http_proxy(
        &server.configuration,
        EdgeProxy::new(state.clone(), ops.drain.clone()),
    );
    let limits = ConnectionLimits::new(process.listeners.iter().map(|l| l.address.0).collect());
    let mut service = Service::new(
        "signalr-edge".to_string(),
        TrackedApp::new(proxy, ops.drain.clone(), limits, state.clone()),
    );
    for (i, l) in process.listeners.iter().enumerate() {
        let address = l.address.to_string();
        let mut listener = ListenerConfig::tcp(&address);
        if let Some(Some(tls)) = config.service.listener_certs.get(i) {
            let (cert, key) = (
                tls.cert.display().to_string(),
                tls.key.display().to_string(),
            );
            let mut settings = TlsSettings::intermediate(&cert, &key)
                .map_err(|e| format!("listeners[{i}].tls: {e}"))?;
            // The certificate comes from the current runtime at each handshake: a reload
            // rotates it.
            settings.set_cert_resolver(Arc::new(CertResolver::new(state.clone(), i)));
            listener = listener.tls(settings);
        }
        let read = l.read_buffer.or((!l.tls).then_some(0));
        if let Some(read) = read {
            listener = listener.l4_buffer(L4BufferSettings::default().read(read));
        }
        service.add_listener(listener);
        info!(
            "listening on {}{}",
            l.address,
            if l.tls { " (TLS)" } else { "" }
        );
    }
    if let Some(w) = config.admin_warning() {
        warn!("{w}");
    }
    let admin = process.admin.map(|a| a.to_string());
    let addresses = process
        .listeners
        .iter()
        .map(|l| l.address.to_string())
        .collect();
    let control = server.add_service(ControlService::new(ops.clone(), admin, addresses, watch));
    let proxy = server.add_service(service);
    proxy.add_dependency(&control);
    server.add_service(background_service(
        "health checks",
        HealthChecker::new(state),
    ));
    server.add_service(background_service(
        "dns refresh",
        DnsRefresh::new(ops.reloader.clone()),
    ));
    Ok(EdgeServer { server, ops })
}

/// Loads `file` and runs the edge until it is told to stop; then `exit` ends the process.
/// Returns only when the file or the server setup is refused.
pub fn run(file: &Path, flags: RunFlags, exit: Exit) -> Result<Infallible, String> {
    signals::catch_early_signals();
    let (config, runtime) = Runtime::load(file, None).map_err(|e| e.to_string())?;
    // Reloads read the same file even after a daemon changed its working directory.
    let file = absolute(file);
    build(&config, runtime, &file, &flags, exit)?.run()
}

/// `file` with its directory made absolute and symlinks resolved, but the file's own name
/// kept: a Kubernetes ConfigMap's file is a symlink through `..data` into a dated directory
/// that the next update deletes, so reloads must read it through the link each time.
fn absolute(file: &Path) -> std::path::PathBuf {
    let (Some(name), Some(dir)) = (file.file_name(), file.parent()) else {
        return file.to_path_buf();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir).map_or_else(|_| file.to_path_buf(), |d| d.join(name))
}

#[cfg(test)]
mod tests {
    use super::absolute;

    #[test]
    fn a_symlinked_file_keeps_its_name_and_is_not_resolved() {
        let dir = std::env::temp_dir().join(format!("edge-abs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("..v1")).unwrap();
        let link = dir.join("edge.yaml");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("..v1/edge.yaml", &link).unwrap();
        let real = std::fs::canonicalize(&dir).unwrap();
        assert_eq!(absolute(&link), real.join("edge.yaml"));
        assert_eq!(
            absolute(std::path::Path::new("edge.yaml")),
            std::env::current_dir().unwrap().join("edge.yaml")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
