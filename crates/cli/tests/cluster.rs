//! The distributed engine under failure: real `nats-server` nodes (a 3-node cluster with
//! R3 streams) and the roles as real processes (`behalf command`, `behalf project`,
//! `behalf notify`), or `behalf serve --nats`. Nodes and services are killed with
//! SIGKILL while commands flow.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use behalf_log::EventLog;
use behalf_nats::server::Cluster;
use behalf_nats::{NatsLog, NatsOptions};
use serde_json::{json, Value};
use support::world::*;
use support::*;

fn serve_on(nats: &Cluster, dir: &std::path::Path) -> Server {
    let replicas = nats.replicas().to_string();
    Server::start_with(dir, &["--nats", &nats.urls(), "--nats-replicas", &replicas])
}

async fn reader(nats: &Cluster) -> NatsLog {
    let _ = tracing_subscriber::fmt().with_env_filter("behalf_nats=info,async_nats=info").with_test_writer().try_init();
    NatsLog::open(NatsOptions { run_indexer: false, ..NatsOptions::new(nats.urls()).replicas(nats.replicas()) })
        .await
        .expect("open the log")
}

/// Every commit in the log: command id → (position, count).
async fn commands_in(log: &NatsLog) -> HashMap<String, (u64, u32)> {
    let mut seen: HashMap<String, (u64, u32)> = HashMap::new();
    let mut after = 0;
    loop {
        let page = log.read_all(after, 2048).await.expect("read the log");
        let Some(last) = page.last() else { break };
        after = last.position;
        for c in page {
            let e = seen.entry(c.command_id.to_string()).or_insert((c.position, 0));
            e.1 += 1;
        }
    }
    seen
}

/// Waits until `acked` has grown by `more`, or two minutes have passed (progress, not
/// speed: a loaded machine electing leaders may take a while).
async fn until_more(acked: &std::sync::Mutex<Vec<(String, Value)>>, more: usize) {
    let target = acked.lock().unwrap().len() + more;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < target {
        before(deadline, &format!("{more} more acknowledgements"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A role process with HTTP on a free port: the process and its base URL.
fn role_on(nats: &Cluster, role: &str, dir: &std::path::Path) -> (Role, String) {
    let replicas = nats.replicas().to_string();
    let dir = dir.to_str().unwrap();
    let args =
        [role, "--nats", &nats.urls(), "--nats-replicas", &replicas, "--data-dir", dir, "--listen", "127.0.0.1:0"];
    let (child, addr) = spawn_until(&args, "listening on ");
    (Role(child), format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn node_and_server_loss_lose_no_acknowledged_command() {
    let mut nats = Cluster::start(3).expect("a 3-node cluster starts");
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    // Two command services, two projectors and a notifier, each its own process.
    let (_command_1, cmd_1) = role_on(&nats, "command", dirs[0].path());
    let (mut command_2, cmd_2) = role_on(&nats, "command", dirs[1].path());
    let (_project_1, proj_1) = role_on(&nats, "project", dirs[2].path());
    let (_project_2, proj_2) = role_on(&nats, "project", dirs[3].path());
    let replicas = nats.replicas().to_string();
    let notify_args = [
        "notify",
        "--nats",
        &nats.urls(),
        "--nats-replicas",
        &replicas,
        "--data-dir",
        dirs[4].path().to_str().unwrap(),
    ];
    let _notify = Role(spawn_until(&notify_args, "forwarding").0);
    let admin = std::fs::read_to_string(dirs[0].path().join("admin.token")).unwrap().trim().to_owned();
    let (c1, c2) = (Client::at(&cmd_1), Client::at(&cmd_2));
    send_world(&c1, &admin).await;
    let token = c1.token(&admin, &agent()).await;

    // Eight writers, each opening tickets, noting on them and now and then escalating,
    // through both command services in turn, with keyed commands; every accepted
    // answer is kept.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Value)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let clients = [c1.clone(), c2.clone()];
        let (token, acked, stop) = (token.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut ticket: Option<String> = None;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let id = format!("load-{w}-{i}");
                let body = match &ticket {
                    Some(t) if i % 8 == 5 => {
                        json!({"type":"ticket.escalate","ticket_id":t,"reason":"still down","command_id":id})
                    }
                    Some(t) if i % 8 != 0 => json!({"type":"ticket.note","ticket_id":t,"text":id,"command_id":id}),
                    _ => merge(open_o365(), json!({"command_id": id})),
                };
                let c = &clients[i % 2];
                let r = c.http.post(format!("{}/v1/commands", c.base)).bearer_auth(&token).json(&body).send().await;
                let Ok(r) = r else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let Ok(v) = r.json::<Value>().await else { continue };
                if v["outcome"] == "accepted" {
                    if let Some(t) = v["ticket_id"].as_str() {
                        ticket = Some(t.to_owned());
                    }
                    acked.lock().unwrap().push((id, v));
                }
            }
        }));
    }

    until_more(&acked, 100).await;
    eprintln!("killing node n2");
    nats.nodes[1].kill();
    until_more(&acked, 100).await;
    eprintln!("starting node n2 again");
    nats.nodes[1].start().expect("the node comes back");
    until_more(&acked, 100).await;
    eprintln!("killing command service 2");
    command_2.kill9();
    until_more(&acked, 100).await;
    eprintln!("checking");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    // Every acknowledged command is in the log exactly once, where it was answered.
    let log = reader(&nats).await;
    let seen = tokio::time::timeout(Duration::from_secs(120), commands_in(&log)).await.expect("the log reads back");
    let acked = acked.lock().unwrap().clone();
    for (id, answer) in &acked {
        let position = answer["position"].as_u64().unwrap();
        assert_eq!(seen.get(id), Some(&(position, 1)), "{id} acknowledged at {position} is in the log once");
    }
    let report = tokio::time::timeout(Duration::from_secs(120), log.verify()).await.expect("verify ends").unwrap();
    assert_eq!(report.first_bad, None, "the hash chain holds");
    assert_eq!(report.verified, log.head().await.unwrap());

    // Both projectors' views equal a fold of the log.
    let head = log.head().await.unwrap();
    let tickets: std::collections::BTreeSet<String> =
        acked.iter().filter_map(|(_, a)| a["ticket_id"].as_str().map(str::to_owned)).collect();
    assert!(tickets.len() >= 8, "tickets were opened: {}", tickets.len());
    for base in [&proj_1, &proj_2] {
        let p = Client::at(base);
        for t in &tickets {
            let (status, view) = p.get(&token, &format!("/v1/tickets/{t}?min_position={head}&wait_ms=30000")).await;
            assert_eq!(status, 200, "{view}");
            let stream = behalf_domain::StreamId::ticket(&behalf_domain::TicketId::new(t.as_str()));
            let version = log.stream_version(&stream).await.unwrap();
            assert_eq!(view["version"].as_u64(), Some(version), "ticket {t}: the view is the fold of its stream");
        }
    }

    // Every escalation in the log is in its work queue once — the acknowledged ones
    // and any whose answer was lost with a node (stored, but answered 503).
    let acked_escalations: Vec<&String> =
        acked.iter().filter(|(_, a)| a["events"][0]["type"] == "TicketEscalated").map(|(id, _)| id).collect();
    assert!(!acked_escalations.is_empty(), "escalations were accepted");
    let mut in_log: Vec<String> = Vec::new();
    let mut after = 0;
    loop {
        let page = log.read_all(after, 2048).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        in_log.extend(
            page.iter().flat_map(|c| c.envelopes()).filter(|e| e.event_type == "TicketEscalated").map(|e| e.event_id),
        );
    }
    in_log.sort();
    for id in &acked_escalations {
        assert!(in_log.iter().any(|e| e.starts_with(&format!("{id}:"))), "acknowledged escalation {id} is in the log");
    }
    let queues = behalf_nats::NatsQueues::open(&nats.urls(), nats.replicas()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = loop {
        let waiting = queues.peek("commercial.office365", 100_000).await.unwrap();
        if waiting.len() >= in_log.len() {
            break waiting;
        }
        before(deadline, &format!("{} escalations in the queue, {} there", in_log.len(), waiting.len()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut sources: Vec<String> = waiting.iter().map(|m| m["source_event_id"].as_str().unwrap().to_owned()).collect();
    sources.sort();
    assert_eq!(sources, in_log, "each escalation of the log once in the queue, nothing else");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_ticket_lose_no_update() {
    let nats = Cluster::single().expect("nats-server starts");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s1 = serve_on(&nats, d1.path());
    let s2 = serve_on(&nats, d2.path());
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
    let log = reader(&nats).await;
    let stream = behalf_domain::StreamId::ticket(&behalf_domain::TicketId::new(t.as_str()));
    let mut in_log = Vec::new();
    for c in log.read_stream(&stream, 1).await.unwrap() {
        for e in &c.events {
            if let behalf_domain::Event::NoteAdded(n) = e {
                in_log.push((c.last_version(), n.text.clone()));
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
