//! Fixtures shared by signalr-edge's integration tests and benches: `signalr-edge` processes on
//! ephemeral ports, emulated ASRS instances, a typed builder for the edge's YAML file, test
//! certificates, one SignalR client for WebSockets, Server-Sent Events and long polling, raw
//! HTTP/1.1 probes with a recording upstream (`raw`), a DNS server (`dns`), and a fault gate in
//! front of an upstream (`fault`: refuse, blackhole, slow), HAProxy in front of edge replicas
//! (`balancer`) and the access log read back (`access`).
//! Everything runs on 127.0.0.1 and is stopped or removed on drop.
//!
//! The edge binary is found next to the running test or bench (see [`process::edge_binary`]):
//! cargo builds a package's binaries before its integration tests and benches, so this works
//! from the root package's `tests/` and `benches/` without `env!("CARGO_BIN_EXE_...")`, which
//! only exists there.

pub mod access;
pub mod balancer;
pub mod certs;
pub mod client;
pub mod config;
pub mod dns;
pub mod edge;
pub mod emulator;
pub mod fault;
pub mod fuzz;
pub mod metrics;
pub mod process;
pub mod raw;
pub mod site;
pub mod steady;

pub use access::{access_lines, AccessLine};
pub use balancer::{Haproxy, Replica};
pub use certs::{test_pki, TestPki};
pub use client::negotiate::{negotiate, Negotiated};
pub use client::ws::ws_whoami;
pub use client::{http, Client, Error, Target, Transport};
pub use config::{
    ClientLimits, EdgeConfig, Endpoint, HealthCheck, Limits, Listener, Pinning, Pool, Resolver,
    Route, Server, Timeouts, Tokens,
};
pub use dns::{Answer, TestDns};
pub use edge::Edge;
pub use emulator::{addr_of, app_server, emulator, endpoint_of, instance, signalr_pool, token};
pub use fault::{Fault, FaultGate};
pub use process::{chromium, edge_binary, free_port, send_signal, wait_for, TempDir};
pub use site::{get_json, EdgeProcess, EdgeSite};
