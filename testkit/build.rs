//! Includes every target file of `../fuzz/fuzz_targets/` as a module of `testkit::fuzz`, with
//! an entry in `TARGETS`, so that the stable replay test (`tests/fuzz_replay.rs`) runs each new
//! target and its corpus without any list to edit. A target file without the `[[bin]]` that
//! cargo-fuzz reads (`cargo fuzz add NAME` writes both) fails the build here.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
    let fuzz = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("../fuzz");
    let dir = fuzz.join("fuzz_targets");
    println!("cargo::rerun-if-changed={}", dir.display());
    println!(
        "cargo::rerun-if-changed={}",
        fuzz.join("Cargo.toml").display()
    );
    let manifest = fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    let mut out = String::new();
    for name in &names {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
            "fuzz/fuzz_targets/{name}.rs has no [[bin]] in fuzz/Cargo.toml (`cargo fuzz add {name}` writes one)"
        );
        let path = dir.join(format!("{name}.rs")).canonicalize().unwrap();
        writeln!(
            out,
            "#[path = {:?}]\npub mod {name};",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str(
        "/// Every target of `fuzz/fuzz_targets/`, by name.\npub const TARGETS: &[Target] = &[\n",
    );
    for name in &names {
        writeln!(out, "    Target {{ name: {name:?}, run: {name}::run }},").unwrap();
    }
    out.push_str("];\n");
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("fuzz_targets.rs"),
        out,
    )
    .unwrap();
}
