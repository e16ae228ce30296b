//! asrs-emulator: a local emulator of Azure SignalR Service instances and app servers.

use std::path::PathBuf;
use std::process::ExitCode;

use asrs_emulator::{Emulator, EmulatorConfig};
use clap::Parser;

/// Emulates Azure SignalR Service instances (and app servers) on local ports.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Emulator configuration file (YAML).
    #[arg(short = 'c', long = "conf")]
    conf: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let config: EmulatorConfig = match std::fs::read_to_string(&cli.conf)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_yaml::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("asrs-emulator: {}: {e}", cli.conf.display());
            return ExitCode::FAILURE;
        }
    };
    let em = match Emulator::start(&config).await {
        Ok(em) => em,
        Err(e) => {
            eprintln!("asrs-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One line per listener, so scripts can read ephemeral ports.
    for i in &em.instances {
        println!(
            "instance {} {} {}",
            i.state.settings.name, i.state.settings.host, i.addr
        );
    }
    for a in &em.apps {
        println!("app {a}");
    }
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
