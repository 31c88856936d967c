//! End-to-end queries on the real binary: scoping (R22, R24), read-your-writes by
//! `min_position`, cursor paging while tickets arrive, and a projector killed with
//! SIGKILL again and again whose views still equal a rebuild from zero.

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

use crate::support;

use behalf_domain::Principal;
use serde_json::{json, Value};
use support::world::*;
use support::{send_world, Client, Server};

async fn get(c: &Client, token: &str, path: &str) -> (u16, Value) {
    c.get(token, path).await
}

on_both_engines!(scoped_and_read_your_writes);

async fn scoped_and_read_your_writes(server: Server) {
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let contoso = c.token(&server.admin, &agent()).await;
    let provider = c.token(&server.admin, &agent_of(PROVIDER, PROVIDER_AGENT)).await;
    let reader = c.token(&server.admin, &agent_of(PARTNER, READER_AGENT)).await;
    let customer = c.token(&server.admin, &customer_user()).await;
    let auditor = c.token(&server.admin, &Principal::Auditor).await;
    let sync = c.token(&server.admin, &sync(PARTNER)).await;

    let (_, mine) = c.post(&contoso, &open_o365()).await;
    let t = mine["ticket_id"].as_str().unwrap().to_owned();
    let (_, theirs) = c.post(&provider, &merge(open_o365(), json!({"contact":{"first_name":"A","last_name":"B","email":"a@provider.example","preferred_contact":"email"}}))).await;
    let (_, noted) = c.post(&contoso, &json!({"type":"ticket.note","ticket_id":t,"text":"more detail"})).await;
    let pos = noted["position"].as_u64().unwrap();
    c.post(&contoso, &open(json!({"workload":"intune"}))).await; // refused, audited

    // Read your writes: the list waits for the note's position.
    let (s, list) = get(&c, &contoso, &format!("/v1/customers/{CUSTOMER}/tickets?min_position={pos}")).await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&str> = list["tickets"].as_array().unwrap().iter().map(|t| t["ticket_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [t.as_str()], "R24: two partners serving one customer never see each other's tickets");
    let (_, list) = get(&c, &provider, &format!("/v1/customers/{CUSTOMER}/tickets?min_position={pos}")).await;
    assert_eq!(list["tickets"][0]["ticket_id"], theirs["ticket_id"]);
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1);
    let (_, list) = get(&c, &customer, &format!("/v1/customers/{CUSTOMER}/tickets?min_position={pos}")).await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 2, "the customer sees its own tenant's tickets");
    assert_eq!(get(&c, &provider, &format!("/v1/tickets/{t}")).await.0, 404, "another partner's ticket is not found");

    // Detail and history with evidence.
    let (s, detail) = get(&c, &contoso, &format!("/v1/tickets/{t}")).await;
    assert_eq!(
        (s, detail["status"].as_str(), detail["notes"][0]["text"].as_str()),
        (200, Some("open"), Some("more detail"))
    );
    assert!(detail["sla"]["due_at"].is_string(), "SLA state: {detail}");
    let (_, history) = get(&c, &contoso, &format!("/v1/tickets/{t}/history")).await;
    let h = history["history"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["evidence"]["grant"]["relationship_id"], "rel-1", "R29 evidence in the history");
    assert_eq!(h[1]["actor"]["kind"], "partner_agent");

    // Partner dashboard with counts; filters; limits.
    let (_, dash) = get(&c, &contoso, &format!("/v1/partners/{PARTNER}/tickets")).await;
    assert_eq!(dash["counts"]["open"], 1);
    assert_eq!(get(&c, &contoso, &format!("/v1/partners/{PROVIDER}/tickets")).await.0, 403);
    let (_, none) = get(&c, &contoso, &format!("/v1/customers/{CUSTOMER}/tickets?status=closed")).await;
    assert_eq!(none["tickets"].as_array().unwrap().len(), 0);
    assert_eq!(get(&c, &contoso, &format!("/v1/customers/{CUSTOMER}/tickets?status=nonsense")).await.0, 422);

    // R22 service health; access explanation from the same policy.
    assert_eq!(
        get(&c, &reader, &format!("/v1/customers/{CUSTOMER}/service-health")).await.0,
        200,
        "Global Reader has serviceHealth"
    );
    let (s, r) = get(
        &c,
        &c.token(&server.admin, &agent_of(PARTNER, NOT_ADMIN)).await,
        &format!("/v1/customers/{OTHER_CUSTOMER}/service-health"),
    )
    .await;
    assert_eq!((s, r["code"].as_str()), (403, Some("gdap.no_relationship")));
    let (_, access) =
        get(&c, &contoso, &format!("/v1/partners/{PARTNER}/access?user_id={READER_AGENT}&customer_id={CUSTOMER}"))
            .await;
    let o365 = access["workloads"].as_array().unwrap().iter().find(|w| w["workload"] == "office365").unwrap().clone();
    assert_eq!((o365["allowed"].as_bool(), o365["code"].as_str()), (Some(false), Some("gdap.missing_permission")));

    // Auditors read refusals and the event feed; partners do not.
    let (s, rej) = get(&c, &auditor, "/v1/audit/rejections").await;
    assert_eq!(s, 200);
    assert_eq!(rej["rejections"][0]["code"], "ticket.unsupported_workload");
    assert_eq!(get(&c, &contoso, "/v1/audit/rejections").await.0, 403);
    let (_, feed) = get(&c, &auditor, "/v1/events?after=0&limit=5").await;
    assert_eq!(feed["events"][0]["position"], 1);
    assert_eq!(get(&c, &contoso, "/v1/events").await.0, 403);

    // A terminated relationship hides the customer's tickets from that partner.
    let (_, term) = c.post(&sync, &json!({"type":"gdap.relationship.upsert","relationship_id":"rel-1","partner_id":PARTNER,"customer_id":CUSTOMER,"status":"terminated","roles":[HELPDESK, GLOBAL_READER, DIRECTORY_READERS],"duration":"P730D","auto_extend":"PT0S"})).await;
    let p = term["position"].as_u64().unwrap();
    let (_, list) = get(&c, &contoso, &format!("/v1/customers/{CUSTOMER}/tickets?min_position={p}")).await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 0);
    assert_eq!(get(&c, &contoso, &format!("/v1/tickets/{t}")).await.0, 404);
    // A position the views never reach is answered 503 after the bounded wait.
    let (s, r) = get(&c, &auditor, "/v1/audit/rejections?min_position=999999&wait_ms=50").await;
    assert_eq!((s, r["code"].as_str()), (503, Some("unavailable")));
}

fn open(extra: Value) -> Value {
    merge(open_o365(), extra)
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_paging_stays_correct_while_tickets_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let a = c.token(&server.admin, &agent()).await;
    let mut opened = Vec::new();
    for i in 0..25 {
        let (_, r) = c.post(&a, &open(json!({"title": format!("t{i}")}))).await;
        opened.push(r["ticket_id"].as_str().unwrap().to_owned());
    }
    let last = c.post(&a, &open(json!({"title":"sync"}))).await.1;
    opened.push(last["ticket_id"].as_str().unwrap().to_owned());
    let pos = last["position"].as_u64().unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/v1/customers/{CUSTOMER}/tickets?limit=7&after={a}&min_position={pos}"),
            None => format!("/v1/customers/{CUSTOMER}/tickets?limit=7&min_position={pos}"),
        };
        let (_, page) = get(&c, &a, &q).await;
        for t in page["tickets"].as_array().unwrap() {
            seen.push(t["ticket_id"].as_str().unwrap().to_owned());
        }
        // New tickets arrive between pages; they sort before the cursor.
        c.post(&a, &open(json!({"title":"late"}))).await;
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    opened.reverse();
    assert_eq!(seen, opened, "newest first, every ticket once, none skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_projector_views_equal_a_rebuild_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let mut n = 0;
    for round in 0..4 {
        let c = Client::of(&server);
        let token = c.token(&server.admin, &agent()).await;
        let vendor = c.token(&server.admin, &Principal::Vendor).await;
        // A burst of commands, and a SIGKILL while they are still arriving.
        let mut tasks = Vec::new();
        for w in 0..8 {
            let (c, token, vendor) = (c.clone(), token.clone(), vendor.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    let Ok(r) = c
                        .http
                        .post(format!("{}/v1/commands", c.base))
                        .bearer_auth(&token)
                        .json(&open(json!({"title": format!("r{round} w{w} #{i}")})))
                        .send()
                        .await
                    else {
                        return;
                    };
                    let Ok(v) = r.json::<Value>().await else { return };
                    if let Some(t) = v["ticket_id"].as_str() {
                        let note = json!({"type":"ticket.note","ticket_id":t,"text":"n"});
                        let _ = c
                            .http
                            .post(format!("{}/v1/commands", c.base))
                            .bearer_auth(&vendor)
                            .json(&note)
                            .send()
                            .await;
                    }
                }
            }));
        }
        // Kill once some of them have landed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let head = loop {
            let h = c.metric("behalf_log_head").await;
            if h > n + 60 {
                break h;
            }
            support::before(deadline, "the burst to land");
            tokio::task::yield_now().await;
        };
        n = head;
        server.kill9();
        for t in tasks {
            let _ = t.await;
        }
        server = Server::start(dir.path());
    }
    // Stop for good; let the runner finish catching up as its own process.
    let pid = server.child.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    server.child.wait().unwrap();
    let bin = env!("CARGO_BIN_EXE_behalf");
    let caught = std::process::Command::new(bin).args(["project", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(caught.status.success(), "{}", String::from_utf8_lossy(&caught.stderr));
    let other = tempfile::tempdir().unwrap();
    let rebuilt = std::process::Command::new(bin)
        .args(["project", "--rebuild", "--data-dir"])
        .arg(dir.path())
        .arg("--into")
        .arg(other.path())
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    use behalf_log::views::ViewStore;
    let live = behalf_sled_store::DataDir::new(dir.path()).open_views().unwrap().dump().unwrap();
    let fresh = behalf_sled_store::SledViews::open(other.path()).unwrap().dump().unwrap();
    assert!(live.len() > 100, "views were built ({} keys)", live.len());
    assert_eq!(live.len(), fresh.len());
    for (a, b) in live.iter().zip(&fresh) {
        assert_eq!(a, b, "key {}", String::from_utf8_lossy(&a.0));
    }
}
