//! signalr-edge-demo: the edge in front of three emulated SignalR instances and an app server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::OnceLock;
use std::time::Duration;

use asrs_emulator::{AppConfig, Emulator, EmulatorConfig, InstanceConfig};
use clap::Parser;

/// Runs signalr-edge in front of emulated SignalR instances and an app server, on 127.0.0.1.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Port of the edge.
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

/// Where the second app server is mounted on the edge, and its ClientEndpoint's path.
const PREFIX: &str = "/signalr";

/// What the emulator thread reports once it listens.
struct Started {
    instances: Vec<(String, String, String, SocketAddr)>,
    /// The app server at `/`, then the one under [`PREFIX`].
    apps: Vec<SocketAddr>,
}

/// A file removed on drop: the edge's configuration, written for this run.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli.port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signalr-edge-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the chat page lives (this crate's directory, where it was built, else `./demo`), plus
/// the official browser client from the npm package in `tests/e2e`.
fn page_dirs() -> Vec<PathBuf> {
    let page = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        PathBuf::from("demo"),
    ]
    .into_iter()
    .find(|d| d.join("index.html").is_file());
    let Some(page) = page else {
        println!("  (demo page not found: run the demo from the source tree for the browser chat)");
        return vec![];
    };
    let e2e = page.join("../tests/e2e");
    let bundle = e2e.join("node_modules/@microsoft/signalr/dist/browser");
    if !bundle.join("signalr.min.js").is_file() {
        // The browser client comes from the pinned npm package, never from a hand-written copy.
        println!(
            "  fetching the official browser client: npm ci in {}",
            e2e.display()
        );
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&e2e)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("  (npm ci failed: the chat page will not load its client; run `npm ci` in tests/e2e)");
        }
    }
    vec![page, bundle]
}

/// Three instances with distinct keys (audience checked) and two app servers for the edge at
/// `edge`: one whose ClientEndpoint is the edge's URL, one whose ClientEndpoint has a path (a
/// reverse-proxy URL with a path: `http://<edge>/signalr`).
fn emulator_config(edge: &str) -> EmulatorConfig {
    let app = |client_endpoint: String| AppConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        client_endpoint,
        instances: vec![],
        omit_request_id: false,
        audience_host: None,
        static_dirs: page_dirs(),
    };
    EmulatorConfig {
        instances: ["a", "b", "c"]
            .iter()
            .map(|n| InstanceConfig {
                name: Some(n.to_string()),
                host: format!("demo-{n}.service.signalr.net"),
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                access_key: format!("demo-access-key-{n}-0123456789abcdef"),
                tls: None,
                check_audience: true,
                connect_window: Duration::from_secs(5),
                max_message_size: 32 * 1024,
            })
            .collect(),
        apps: vec![
            app(format!("http://{edge}")),
            app(format!("http://{edge}{PREFIX}")),
        ],
    }
}

/// Starts the emulator on its own thread and runtime; Ctrl-C there ends the process with 0.
fn start_emulator(config: EmulatorConfig) -> Result<Started, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return drop(tx.send(Err(e.to_string()))),
        };
        rt.block_on(async move {
            match Emulator::start(&config).await {
                Ok(em) => {
                    let started = Started {
                        instances: em
                            .instances
                            .iter()
                            .map(|i| {
                                let s = &i.state.settings;
                                (s.name.clone(), s.host.clone(), s.access_key.clone(), i.addr)
                            })
                            .collect(),
                        apps: em.apps.clone(),
                    };
                    let _ = tx.send(Ok(started));
                    // Pingora stops on SIGTERM/SIGQUIT only; the demo stops on Ctrl-C too.
                    let _ = tokio::signal::ctrl_c().await;
                    drop(em);
                    exit(0);
                }
                Err(e) => drop(tx.send(Err(e))),
            }
        });
    });
    rx.recv().map_err(|e| e.to_string())?
}

/// The edge's configuration: `/client/` to the instances (by address, their tokens verified
/// with the keys of their connection strings), the rest to the app; under `/signalr/` the same
/// with the prefix stripped, the rest to the second app server.
fn edge_yaml(edge: &str, started: &Started) -> String {
    let mut yaml = format!(
        "server: {{ threads: 1, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1 }}\n\
         listeners: [{{ address: \"{edge}\" }}]\npools:\n  signalr:\n    kind: signalr\n    \
         health_check: {{ interval: 2s, timeout: 1s }}\n    tokens: {{ verify: true }}\n    endpoints:\n"
    );
    for (_, host, key, addr) in &started.instances {
        yaml += &format!("      - {{ connection_string: \"Endpoint=http://{host};AccessKey={key};Version=1.0;\", address: \"{addr}\" }}\n");
    }
    for (name, addr) in ["app", "prefixed_app"].iter().zip(&started.apps) {
        yaml +=
            &format!("  {name}:\n    kind: app\n    endpoints: [{{ url: \"http://{addr}\" }}]\n");
    }
    yaml += &format!(
        "routes:\n  - {{ path: /client/, pool: signalr }}\n  - {{ path: /, pool: app }}\n  \
         - {{ path: {PREFIX}/client/, pool: signalr, strip_prefix: {PREFIX} }}\n  \
         - {{ path: {PREFIX}/, pool: prefixed_app, strip_prefix: {PREFIX} }}\n"
    );
    yaml
}

/// The edge's configuration file, removed at exit.
static CONF_FILE: OnceLock<PathBuf> = OnceLock::new();

/// The demo's one exit point, for the edge and for Ctrl-C alike.
fn exit(code: i32) -> ! {
    // process::exit runs no destructors: remove the edge's file here.
    if let Some(f) = CONF_FILE.get() {
        let _ = std::fs::remove_file(f);
    }
    println!("signalr-edge-demo: stopped");
    std::process::exit(code)
}

/// Runs the edge in this process on `file` until it stops.
fn run_edge(file: &Path) -> Result<(), String> {
    signalr_edge::run(file, signalr_edge::RunFlags::default(), exit).map(|never| match never {})
}

/// Runs the demo until Ctrl-C.
fn run(port: u16) -> Result<(), String> {
    let edge = format!("127.0.0.1:{port}");
    std::net::TcpListener::bind(&edge)
        .map_err(|e| format!("cannot listen on {edge}: {e} (try --port)"))?;
    let file = TempFile(
        std::env::temp_dir().join(format!("signalr-edge-demo-{}.yaml", std::process::id())),
    );
    let _ = CONF_FILE.set(file.0.clone());
    let started = start_emulator(emulator_config(&edge))?;
    std::fs::write(&file.0, edge_yaml(&edge, &started))
        .map_err(|e| format!("{}: {e}", file.0.display()))?;
    println!("signalr-edge-demo");
    println!(
        "  edge:       http://{edge}  (routes /client/ and {PREFIX}/client/ to SignalR, the rest to the app servers)"
    );
    for (name, host, _, addr) in &started.instances {
        println!("  instance {name}: {host} at {addr}");
    }
    println!("  app server: http://{}", started.apps[0]);
    println!(
        "  app server: http://{}  (ClientEndpoint=http://{edge}{PREFIX}: the edge serves it \
         under {PREFIX}/ and sends {PREFIX}/client/ on to the instances as /client/)",
        started.apps[1]
    );
    println!("  edge configuration: {}", file.0.display());
    println!("  open http://{edge}/ (or http://{edge}{PREFIX}/) in a browser, or try:");
    println!("    curl -s -X POST 'http://{edge}/chat/negotiate?negotiateVersion=1'");
    println!("    curl -s -X POST 'http://{edge}{PREFIX}/chat/negotiate?negotiateVersion=1'");
    println!("  Ctrl-C stops everything.");
    run_edge(&file.0)
}
