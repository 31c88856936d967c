//! End-to-end: the real binary as a process — SIGKILL during a burst loses no
//! acknowledged command, SIGTERM finishes what is in flight and exits 0, the demo,
//! token commands on a stopped data directory, `--help`, and concurrent writers on
//! one ticket (both engines).

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

use crate::support;

use std::collections::HashMap;

use behalf_domain::Principal;
use serde_json::{json, Value};
use support::world::*;
use support::{send_world, Client, Server};

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_burst_loses_no_acknowledged_command() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let token = c.token(&server.admin, &agent()).await;
    // 32 writers send keyed commands; the server is killed after 150 acknowledgements.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Value)>();
    let mut writers = Vec::new();
    for w in 0..32 {
        let (c, token, tx) = (c.clone(), token.clone(), tx.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..100 {
                let id = format!("burst-{w}-{i}");
                let body = merge(open_o365(), json!({"command_id": id, "title": format!("burst {w} {i}")}));
                let r = c.http.post(format!("{}/v1/commands", c.base)).bearer_auth(&token).json(&body).send().await;
                let Ok(r) = r else { return };
                let Ok(v) = r.json::<Value>().await else { return };
                if v["outcome"] == "accepted" && tx.send((id, v)).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut acked = Vec::new();
    while let Some(a) = rx.recv().await {
        acked.push(a);
        if acked.len() == 150 {
            server.kill9();
            break;
        }
    }
    for w in writers {
        let _ = w.await;
    }
    while let Ok(a) = rx.try_recv() {
        acked.push(a); // answered before the kill landed
    }
    assert!(acked.len() >= 150);

    // Every acknowledged command is in the log exactly once.
    {
        let (log, report) = behalf_sled_store::DataDir::new(dir.path()).open_log(Default::default()).unwrap();
        assert_eq!(report.truncated, None);
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut after = 0;
        loop {
            let page = behalf_log::EventLog::read_all(&log, after, 4096).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            for commit in page {
                *seen.entry(commit.command_id.to_string()).or_default() += 1;
            }
        }
        for (id, answer) in &acked {
            assert_eq!(seen.get(id), Some(&1), "{id} acknowledged at {} is in the log once", answer["position"]);
        }
    }

    // After a restart, a retry with the same command id returns the first answer.
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    for (id, first) in acked.iter().take(40) {
        let body =
            merge(open_o365(), json!({"command_id": id, "title": format!("burst {}", &id[6..].replace('-', " "))}));
        let (status, again) = c.post(&token, &body).await;
        assert_eq!(status, 201, "{id}: {again}");
        assert_eq!(
            (&again["ticket_id"], &again["position"], &again["duplicate"]),
            (&first["ticket_id"], &first["position"], &json!(true)),
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let c = Client::of(&server);
    assert_eq!(c.http.get(format!("{}/healthz", c.base)).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(c.http.get(format!("{}/readyz", c.base)).send().await.unwrap().status().as_u16(), 200);
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    // The store reopens cleanly, with the admin token still valid.
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    let t = c.token(&server.admin, &Principal::Vendor).await;
    assert!(t.starts_with("bh_"));
}

#[test]
fn demo_runs_and_exits_zero() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .arg("demo")
        .env("BEHALF_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for code in [
        "azure.reseller_cannot_file",
        "ticket.contact_must_be_partner",
        "ticket.marketplace_product",
        "ticket.own_tenant_needs_support_plan",
        "gdap.relationship_inactive",
    ] {
        assert!(text.contains(code), "the demo shows {code}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_commands_work_on_a_stopped_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_behalf");
    let run =
        |args: &[&str]| std::process::Command::new(bin).args(args).arg("--data-dir").arg(dir.path()).output().unwrap();
    // No data directory yet: a clear refusal.
    let missing =
        std::process::Command::new(bin).args(["token", "list", "--data-dir", "/nonexistent/behalf"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no data directory"));
    drop(Server::start(dir.path())); // creates the store, then SIGKILL
    let issued =
        run(&["token", "issue", "--kind", "partner_agent", "--partner", PARTNER, "--user", AGENT, "--label", "cli"]);
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let text = String::from_utf8_lossy(&issued.stdout).to_string();
    let token = text.lines().find_map(|l| l.strip_prefix("token    ")).unwrap().trim().to_owned();
    let id = text.lines().find_map(|l| l.strip_prefix("token_id ")).unwrap().trim().to_owned();
    let bad = run(&["token", "issue", "--kind", "partner_agent", "--partner", PARTNER]);
    assert!(!bad.status.success(), "a partner agent token needs a user");
    let listed = String::from_utf8_lossy(&run(&["token", "list"]).stdout).to_string();
    assert!(listed.contains(&id) && listed.contains("partner_agent") && !listed.contains(&token));

    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    assert_eq!(c.post(&token, &open_o365()).await.0, 201, "the CLI-issued token works");
    drop(server);
    assert!(run(&["token", "revoke", &id]).status.success());
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    assert_eq!(c.post(&token, &open_o365()).await.0, 401, "a revoked token is refused");
}

#[test]
fn help_explains_every_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "command", "project", "notify", "demo", "token", "bench"] {
        assert!(text.contains(cmd), "--help names {cmd}");
    }
    let command =
        std::process::Command::new(env!("CARGO_BIN_EXE_behalf")).args(["command", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&command.stdout);
    for flag in ["--nats", "--nats-replicas", "--listen", "behalf.cmd"] {
        assert!(text.contains(flag), "command --help explains {flag}");
    }
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_behalf")).arg("command").output().unwrap();
    assert!(!missing.status.success(), "the command role needs --nats");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--nats"));
    let serve = std::process::Command::new(env!("CARGO_BIN_EXE_behalf")).args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&serve.stdout);
    for flag in ["--data-dir", "--listen", "--config", "--log-format", "port 0"] {
        assert!(text.contains(flag), "serve --help explains {flag}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["serve", "--listen", "nowhere"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HOST:PORT"), "bad settings are refused before start");
}

on_both_engines!(concurrent_writers_on_one_ticket_lose_no_update);

async fn concurrent_writers_on_one_ticket_lose_no_update(server: Server) {
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let a = c.token(&server.admin, &agent()).await;
    let t = c.post(&a, &open_o365()).await.1["ticket_id"].as_str().unwrap().to_owned();
    // 32 notes at once on one ticket: races are retried against fresh state.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (c, a, t) = (c.clone(), a.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            c.post(&a, &json!({"type":"ticket.note","ticket_id":t,"text":format!("n{i}")})).await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        let (status, v) = task.await.unwrap();
        assert_eq!(status, 200, "{v}");
        versions.push(v["version"].as_u64().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=33).collect::<Vec<u64>>(), "every note landed once, versions dense");
    // With an expected version, only one of two racing writers wins; the other learns the truth.
    let body = |n: &str| json!({"type":"ticket.note","ticket_id":t,"text":n,"expected_version":33});
    let (bx, by) = (body("x"), body("y"));
    let (x, y) = tokio::join!(c.post(&a, &bx), c.post(&a, &by));
    let mut statuses = [x.0, y.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{x:?} {y:?}");
    let loser = if x.0 == 409 { x.1 } else { y.1 };
    assert_eq!((loser["code"].as_str(), loser["details"]["actual"].as_u64()), (Some("concurrency.conflict"), Some(34)));
}

/// `behalf bench startup` end to end on a small log: it fills a data directory, lets a
/// server catch up, times cold starts and prints the figure in its fixed form; a second
/// run reuses the directory.
#[test]
fn bench_startup_fills_then_reuses_and_prints_its_figure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
            .args(["bench", "startup", "--events", "3000", "--runs", "1", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let first = run();
    assert!(first.contains("filled ") && first.contains("disk over "), "{first}");
    let figure = first.lines().last().unwrap_or_default();
    let rest = figure.strip_prefix("start-up: ").unwrap_or_else(|| panic!("{first}"));
    let (secs, events) = rest.split_once(" s to ready over ").unwrap_or_else(|| panic!("{figure}"));
    assert!(secs.parse::<f64>().is_ok_and(|s| s > 0.0 && s < 60.0), "{figure}");
    let events: u64 = events.strip_suffix(" events").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{figure}"));
    assert!((2_000..5_000).contains(&events), "{figure}");
    let second = run();
    assert!(second.contains("reusing") && !second.contains("filled "), "{second}");
    assert!(second.contains(&format!("to ready over {events} events")), "{second}");
}

/// `behalf bench http` end to end, briefly: the lines its figures are read from, in
/// their order, with plain numbers — the raw loops first, the raw HTTP baseline, the
/// in-process and HTTP figures, every stage of a command with its p50/p99 from the
/// run's histograms, and the ratios.
#[test]
fn bench_http_prints_its_figures_and_the_stages_in_order() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["bench", "http", "--seconds", "1", "--concurrency", "8"])
        .env("BEHALF_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let mut at = 0;
    for prefix in [
        "raw sled insert+flush, batches of 8: ",
        "raw HTTP + sled group commit, 8 connections: ",
        "in-process, 8 producers: ",
        "HTTP, 8 connections: ",
        "stage authenticate: p50 ",
        "stage decode: p50 ",
        "stage ticket_lock: p50 ",
        "stage gdap_wait: p50 ",
        "stage load: p50 ",
        "stage decide: p50 ",
        "stage append_queue: p50 ",
        "stage commit: p50 ",
        "stage respond: p50 ",
        "stage server: p50 ",
        "HTTP ÷ raw HTTP + sled group commit from this run: ",
        "HTTP ÷ in-process from this run: ",
    ] {
        let found = text.lines().skip(at).position(|l| l.starts_with(prefix));
        let Some(i) = found else { panic!("no line {prefix:?} after line {at}:\n{text}") };
        at += i + 1;
    }
    let figure = |prefix: &str| -> f64 {
        let line = text.lines().rev().find(|l| l.starts_with(prefix)).unwrap();
        let n = line[prefix.len()..].split(|c: char| !c.is_ascii_digit() && c != '.').next().unwrap();
        n.parse().unwrap_or_else(|_| panic!("{line}"))
    };
    assert!(figure("HTTP, 8 connections: ") > 0.0, "{text}");
    assert!(figure("raw HTTP + sled group commit, 8 connections: ") > 0.0, "{text}");
}
