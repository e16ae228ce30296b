//! The signalr-edge daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signalr_edge::runtime::Runtime;
use signalr_edge::RunFlags;

// jemalloc: glibc malloc/free were ~12% of a plain Pingora proxy's request CPU, and jemalloc
// with work_stealing off took it from ~48 to ~31 µs (DESIGN.md section 7).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// An edge reverse proxy for Azure SignalR Service.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(short = 'c', long = "conf", default_value = "conf/signalr-edge.yaml")]
    conf: PathBuf,
    /// Check the configuration file and exit (0 valid, 1 invalid), like `nginx -t`.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Take the listening sockets over from a running old process (graceful upgrade).
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,
    /// Reload when the configuration file changes (its directory is watched, so a rename over
    /// it or a Kubernetes ConfigMap update counts), like SIGHUP.
    #[arg(short = 'w', long = "watch")]
    watch: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a configuration file (same as -t).
    Check,
    /// GET a plain-HTTP URL (the admin listener's /readyz, say) and exit 0 on a 2xx answer,
    /// 1 otherwise: the container image's health check, which has no curl.
    Probe {
        /// The URL, e.g. http://127.0.0.1:9901/readyz.
        url: String,
        /// Seconds for the connect and for the answer.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
        timeout: u64,
    },
}

/// The process's one exit point: every part of the edge that decides the process is done
/// (the drain, a fatal setup error, Pingora's return) ends up here.
fn exit(code: i32) -> ! {
    log::logger().flush();
    if code != 0 {
        log::error!("exiting with status {code}");
    }
    std::process::exit(code)
}

/// env_logger's usual line, except JSON access lines, which stand alone: one object per line.
fn format_line(
    buf: &mut env_logger::fmt::Formatter,
    record: &log::Record<'_>,
) -> std::io::Result<()> {
    use std::io::Write;
    if record.target() == signalr_edge::proxy::JSON_ACCESS_TARGET {
        return writeln!(buf, "{}", record.args());
    }
    let level = record.level();
    let style = buf.default_level_style(level);
    writeln!(
        buf,
        "[{} {style}{level:<5}{style:#} {}] {}",
        buf.timestamp(),
        record.target(),
        record.args()
    )
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(format_line)
        .init();
    let cli = Cli::parse();
    if let Some(Command::Probe { url, timeout }) = &cli.command {
        let timeout = std::time::Duration::from_secs(*timeout);
        return match signalr_edge::process::probe::probe(url, timeout) {
            Ok(code) if (200..300).contains(&code) => ExitCode::SUCCESS,
            Ok(code) => {
                eprintln!("signalr-edge probe: {url}: {code}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("signalr-edge probe: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.test || matches!(cli.command, Some(Command::Check)) {
        return match Runtime::load(&cli.conf, None) {
            Ok((config, _)) => {
                if let Some(w) = config.admin_warning() {
                    eprintln!("signalr-edge: warning: {w}");
                }
                println!(
                    "signalr-edge: configuration file {} test is successful",
                    cli.conf.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("signalr-edge: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let flags = RunFlags {
        daemon: cli.daemon,
        upgrade: cli.upgrade,
        watch: cli.watch,
    };
    match signalr_edge::run(&cli.conf, flags, exit) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("signalr-edge: {e}");
            ExitCode::FAILURE
        }
    }
}
