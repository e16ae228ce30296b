//! Fuzz target `connstr`: ASRS connection strings, parsed alone (`ConnectionString::from_str`)
//! and as the `connection_string:` of an endpoint in a whole config (`config::parse_str`).
//! The access key never shows in an error or in `Debug`, and both paths agree.
#![cfg_attr(fuzzing, no_main)]

use std::str::FromStr;

use serde_json::json;
use signalr_edge::config::{parse_str, ConnectionString, EndpointUrl};

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

/// Stands in for every `AccessKey=` value, to find it in what the parser says.
const MARKER: &str = "\u{2603}KEY\u{2603}";

/// The input with the value of each well-formed `AccessKey=` part replaced by [`MARKER`].
fn with_marked_keys(s: &str) -> String {
    s.split(';')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("accesskey") => format!("{k}={MARKER}"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// A config with one SignalR endpoint given by `cs`, as YAML text.
fn config_with(cs: &str) -> Option<String> {
    let file = json!({
        "listeners": [{ "address": "127.0.0.1:8080" }],
        "pools": { "p": { "kind": "signalr", "endpoints": [
            { "connection_string": cs, "address": "127.0.0.1:1" }
        ] } },
        "routes": [{ "path": "/client/", "pool": "p" }],
    });
    serde_yaml::to_string(&file).ok()
}

/// Checks one connection string.
pub fn run(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let parsed = ConnectionString::from_str(&s);
    match &parsed {
        Ok(cs) => {
            assert!(!cs.endpoint.ends_with('/'));
            assert_eq!(EndpointUrl::parse(&cs.endpoint).as_ref(), Ok(&cs.url));
            assert!(cs.access_key.as_deref().is_none_or(|k| !k.is_empty()));
            assert_ne!(cs.port, Some(0));
            if let Some(key) = &cs.access_key {
                let without = format!(
                    "{:?}",
                    ConnectionString {
                        access_key: None,
                        ..cs.clone()
                    }
                );
                // A key of a few letters may be part of the words Debug prints anyway ("m" in
                // "Some"); the marked-key check below covers short keys.
                if key.len() >= 8 && !without.contains(key.as_str()) {
                    assert!(
                        !format!("{cs:?}").contains(key.as_str()),
                        "Debug shows the key"
                    );
                }
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
    if !s.contains(MARKER) {
        let marked = with_marked_keys(&s);
        match ConnectionString::from_str(&marked) {
            Ok(cs) => assert!(!format!("{cs:?}").contains(MARKER)),
            Err(e) => assert!(!e.contains(MARKER), "the error shows the key: {e}"),
        }
    }

    // The same string inside a config file: accepted and read the same, or refused at its key.
    let Some(text) = config_with(&s) else { return };
    match (parse_str(&text), &parsed) {
        (Ok(cfg), Ok(cs)) => {
            let ep = &cfg.service.pools["p"].endpoints[0];
            assert_eq!(ep.host, cs.url.host);
            assert_eq!(ep.tls, cs.url.tls);
            let port = cs.port.or(cs.url.port).unwrap_or(cs.url.default_port());
            assert_eq!(ep.port, port);
            assert_eq!(ep.access_key, cs.access_key);
        }
        (Err(e), Err(_)) => {
            assert_eq!(e.path, "pools.p.endpoints[0].connection_string", "{e:?}");
            if !s.contains(MARKER) {
                let marked = config_with(&with_marked_keys(&s)).and_then(|t| parse_str(&t).err());
                assert!(marked.is_none_or(|e| !e.message.contains(MARKER)));
            }
        }
        (Ok(_), Err(e)) => panic!("the config accepts what the parser refuses: {e}"),
        (Err(e), Ok(_)) => {
            // serde_yaml cannot carry every string through YAML (some control characters):
            // then the config refuses the text, not the connection string.
            assert_ne!(e.path, "pools.p.endpoints[0].connection_string", "{e:?}");
        }
    }
}
