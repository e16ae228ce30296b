//! The cargo-fuzz targets of `fuzz/` on stable. Each file of `fuzz/fuzz_targets/` is a
//! `pub fn run(data: &[u8])` that panics when an input breaks a property, plus libFuzzer's entry
//! under `--cfg fuzzing`; build.rs includes every such file here as a module and lists it in
//! [`TARGETS`]. [`replay`] runs a target on its committed corpus and on seeded mutations of it
//! (libFuzzer-style flips, inserts of bytes the parsers branch on, deletions, copies, splices),
//! reproducible from the seed alone, so a failure in CI names an input that fails anywhere.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// A fuzz target: its name (the file, the cargo-fuzz binary and the corpus folder) and body.
#[derive(Clone, Copy)]
pub struct Target {
    /// The name of the file in `fuzz/fuzz_targets/`.
    pub name: &'static str,
    /// The body: panics when the input breaks a property.
    pub run: fn(&[u8]),
}

impl Target {
    /// The committed seed corpus of the target, `fuzz/corpus/<name>/`.
    pub fn corpus_dir(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(self.name)
    }
}

include!(concat!(env!("OUT_DIR"), "/fuzz_targets.rs"));

/// Bytes and fragments the targets' parsers branch on.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"&",
    b"=",
    b";",
    b".",
    b"%",
    b"%2",
    b"%3D",
    b"%ff",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"@",
    b"/",
    b"?",
    b"#",
    b" ",
    b"\t",
    b"\r\n",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
    b"aud",
    b"\"aud\":",
    b"https://",
    b"http://",
    b"[::1]",
    b"id=",
    b"access_token=",
    b"asrs_request_id=",
    b"Bearer ",
    b"Endpoint=",
    b"AccessKey=",
    b"Version=1.0",
    b"Port=",
    b"18446744073709551615",
    b"-1",
    b"0",
    b"99999",
    b"eyJ",
    b"==",
    b"\r\n\r\n",
    b"Host: ",
    b"Authorization: ",
    b"X-Forwarded-For: ",
    b"- ",
    b": ",
    b"{ }",
    b"[ ]",
    b"!!",
    b"&a ",
    b"*a",
];

/// A xorshift64* generator: tiny, seeded, the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One to four mutations of `input`, with `other` as the splice partner.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next_u64() as u8),
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 if !v.is_empty() => {
                let from = rng.below(v.len());
                let len = (1 + rng.below(32)).min(v.len() - from);
                let chunk = v[from..from + len].to_vec();
                v.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            _ => v.truncate(at),
        }
    }
    v
}

/// The committed seeds of a target, sorted by file name.
pub fn corpus(target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(target.corpus_dir()) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = dir
        .filter_map(|e| {
            let path = e.ok()?.path();
            let data = std::fs::read(&path).ok()?;
            Some((path, data))
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` on every seed of its corpus, then on `random` mutations of them (and of the
/// empty input) from `seed`. A failing input is written to the temp directory and named in the
/// panic, so it can be replayed with the target's binary or added to the corpus.
pub fn replay(target: &Target, random: usize, seed: u64) -> usize {
    let seeds = corpus(target);
    let run = |label: &str, data: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| (target.run)(data))).is_err() {
            let file = std::env::temp_dir().join(format!("fuzz-{}-{label}", target.name));
            let saved = std::fs::write(&file, data).is_ok();
            panic!(
                "fuzz target {} fails on {label} ({} bytes{}): {:?}",
                target.name,
                data.len(),
                if saved {
                    format!(", saved as {}", file.display())
                } else {
                    String::new()
                },
                String::from_utf8_lossy(data)
            );
        }
    };
    for (path, data) in &seeds {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        run(&format!("seed-{name}"), data);
    }
    let mut rng = Rng::new(seed);
    let pick = |rng: &mut Rng| -> Vec<u8> {
        if seeds.is_empty() {
            Vec::new()
        } else {
            seeds[rng.below(seeds.len())].1.clone()
        }
    };
    // Mutations stack: each input starts from a seed or from the previous mutant.
    let mut current = pick(&mut rng);
    for i in 0..random {
        if rng.below(4) == 0 {
            current = pick(&mut rng);
        }
        let other = pick(&mut rng);
        current = mutate(&mut rng, &current, &other);
        if current.len() > 8192 {
            current.truncate(8192);
        }
        run(&format!("mutant-{seed}-{i}"), &current);
    }
    seeds.len() + random
}
