//! Least privilege on NATS: `deploy/nats/permissions.conf` as it is (only the
//! passwords filled in) on a real nats-server; every role runs with exactly its user
//! and does its work without one permission violation, and what a role must not do —
//! a producer or a projector publishing on `behalf.ev.>`, deleting the stream, reading
//! the token bucket — is refused and changes nothing.

use crate::support;

use std::time::{Duration, Instant};

use behalf_domain::Principal;
use behalf_nats::rpc::{RpcClient, COMMAND_SUBJECT};
use behalf_nats::server::Cluster;
use behalf_nats::{Credential, Endpoint};
use serde_json::{json, Value};
use support::world::*;
use support::{before, send_world, spawn_until_with, Client, Role};

const ROLES: [&str; 5] = ["command", "project", "notify", "producer", "auditor"];

pub(crate) fn password(role: &str) -> String {
    format!("{role}-pw-{}", std::process::id())
}

pub(crate) fn user(url: &str, role: &str) -> Endpoint {
    Endpoint {
        credential: Credential::UserPassword { user: role.into(), password: password(role) },
        ..Endpoint::at(url)
    }
}

/// The permissions file with its password variables filled in.
pub(crate) fn permissions() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/nats/permissions.conf");
    let mut text = std::fs::read_to_string(path).unwrap();
    for role in ROLES {
        let var = format!("$BEHALF_NATS_{}_PASSWORD", role.to_uppercase());
        assert!(text.contains(&var), "{var} in permissions.conf");
        text = text.replace(&var, &format!("\"{}\"", password(role)));
    }
    text
}

pub(crate) fn violations(nats: &Cluster) -> Vec<String> {
    let log = std::fs::read_to_string(nats.nodes[0].dir.join("server.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains("Violation")).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_works_with_exactly_its_grant() {
    let nats = Cluster::single_with(&permissions()).expect("nats-server starts");
    let url = nats.urls();
    let flags = |role: &str| vec!["--nats".to_owned(), url.clone(), "--nats-user".into(), role.into()];
    // The password through the environment, as OPERATIONS.md advises.
    let spawn = |args: Vec<String>, role: &str, ready: &str| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn_until_with(&refs, &[("BEHALF_NATS_PASSWORD", &password(role))], ready)
    };
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let dir = |i: usize| dirs[i].path().to_str().unwrap().to_owned();

    // The command service first: it creates the stream and the buckets.
    let mut args = vec!["command".to_owned()];
    args.extend(flags("command"));
    args.extend(["--data-dir".into(), dir(0), "--listen".into(), "127.0.0.1:0".into()]);
    let (command, addr) = spawn(args, "command", "listening on ");
    let command = Role(command);
    let mut args = vec!["project".to_owned()];
    args.extend(flags("project"));
    args.extend(["--data-dir".into(), dir(1), "--listen".into(), "127.0.0.1:0".into()]);
    let project = Role(spawn(args, "project", "serving ").0);
    let mut args = vec!["notify".to_owned()];
    args.extend(flags("notify"));
    args.extend(["--data-dir".into(), dir(2)]);
    let notify = Role(spawn(args, "notify", "forwarding ").0);

    // The standard world over the command service's HTTP; then a ticket that escalates
    // (a queue message the notifier forwards).
    let admin = std::fs::read_to_string(behalf_sled_store::DataDir::new(dirs[0].path()).admin_token())
        .unwrap()
        .trim()
        .to_owned();
    let c = Client { http: reqwest::Client::new(), base: format!("http://{addr}") };
    send_world(&c, &admin).await;
    let agent_token = c.token(&admin, &agent()).await;
    let (status, opened) = c.post(&agent_token, &open_o365()).await;
    assert_eq!(status, 201, "{opened}");
    let ticket = opened["ticket_id"].as_str().unwrap().to_owned();
    let escalate = json!({"type":"ticket.escalate","ticket_id":ticket,"reason":"down for everyone"});
    let (status, answer) = c.post(&agent_token, &escalate).await;
    assert_eq!(status, 200, "{answer}");

    // A producer: commands and queries over request/reply, with its own user.
    let producer = RpcClient::connect(user(&url, "producer")).await.expect("the producer connects");
    let vendor = c.token(&admin, &Principal::Vendor).await;
    let bearer = format!("Bearer {vendor}");
    let note = json!({"type":"ticket.note","ticket_id":ticket,"text":"looking"});
    let r = producer
        .call(
            COMMAND_SUBJECT,
            &[("Authorization", &bearer), ("Content-Type", "application/json")],
            note.to_string().into(),
        )
        .await
        .expect("behalf.cmd answers the producer");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let head = |r: &behalf_nats::rpc::RpcReply| -> u64 {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["events"].as_array().and_then(|e| e.last()).and_then(|e| e["position"].as_u64()).unwrap_or(0)
    };
    let events = |r: RpcClient, bearer: String| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let params = json!({"after": 0, "limit": 1000}).to_string();
            let reply = r.call("behalf.query.events", &[("Authorization", &bearer)], params.into()).await;
            if let Ok(reply) = reply {
                if reply.status == 200 {
                    return (r, reply);
                }
            }
            before(deadline, "behalf.query.events answers");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (producer, before_forgery) = events(producer, bearer.clone()).await;
    let position = head(&before_forgery);
    assert!(position > 0);

    // The notifier forwarded the escalation: a vendor lease through the projector's HTTP
    // would see it; here, through the bucket the command service serves /v1/queues from.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .http
            .get(format!("{}/v1/queues/commercial.office365/messages?lease_ms=1000", c.base))
            .bearer_auth(&vendor)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        if v["messages"].as_array().is_some_and(|m| !m.is_empty()) {
            break;
        }
        before(deadline, &format!("the escalation reaches the vendor's queue; violations: {:?}", violations(&nats)));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The auditor reads the log.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["audit", "verify", "--nats", &url, "--nats-user", "auditor"])
        .env("BEHALF_NATS_PASSWORD", password("auditor"))
        .output()
        .unwrap();
    assert!(out.status.success(), "audit verify as the auditor: {}", String::from_utf8_lossy(&out.stderr));
    assert!(violations(&nats).is_empty(), "the roles stayed within their grants: {:#?}", violations(&nats));

    // What must be refused: writing the log past the command service, deleting it,
    // reading the tokens.
    for (role, subject) in [
        ("producer", "behalf.ev.ticket.ticket-forged"),
        ("project", "behalf.ev.ticket.ticket-forged"),
        ("producer", "$JS.API.STREAM.DELETE.BEHALF_EVENTS"),
        ("auditor", "$JS.API.STREAM.PURGE.BEHALF_EVENTS"),
        ("producer", "$JS.API.DIRECT.GET.KV_BEHALF_TOKENS.$KV.BEHALF_TOKENS.x"),
    ] {
        let client = behalf_nats::connect(&user(&url, role)).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(3), client.request(subject, "forged".into())).await;
        assert!(!matches!(answer, Ok(Ok(_))), "{role} got an answer on {subject}: {answer:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while violations(&nats).len() < 5 {
        before(deadline, "the server logs each refusal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = violations(&nats);
    assert!(seen.iter().all(|l| !l.contains("\"command\"") && !l.contains("\"notify\"")), "{seen:#?}");
    let (_, after) = events(producer, bearer).await;
    assert_eq!(head(&after), position, "nothing was written past the command service");
    drop((command, project, notify));
}
