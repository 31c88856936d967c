//! The roles as separate processes on a real nats-server: two `behalf command`, two
//! `behalf project` and one `behalf notify`, reached over NATS request/reply
//! (`behalf.cmd`, `behalf.query.<name>`, JSON and MessagePack) and HTTP.

use crate::support;

use std::time::{Duration, Instant};

use behalf_log::EventLog;
use behalf_nats::rpc::{RpcClient, COMMAND_SUBJECT};
use behalf_nats::server::Cluster;
use behalf_nats::NatsQueues;
use behalf_sled_store::DataDir;
use serde_json::{json, Value};
use support::world::*;
use support::*;

fn role(args: &[&str], ready: &str) -> (Role, String) {
    let (child, rest) = spawn_until(args, ready);
    (Role(child), rest)
}

async fn cmd(rpc: &RpcClient, token: &str, body: &Value) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let r = rpc
        .call(
            COMMAND_SUBJECT,
            &[("Authorization", &bearer), ("Content-Type", "application/json")],
            body.to_string().into(),
        )
        .await
        .expect("behalf.cmd answers");
    (r.status, r.json())
}

async fn query(rpc: &RpcClient, token: &str, name: &str, params: Value) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let r = rpc
        .call(&format!("behalf.query.{name}"), &[("Authorization", &bearer)], params.to_string().into())
        .await
        .expect("behalf.query answers");
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_answer_over_nats_as_over_http() {
    let nats = Cluster::single().expect("nats-server starts");
    let url = nats.urls();
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let path = |i: usize| dirs[i].path().to_str().unwrap().to_owned();

    // The first command service also serves HTTP (for tokens); it makes the admin token.
    let (_c1, addr) =
        role(&["command", "--nats", &url, "--data-dir", &path(0), "--listen", "127.0.0.1:0"], "listening on ");
    let (_c2, _) = role(&["command", "--nats", &url, "--data-dir", &path(1)], "serving behalf.cmd");
    let (_p1, _) = role(&["project", "--nats", &url, "--data-dir", &path(2)], "serving behalf.query");
    let (_p2, _) = role(&["project", "--nats", &url, "--data-dir", &path(3)], "serving behalf.query");
    let (_n, _) = role(&["notify", "--nats", &url, "--data-dir", &path(4)], "forwarding");
    let admin = std::fs::read_to_string(DataDir::new(dirs[0].path()).admin_token()).unwrap().trim().to_owned();
    let http = Client::at(&format!("http://{addr}"));
    send_world(&http, &admin).await;
    let agent_token = http.token(&admin, &agent()).await;
    let rpc = RpcClient::connect(&url).await.unwrap();

    // Commands over NATS, to whichever command service the queue group picks.
    let (status, opened) = cmd(&rpc, &agent_token, &open_o365()).await;
    assert_eq!(status, 201, "{opened}");
    let t = opened["ticket_id"].as_str().unwrap().to_owned();
    let note = json!({"type":"ticket.note","ticket_id":t,"text":"over msgpack","command_id":"rpc-note-1"});
    let packed = rmp_serde::to_vec_named(&note).unwrap();
    let bearer = format!("Bearer {agent_token}");
    let r = rpc
        .call(COMMAND_SUBJECT, &[("Authorization", &bearer), ("Content-Type", "application/msgpack")], packed.into())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "MessagePack bodies are taken: {:?}", r.body);
    let again = cmd(&rpc, &agent_token, &note).await;
    assert_eq!((again.0, &again.1["duplicate"]), (200, &json!(true)), "R26 across command services");
    let (status, refused) = cmd(&rpc, "bh_nope_nope", &note).await;
    assert_eq!((status, refused["code"].as_str()), (401, Some("auth.unauthenticated")));
    let (status, refused) = cmd(&rpc, &agent_token, &json!({"type":"ticket.nope"})).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("request.malformed")));

    // An escalation reaches the work queue through the notifier.
    let (status, esc) =
        cmd(&rpc, &agent_token, &json!({"type":"ticket.escalate","ticket_id":t,"reason":"users are down"})).await;
    assert_eq!(status, 200, "{esc}");
    let position = esc["position"].as_u64().unwrap();

    // Queries over NATS from either projector read their writes.
    for _ in 0..6 {
        let (status, view) =
            query(&rpc, &agent_token, "ticket", json!({"ticket_id": t, "min_position": position})).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["notes"][0]["text"], "over msgpack");
    }
    let (status, list) =
        query(&rpc, &agent_token, "customer_tickets", json!({"customer_id": CUSTOMER, "min_position": position})).await;
    assert_eq!(status, 200, "{list}");
    assert!(list.to_string().contains(&t));
    let (status, _) = query(&rpc, &agent_token, "ticket", json!({})).await;
    assert_eq!(status, 422, "a query without its id is refused");
    let (status, _) = query(&rpc, &agent_token, "nope", json!({})).await;
    assert_eq!(status, 404);

    let queues = NatsQueues::open(&url, 1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let waiting = queues.peek_async("commercial.office365", 100).await.unwrap();
        if !waiting.is_empty() {
            break waiting;
        }
        before(deadline, "the escalation in commercial.office365");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].body.ticket_id.as_ref().map(|t| t.as_str()), Some(t.as_str()));
    assert_eq!(waiting[0].body.notice, behalf_domain::notify::Notice::Escalation);
}

/// The NATS side of hostile input: junk bodies, wrong or missing headers and unknown
/// queries on `behalf.cmd` and `behalf.query.*` are answered with a 4xx and a stable
/// code, and change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_over_nats_are_answered_and_change_nothing() {
    let nats = Cluster::single().expect("nats-server starts");
    let url = nats.urls();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let path = |i: usize| dirs[i].path().to_str().unwrap().to_owned();
    let (_c, addr) =
        role(&["command", "--nats", &url, "--data-dir", &path(0), "--listen", "127.0.0.1:0"], "listening on ");
    let (_p, _) = role(&["project", "--nats", &url, "--data-dir", &path(1)], "serving behalf.query");
    let admin = std::fs::read_to_string(DataDir::new(dirs[0].path()).admin_token()).unwrap().trim().to_owned();
    let http = Client::at(&format!("http://{addr}"));
    send_world(&http, &admin).await;
    let token = http.token(&admin, &agent()).await;
    let bearer = format!("Bearer {token}");
    let rpc = RpcClient::connect(&url).await.unwrap();
    let head = http.metric("behalf_log_head").await;
    let mut seed = 0x5eed_u64;
    let mut next = move |below: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % below.max(1)
    };
    let stable = |status: u16, body: &Value, what: &str| {
        assert!((400..500).contains(&status), "{what}: {status} {body}");
        assert!(behalf_domain::Code::parse(body["code"].as_str().unwrap_or("")).is_some(), "{what}: {body}");
    };
    for i in 0..120 {
        let bytes: Vec<u8> = (0..next(300)).map(|_| next(256) as u8).collect();
        let ctype = if i % 2 == 0 { "application/msgpack" } else { "application/json" };
        let headers: Vec<(&str, &str)> = match i % 4 {
            0 => vec![("Content-Type", ctype)],
            1 => vec![("Authorization", "Bearer"), ("Content-Type", ctype)],
            2 => vec![("Authorization", "Basic dXNlcjpwYXNz")],
            _ => vec![("Authorization", &bearer), ("Content-Type", ctype)],
        };
        let r = rpc.call(COMMAND_SUBJECT, &headers, bytes.into()).await.expect("behalf.cmd answers");
        stable(r.status, &r.json(), &format!("command #{i}"));
    }
    for (name, params) in [
        ("nope", json!({})),
        ("ticket", json!({})),
        ("ticket", json!({"ticket_id": 7})),
        ("customer_tickets", json!({"customer_id": CUSTOMER, "limit": 0})),
        ("customer_tickets", json!("not an object")),
    ] {
        let (status, v) = query(&rpc, &token, name, params.clone()).await;
        stable(status, &v, &format!("query {name} {params}"));
    }
    let r = rpc.call("behalf.query.ticket", &[], b"\xff\xfe".to_vec().into()).await.expect("answers");
    stable(r.status, &r.json(), "a query that is not JSON, without a token");
    assert_eq!(http.metric("behalf_log_head").await, head, "bad input appends nothing");
    // A parsed, authenticated command that is refused is answered the same way (and
    // its refusal recorded, R30).
    let (status, v) = cmd(&rpc, &token, &json!({"type":"ticket.open"})).await;
    stable(status, &v, "a command missing its fields");
}

#[tokio::test(flavor = "multi_thread")]
/// Two `serve --nats` on one ticket: no update lost between them.
async fn two_servers_on_one_ticket_lose_no_update() {
    let nats = Cluster::single().expect("nats-server starts");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s1 = Server::start_with(d1.path(), &["--nats", &nats.urls()]);
    let s2 = Server::start_with(d2.path(), &["--nats", &nats.urls()]);
    let (c1, c2) = (Client::of(&s1), Client::of(&s2));
    send_world(&c1, &s1.admin).await;
    let a = c1.token(&s1.admin, &agent()).await;
    let t = c1.post(&a, &open_o365()).await.1["ticket_id"].as_str().unwrap().to_owned();

    // 24 notes at once through two command services: each accepted note is in the
    // stream once at its answered version; a refusal can only be a detected conflict.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (c, a, t) = (if i % 2 == 0 { c1.clone() } else { c2.clone() }, a.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            (i, c.post(&a, &json!({"type":"ticket.note","ticket_id":t,"text":format!("n{i}")})).await)
        }));
    }
    let mut accepted = Vec::new();
    for task in tasks {
        let (i, (status, v)) = task.await.unwrap();
        match status {
            200 => accepted.push((v["version"].as_u64().unwrap(), format!("n{i}"))),
            409 => assert_eq!(v["code"], "concurrency.conflict", "{v}"),
            other => panic!("note {i} answered {other}: {v}"),
        }
    }
    accepted.sort_unstable();
    assert!(accepted.len() >= 12, "most notes get through: {}", accepted.len());
    let log = behalf_nats::NatsLog::open(behalf_nats::NatsOptions {
        run_indexer: false,
        ..behalf_nats::NatsOptions::new(nats.urls())
    })
    .await
    .expect("open the log");
    let stream = behalf_domain::StreamId::ticket(&behalf_domain::TicketId::new(t.as_str()));
    // The texts are sealed in the log (issue 26): opened with the cluster's keys.
    let keys = behalf_nats::NatsKeys::open(&nats.urls(), 1).await.unwrap();
    let (keyring, _) = behalf_service::seal::Keyring::open(std::sync::Arc::new(keys)).unwrap();
    let mut in_log = Vec::new();
    for c in log.read_stream(&stream, 1).await.unwrap() {
        for e in &c.events {
            if let behalf_domain::Event::NoteAdded(n) = e {
                assert!(n.text.starts_with(behalf_service::seal::SEALED), "stored sealed: {}", n.text);
                in_log.push((c.last_version(), keyring.open_str(&n.text).unwrap().unwrap()));
            }
        }
    }
    assert_eq!(in_log, accepted, "no lost update between the two services");

    // With an expected version, one of two racing writers on two servers wins.
    let v = log.stream_version(&stream).await.unwrap();
    let body = |n: &str| json!({"type":"ticket.note","ticket_id":t,"text":n,"expected_version":v});
    let (bx, by) = (body("x"), body("y"));
    let (x, y) = tokio::join!(c1.post(&a, &bx), c2.post(&a, &by));
    let mut statuses = [x.0, y.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{x:?} {y:?}");
}

/// A command service paused (SIGSTOP) past the server's batch timeout (10 s) while an
/// atomic batch is open — its first message stored in the server's staging, its commit
/// not sent (a test hook stalls there) — then resumed: the server abandons the batch
/// (its advisory is seen), the zombie's commit is refused, and every command is
/// answered and in the log once.
#[tokio::test(flavor = "multi_thread")]
async fn a_zombie_batch_is_abandoned_and_nothing_is_applied_twice() {
    use futures::StreamExt as _;
    let nats = Cluster::single().unwrap();
    let url = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let args = ["command", "--nats", &url, "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"];
    let (child, addr) = spawn_until_with(&args, &[("BEHALF_TEST_BATCH_STALL_MS", "1500")], "listening on ");
    let service = Role(child);
    let admin = std::fs::read_to_string(DataDir::new(dir.path()).admin_token()).unwrap().trim().to_owned();
    let http = Client::at(&format!("http://{addr}"));
    send_world(&http, &admin).await;
    let token = http.token(&admin, &agent()).await;
    let advisories = async_nats::connect(&url).await.unwrap();
    let mut abandoned = advisories.subscribe("$JS.EVENT.ADVISORY.>").await.unwrap();

    // One ticket first, so the burst below finds the contact's key made and the pool
    // of ticket keys filled (issue 26) and reaches the log at once.
    let (status, first) = http.post(&token, &merge(open_o365(), json!({"command_id": "warm-up"}))).await;
    assert_eq!(status, 201, "{first}");
    tokio::time::sleep(Duration::from_millis(1600)).await;

    // A burst of commands: while the first batch is out, the rest gather into one batch
    // of several, which the hook holds open after its first message.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut sent = Vec::new();
    for i in 0..12 {
        let (client, token, base) = (client.clone(), token.clone(), http.base.clone());
        let id = format!("zombie-{i}");
        sent.push(id.clone());
        sent.sort();
        tokio::spawn(async move {
            let body = merge(open_o365(), json!({"command_id": id}));
            // Retried with the same id on a refusal to retry (the batch abandoned).
            loop {
                let r = client.post(format!("{base}/v1/commands")).bearer_auth(&token).json(&body).send().await;
                if let Ok(r) = r {
                    if r.status().is_success() {
                        return r.json::<Value>().await.unwrap();
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = service.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    // The server gives up the open batch after 10 s without its next message.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), abandoned.next()).await {
            seen = String::from_utf8_lossy(&m.payload).contains("stream_batch_abandoned");
        }
    }
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    assert!(seen, "the server announced the open batch abandoned");

    // Every command answered (retried with its id until accepted), and in the log once.
    let log = behalf_nats::NatsLog::open(behalf_nats::NatsOptions {
        run_indexer: false,
        ..behalf_nats::NatsOptions::new(nats.urls())
    })
    .await
    .expect("open the log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ids: Vec<String> = log
            .read_all(0, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|c| c.command_id.to_string())
            .filter(|id| id.starts_with("zombie-"))
            .collect();
        ids.sort();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids, unique, "no command is in the log twice");
        if ids == sent {
            break;
        }
        before(deadline, &format!("every command in the log once (have {})", ids.len()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(log.verify().await.unwrap().first_bad.is_none(), "the chain verifies");
}
