//! One `signalr-edge` process on an ephemeral port, with its own directory and log.

use std::ffi::OsStr;
use std::net::TcpStream;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::config::{EdgeConfig, Listener};
use crate::process::{demo_binary, edge_binary, free_port, send_signal, spawn_logging, TempDir};

/// A running `signalr-edge` process, killed on drop.
pub struct Edge {
    child: Child,
    /// The port of its listener.
    pub port: u16,
    /// Its directory: config, pid file, upgrade socket, `edge.log`.
    pub dir: TempDir,
}

impl Edge {
    /// Starts the edge with `config` (pools, routes; no listener) on a free port and waits until
    /// it accepts.
    pub fn start(config: EdgeConfig) -> Edge {
        Edge::start_on(free_port(), config)
    }

    /// Like `start`, on a chosen port (for upstreams that must know the edge's URL first).
    pub fn start_on(port: u16, config: EdgeConfig) -> Edge {
        Edge::start_logging("info", port, config)
    }

    /// Like `start_on`, logging at `rust_log` (an `env_logger` filter).
    ///
    /// The edge's listener on `port` comes first; the pid file and upgrade socket go into the
    /// edge's own directory (tests run in parallel), and unless `config` says otherwise it
    /// stops at once: no drain deadline, 1 s of final shutdown; and it does not limit clients
    /// per address (see `ClientLimits::lift_unset`).
    pub fn start_logging(rust_log: &str, port: u16, mut config: EdgeConfig) -> Edge {
        let dir = TempDir::new("edge");
        let s = &mut config.server;
        s.pid_file = Some(dir.join("edge.pid"));
        s.upgrade_sock = Some(dir.join("upgrade.sock"));
        s.grace_period_seconds.get_or_insert(0);
        s.graceful_shutdown_timeout_seconds.get_or_insert(1);
        config.limits.per_client.lift_unset();
        config
            .listeners
            .insert(0, Listener::new(format!("127.0.0.1:{port}")));
        let file = dir.join("edge.yaml");
        config.write(&file);
        let child = spawn_logging(
            &edge_binary(),
            &["-c".as_ref(), file.as_os_str()],
            &dir.join("edge.log"),
            rust_log,
        );
        let mut edge = Edge { child, port, dir };
        edge.wait_ready();
        edge
    }

    /// Starts `signalr-edge-demo --port <port>`; callers wait for readiness themselves (the
    /// demo probes its port before the edge listens on it).
    pub fn demo(port: u16) -> Edge {
        let dir = TempDir::new("demo");
        let port_arg = port.to_string();
        let args: [&OsStr; 2] = ["--port".as_ref(), port_arg.as_ref()];
        let child = spawn_logging(&demo_binary(), &args, &dir.join("edge.log"), "info");
        Edge { child, port, dir }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("edge exited early ({status}): {}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("edge did not listen within 20 s: {}", self.log());
    }

    /// Sends SIGINT (Ctrl-C) and returns the exit status, failing after 10 s.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.interrupt_within(Duration::from_secs(10))
            .expect("no exit 10 s after SIGINT")
    }

    /// Sends SIGINT and returns the exit status, or `None` if the process still runs after
    /// `limit` (it is then killed when dropped).
    pub fn interrupt_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        send_signal(self.child.id(), "INT");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `ws://127.0.0.1:<port>`, the base of WebSocket URLs.
    pub fn ws_base(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("edge.log")).unwrap_or_default()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
