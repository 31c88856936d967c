//! The roles on a nats-server that demands TLS and credentials (certificates made by
//! the test): every role joins over TLS with user and password, an NKey or a token;
//! a wrong password, a missing client certificate or an unknown CA fail fast and say
//! why; secrets never reach the output.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use behalf_nats::server::Cluster;
use support::certs::Certs;
use support::{send_world, spawn_until, Client, Role, Server};

const PASSWORD: &str = "pw-not-logged-7f3a";
const TOKEN: &str = "tok-not-logged-91c2";

fn tls_url(nats: &Cluster) -> String {
    format!("tls://127.0.0.1:{}", nats.nodes[0].client_port)
}

/// Runs `behalf <args>` to its end (at most 20 s): its exit code and everything it printed.
fn run(args: &[&str]) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(args)
        .env("BEHALF_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("behalf {args:?} still runs after 20 s: it must fail fast");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text, t.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_join_over_mutual_tls_with_a_password_or_an_nkey() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let user = nkeys::KeyPair::new_user();
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let auth = format!(
        "authorization {{\n  users: [\n    {{user: \"ops\", password: \"{PASSWORD}\"}}\n    {{nkey: \"{}\"}}\n  ]\n}}\n",
        user.public_key()
    );
    let nats = Cluster::single_with(&(certs.nats_tls_block(true) + &auth)).expect("nats-server starts");
    let url = tls_url(&nats);
    let (ca, cert, key) =
        (certs.ca.to_str().unwrap(), certs.client_cert.to_str().unwrap(), certs.client_key.to_str().unwrap());
    let tls = ["--nats", url.as_str(), "--nats-ca", ca, "--nats-cert", cert, "--nats-key", key];
    let password = ["--nats-user", "ops", "--nats-password", PASSWORD];
    let nkey = ["--nats-nkey", seed.to_str().unwrap()];

    // serve with user and password: the world goes in through HTTP, onto the TLS log.
    let serve_dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(serve_dir.path(), &[&tls[..], &password[..]].concat());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;

    // Each role with the other credential: it opens what it needs and starts serving.
    let role_dir = tempfile::tempdir().unwrap();
    let data = ["--data-dir", role_dir.path().to_str().unwrap()];
    let _command = Role(spawn_until(&[&["command"], &tls[..], &nkey[..], &data[..]].concat(), "serving ").0);
    let project_dir = tempfile::tempdir().unwrap();
    let pdata = ["--data-dir", project_dir.path().to_str().unwrap()];
    let _project = Role(spawn_until(&[&["project"], &tls[..], &password[..], &pdata[..]].concat(), "serving ").0);
    let notify_dir = tempfile::tempdir().unwrap();
    let ndata = ["--data-dir", notify_dir.path().to_str().unwrap()];
    let _notify = Role(spawn_until(&[&["notify"], &tls[..], &nkey[..], &ndata[..]].concat(), "forwarding ").0);
    // A one-shot tool too: the audit reads the log over the same TLS.
    let (code, out, _) = run(&[&["audit", "verify"], &tls[..], &nkey[..]].concat());
    assert_eq!(code, Some(0), "audit verify over TLS with an NKey: {out}");

    // A wrong password: refused at once, named as such, and the password not shown.
    let wrong = ["--nats-user", "ops", "--nats-password", "not-it-5d1e"];
    let (code, out, took) = run(&[&["command"], &tls[..], &wrong[..], &data[..]].concat());
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("refused the login"), "the refusal is named: {out}");
    assert!(took < Duration::from_secs(10), "a refused login fails fast, not in reconnects: {took:?}");
    assert!(!out.contains("not-it-5d1e"), "no secret in the output: {out}");

    // Mutual TLS: without a client certificate the handshake fails, and says so.
    let no_cert = ["--nats", url.as_str(), "--nats-ca", ca];
    let (code, out, took) = run(&[&["command"], &no_cert[..], &password[..], &data[..]].concat());
    assert_ne!(code, Some(0), "{out}");
    assert!(took < Duration::from_secs(10), "{took:?}: {out}");
    assert!(!out.contains(PASSWORD), "no secret in the output: {out}");

    // A CA that did not sign the server's certificate: refused.
    let other = tempfile::tempdir().unwrap();
    let stranger = Certs::make(other.path());
    let bad_ca =
        ["--nats", url.as_str(), "--nats-ca", stranger.ca.to_str().unwrap(), "--nats-cert", cert, "--nats-key", key];
    let (code, out, _) = run(&[&["command"], &bad_ca[..], &password[..], &data[..]].concat());
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("TLS"), "a failed handshake is named: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_join_over_tls_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let auth = format!("authorization {{\n  token: \"{TOKEN}\"\n}}\n");
    let nats = Cluster::single_with(&(certs.nats_tls_block(false) + &auth)).expect("nats-server starts");
    let url = tls_url(&nats);
    let tls = ["--nats", url.as_str(), "--nats-ca", certs.ca.to_str().unwrap()];
    let role_dir = tempfile::tempdir().unwrap();
    let data = ["--data-dir", role_dir.path().to_str().unwrap()];
    let command = spawn_until(&[&["command"], &tls[..], &["--nats-token", TOKEN], &data[..]].concat(), "serving ");
    let _command = Role(command.0);
    // The token from the environment works for a one-shot tool as well.
    let (code, out, _) = {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_behalf"))
            .args([&["queue", "tail", "commercial.office365"], &tls[..]].concat())
            .env("BEHALF_NATS_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text, t.elapsed())
    };
    assert_eq!(code, Some(0), "queue tail with BEHALF_NATS_TOKEN: {out}");
    let (code, out, took) = run(&[&["command"], &tls[..], &["--nats-token", "nope-3c1b"], &data[..]].concat());
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("refused the login"), "{out}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!out.contains("nope-3c1b") && !out.contains(TOKEN), "no secret in the output: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_join_with_a_creds_file() {
    let dir = tempfile::tempdir().unwrap();
    let auth = support::jwt::decentralized();
    let creds = dir.path().join("role.creds");
    std::fs::write(&creds, &auth.creds).unwrap();
    let nats = Cluster::single_with(&auth.server_config).expect("nats-server starts in operator mode");
    let url = nats.urls();
    let role_dir = tempfile::tempdir().unwrap();
    let with_creds = ["--nats", url.as_str(), "--nats-creds", creds.to_str().unwrap()];
    let data = ["--data-dir", role_dir.path().to_str().unwrap()];
    let _command = Role(spawn_until(&[&["command"], &with_creds[..], &data[..]].concat(), "serving ").0);
    let (code, out, _) = run(&[&["audit", "verify"], &with_creds[..]].concat());
    assert_eq!(code, Some(0), "audit verify with a .creds file: {out}");
    // Without the creds file the same server refuses.
    let (code, out, took) = run(&[&["audit", "verify", "--nats", url.as_str()][..]].concat());
    assert_ne!(code, Some(0), "{out}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}
