//! Invariant 5 on the real binary: hostile and malformed bodies — random bytes, valid
//! commands with fields removed, retyped or swapped — are answered with a 4xx and a
//! stable code, never a 5xx or a crash; the server is still healthy afterwards.

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

mod support;

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
        assert!(status < 500 || status == 503, "#{i}: {status} {body}");
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
