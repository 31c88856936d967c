//! The deployment files stay valid: the systemd units pass `systemd-analyze verify`
//! (where the tool exists) with no warning, and each unit's ExecStart names a role the
//! binary has with flags it takes.

use std::path::Path;
use std::process::Command;

const UNITS: [&str; 4] = ["serve", "command", "project", "notify"];

fn unit(role: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../deploy/systemd/behalf-{role}.service"));
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn every_unit_starts_a_role_the_binary_has() {
    for role in UNITS {
        let text = unit(role);
        let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart");
        let mut args: Vec<&str> = exec.split_whitespace().skip(1).collect();
        assert_eq!(args.first(), Some(&role), "{exec}");
        // The same arguments, asking for help: clap refuses a flag the role lacks.
        args.push("--help");
        let out = Command::new(env!("CARGO_BIN_EXE_behalf")).args(&args).output().unwrap();
        assert!(out.status.success(), "{exec}: {}", String::from_utf8_lossy(&out.stderr));
        for hardening in ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory="] {
            assert!(text.contains(hardening), "behalf-{role}.service lacks {hardening}");
        }
    }
}

#[test]
fn systemd_analyze_verify_passes_where_it_exists() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not on this machine: the units' syntax is not checked here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for role in UNITS {
        // The unit as installed, but starting this build's binary (verify checks it exists).
        let text = unit(role).replace("/usr/local/bin/behalf", env!("CARGO_BIN_EXE_behalf"));
        let path = dir.path().join(format!("behalf-{role}.service"));
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze").arg("verify").args(&paths).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}
