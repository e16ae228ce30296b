//! Processes and the scratch space around them: temporary directories, free ports, signals,
//! polling, and where cargo put the binaries under test.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system's temp dir, named after `tag`, this process and
    /// the time (tests of one binary run in parallel).
    pub fn new(tag: &str) -> TempDir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("signalr-edge-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
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

/// A binary that cargo built into the target directory of the running test or bench.
///
/// Integration tests and benches run from `target/<profile>/deps/<name>-<hash>`, and cargo
/// builds the package's binaries into `target/<profile>/` before it runs them, so the binary
/// sits one directory up. (`env!("CARGO_BIN_EXE_<name>")` would say the same, but only inside
/// the package that owns the binary; the testkit is another crate.)
pub fn target_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    let mut dir = exe.parent().expect("the executable's directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("the profile directory");
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: cargo builds a package's binaries before its own tests and benches; \
         another package's, with `cargo build -p <package>` or `cargo test --workspace`",
        path.display()
    );
    path
}

/// The `signalr-edge` binary (see [`target_binary`]).
pub fn edge_binary() -> PathBuf {
    target_binary("signalr-edge")
}

/// The `signalr-edge-demo` binary: another package's, built by `cargo test --workspace` for
/// the demo's own tests (see [`target_binary`]).
pub fn demo_binary() -> PathBuf {
    target_binary("signalr-edge-demo")
}

/// Starts `program` with `args` at `RUST_LOG=rust_log`, stdout and stderr to the file `log`.
pub fn spawn_logging(program: &Path, args: &[&OsStr], log: &Path, rust_log: &str) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(program)
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

/// Starts the `signalr-edge` binary with `args`, logging to `log` at `info`.
pub fn spawn_edge(args: &[&OsStr], log: &Path) -> Child {
    spawn_logging(&edge_binary(), args, log, "info")
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

/// Debian's chromium, for browser tests; a machine without it skips them unless
/// `SIGNALR_EDGE_REQUIRE_BROWSER` is set (`./ci.sh` installs it and sets it, so CI never skips).
pub fn chromium() -> Option<&'static str> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var_os("SIGNALR_EDGE_REQUIRE_BROWSER").is_none(),
            "chromium is not installed (apt-get install chromium)"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
    }
    found
}
