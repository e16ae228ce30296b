//! signalr-edge: an edge reverse proxy for Azure SignalR Service, built on Cloudflare Pingora.

pub mod access_log;
pub mod admin;
pub mod affinity;
pub mod config;
pub mod control;
pub mod drain;
pub mod forwarded;
pub mod listener_tls;
pub mod ops;
pub mod proxy;
pub mod reload;
pub mod ring;
pub mod routing;
pub mod runtime;
pub mod selection;
pub mod server;
pub mod signals;
pub mod upstream;
