//! The docs stay true to the tree: every source file `docs/ARCHITECTURE.md` names by its
//! path from the workspace root exists, so the walk of one command and the code map
//! can be followed file by file.

use std::path::Path;

#[test]
fn architecture_names_only_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || "`(),;:".contains(c)) {
        let path = word.trim_end_matches('.');
        if path.starts_with("crates/") && [".rs", ".html", ".toml"].iter().any(|e| path.ends_with(e)) {
            named += 1;
            if !root.join(path).exists() {
                missing.push(path.to_owned());
            }
        }
    }
    assert!(named > 30, "ARCHITECTURE names files by their paths ({named} found)");
    assert!(missing.is_empty(), "ARCHITECTURE.md names files that do not exist: {missing:?}");
}
