//! Emulated ASRS instances and app servers for tests, the pool that reaches them, and the
//! tokens they accept.

use std::net::SocketAddr;
use std::time::Duration;

use asrs_emulator::{AppConfig, Emulator, EmulatorConfig, InstanceConfig, RunningInstance};

use crate::config::{Endpoint, Pool};

/// An instance `name` answering to `<name>.service.signalr.net` on an ephemeral port, with
/// AccessKey `key`, a 5 s connect window and ASP.NET Core's 32 KiB message limit.
pub fn instance(name: &str, key: &str, check_audience: bool) -> InstanceConfig {
    InstanceConfig {
        name: Some(name.to_string()),
        host: format!("{name}.service.signalr.net"),
        listen: "127.0.0.1:0".parse().unwrap(),
        access_key: key.to_string(),
        tls: None,
        check_audience,
        connect_window: Duration::from_secs(5),
        max_message_size: 32 * 1024,
    }
}

/// An app server on an ephemeral port that sends clients to `client_endpoint` (the edge's
/// URL) with tokens for every instance in turn.
pub fn app_server(client_endpoint: &str) -> AppConfig {
    AppConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        client_endpoint: client_endpoint.to_string(),
        instances: vec![],
        omit_request_id: false,
        audience_host: None,
        static_dirs: vec![],
    }
}

/// Starts `instances` (and no app server) on the current runtime.
pub async fn emulator(instances: Vec<InstanceConfig>) -> Emulator {
    Emulator::start(&EmulatorConfig {
        instances,
        apps: vec![],
    })
    .await
    .unwrap()
}

/// The endpoint of a running instance: its connection string (plain HTTP) and its address.
pub fn endpoint_of(i: &RunningInstance) -> Endpoint {
    let s = &i.state.settings;
    Endpoint::connection_string(format!(
        "Endpoint=http://{};AccessKey={};Version=1.0;",
        s.host, s.access_key
    ))
    .address(i.addr)
}

/// A SignalR pool named `signalr` holding every instance of `em`.
pub fn signalr_pool(em: &Emulator) -> Pool {
    em.instances
        .iter()
        .fold(Pool::signalr("signalr"), |p, i| p.endpoint(endpoint_of(i)))
}

/// A client token signed with `key` for `hub` on the instance host `aud_host`, valid 10 min.
pub fn token(key: &str, aud_host: &str, hub: &str) -> String {
    asrs_emulator::token::sign(
        key,
        &asrs_emulator::token::audience(aud_host, hub),
        Some("tester"),
        Duration::from_secs(600),
    )
}

/// Where instance `i` of `em` listens.
pub fn addr_of(em: &Emulator, i: usize) -> SocketAddr {
    em.instances[i].addr
}
