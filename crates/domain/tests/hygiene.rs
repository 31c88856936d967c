//! Invariants of the code itself: the domain stays pure (Invariant 1) and every
//! module says what it is for.

use std::fs;
use std::path::Path;

#[test]
fn domain_depends_on_serde_only() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let names: Vec<&str> =
        deps.lines().filter_map(|l| l.split(['=', '.']).next()).map(str::trim).filter(|n| !n.is_empty()).collect();
    assert_eq!(names, ["serde"], "behalf-domain must stay pure: no tokio, sled, async-nats, clock or randomness");
    // Nor may the source reach for a clock or randomness.
    for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for banned in ["SystemTime", "Instant::now", "thread_rng", "std::fs", "std::net", "std::env"] {
            assert!(!text.contains(banned), "{} uses {banned}", path.display());
        }
    }
}

#[test]
fn every_module_has_a_doc_comment() {
    for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("//!"), "{} has no //! module doc", path.display());
    }
}
