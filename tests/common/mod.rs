//! Helpers for integration tests: an edge process on an ephemeral port, emulator instances,
//! tokens and a minimal SignalR client. Everything runs on 127.0.0.1 and is stopped on drop.
#![allow(dead_code)]

pub mod clients;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use asrs_emulator::{Emulator, EmulatorConfig, InstanceConfig};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("signalr-edge-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `signalr-edge` process.
pub struct Edge {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Edge {
    /// Starts the edge with `body` (config without `listeners`/`server`) and waits until it accepts.
    pub fn start(body: &str) -> Edge {
        Edge::start_on(free_port(), body)
    }

    /// Like `start`, on a chosen port (for upstreams that must know the edge's URL first).
    pub fn start_on(port: u16, body: &str) -> Edge {
        Edge::start_with(port, "", body)
    }

    /// Like `start_on`, with `server` lines (each `  key: value\n`) added to the server section.
    pub fn start_with(port: u16, server: &str, body: &str) -> Edge {
        Edge::start_logging("info", port, server, body)
    }

    /// Like `start_with`, logging at `rust_log` (an `env_logger` filter).
    pub fn start_logging(rust_log: &str, port: u16, server: &str, body: &str) -> Edge {
        let dir = TempDir::new("edge");
        let conf = format!(
            "server:\n  pid_file: {d}/edge.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n{server}listeners:\n  - address: 127.0.0.1:{port}\n{body}",
            d = dir.0.display()
        );
        let file = dir.0.join("edge.yaml");
        std::fs::write(&file, conf).unwrap();
        let child = spawn_edge_logging(
            &["-c".as_ref(), file.as_os_str()],
            &dir.0.join("edge.log"),
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
        let log = std::fs::File::create(dir.0.join("edge.log")).unwrap();
        let child = Command::new(demo_exe())
            .args(["--port", &port.to_string()])
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
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
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        self.interrupt_within(Duration::from_secs(10))
            .expect("no exit 10 s after SIGINT")
    }

    /// Sends SIGINT and returns the exit status, or `None` if the process still runs after
    /// `limit` (it is then killed when dropped).
    pub fn interrupt_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
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

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("edge.log")).unwrap_or_default()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo binary: another package's, so no `CARGO_BIN_EXE_`; `cargo test --workspace` builds
/// it into the profile directory above this test's `deps/`.
pub fn demo_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let demo = profile_dir.join("signalr-edge-demo");
    assert!(
        demo.is_file(),
        "{} is missing: build it with `cargo build -p signalr-edge-demo` (or test with --workspace)",
        demo.display()
    );
    demo
}

/// Starts the `signalr-edge` binary with `args`, logging to `log`.
pub fn spawn_edge(args: &[&std::ffi::OsStr], log: &Path) -> Child {
    spawn_edge_logging(args, log, "info")
}

/// Like `spawn_edge`, logging at `rust_log`.
pub fn spawn_edge_logging(args: &[&std::ffi::OsStr], log: &Path, rust_log: &str) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_signalr-edge"))
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Sends a signal (`HUP`, `QUIT`, `TERM`, `INT`) to a process.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Polls `check` every 20 ms until it returns `Some`, failing with `what` after `limit`.
pub async fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An edge installation: one directory with the config file, pid file and upgrade socket, in
/// which processes follow one another (graceful upgrade), each with its own log.
pub struct EdgeSite {
    pub dir: TempDir,
    pub port: u16,
    pub admin_port: u16,
}

impl EdgeSite {
    pub fn new() -> EdgeSite {
        EdgeSite {
            dir: TempDir::new("site"),
            port: free_port(),
            admin_port: free_port(),
        }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.0.join("edge.yaml")
    }

    /// The whole config file for `body` (pools and routes) with `grace` as drain deadline.
    pub fn text(&self, body: &str, grace: u64) -> String {
        format!(
            "server:\n  pid_file: {d}/edge.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: {grace}\n  graceful_shutdown_timeout_seconds: 1\nlisteners:\n  - address: 127.0.0.1:{port}\nadmin:\n  listen: 127.0.0.1:{admin}\n{body}",
            d = self.dir.0.display(),
            port = self.port,
            admin = self.admin_port,
        )
    }

    /// Writes the config file.
    pub fn write(&self, body: &str, grace: u64) {
        std::fs::write(self.conf(), self.text(body, grace)).unwrap();
    }

    /// Starts a process on the current file (`-u`: taking the listeners over), logging to
    /// `<name>.log`. Callers wait for it themselves.
    pub fn spawn(&self, name: &str, upgrade: bool) -> EdgeProcess {
        let conf = self.conf();
        let mut args: Vec<&std::ffi::OsStr> = vec!["-c".as_ref(), conf.as_os_str()];
        if upgrade {
            args.push("-u".as_ref());
        }
        let log = self.dir.0.join(format!("{name}.log"));
        let child = spawn_edge(&args, &log);
        EdgeProcess {
            child,
            name: name.to_string(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

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
        http()
            .get(self.admin_url("/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /reload`: the status code and the report.
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let r = http().post(self.admin_url("/reload")).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

/// One `signalr-edge` process of an `EdgeSite`, killed on drop.
pub struct EdgeProcess {
    child: Child,
    pub name: String,
    log: PathBuf,
}

impl EdgeProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it exited (and its status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
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

    /// Waits for the exit; returns when it happened.
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

/// Instance settings for tests.
pub fn instance(name: &str, key: &str, check_audience: bool) -> InstanceConfig {
    InstanceConfig {
        name: Some(name.to_string()),
        host: format!("{name}.service.signalr.net"),
        listen: "127.0.0.1:0".parse().unwrap(),
        access_key: key.to_string(),
        tls: None,
        check_audience,
        connect_window: Duration::from_secs(5),
        max_message_size: 32 * 1024,
    }
}

pub async fn emulator(instances: Vec<InstanceConfig>) -> Emulator {
    Emulator::start(&EmulatorConfig {
        instances,
        apps: vec![],
    })
    .await
    .unwrap()
}

/// A SignalR pool section for the emulator's instances (by private address).
pub fn signalr_pool(em: &Emulator, extra: &str) -> String {
    let mut s = String::from("pools:\n  signalr:\n    kind: signalr\n    endpoints:\n");
    for i in &em.instances {
        s += &format!(
            "      - connection_string: \"Endpoint=http://{};AccessKey={};Version=1.0;\"\n        address: {}\n",
            i.state.settings.host, i.state.settings.access_key, i.addr
        );
    }
    s + extra
}

pub fn token(key: &str, aud_host: &str, hub: &str) -> String {
    asrs_emulator::token::sign(
        key,
        &asrs_emulator::token::audience(aud_host, hub),
        Some("tester"),
        Duration::from_secs(600),
    )
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The answer of a client negotiate through the edge.
pub struct Negotiated {
    pub status: u16,
    pub instance: String,
    pub connection_token: Option<String>,
}

pub async fn negotiate(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    token: &str,
) -> Negotiated {
    let r = client
        .post(format!("{base}/client/negotiate?{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let instance = r
        .headers()
        .get("x-emulator-instance")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    Negotiated {
        status,
        instance,
        connection_token: body["connectionToken"].as_str().map(str::to_string),
    }
}

/// Connects by WebSocket, handshakes, calls `whoami`, and returns its result.
pub async fn ws_whoami(
    ws_base: &str,
    query: &str,
    token: &str,
) -> Result<serde_json::Value, String> {
    let mut req = format!("{ws_base}/client/?{query}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| e.to_string())?;
    ws.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await
        .map_err(|e| e.to_string())?;
    ws.send(Message::text(
        "{\"type\":1,\"invocationId\":\"1\",\"target\":\"whoami\",\"arguments\":[]}\u{1e}",
    ))
    .await
    .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "timeout".to_string())?;
        let Some(Ok(Message::Text(t))) = msg else {
            return Err(format!("unexpected {msg:?}"));
        };
        for rec in t.as_str().split('\u{1e}').filter(|r| !r.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(rec).map_err(|e| e.to_string())?;
            if v["type"] == 3 {
                let _ = ws.close(None).await;
                return Ok(v["result"].clone());
            }
        }
    }
}

/// Writes a test CA and a certificate for `host` signed by it; returns (ca, cert, key) paths.
pub fn test_pki(dir: &Path, host: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "signalr-edge test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (ca_p, cert_p, key_p) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_p, ca.pem()).unwrap();
    std::fs::write(&cert_p, cert.pem()).unwrap();
    std::fs::write(&key_p, key.serialize_pem()).unwrap();
    (ca_p, cert_p, key_p)
}

pub fn addr_of(em: &Emulator, i: usize) -> SocketAddr {
    em.instances[i].addr
}
