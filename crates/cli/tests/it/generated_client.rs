//! The document is usable, not only valid: a public generator (openapi-python-client,
//! PyPI, pinned in `./dev`, installed into `tools/opc`) makes a Python client from the
//! `/v1/openapi.json` a real `behalf serve` answers, and that client runs README's
//! curl session (`generated_client/session.py`): typed commands in, typed answers out,
//! a refusal with its code and rule. An answer the document does not describe, or a
//! command it does not let the client build, fails here.

use crate::support;

use std::path::PathBuf;
use std::process::Command;

use support::Server;

#[tokio::test]
async fn a_generated_client_runs_the_readme_session() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let opc = root.join("tools/opc");
    assert!(
        opc.join("openapi_python_client").is_dir(),
        "openapi-python-client is not installed in {}: run ./dev setup",
        opc.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &[]);

    // The document as the server serves it.
    let doc = reqwest::get(format!("{}/v1/openapi.json", server.base)).await.unwrap();
    assert!(doc.status().is_success());
    let doc_file = dir.path().join("openapi.json");
    std::fs::write(&doc_file, doc.bytes().await.unwrap()).unwrap();

    let path = format!("{}:{}", opc.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("python3")
        .args(["-m", "openapi_python_client", "generate", "--meta", "none", "--path"])
        .arg(&doc_file)
        .arg("--output-path")
        .arg(dir.path().join("behalf_api"))
        .env("PYTHONPATH", &opc)
        .env("PATH", &path)
        .current_dir(dir.path())
        .output()
        .expect("python3 runs openapi-python-client");
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("{report}");
    assert!(out.status.success(), "the generator failed (above)");
    // Only MessagePack, which this generator does not speak, may be left out.
    let left_out: Vec<&str> =
        report.lines().filter(|l| l.contains("will not be generated") || l.contains("Unable to process")).collect();
    assert!(left_out.is_empty(), "the generator left something out: {left_out:?}");
    assert!(dir.path().join("behalf_api/api/default/post_v1_commands.py").is_file(), "no client for commands");

    let session = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/generated_client/session.py");
    let out = Command::new("python3")
        .arg(&session)
        .env("PYTHONPATH", format!("{}:{}", dir.path().display(), opc.display()))
        .env("BEHALF_URL", &server.base)
        .env("BEHALF_ADMIN_TOKEN", &server.admin)
        .output()
        .expect("python3 runs the session");
    println!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the generated client's session failed (above)");
}
