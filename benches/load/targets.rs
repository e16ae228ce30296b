//! The systems under test: the upstream directly (the floor), signalr-edge, nginx and HAProxy,
//! each started fresh from its config in `benches/peers/`, pinned to one core where possible.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which system a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The client talks to the upstream itself.
    Direct,
    /// signalr-edge.
    Edge,
    /// nginx.
    Nginx,
    /// HAProxy.
    Haproxy,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 4] = [Kind::Direct, Kind::Edge, Kind::Nginx, Kind::Haproxy];

    /// Its name in the report and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Edge => "signalr-edge",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    /// The program it runs, if it is a separate one.
    fn program(self) -> Option<PathBuf> {
        match self {
            Kind::Direct => None,
            Kind::Edge => Some(testkit::edge_binary()),
            Kind::Nginx => find_program("nginx"),
            Kind::Haproxy => find_program("haproxy"),
        }
    }

    /// Why it cannot run here, if it cannot.
    pub fn missing(self) -> Option<String> {
        match (self, self.program()) {
            (Kind::Direct, _) | (_, Some(_)) => None,
            (k, None) => Some(format!(
                "{} is not installed (apt-get install {}): skipped",
                k.name(),
                k.name()
            )),
        }
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `program` under `taskset -c cpu` when pinning is possible.
pub fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match (cpu, find_program("taskset")) {
        (Some(cpu), Some(taskset)) => {
            let mut c = Command::new(taskset);
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        _ => Command::new(program),
    }
}

/// A started system under test.
pub struct Running {
    /// Which one.
    pub kind: Kind,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The proxy's process, if there is one (`taskset` execs, so the pid is the proxy's).
    child: Option<Child>,
    dir: PathBuf,
}

impl Running {
    /// The proxy's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The proxy's own log, for failures.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Starts `kind` in front of `upstreams` (three of them), pinned to `cpu`.
pub fn start(
    kind: Kind,
    upstreams: &[SocketAddr],
    cpu: Option<usize>,
    work: &Path,
) -> Result<Running, String> {
    let dir = work.join(format!("{}-{}", kind.name(), std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let Some(program) = kind.program() else {
        return Ok(Running {
            kind,
            addr: upstreams[0],
            child: None,
            dir,
        });
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let (template, file) = match kind {
        Kind::Edge => ("signalr-edge.yaml", "edge.yaml"),
        Kind::Nginx => ("nginx.conf", "nginx.conf"),
        _ => ("haproxy.cfg", "haproxy.cfg"),
    };
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
    let mut conf = std::fs::read_to_string(peers.join(template))
        .map_err(|e| format!("{template}: {e}"))?
        .replace("{{DIR}}", &dir.display().to_string())
        .replace("{{LISTEN}}", &addr.to_string());
    for (i, u) in upstreams.iter().enumerate() {
        conf = conf.replace(&format!("{{{{UPSTREAM_{}}}}}", i + 1), &u.to_string());
    }
    let conf_path = dir.join(file);
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
    let mut cmd = pinned(cpu, &program);
    match kind {
        Kind::Edge => cmd.arg("-c").arg(&conf_path).env("RUST_LOG", "warn"),
        Kind::Nginx => cmd
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path),
        _ => cmd.arg("-db").arg("-f").arg(&conf_path),
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let mut running = Running {
        kind,
        addr,
        child: Some(child),
        dir,
    };
    wait_listening(&mut running)?;
    Ok(running)
}

/// Polls until the proxy accepts connections (or exits, or 15 s pass).
fn wait_listening(r: &mut Running) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(c) = &mut r.child {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!("{} exited ({status}): {}", r.kind.name(), r.log()));
            }
        }
        if TcpStream::connect(r.addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "{} did not listen within 15 s: {}",
        r.kind.name(),
        r.log()
    ))
}
