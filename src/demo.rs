//! `signalr-edge demo`: the edge in front of three emulated SignalR instances and an app server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::config;
use crate::emulator::{AppConfig, Emulator, EmulatorConfig, InstanceConfig};
use crate::runtime::Runtime;
use crate::server::{self, RunFlags};

/// What the emulator thread reports once it listens.
struct Started {
    instances: Vec<(String, String, String, SocketAddr)>,
    app: SocketAddr,
}

/// Where the chat page lives: the source tree (from the working directory, else from where this
/// binary was built), plus the official browser client from the npm package.
fn page_dirs() -> Vec<PathBuf> {
    let root = [
        PathBuf::from("."),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    ]
    .into_iter()
    .find(|r| r.join("demo/index.html").is_file());
    let Some(root) = root else {
        println!("  (demo page not found: run the demo from the source tree for the browser chat)");
        return vec![];
    };
    let e2e = root.join("tests/e2e");
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
    vec![root.join("demo"), bundle]
}

/// Runs the demo until Ctrl-C.
pub fn run(port: u16) -> Result<(), String> {
    let edge = format!("127.0.0.1:{port}");
    std::net::TcpListener::bind(&edge)
        .map_err(|e| format!("cannot listen on {edge}: {e} (try --port)"))?;
    let static_dirs = page_dirs();
    let em_config = EmulatorConfig {
        instances: ["a", "b", "c"]
            .iter()
            .map(|n| InstanceConfig {
                name: Some(n.to_string()),
                host: format!("demo-{n}.service.signalr.net"),
                listen: "127.0.0.1:0".parse().expect("literal address"),
                access_key: format!("demo-access-key-{n}-0123456789abcdef"),
                tls: None,
                check_audience: true,
                connect_window: Duration::from_secs(5),
                max_message_size: 32 * 1024,
            })
            .collect(),
        apps: vec![AppConfig {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            client_endpoint: format!("http://{edge}"),
            instances: vec![],
            omit_request_id: false,
            audience_host: None,
            static_dirs,
        }],
    };
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
            match Emulator::start(&em_config).await {
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
                        app: em.apps[0],
                    };
                    let _ = tx.send(Ok(started));
                    // Pingora stops on SIGTERM/SIGQUIT only; the demo stops on Ctrl-C too.
                    let _ = tokio::signal::ctrl_c().await;
                    drop(em);
                    println!("signalr-edge demo: stopped");
                    std::process::exit(0);
                }
                Err(e) => drop(tx.send(Err(e))),
            }
        });
    });
    let started = rx.recv().map_err(|e| e.to_string())??;
    let mut yaml = format!(
        "server: {{ threads: 1, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1 }}\n\
         listeners: [{{ address: \"{edge}\" }}]\npools:\n  signalr:\n    kind: signalr\n    \
         health_check: {{ interval: 2s, timeout: 1s }}\n    endpoints:\n"
    );
    for (_, host, key, addr) in &started.instances {
        yaml += &format!("      - {{ connection_string: \"Endpoint=http://{host};AccessKey={key};Version=1.0;\", address: \"{addr}\" }}\n");
    }
    yaml += &format!(
        "  app:\n    kind: app\n    endpoints: [{{ url: \"http://{}\" }}]\nroutes:\n  - {{ path: /client/, pool: signalr }}\n  - {{ path: /, pool: app }}\n",
        started.app
    );
    let file = Path::new("<demo>");
    let cfg = config::parse_str(&yaml).map_err(|e| e.in_file(file).to_string())?;
    let runtime = Runtime::compile(&cfg, file, None).map_err(|e| e.to_string())?;
    println!("signalr-edge demo");
    println!(
        "  edge:       http://{edge}  (routes /client/ to SignalR, the rest to the app server)"
    );
    for (name, host, _, addr) in &started.instances {
        println!("  instance {name}: {host} at {addr}");
    }
    println!("  app server: http://{}", started.app);
    println!("  open http://{edge}/ in a browser, or try:");
    println!("    curl -s -X POST 'http://{edge}/chat/negotiate?negotiateVersion=1'");
    println!("  Ctrl-C stops everything.");
    server::build(&cfg, runtime, file, &RunFlags::default())?.run()
}
