//! The fuzz targets of `fuzz/` on stable: every target's committed corpus, then a few thousand
//! seeded mutations of it, through the same files (and assertions) that cargo-fuzz runs. A
//! failing input is saved to the temp directory and named in the panic.

use testkit::fuzz::{corpus, replay, TARGETS};

/// Mutated inputs per target: a few seconds for all of them in a debug build.
const MUTANTS: usize = 3000;

#[test]
fn every_target_has_a_corpus() {
    // A new file in fuzz/fuzz_targets/ joins by itself; these must never drop out.
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    for name in ["affinity", "config", "connstr", "jwt", "selection", "token"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for t in TARGETS {
        let seeds = corpus(t);
        assert!(
            seeds.len() >= 3,
            "fuzz/corpus/{}/ has {} seeds",
            t.name,
            seeds.len()
        );
    }
}

#[test]
fn corpus_and_mutations_pass_every_target() {
    for (i, t) in TARGETS.iter().enumerate() {
        let n = replay(t, MUTANTS, 0x5eed_0000 + i as u64);
        assert!(n >= MUTANTS);
    }
}
