//! End-to-end: bad input to the real `behalf serve` over HTTP — malformed bodies,
//! wrong types, oversized and truncated requests, bad ids — is answered with a stable
//! code and changes nothing, on both engines.

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

use crate::support;

use serde_json::{json, Value};
use support::world::*;
use support::{send_world, Client, Server};

on_both_engines!(bad_input_is_answered_and_changes_nothing);

async fn bad_input_is_answered_and_changes_nothing(server: Server) {
    let dir = &server.data_dir.clone();
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let agent_token = c.token(&server.admin, &agent()).await;
    let head = c.metric("behalf_log_head").await;
    let url = format!("{}/v1/commands", c.base);
    let raw = |body: Vec<u8>, ctype: &'static str, token: Option<String>| {
        let mut r = c.http.post(&url).header("content-type", ctype).body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let code = |r: reqwest::Response| async move {
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        (s, v["code"].as_str().unwrap_or("").to_owned())
    };
    let t = Some(agent_token.clone());
    assert_eq!(
        code(raw(b"not json".to_vec(), "application/json", t.clone()).await.unwrap()).await,
        (400, "request.malformed".into())
    );
    assert_eq!(
        code(raw(br#"{"type":"ticket.fly"}"#.to_vec(), "application/json", t.clone()).await.unwrap()).await,
        (400, "request.malformed".into())
    );
    assert_eq!(
        code(
            raw(br#"{"type":"ticket.note","ticket_id":7,"text":"x"}"#.to_vec(), "application/json", t.clone())
                .await
                .unwrap()
        )
        .await,
        (400, "request.malformed".into())
    );
    assert_eq!(
        code(raw(vec![0xc1, 0xff], "application/msgpack", t.clone()).await.unwrap()).await,
        (400, "request.malformed".into())
    );
    assert_eq!(
        code(raw(b"{}".to_vec(), "application/json", None).await.unwrap()).await,
        (401, "auth.unauthenticated".into())
    );
    assert_eq!(
        code(raw(b"{}".to_vec(), "application/json", Some("bh_nope_nope".into())).await.unwrap()).await,
        (401, "auth.unauthenticated".into())
    );
    let big = format!(r#"{{"type":"ticket.note","ticket_id":"x","text":"{}"}}"#, "a".repeat(300 * 1024));
    assert_eq!(
        code(raw(big.into_bytes(), "application/json", t.clone()).await.unwrap()).await,
        (413, "request.too_large".into())
    );
    assert_eq!(c.metric("behalf_log_head").await, head, "bad input appends nothing");

    // MessagePack bodies and answers; the Idempotency-Key header.
    let body = rmp_serde::to_vec_named(&open_o365()).unwrap();
    let r = c
        .http
        .post(&url)
        .bearer_auth(&agent_token)
        .header("content-type", "application/msgpack")
        .header("idempotency-key", "mp-1")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["outcome"].as_str(), v["command_id"].as_str()), (Some("accepted"), Some("mp-1")));
    let r = c
        .http
        .post(&url)
        .bearer_auth(&agent_token)
        .header("content-type", "application/msgpack")
        .header("accept", "application/msgpack")
        .header("idempotency-key", "mp-1")
        .body(body)
        .send()
        .await
        .unwrap();
    let again: Value = rmp_serde::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((again["ticket_id"].clone(), again["duplicate"].clone()), (v["ticket_id"].clone(), json!(true)));

    // Revoked tokens are refused; only admins manage tokens.
    let tok = c
        .http
        .get(format!("{}/v1/tokens", c.base))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let id = tok["tokens"].as_array().unwrap().iter().find(|t| t["principal"]["kind"] == "partner_agent").unwrap()
        ["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = c.http.delete(format!("{}/v1/tokens/{id}", c.base)).bearer_auth(&agent_token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = c.http.delete(format!("{}/v1/tokens/{id}", c.base)).bearer_auth(&server.admin).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(c.post(&agent_token, &open_o365()).await.0, 401);
    assert!(!tok.to_string().contains(&agent_token), "listing never shows a secret");
    // The data directory's admin token file is the owner's only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(behalf_sled_store::DataDir::new(dir).admin_token()).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
