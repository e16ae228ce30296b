//! Property test over the configuration schema (strategies in `schema`): files whose numbers
//! and durations sit at their bounds, with odd strings and odd files here and there, and the
//! same files with one key set past its bound.
//!
//! - Whatever `config::parse_str` accepts compiles into a runtime (or is refused with an
//!   error), compiles again as its own reload, and builds the Pingora server (`ServerConf`,
//!   connectors and their pools, services) without a panic; and what the process does with
//!   its numbers at run time (durations added to the clock, a read buffer allocated per
//!   connection, a runtime per thread) cannot overflow, abort or panic.
//! - A file that parsed is refused once one key is past its bound, and the error names it.

mod schema;
mod sections;
mod values;

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use super::server::{build, server_conf};
use super::RunFlags;
use crate::config;
use crate::runtime::Runtime;
use schema::{base, files, mutate, mutation};

/// Generated files per run. Each one that compiles costs about 0.2 s in a debug build (every
/// probe and the proxy's connector load the system's root certificates), and this runs in CI
/// on 2 cores.
const CASES: u32 = 40;

/// What became of the generated files.
#[derive(Debug, Default)]
struct Tally {
    parsed: usize,
    compiled: usize,
    built: usize,
    mutations_refused: usize,
}

/// Everything after `parse_str` accepted `text`; a panic is what the property forbids.
fn exercise(text: &str, tally: &mut Tally) {
    let Ok(cfg) = config::parse_str(text) else {
        return;
    };
    tally.parsed += 1;
    // What the process does with its numbers at run time, with the plain (panicking)
    // arithmetic and the allocations it makes.
    let s = &cfg.process.server;
    let now = tokio::time::Instant::now();
    let _ = now + Duration::from_secs(s.grace_period_seconds + 2);
    let _ = now + Duration::from_secs(s.graceful_shutdown_timeout_seconds);
    let per_thread = Vec::<[u8; 64]>::new().try_reserve_exact(s.threads);
    assert!(per_thread.is_ok(), "a runtime per thread: {}", s.threads);
    for l in &cfg.process.listeners {
        let buffer = Vec::<u8>::new().try_reserve_exact(l.read_buffer.unwrap_or(0));
        assert!(buffer.is_ok(), "a read buffer per connection: {l:?}");
    }
    for pool in cfg.service.pools.values() {
        let t = &pool.timeouts;
        let _ = now + t.connect + t.read + t.write + t.idle;
        if let Some(hc) = &pool.health_check {
            let _ = now + hc.interval + hc.timeout * 2;
        }
        let _ = now + pool.tokens.clock_skew + pool.passive_health.ejection;
        // Each pin's expiry is its last use plus the ttl.
        let _ = std::time::Instant::now() + pool.pinning.ttl;
    }
    let l = &cfg.service.limits;
    let _ = now + l.header_timeout + l.idle_timeout + l.body_timeout + l.send_timeout;
    let _ = now + l.per_client.interval;
    let r = &cfg.service.resolver;
    let _ = now + r.refresh + r.timeout;
    for daemon in [false, true] {
        let conf = server_conf(s, daemon);
        assert!(conf.threads >= 1 && conf.grace_period_seconds.is_some());
    }
    let file = Path::new("props.yaml");
    let Ok(runtime) = Runtime::compile(&cfg.service, file, None) else {
        return;
    };
    tally.compiled += 1;
    // The same file again, as a reload: it compiles just the same.
    let again = Runtime::compile(&cfg.service, file, Some(&runtime));
    assert!(again.is_ok(), "{text}: {again:?}");
    // Builds the proxy's connector, whose connection pool is sized up front.
    let built = build(&cfg, runtime, file, &RunFlags::default(), |code| {
        panic!("exit({code})")
    });
    if built.is_ok() {
        tally.built += 1;
    }
}

#[test]
fn whatever_parses_compiles_reloads_and_builds_and_one_key_past_its_bound_is_named() {
    let mut runner = TestRunner::new(RunnerConfig {
        cases: CASES,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let tally = RefCell::new(Tally::default());
    let cases = (base(), prop::option::weighted(0.5, mutation()));
    let result = runner.run(&cases, |(file, mutation)| {
        let text = serde_yaml::to_string(&file).unwrap();
        exercise(&text, &mut tally.borrow_mut());
        let Some(m) = mutation else {
            return Ok(());
        };
        let Some(mutated) = mutate(&file, &m) else {
            return Ok(()); // the key's section is not in this file
        };
        let mutated = serde_yaml::to_string(&mutated).unwrap();
        exercise(&mutated, &mut tally.borrow_mut());
        if config::parse_str(&text).is_ok() {
            let e = config::parse_str(&mutated);
            prop_assert!(e.is_err(), "{m:?} accepted:\n{mutated}");
            let e = e.unwrap_err();
            prop_assert!(e.path == m.path, "{m:?}: {e:?}");
            tally.borrow_mut().mutations_refused += 1;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&files().dir);
    if let Err(e) = result {
        panic!("{e}");
    }
    let tally = tally.into_inner();
    println!("{tally:?} of {CASES} generated files");
    // The property holds vacuously if nothing gets through: make sure a fair share does.
    assert!(
        tally.parsed >= 10 && tally.built >= 5 && tally.mutations_refused >= 5,
        "{tally:?}"
    );
}
