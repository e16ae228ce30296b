//! Fuzz target `config`: the config loader (`config::parse_str`) on arbitrary text. What it
//! accepts it accepts again the same; what it accepts without file paths or DNS names also
//! compiles into a runtime without a panic.
#![cfg_attr(fuzzing, no_main)]

use std::path::Path;

use signalr_edge::config::parse_str;
use signalr_edge::runtime::Runtime;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));

/// Parses the input as a config file (the loader reads files as UTF-8 text).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match parse_str(text) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(
                !e.message.is_empty(),
                "an error without a message at {:?}",
                e.path
            );
            return;
        }
    };
    assert_eq!(parse_str(text).as_ref(), Ok(&cfg));
    // Compiling reads certificate and CA files and resolves names without `address`: only
    // configs free of both are compiled here, so each input costs the same everywhere.
    let service = &cfg.service;
    let pure = service.listener_certs.iter().all(Option::is_none)
        && service
            .pools
            .values()
            .all(|p| p.tls.ca_file.is_none() && p.endpoints.iter().all(|e| e.address.is_some()));
    if pure {
        if let Ok(runtime) = Runtime::compile(service, Path::new("fuzz.yaml"), None) {
            assert_eq!(runtime.pools.len(), service.pools.len());
            // A reload of the same file over it keeps every endpoint.
            let again = Runtime::compile(service, Path::new("fuzz.yaml"), Some(&runtime))
                .expect("the same service compiles again");
            assert!(again.pools.iter().all(|p| p.retired.is_empty()));
        }
    }
}
