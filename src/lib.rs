//! signalr-edge: an edge reverse proxy for Azure SignalR Service, built on Cloudflare Pingora.
//!
//! The modules are the layers, each using only those listed before it:
//! - [`signalr`]: request keys, the instance-choice rules and the ring (pure SignalR knowledge);
//! - [`metrics`]: the Prometheus families and the label handles the layers above count on;
//! - [`config`]: the file format, parsed once into typed process and service settings;
//! - [`runtime`]: the compiled generation the request path reads, and the process phase;
//! - [`proxy`]: Pingora's hooks and the per-request decision;
//! - [`reload`]: load, check, compile, probe and swap a new generation;
//! - [`process`]: server assembly, signals, drain, admin listener, upgrade.

pub mod config;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod signalr;

pub use process::{run, Exit, RunFlags};
