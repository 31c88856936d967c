//! HTTPS: `behalf serve --tls-cert --tls-key` answers over TLS (checked against the
//! test CA), refuses plain HTTP on that port, closes a connection whose handshake does
//! not come, and serves a new certificate after SIGHUP without a restart.

use crate::support;

use std::io::Read as _;
use std::time::{Duration, Instant};

use support::certs::Certs;
use support::Server;

fn client(ca: &std::path::Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .pool_max_idle_per_host(0) // each request a new connection (and handshake)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_https_only_and_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let old = Certs::make(&first);
    let new = Certs::make(&second);
    // The server reads these two paths; the test swaps what they hold.
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    std::fs::copy(&old.server_cert, &cert).unwrap();
    std::fs::copy(&old.server_key, &key).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(data.path(), &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let https = format!("https://{addr}");

    let r = client(&old.ca).get(format!("{https}/healthz")).send().await.expect("HTTPS against the test CA");
    assert_eq!(r.status(), 200);
    // Authenticated requests work the same over TLS.
    let r = client(&old.ca).get(format!("{https}/v1/tokens")).bearer_auth(&server.admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A client that trusts another CA is refused by its own check; plain HTTP gets no answer.
    assert!(client(&new.ca).get(format!("{https}/healthz")).send().await.is_err());
    assert!(reqwest::get(format!("http://{addr}/healthz")).await.is_err(), "plain HTTP is not served on a TLS port");

    // A client that connects and never starts the handshake is closed (header timeout).
    let slow = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let t = Instant::now();
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).unwrap_or(0);
            (n, t.elapsed())
        }
    });

    // SIGHUP with new files: new connections get the new certificate.
    std::fs::copy(&new.server_cert, &cert).unwrap();
    std::fs::copy(&new.server_key, &key).unwrap();
    let kill = std::process::Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client(&new.ca).get(format!("{https}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was not served after SIGHUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(client(&old.ca).get(format!("{https}/healthz")).send().await.is_err(), "the old certificate is gone");
    // A broken file on the next SIGHUP keeps the certificate that works.
    std::fs::write(&cert, "not a certificate").unwrap();
    let mut c = std::process::Command::new("kill").args(["-HUP", &server.child.id().to_string()]).spawn().unwrap();
    c.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client(&new.ca).get(format!("{https}/healthz")).send().await.expect("still served");
    assert_eq!(r.status(), 200);

    let (n, took) = slow.join().unwrap();
    assert_eq!(n, 0, "the silent connection is closed, not answered");
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(20), "closed after the timeout: {took:?}");
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "garbage").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--tls-cert", bad.to_str().unwrap(), "--tls-key", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.pem"), "the error names the file: {err}");
}
