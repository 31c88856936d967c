//! Invariants of the code itself: the domain stays pure (Invariant 1) and every
//! module says what it is for.

use std::fs;
use std::path::{Path, PathBuf};

/// Every source file of the crate, in subdirectories too.
fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    assert!(out.len() > 10, "found only {out:?}");
    out
}

#[test]
fn domain_depends_on_serde_schemars_and_smallvec_only() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let names: Vec<&str> =
        deps.lines().filter_map(|l| l.split(['=', '.']).next()).map(str::trim).filter(|n| !n.is_empty()).collect();
    // schemars only describes the types (the OpenAPI document's schemas): no I/O either;
    // smallvec is an inline vector (a GDAP decision's few relationships): data only.
    assert_eq!(
        names,
        ["serde", "schemars", "smallvec"],
        "behalf-domain must stay pure: no tokio, sled, async-nats, clock or randomness"
    );
    // Nor may the source reach for a clock or randomness.
    for path in sources() {
        let text = fs::read_to_string(&path).unwrap();
        for banned in ["SystemTime", "Instant::now", "thread_rng", "std::fs", "std::net", "std::env"] {
            assert!(!text.contains(banned), "{} uses {banned}", path.display());
        }
    }
}

#[test]
fn every_module_has_a_doc_comment() {
    for path in sources() {
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("//!"), "{} has no //! module doc", path.display());
    }
}
