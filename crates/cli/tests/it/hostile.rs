//! Invariant 5 on the real binary: hostile and malformed bodies — random bytes, valid
//! commands with fields removed, retyped or swapped — are answered with a 4xx and a
//! stable code, never a 5xx or a crash; the server is still healthy afterwards.

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

use crate::support;

use serde_json::{json, Value};
use support::world::*;
use support::{send_world, Client, Server};

/// A small deterministic generator, so a failure can be repeated.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

fn weird(r: &mut Lcg) -> Value {
    match r.next(9) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(1.5),
        4 => json!("x".repeat(r.next(3000) as usize)),
        5 => json!([1, "two", null]),
        6 => json!({"nested": {"deeper": [{}]}}),
        7 => json!("\u{0000}\u{202e}\u{feff}"),
        _ => json!(true),
    }
}

fn mutate(mut v: Value, r: &mut Lcg) -> Value {
    let Some(obj) = v.as_object_mut() else { return v };
    let keys: Vec<String> = obj.keys().cloned().collect();
    for _ in 0..1 + r.next(3) {
        let k = &keys[r.next(keys.len() as u64) as usize];
        match r.next(3) {
            0 => {
                obj.remove(k);
            }
            1 => {
                obj.insert(k.clone(), weird(r));
            }
            _ => {
                obj.insert(format!("extra_{}", r.next(100)), weird(r));
            }
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_get_4xx_and_never_break_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let a = c.token(&server.admin, &agent()).await;
    let v = c.token(&server.admin, &behalf_domain::Principal::Vendor).await;
    let t = c.post(&a, &open_o365()).await.1["ticket_id"].as_str().unwrap().to_owned();
    let seeds = [
        open_o365(),
        open_azure(),
        json!({"type":"ticket.note","ticket_id":t,"text":"x"}),
        json!({"type":"ticket.update","ticket_id":t,"severity":"minimal"}),
        json!({"type":"ticket.attach","ticket_id":t,"name":"a","uri":"https://x.example/a"}),
        json!({"type":"gdap.relationship.upsert","relationship_id":"rel-h","partner_id":PARTNER,"customer_id":CUSTOMER,"status":"active","roles":[HELPDESK],"activated_at":"2026-01-01T00:00:00Z","duration":"P30D","auto_extend":"PT0S"}),
        json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-o365","summary":"help"}),
    ];
    let mut r = Lcg(0xbad5eed);
    let url = format!("{}/v1/commands", c.base);
    for i in 0..400 {
        let token = if i % 2 == 0 { &a } else { &v };
        let (status, body) = if i % 5 == 0 {
            // Raw bytes, JSON-looking or not.
            let n = r.next(200) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| r.next(256) as u8).collect();
            let ctype = if i % 10 == 0 { "application/msgpack" } else { "application/json" };
            let resp =
                c.http.post(&url).bearer_auth(token).header("content-type", ctype).body(bytes).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        } else {
            let seed = seeds[r.next(seeds.len() as u64) as usize].clone();
            c.post(token, &mutate(seed, &mut r)).await
        };
        assert!(status < 500, "#{i}: bad input is never an internal error: {status} {body}");
        if status >= 400 {
            assert_eq!(body["outcome"], "rejected", "#{i}: {status} {body}");
            assert!(
                behalf_domain::Code::parse(body["code"].as_str().unwrap_or("")).is_some(),
                "#{i}: a stable code: {body}"
            );
        }
    }
    let health = c.http.get(format!("{}/healthz", c.base)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "the server is still up");
    assert_eq!(c.post(&a, &json!({"type":"ticket.note","ticket_id":t,"text":"still works"})).await.0, 200);
}

/// R26 per tenant over HTTP: the vendor side, a partner and a customer each use the
/// command id `shared-1` for their own command — none blocks another or learns of it;
/// within one tenant (a partner's agent and its directory sync) the id is one.
async fn command_ids_belong_to_their_tenant(server: Server) {
    use support::world::{customer_user, sync};
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let vendor = c.token(&server.admin, &behalf_domain::Principal::Vendor).await;
    let agent = c.token(&server.admin, &agent()).await;
    let own_sync = c.token(&server.admin, &sync(PARTNER)).await;
    let customer = c.token(&server.admin, &customer_user()).await;
    let register = json!({"type":"customer.register","customer_id":"22222222-0000-4000-8000-0000000000ff","name":"New","domains":["new.example"],"cloud":"commercial","command_id":"shared-1"});
    let (status, v) = c.post(&vendor, &register).await;
    assert_eq!((status, v["outcome"].as_str()), (200, Some("accepted")), "{v}");
    let (status, opened) = c.post(&agent, &merge(open_o365(), json!({"command_id":"shared-1"}))).await;
    assert_eq!(status, 201, "another tenant's use of the id does not block it: {opened}");
    let request = json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-o365","prefer":"vendor","summary":"help","command_id":"shared-1"});
    let (status, v) = c.post(&customer, &request).await;
    assert_eq!((status, v["outcome"].as_str()), (200, Some("accepted")), "{v}");
    // Retries answer each tenant's own first outcome.
    let (_, again) = c.post(&agent, &merge(open_o365(), json!({"command_id":"shared-1"}))).await;
    assert_eq!((again["position"].clone(), again["duplicate"].as_bool()), (opened["position"].clone(), Some(true)));
    // Within the partner's tenant, its directory sync reusing the id is refused — and
    // what it is told is its own tenant's first position.
    let upsert = json!({"type":"group.member.add","partner_id":PARTNER,"group_id":GROUP,"user_id":NOT_ADMIN,"command_id":"shared-1"});
    let (status, v) = c.post(&own_sync, &upsert).await;
    assert_eq!((status, v["code"].as_str()), (422, Some("idempotency.key_reused")), "{v}");
    assert_eq!(v["details"]["first_position"], opened["position"]);
}

on_both_engines!(command_ids_belong_to_their_tenant);

/// An `Idempotency-Key` that is not visible ASCII is refused with 400, and nothing is
/// appended (dropped, the server would make its own id and a retry would open a
/// second ticket).
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_idempotency_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let agent = c.token(&server.admin, &agent()).await;
    let head = c.metric("behalf_log_head").await;
    let key = reqwest::header::HeaderValue::from_bytes(b"cl\xc3\xa9-1").unwrap();
    let r = c
        .http
        .post(format!("{}/v1/commands", c.base))
        .bearer_auth(&agent)
        .header("Idempotency-Key", key)
        .json(&open_o365())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["code"].as_str(), v["details"]["field"].as_str()),
        (Some("request.malformed"), Some("Idempotency-Key"))
    );
    assert_eq!(c.metric("behalf_log_head").await, head, "nothing appended");
}

/// A query waiting for a position the log has not reached answers within `wait_ms`
/// (it waited twice that before: once for the views, once for the GDAP projection).
#[tokio::test(flavor = "multi_thread")]
async fn a_read_your_writes_wait_lasts_wait_ms_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let agent = c.token(&server.admin, &agent()).await;
    let far = c.metric("behalf_log_head").await + 1_000;
    let started = std::time::Instant::now();
    let (status, v) = c.get(&agent, &format!("/v1/customers/{CUSTOMER}/tickets?min_position={far}&wait_ms=1000")).await;
    let took = started.elapsed();
    assert_eq!((status, v["code"].as_str()), (503, Some("unavailable")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("within 1000 ms"), "{v}");
    assert!(took < std::time::Duration::from_millis(1_900), "waited {took:?} for wait_ms=1000");
}

/// Opens a raw connection to `base` (`http://HOST:PORT`) and sends `bytes`, then stalls.
async fn stall(base: &str, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// What the server sends before it closes the connection, within `limit`; `None` if it
/// is still open then.
async fn until_closed(s: &mut tokio::net::TcpStream, limit: std::time::Duration) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.ok().map(|()| String::from_utf8_lossy(&got).into_owned())
}

const HALF_HEADERS: &[u8] = b"POST /v1/commands HTTP/1.1\r\nHost: x\r\nContent-Type: appl";
/// A command whose body stops short of its Content-Length, from an authenticated client.
fn short_body(token: &str) -> Vec<u8> {
    format!("POST /v1/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n{{\"type\":")
        .into_bytes()
}

/// Slow clients: one stalled in its headers, one in its body, one idle — each is
/// closed within its timeout (the body one answered 408 first), and the server goes on
/// serving.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_clients_are_closed_after_their_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = Client::of(&server).token(&server.admin, &behalf_domain::Principal::Vendor).await;
    let mut headers = stall(&server.base, HALF_HEADERS).await;
    let mut body = stall(&server.base, &short_body(&token)).await;
    let mut idle = stall(&server.base, b"").await;
    let limit = behalf_http::HEADER_TIMEOUT.max(behalf_http::BODY_TIMEOUT) + std::time::Duration::from_secs(5);
    let (h, b, i) =
        tokio::join!(until_closed(&mut headers, limit), until_closed(&mut body, limit), until_closed(&mut idle, limit));
    assert!(h.is_some(), "a client stalled in its headers is closed");
    assert!(i.is_some(), "a client that sends nothing is closed");
    let b = b.expect("a client stalled in its body is closed");
    assert!(b.starts_with("HTTP/1.1 408") && b.contains("request.timeout"), "{b}");
    let c = Client::of(&server);
    assert_eq!(c.http.get(format!("{}/healthz", c.base)).send().await.unwrap().status().as_u16(), 200);
}

/// SIGTERM with clients stalled mid-request: the server stops accepting, gives what is
/// in flight its deadline, closes the rest and exits 0 — a slow client does not turn a
/// restart into an outage.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_is_not_held_up_by_stalled_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let token = Client::of(&server).token(&server.admin, &behalf_domain::Principal::Vendor).await;
    let mut stalled = Vec::new();
    for i in 0..40 {
        let bytes = if i % 2 == 0 { HALF_HEADERS.to_vec() } else { short_body(&token) };
        stalled.push(stall(&server.base, &bytes).await);
    }
    // Let the server take them in: the body ones are in their handlers now.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let took = started.elapsed();
    assert!(
        took < behalf_http::SHUTDOWN_DEADLINE + std::time::Duration::from_secs(5),
        "shutdown took {took:?} with stalled clients"
    );
}

/// The data directory holds tickets, contacts and token hashes: owner-only when made,
/// and closed again when found open to others.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    let fresh = root.path().join("fresh");
    drop(Server::start(&fresh));
    assert_eq!(mode(&fresh), 0o700, "made owner-only");
    let open = root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(Server::start(&open));
    assert_eq!(mode(&open), 0o700, "a directory open to others is closed");
    assert_eq!(mode(&behalf_sled_store::DataDir::new(open).admin_token()) & 0o077, 0, "the admin token is the owner's");
}

/// What was lenient is refused with a stable code: MessagePack with bytes after the
/// document (JSON with trailing characters already was), a wrong method (405 with a
/// JSON body, not an empty one), a `limit` out of range (422, not clamped), a
/// malformed `after` cursor, a `lease_ms` out of range. Nothing is appended.
#[tokio::test(flavor = "multi_thread")]
async fn former_leniencies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let agent = c.token(&server.admin, &agent()).await;
    let vendor = c.token(&server.admin, &behalf_domain::Principal::Vendor).await;
    let head = c.metric("behalf_log_head").await;
    let mut body = rmp_serde::to_vec_named(&open_o365()).unwrap();
    body.extend_from_slice(b"\x01trailing");
    let r = c
        .http
        .post(format!("{}/v1/commands", c.base))
        .bearer_auth(&agent)
        .header("content-type", "application/msgpack")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "request.malformed", "{v}");
    let r = c.http.delete(format!("{}/v1/commands", c.base)).bearer_auth(&agent).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "request.method_not_allowed", "a 405 says why, as JSON");
    for (path, field) in [
        (format!("/v1/customers/{CUSTOMER}/tickets?limit=0"), "limit"),
        (format!("/v1/customers/{CUSTOMER}/tickets?limit=501"), "limit"),
        (format!("/v1/customers/{CUSTOMER}/tickets?after=a%20b"), "after"),
        ("/v1/events?limit=100000".to_owned(), "limit"),
    ] {
        let who = if path.starts_with("/v1/events") { &vendor } else { &agent };
        let (status, v) = c.get(who, &path).await;
        assert_eq!((status, v["details"]["field"].as_str()), (422, Some(field)), "{path}: {v}");
    }
    let (status, v) = c.get(&vendor, "/v1/queues/commercial.azure/messages?lease_ms=10").await;
    assert_eq!((status, v["details"]["field"].as_str()), (422, Some("lease_ms")), "{v}");
    assert_eq!(c.metric("behalf_log_head").await, head, "nothing appended");
}
