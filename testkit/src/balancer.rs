//! A real L4 balancer in front of edge replicas: HAProxy in TCP mode, round robin, on a
//! 127.0.0.1 port, health-checking each replica on its admin `/readyz` (a draining replica
//! answers 503 and gets no new connections). Its config goes to a temp dir, it runs in the
//! foreground (`-db`) with its connection log (`option tcplog`) in a file, and is killed on drop.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{wait_for, TempDir};

/// Where Debian (and `./ci.sh`) installs HAProxy.
pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// The backend's name in the config and the stats.
const BACKEND: &str = "replicas";

/// One replica behind the balancer: its client listener and its admin listener.
#[derive(Debug, Clone, Copy)]
pub struct Replica {
    /// The client listener's port (127.0.0.1).
    pub port: u16,
    /// The admin listener's port, whose `/readyz` the balancer checks.
    pub admin_port: u16,
}

/// A running HAProxy in TCP mode; killed on drop.
pub struct Haproxy {
    child: Child,
    /// The port clients connect to.
    pub port: u16,
    dir: TempDir,
}

/// HAProxy's config for `replicas` (named `r1`, `r2`, ...) behind `127.0.0.1:<port>`:
/// TCP mode, round robin, each replica checked every 200 ms on `GET /readyz` of its admin
/// listener (down after one failed check, up after one good one). `stats` is the admin socket.
pub fn config(port: u16, replicas: &[Replica], stats: &Path) -> String {
    let mut c = format!(
        "\
global
    maxconn 4000
    stats socket {stats} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    # Above SignalR's long-poll hold (90-100 s) and 15 s pings.
    timeout client 120s
    timeout server 120s
    # A refused connect (a replica that stopped listening) is tried again on another one.
    retries 2
    option redispatch

frontend edge
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    # The admin listener answers only a Host it knows (its address or localhost).
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server inter 200ms fall 1 rise 1
",
        stats = stats.display()
    );
    for (i, r) in replicas.iter().enumerate() {
        c.push_str(&format!(
            "    server r{n} 127.0.0.1:{port} check port {admin}\n",
            n = i + 1,
            port = r.port,
            admin = r.admin_port
        ));
    }
    c
}

impl Haproxy {
    /// Starts HAProxy on `port` in front of `replicas` and waits until it reports every one up.
    pub async fn start(port: u16, replicas: &[Replica]) -> Haproxy {
        assert!(
            Path::new(HAPROXY).is_file(),
            "{HAPROXY} is missing: run ./ci.sh (or apt-get install haproxy)"
        );
        let dir = TempDir::new("haproxy");
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config(port, replicas, &dir.join("stats.sock"))).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{HAPROXY}: {e}"));
        let mut lb = Haproxy { child, port, dir };
        for i in 0..replicas.len() {
            lb.wait_state(i, "UP", Duration::from_secs(10)).await;
        }
        lb
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log: start-up messages, health transitions and one `tcplog` line per connection.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("haproxy.log")
    }

    /// Replica `i`'s state as its stats say (`UP`, `DOWN`, ...), if the stats socket answers.
    pub fn state(&self, i: usize) -> Option<String> {
        let csv = self.command("show stat")?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
        let name = format!("r{}", i + 1);
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.get(px) == Some(&BACKEND) && f.get(sv) == Some(&name.as_str()))
            .and_then(|f| f.get(st).map(|s| s.to_string()))
    }

    /// Waits until replica `i`'s state starts with `state` (`UP`, `DOWN`), failing with the
    /// log after `limit`.
    pub async fn wait_state(&mut self, i: usize, state: &str, limit: Duration) {
        let what = format!("HAProxy reports r{} {state}", i + 1);
        let log = self.log_path();
        wait_for(limit, &what, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "haproxy exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            self.state(i).filter(|s| s.starts_with(state)).map(|_| ())
        })
        .await;
    }

    /// One command on the stats socket; its whole answer.
    fn command(&self, cmd: &str) -> Option<String> {
        let mut s = UnixStream::connect(self.dir.join("stats.sock")).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\n").as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// Connections (`tcplog` lines) HAProxy sent to each replica so far, `r1` first.
    pub fn connections(&self, replicas: usize) -> Vec<usize> {
        let log = self.log();
        (1..=replicas)
            .map(|n| {
                let tag = format!(" {BACKEND}/r{n} ");
                log.lines().filter(|l| l.contains(&tag)).count()
            })
            .collect()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
