//! End-to-end notifier: thousands of escalations in both clouds while `behalf serve`
//! is killed with SIGKILL again and again; afterwards every escalation is in its
//! queue exactly once, none crossed clouds, and each queue is in priority order. Also
//! the queues over HTTP: lease, ack, who may consume.

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

use crate::support;

use std::collections::HashMap;

use behalf_domain::Principal;
use behalf_log::queues::QueueStore;
use behalf_sled_store::DataDir;
use serde_json::{json, Value};
use support::world::*;
use support::{now, send_world, Client, Server};

const GOV_AGENT: &str = "33333333-0000-4000-8000-0000000000f1";
const GOV_GROUP: &str = "44444444-0000-4000-8000-0000000000f1";

async fn gov_grants(c: &Client, admin: &str) {
    let s = c.token(admin, &sync(GOV_PARTNER)).await;
    let activated = now().plus_millis(-86_400_000).to_string();
    for cmd in [
        json!({"type":"partner.user.upsert","partner_id":GOV_PARTNER,"user_id":GOV_AGENT,"email":"agent@gov-partner.example","admin_agent":true}),
        json!({"type":"group.member.add","partner_id":GOV_PARTNER,"group_id":GOV_GROUP,"user_id":GOV_AGENT}),
        json!({"type":"gdap.relationship.upsert","relationship_id":"rel-gov","partner_id":GOV_PARTNER,"customer_id":GOV_CUSTOMER,"status":"active","roles":[HELPDESK],"activated_at":activated,"duration":"P730D","auto_extend":"PT0S"}),
        json!({"type":"gdap.assignment.upsert","assignment_id":"asg-gov","relationship_id":"rel-gov","group_id":GOV_GROUP,"roles":[HELPDESK],"status":"active"}),
    ] {
        assert_eq!(c.post(&s, &cmd).await.1["outcome"], "accepted");
    }
}

fn critical(gov: bool, n: usize) -> Value {
    if gov {
        merge(
            open_o365(),
            json!({"severity":"critical","customer_id":GOV_CUSTOMER,"title":format!("gov {n}"),"contact":{"first_name":"G","last_name":"V","email":"agent@gov-partner.example","preferred_contact":"email"}}),
        )
    } else {
        merge(
            open_o365(),
            json!({"severity":if n.is_multiple_of(3) { "critical" } else { "moderate" },"title":format!("com {n}")}),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_escalation_reaches_its_queue_once_through_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    gov_grants(&c, &server.admin).await;
    let com = c.token(&server.admin, &agent()).await;
    let gov = c.token(&server.admin, &agent_of(GOV_PARTNER, GOV_AGENT)).await;
    let per_round = 600;
    for round in 0..4 {
        let c = Client::of(&server);
        let mut tasks = Vec::new();
        for w in 0..16 {
            let (c, com, gov) = (c.clone(), com.clone(), gov.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..per_round / 16 {
                    let n = round * 10_000 + w * 1_000 + i;
                    let is_gov = n % 2 == 0;
                    let token = if is_gov { &gov } else { &com };
                    let body = critical(is_gov, n);
                    let Ok(r) =
                        c.http.post(format!("{}/v1/commands", c.base)).bearer_auth(token).json(&body).send().await
                    else {
                        return;
                    };
                    let Ok(v) = r.json::<Value>().await else { return };
                    // Partners escalate their moderate tickets too.
                    if let (Some(t), false) = (v["ticket_id"].as_str(), is_gov) {
                        let esc = json!({"type":"ticket.escalate","ticket_id":t,"reason":"business impact"});
                        let _ =
                            c.http.post(format!("{}/v1/commands", c.base)).bearer_auth(token).json(&esc).send().await;
                    }
                }
            }));
        }
        if round < 3 {
            // Kill once a share of the round has landed (the notifier is mid-stream).
            let start = c.metric("behalf_log_head").await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while c.metric("behalf_log_head").await < start + 200 {
                support::before(deadline, "a share of the round to land");
                tokio::task::yield_now().await;
            }
            server.kill9();
        }
        for t in tasks {
            let _ = t.await;
        }
        if round < 3 {
            server = Server::start(dir.path());
        }
    }
    // Stop, then let the notifier finish as its own process.
    std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    server.child.wait().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["notify", "--once", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (log, _) = DataDir::new(dir.path()).open_log(Default::default()).unwrap();
    let mut escalations: HashMap<String, String> = HashMap::new(); // event id -> queue
    let mut after = 0;
    loop {
        let page = behalf_log::EventLog::read_all(&log, after, 4096).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        for env in page.iter().flat_map(|c| c.envelopes()) {
            if let behalf_domain::Event::TicketEscalated(e) = &env.event {
                escalations.insert(env.event_id.clone(), format!("{}.{}", e.cloud, e.workload));
            }
        }
    }
    assert!(escalations.len() > 1000, "thousands of escalations ({})", escalations.len());
    let queues = DataDir::new(dir.path()).open_queues().unwrap();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for queue in ["commercial.office365", "usgov.office365"] {
        let messages = queues.peek(queue, usize::MAX).unwrap();
        let keys: Vec<(u8, u64)> =
            messages.iter().map(|m| (m.body.severity.map_or(9, |s| s.rank()), m.position)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{queue} is in priority order");
        for m in messages {
            assert_eq!(
                escalations.get(&m.source_event_id),
                Some(&queue.to_owned()),
                "{} is in its own cloud's queue",
                m.source_event_id
            );
            *seen.entry(m.source_event_id).or_default() += 1;
        }
    }
    for id in escalations.keys() {
        assert_eq!(seen.get(id), Some(&1), "escalation {id} is queued exactly once");
    }
}

// On the distributed engine the queues are the cluster's.
on_both_engines!(queues_over_http);

async fn queues_over_http(server: Server) {
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let a = c.token(&server.admin, &agent()).await;
    let vendor = c.token(&server.admin, &Principal::Vendor).await;
    let opened = c.post(&a, &merge(open_o365(), json!({"severity":"critical"}))).await.1;
    let t = opened["ticket_id"].as_str().unwrap().to_owned();
    c.post(&vendor, &json!({"type":"ticket.request_attention","ticket_id":t,"text":"logs?"})).await;
    let lease = |token: String, queue: String| {
        let c = c.clone();
        async move {
            // The notifier follows the log; poll until the message is there (bounded).
            for _ in 0..500 {
                let r = c
                    .http
                    .get(format!("{}/v1/queues/{queue}/messages?lease_ms=60000", c.base))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap();
                if status != 200 || !v["messages"].as_array().unwrap().is_empty() {
                    return (status, v);
                }
                tokio::task::yield_now().await;
            }
            panic!("no message in {queue}");
        }
    };
    let (s, work) = lease(vendor.clone(), "commercial.office365".into()).await;
    assert_eq!(s, 200);
    let m = &work["messages"][0];
    assert_eq!(
        (m["body"]["ticket_id"].as_str(), m["body"]["reason"].as_str(), m["body"]["csp_priority"].as_bool()),
        (Some(t.as_str()), Some("critical_on_open"), Some(true))
    );
    let (s, mine) = lease(a.clone(), format!("partner.{PARTNER}")).await;
    assert_eq!((s, mine["messages"][0]["body"]["notice"].as_str()), (200, Some("attention_needed")));
    assert_eq!(
        lease(a.clone(), "commercial.office365".into()).await.0,
        403,
        "a partner does not consume workload queues"
    );
    let ack = |token: String, path: String| {
        let c = c.clone();
        async move { c.http.post(format!("{}{path}", c.base)).bearer_auth(&token).send().await.unwrap().status().as_u16() }
    };
    let id = m["id"].as_str().unwrap();
    assert_eq!(ack(vendor.clone(), format!("/v1/queues/commercial.office365/messages/{id}/ack")).await, 204);
    assert_eq!(ack(vendor.clone(), format!("/v1/queues/commercial.office365/messages/{id}/ack")).await, 404);
}

/// Lease `queue` from `c` (up to 50 at a time, for `lease_ms`): the messages.
async fn lease_from(c: &Client, token: &str, queue: &str, lease_ms: u64) -> Vec<Value> {
    let r = c
        .http
        .get(format!("{}/v1/queues/{queue}/messages?lease_ms={lease_ms}&limit=50", c.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    v["messages"].as_array().unwrap().clone()
}

async fn ack_on(c: &Client, token: &str, queue: &str, id: &str) -> u16 {
    let url = format!("{}/v1/queues/{queue}/messages/{id}/ack", c.base);
    c.http.post(url).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Three `serve --nats` on one cluster, each forwarding (three notifiers), one of
/// them SIGKILLed while tickets escalate: a worker leasing from any server and acking
/// where it leased gets every escalation once; a lease that runs out is delivered
/// again, once, by another server; `behalf queue tail --nats` sees the same queue.
#[tokio::test(flavor = "multi_thread")]
async fn one_queue_per_cluster_whichever_server_serves_it() {
    let nats = behalf_nats::server::Cluster::single().expect("nats-server starts");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers: Vec<Server> =
        dirs.iter().map(|d| Server::start_with(d.path(), &["--nats", &nats.urls()])).collect();
    let admin = servers[0].admin.clone();
    let clients: Vec<Client> = servers.iter().map(Client::of).collect();
    send_world(&clients[0], &admin).await;
    let a = clients[0].token(&admin, &agent()).await;
    let vendor = clients[0].token(&admin, &Principal::Vendor).await;
    let mut tickets = std::collections::BTreeSet::new();
    for n in 0..12 {
        if n == 6 {
            servers[2].kill9(); // a notifier dies while the others forward
        }
        let c = &clients[n % 2];
        let opened =
            c.post(&a, &merge(open_o365(), json!({"severity":"critical","title":format!("down {n}")}))).await.1;
        tickets.insert(opened["ticket_id"].as_str().unwrap().to_owned());
    }
    let live = &clients[..2];
    let mut delivered: HashMap<String, u32> = HashMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut turn = 0;
    while delivered.len() < tickets.len() {
        support::before(deadline, &format!("{} escalations delivered of {}", delivered.len(), tickets.len()));
        let c = &live[turn % 2];
        turn += 1;
        for m in lease_from(c, &vendor, "commercial.office365", 60_000).await {
            *delivered.entry(m["body"]["ticket_id"].as_str().unwrap().to_owned()).or_default() += 1;
            assert_eq!(ack_on(c, &vendor, "commercial.office365", m["id"].as_str().unwrap()).await, 204);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered.keys().cloned().collect::<std::collections::BTreeSet<_>>(), tickets);
    assert!(delivered.values().all(|n| *n == 1), "each escalation once: {delivered:?}");
    for c in live {
        assert!(lease_from(c, &vendor, "commercial.office365", 60_000).await.is_empty(), "nothing else waits");
    }

    // A lease that runs out: delivered again, once, from the other server.
    let t = clients[0].post(&a, &merge(open_o365(), json!({"severity":"critical"}))).await.1["ticket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = loop {
        support::before(deadline + std::time::Duration::from_secs(30), "the new escalation");
        let got = lease_from(&live[0], &vendor, "commercial.office365", 1_000).await; // the shortest lease
        if !got.is_empty() {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((first.len(), first[0]["body"]["ticket_id"].as_str()), (1, Some(t.as_str())));
    assert!(lease_from(&live[1], &vendor, "commercial.office365", 60_000).await.is_empty(), "leased: it waits");
    let tail = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["queue", "tail", "commercial.office365", "--nats", &nats.urls()])
        .output()
        .unwrap();
    let shown: Vec<Value> =
        String::from_utf8_lossy(&tail.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(shown.len(), 1, "behalf queue tail --nats shows the cluster's queue");
    assert_eq!(shown[0]["id"], first[0]["id"]);
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    let again = lease_from(&live[1], &vendor, "commercial.office365", 60_000).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0]["id"].clone(), again[0]["deliveries"].as_u64()), (first[0]["id"].clone(), Some(2)));
    assert_eq!(ack_on(&live[1], &vendor, "commercial.office365", again[0]["id"].as_str().unwrap()).await, 204);
    assert!(lease_from(&live[0], &vendor, "commercial.office365", 60_000).await.is_empty());
}
