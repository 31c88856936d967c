//! `behalf audit` on a real data directory: verify names the position of a flipped,
//! dropped or reordered commit; rejudge catches a forged event whose evidence names a
//! revoked assignment; replay finds a view row changed behind the projector's back;
//! a ticket's story, time travel and the export.

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

use crate::support;

use std::path::Path;
use std::process::Output;

use behalf_domain::Event;
use behalf_log::views::ViewStore;
use behalf_log::{AppendRequest, EventLog, ExpectedVersion};
use behalf_sled_store::DataDir;
use serde_json::{json, Value};
use support::world::*;
use support::{send_world, Client, Server};

fn audit(dir: &Path, args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = audit_apart(dir, args);
    (code, format!("{stdout}{stderr}"))
}

/// As [`audit`], standard output and standard error apart.
fn audit_apart(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out: Output = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn stop(mut server: Server) {
    std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    server.child.wait().unwrap();
}

/// A store with tickets, a refusal and a terminated assignment; returns a ticket id
/// and the position of its note.
async fn store(dir: &Path) -> (String, u64) {
    store_with(dir, &[]).await
}

/// As [`store`], with more flags for `behalf serve` (`--nats URL`: the log on NATS,
/// the views in `dir`).
async fn store_with(dir: &Path, flags: &[&str]) -> (String, u64) {
    let server = Server::start_with(dir, flags);
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let a = c.token(&server.admin, &agent()).await;
    let t = c.post(&a, &open_o365()).await.1["ticket_id"].as_str().unwrap().to_owned();
    let note =
        c.post(&a, &json!({"type":"ticket.note","ticket_id":t,"text":"more"})).await.1["position"].as_u64().unwrap();
    c.post(&a, &json!({"type":"ticket.reopen","ticket_id":t,"reason":"x"})).await; // refused: R17
    c.post(&a, &merge(open_azure(), json!({"severity":"critical"}))).await;
    let s = c.token(&server.admin, &sync(PARTNER)).await;
    let deleted = json!({"type":"gdap.assignment.upsert","assignment_id":"asg-1","relationship_id":"rel-1","group_id":GROUP,"roles":[HELPDESK],"status":"deleted"});
    assert_eq!(c.post(&s, &deleted).await.1["outcome"], "accepted");
    // Let the views catch up before stopping (read-your-writes on the last position).
    let head = c.metric("behalf_log_head").await;
    let auditor = c.token(&server.admin, &behalf_domain::Principal::Auditor).await;
    let r = c
        .http
        .get(format!("{}/v1/audit/rejections?min_position={head}", c.base))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    stop(server);
    (t, note)
}

#[tokio::test(flavor = "multi_thread")]
async fn audits_of_a_sound_log_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (t, note) = store(dir.path()).await;
    let (code, out) = audit(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok:"));
    let (code, out) = audit(dir.path(), &["replay"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = audit(dir.path(), &["rejudge"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 do not hold"), "{out}");
    let (code, out) = audit(dir.path(), &["ticket", &t, "--json"]);
    assert_eq!(code, 0, "{out}");
    let story: Vec<Value> = serde_json::from_str(&out).unwrap();
    let kinds: Vec<&str> = story.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["accepted", "accepted", "refused"], "opened, noted, the refused reopen");
    // Time travel: before the note the ticket was at version 1.
    let (_, out) = audit(dir.path(), &["as-of", &(note - 1).to_string(), "--ticket", &t]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ticket"]["version"], 1, "{out}");
    let (_, out) =
        audit(dir.path(), &["as-of", &note.to_string(), "--partner", PARTNER, "--user", AGENT, "--customer", CUSTOMER]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["workloads"][0]["allowed"], true, "{out}");
    let head = {
        let (log, _) = DataDir::new(dir.path()).open_log(Default::default()).unwrap();
        log.head().await.unwrap()
    };
    let (_, out) =
        audit(dir.path(), &["as-of", &head.to_string(), "--partner", PARTNER, "--user", AGENT, "--customer", CUSTOMER]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["workloads"][0]["allowed"].as_bool(), v["workloads"][0]["code"].as_str()),
        (Some(false), Some("gdap.no_access")),
        "after the assignment was deleted"
    );
    // Export: one JSON line an event.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["audit", "export", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() as u64 >= head);
    assert_eq!(lines[0]["position"], 1);
    assert!(lines.iter().all(|l| l["event"]["type"] == l["type"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn rejudge_catches_a_forged_event_with_revoked_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = store(dir.path()).await;
    // Forge a ticket opened under asg-1 after it was deleted, written straight into the log.
    let forged_at = {
        let (log, _) = DataDir::new(dir.path()).open_log(Default::default()).unwrap();
        let head = log.head().await.unwrap();
        let first = log
            .read_all(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .flat_map(|c| c.events)
            .find(|e| matches!(e, Event::TicketOpened(_)))
            .unwrap();
        let Event::TicketOpened(mut forged) = first else { unreachable!() };
        forged.ticket_id = "FORGED".into();
        forged.evidence.directory_position = head;
        let req = AppendRequest {
            stream: behalf_domain::StreamId::of("ticket", "FORGED"),
            expected: ExpectedVersion::Exact(0),
            command_id: "forged-1".into(),
            request_hash: [7; 32],
            at: support::now(),
            actor: agent(),
            correlation_id: None,
            causation_id: None,
            events: vec![Event::TicketOpened(forged)],
            directory_at: None,
        };
        log.append(req).await.unwrap().unwrap().position
    };
    let (code, out) = audit(dir.path(), &["rejudge"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("position {forged_at}")) && out.contains("asg-1") && out.contains("deleted"),
        "{out}"
    );
    assert!(out.contains("1 do not hold"), "only the forgery: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_finds_a_view_row_changed_behind_the_projector() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = store(dir.path()).await;
    {
        let views = DataDir::new(dir.path()).open_views().unwrap();
        let key = format!("t/{t}").into_bytes();
        let mut v: Value = rmp_serde::from_slice(&views.get(&key).unwrap().unwrap()).unwrap();
        v["status"] = json!("closed");
        let cp = views.checkpoint().unwrap();
        views.commit(vec![(key, Some(rmp_serde::to_vec_named(&v).unwrap()))], cp).unwrap();
        views.sync().unwrap();
    }
    let (code, out) = audit(dir.path(), &["replay"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("ticket view, key t/{t}: differs")), "{out}");
}

/// Edits the stored log directly, as a disk fault or an attacker would. sled's IO
/// threads may hold the directory lock a moment after the server exited.
fn tamper_log(dir: &Path, f: impl FnOnce(&sled::Db)) {
    let db = (0..200)
        .find_map(|_| {
            sled::open(DataDir::new(dir).log()).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            })
        })
        .expect("the log opens");
    f(&db);
    db.flush().unwrap();
}

fn key(pos: u64) -> Vec<u8> {
    let mut k = vec![b'L'];
    k.extend_from_slice(&pos.to_be_bytes());
    k
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_a_flipped_dropped_or_reordered_commit() {
    for (name, tamper, want) in [
        (
            "flip",
            Box::new(|db: &sled::Db| {
                let mut v = db.get(key(9)).unwrap().unwrap().to_vec();
                let i = v.len() - 3;
                v[i] ^= 1;
                db.insert(key(9), v).unwrap();
            }) as Box<dyn Fn(&sled::Db)>,
            9,
        ),
        (
            "drop",
            Box::new(|db: &sled::Db| {
                db.remove(key(12)).unwrap();
            }),
            12,
        ),
        (
            "reorder",
            Box::new(|db: &sled::Db| {
                let (a, b) = (db.get(key(5)).unwrap().unwrap(), db.get(key(6)).unwrap().unwrap());
                db.insert(key(5), b).unwrap();
                db.insert(key(6), a).unwrap();
            }),
            5,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path()).await;
        tamper_log(dir.path(), tamper);
        let (code, out) = audit(dir.path(), &["verify"]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(&format!("BROKEN at position {want}")), "{name}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_log_refuses_to_start_unless_told_to_stop_at_the_last_good_commit() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path()).await;
    tamper_log(dir.path(), |db| {
        let v = db.get(key(20)).unwrap().unwrap();
        db.insert(key(20), &v[..v.len() / 2]).unwrap();
    });
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("broken at position 20") && why.contains("--stop-at-last-good"), "{why}");
    let server = Server::start_with(dir.path(), &["--stop-at-last-good"]);
    let c = Client::of(&server);
    let vendor = c.token(&server.admin, &behalf_domain::Principal::Vendor).await;
    let (status, answer) = c.post(&vendor, &json!({"type":"customer.register","customer_id":"22222222-0000-4000-8000-0000000000d1","name":"After","domains":["after.example"],"cloud":"commercial"})).await;
    assert_eq!((status, answer["position"].as_u64()), (200, Some(20)), "{answer}");
    stop(server);
    let (code, out) = audit(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = audit(dir.path(), &["replay"]);
    assert_eq!(code, 0, "the views follow the cut-back log: {out}");
}

/// Opening walks only what follows the last verified checkpoint; the server walks the
/// whole chain once it is ready. Damage behind the checkpoint is found there: the
/// server stops with the same words as a refusal to start, and from then on it refuses.
#[tokio::test(flavor = "multi_thread")]
async fn damage_behind_the_checkpoint_stops_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path()).await;
    // A server that walked the whole chain moved the checkpoint to the head.
    let server = Server::start_with(dir.path(), &[]);
    let c = Client::of(&server);
    let head = c.metric("behalf_log_head").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.metric("behalf_log_chain_verified_position").await < head {
        assert!(std::time::Instant::now() < deadline, "the background walk did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop(server);
    tamper_log(dir.path(), |db| {
        db.remove(key(7)).unwrap();
    });
    let run = |flags: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(flags)
            .output()
            .unwrap()
    };
    let found = run(&[]);
    let why = String::from_utf8_lossy(&found.stderr);
    assert!(!found.status.success(), "{why}");
    assert!(String::from_utf8_lossy(&found.stdout).contains("listening on"), "it started, then found the break");
    assert!(why.contains("broken at position 7") && why.contains("--stop-at-last-good"), "{why}");
    let refused = run(&[]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && why.contains("broken at position 7"), "{why}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("listening on"), "refused before listening");
}

/// The same audits on a log kept on NATS JetStream (`--nats`), `replay` against the
/// server's views in its data directory; a NATS server without the log is refused.
#[tokio::test(flavor = "multi_thread")]
async fn audits_of_a_log_on_nats_hold() {
    let nats = behalf_nats::server::Cluster::single().expect("nats-server starts");
    let url = nats.urls();
    let dir = tempfile::tempdir().unwrap();
    let (t, note) = store_with(dir.path(), &["--nats", &url]).await;
    // Standard output only: the NATS client logs its connection on standard error.
    let on_nats = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--nats", &url]);
        let (code, stdout, stderr) = audit_apart(dir.path(), &all);
        (code, if code == 0 { stdout } else { format!("{stdout}{stderr}") })
    };
    let (code, out) = on_nats(&["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok:") && out.contains("the hash chain holds"), "{out}");
    let (code, out) = on_nats(&["replay"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the live views equal a rebuild"), "{out}");
    let (code, out) = on_nats(&["rejudge"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 do not hold"), "{out}");
    let (code, out) = on_nats(&["ticket", &t, "--json"]);
    assert_eq!(code, 0, "{out}");
    let story: Vec<Value> = serde_json::from_str(&out).unwrap();
    let kinds: Vec<&str> = story.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["accepted", "accepted", "refused"], "opened, noted, the refused reopen");
    let (_, out) = on_nats(&["as-of", &(note - 1).to_string(), "--ticket", &t]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ticket"]["version"], 1, "{out}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["audit", "export", "--nats", &url])
        .output()
        .unwrap();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 10, "{}", lines.len());
    assert_eq!(lines[0]["position"], 1);
    assert!(lines.iter().all(|l| l["event_id"].as_str().unwrap().contains('/')), "event ids name their tenant");

    // A NATS server that holds no log: refused, exit code 2, nothing created.
    let empty = behalf_nats::server::Cluster::single().expect("nats-server starts");
    let (code, out) = audit(dir.path(), &["verify", "--nats", &empty.urls()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no event log here"), "{out}");
}
