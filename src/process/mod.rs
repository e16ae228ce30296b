//! The process: server assembly (`server`), signals, the control service with its admin
//! listener, the drain, binary upgrades (`ops`), the health-check service, the DNS refresh and `--watch`. The top layer: it
//! may use every module below it, and none of them uses it.

mod admin;
mod admin_guard;
#[cfg(test)]
mod config_props;
mod connections;
mod control;
mod dns;
mod drain;
mod health_checks;
mod listener_tls;
mod ops;
pub mod probe;
mod server;
mod signals;
mod watch;

pub use server::{build, run, EdgeServer, RunFlags};

/// Ends the process with a status. The binary owns the one implementation; the parts that
/// decide when the process is done (the drain, a failed admin listener, Pingora's return) call
/// the one they were given, so library code never exits on its own.
pub type Exit = fn(i32) -> !;
