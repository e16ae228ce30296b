//! An edge installation whose processes follow one another (reload, binary upgrade, drain):
//! one directory with the config file, pid file and upgrade socket, and a log per process.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::client::http;
use crate::config::{EdgeConfig, Listener};
use crate::process::{free_port, spawn_edge, TempDir};

/// An edge installation on a fixed port, with an admin listener.
pub struct EdgeSite {
    /// Its directory.
    pub dir: TempDir,
    /// The client listener's port.
    pub port: u16,
    /// The admin listener's port.
    pub admin_port: u16,
}

impl Default for EdgeSite {
    fn default() -> Self {
        EdgeSite::new()
    }
}

impl EdgeSite {
    /// A new site on free ports; nothing runs yet.
    pub fn new() -> EdgeSite {
        EdgeSite {
            dir: TempDir::new("site"),
            port: free_port(),
            admin_port: free_port(),
        }
    }

    /// The config file's path.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("edge.yaml")
    }

    /// The site's client listener (plain; add TLS to it for a TLS site).
    pub fn listener(&self) -> Listener {
        Listener::new(format!("127.0.0.1:{}", self.port))
    }

    /// `config` (pools and routes) completed for this site, with `grace` as drain deadline:
    /// its pid file and upgrade socket, its admin listener, its listener unless `config`
    /// has one, and no per-address client limits (see `ClientLimits::lift_unset`).
    pub fn config(&self, config: &EdgeConfig, grace: u64) -> EdgeConfig {
        let mut c = config.clone();
        c.server.pid_file = Some(self.dir.join("edge.pid"));
        c.server.upgrade_sock = Some(self.dir.join("upgrade.sock"));
        c.server.grace_period_seconds = Some(grace);
        c.server.graceful_shutdown_timeout_seconds = Some(1);
        c.limits.per_client.lift_unset();
        if c.listeners.is_empty() {
            c.listeners.push(self.listener());
        }
        c.admin(format!("127.0.0.1:{}", self.admin_port))
    }

    /// The whole config file's text for `config` with `grace` as drain deadline.
    pub fn text(&self, config: &EdgeConfig, grace: u64) -> String {
        self.config(config, grace).to_yaml()
    }

    /// Writes the config file.
    pub fn write(&self, config: &EdgeConfig, grace: u64) {
        std::fs::write(self.conf(), self.text(config, grace)).unwrap();
    }

    /// Starts a process on the current file (`-u`: taking the listeners over), logging to
    /// `<name>.log`. Callers wait for it themselves.
    pub fn spawn(&self, name: &str, upgrade: bool) -> EdgeProcess {
        self.spawn_with(name, if upgrade { &["-u"] } else { &[] })
    }

    /// Starts a process on the current file with more command-line flags (`-u`, `--watch`),
    /// logging to `<name>.log`. Callers wait for it themselves.
    pub fn spawn_with(&self, name: &str, flags: &[&str]) -> EdgeProcess {
        self.spawn_on(name, &self.conf(), flags)
    }

    /// Starts a process on the config file `conf` (one this site's file does not describe:
    /// a symlink, say) with more flags, logging to `<name>.log`.
    pub fn spawn_on(&self, name: &str, conf: &std::path::Path, flags: &[&str]) -> EdgeProcess {
        let mut args: Vec<&OsStr> = vec!["-c".as_ref(), conf.as_os_str()];
        args.extend(flags.iter().map(OsStr::new));
        let log = self.dir.join(format!("{name}.log"));
        let child = spawn_edge(&args, &log);
        EdgeProcess {
            child,
            name: name.to_string(),
            log,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The admin listener's URL for `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Waits until `/readyz` answers 200 (the process holds its listeners), failing if `p`
    /// exits or after 20 s.
    pub async fn wait_ready(&self, p: &mut EdgeProcess) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            p.assert_running();
            if let Ok(r) = http().get(self.admin_url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready: {}",
                p.name,
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /status` of whichever process owns the admin socket.
    pub async fn status(&self) -> serde_json::Value {
        get_json(&self.admin_url("/status")).await
    }

    /// `POST /reload`: the status code and the report. (The admin listener refuses a `POST`
    /// without a JSON content type or this header, as a browser page would send it.)
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let r = http()
            .post(self.admin_url("/reload"))
            .header("x-signalr-edge", "1")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

/// One `signalr-edge` process of an `EdgeSite`, killed on drop.
pub struct EdgeProcess {
    child: Child,
    /// Its name (and its log's).
    pub name: String,
    log: PathBuf,
}

impl EdgeProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it exited (and its status).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Fails with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited ({status}): {}", self.name, self.log());
        }
    }

    /// Waits until its log contains `line`.
    pub async fn wait_log(&mut self, line: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(line) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{}: no {line:?} within {limit:?}: {}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a successful exit; returns when it happened.
    pub async fn wait_exit(&mut self, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                assert!(
                    status.success(),
                    "{} exited with {status}: {}",
                    self.name,
                    self.log()
                );
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {limit:?}: {}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url` as JSON (an admin listener's `/status`, say), failing the test on any error.
pub async fn get_json(url: &str) -> serde_json::Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}
