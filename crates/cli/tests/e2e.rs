//! End-to-end: the real `behalf serve` binary on a free port with a temporary data
//! directory, driven over HTTP. Every command type of API.md, every rejection code of
//! RULES.md R1–R18 and R23–R28 with its HTTP status and rule, bad input, SIGKILL during
//! a burst, SIGTERM, and the demo.

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

mod support;

use std::collections::HashMap;

use behalf_domain::Principal;
use serde_json::{json, Value};
use support::world::*;
use support::{now, on_nats, send_world, Client, Server};

use behalf_test_support::cases::Then::{self, *};

struct Run {
    c: Client,
    tokens: HashMap<String, String>,
    admin: String,
}

impl Run {
    async fn token(&mut self, who: &Principal) -> String {
        let key = serde_json::to_string(who).unwrap();
        if !self.tokens.contains_key(&key) {
            let t = self.c.token(&self.admin, who).await;
            self.tokens.insert(key.clone(), t);
        }
        self.tokens[&key].clone()
    }

    async fn check(&mut self, label: &str, who: &Principal, body: Value, then: Then) -> Value {
        let token = self.token(who).await;
        let (status, answer) = self.c.post(&token, &body).await;
        match then {
            Accepts(types) => {
                assert_eq!(answer["outcome"], "accepted", "{label}: answered {status} {answer}");
                let got: Vec<&str> =
                    answer["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
                assert_eq!(got, types, "{label}");
                assert!(status == 200 || status == 201, "{label}: status {status}");
                assert!(answer["position"].as_u64().unwrap() > 0, "{label}: position");
            }
            Refuses(code, rule) => {
                // The status is the code table's (held to API.md by the http crate's test).
                let want_status = behalf_http::status_of(behalf_domain::Code::parse(code).expect(code)).as_u16();
                assert_eq!((status, answer["code"].as_str().unwrap_or("")), (want_status, code), "{label}: {answer}");
                assert_eq!(answer["outcome"], "rejected", "{label}");
                assert_eq!(answer["rule"].as_str(), Some(format!("R{rule}").as_str()), "{label}");
                assert!(!answer["message"].as_str().unwrap_or("").is_empty(), "{label}: a message for people");
            }
        }
        answer
    }
}

fn open(extra: Value) -> Value {
    merge(open_o365(), extra)
}
fn azure(extra: Value) -> Value {
    merge(open_azure(), extra)
}
fn relationship(status: &str, activated: &str, duration: &str) -> Value {
    json!({"type":"gdap.relationship.upsert","relationship_id":"rel-1","partner_id":PARTNER,"customer_id":CUSTOMER,"status":status,"roles":[HELPDESK, GLOBAL_READER, DIRECTORY_READERS],"activated_at":activated,"duration":duration,"auto_extend":"PT0S"})
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_and_rejection_over_http() {
    let dir = tempfile::tempdir().unwrap();
    every_command_and_rejection(Server::start(dir.path())).await;
}

/// Invariant 6: the same scenarios on the distributed engine (a real nats-server).
#[tokio::test(flavor = "multi_thread")]
async fn every_command_and_rejection_over_http_on_nats() {
    let (_nats, _dir, server) = on_nats();
    every_command_and_rejection(server).await;
}

async fn every_command_and_rejection(server: Server) {
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let mut r = Run { c, tokens: HashMap::new(), admin: server.admin.clone() };
    let v = Principal::Vendor;
    let a = agent();
    let activated = now().plus_millis(-30 * 86_400_000).to_string();

    // Directory and vendor facts: every type, as accepted upserts.
    r.check("partner.register", &v, json!({"type":"partner.register","partner_id":"11111111-0000-4000-8000-0000000000e1","name":"E2E","program":"advisor","domains":["e2e.example"],"cloud":"commercial"}), Accepts(&["PartnerRegistered"])).await;
    r.check("customer.register", &v, json!({"type":"customer.register","customer_id":"22222222-0000-4000-8000-0000000000e1","name":"E2E customer","domains":["e2e-customer.example"],"cloud":"commercial"}), Accepts(&["CustomerRegistered"])).await;
    r.check("partner.user.upsert", &sync(PARTNER), json!({"type":"partner.user.upsert","partner_id":PARTNER,"user_id":"33333333-0000-4000-8000-0000000000e1","email":"e2e@contoso-partner.com","admin_agent":true}), Accepts(&["PartnerUserUpserted"])).await;
    r.check("group.member.add", &sync(PARTNER), json!({"type":"group.member.add","partner_id":PARTNER,"group_id":GROUP,"user_id":"33333333-0000-4000-8000-0000000000e1"}), Accepts(&["GroupMemberAdded"])).await;
    r.check("group.member.remove", &sync(PARTNER), json!({"type":"group.member.remove","partner_id":PARTNER,"group_id":GROUP,"user_id":"33333333-0000-4000-8000-0000000000e1"}), Accepts(&["GroupMemberRemoved"])).await;
    r.check("gdap.relationship.upsert", &sync(PARTNER), json!({"type":"gdap.relationship.upsert","relationship_id":"rel-e2e","partner_id":PARTNER,"customer_id":"22222222-0000-4000-8000-0000000000e1","status":"approvalPending","roles":[HELPDESK],"duration":"P90D","auto_extend":"P180D"}), Accepts(&["RelationshipUpserted"])).await;
    r.check("gdap.assignment.upsert", &sync(PARTNER), json!({"type":"gdap.assignment.upsert","assignment_id":"asg-e2e","relationship_id":"rel-e2e","group_id":GROUP,"roles":[HELPDESK],"status":"pending"}), Accepts(&["AssignmentUpserted"])).await;
    r.check("subscription.register", &v, json!({"type":"subscription.register","subscription_id":"sub-e2e","customer_id":CUSTOMER,"workload":"ems","provider_id":PARTNER,"billing":"trial"}), Accepts(&["SubscriptionRegistered"])).await;
    r.check("rbac.assign", &v, json!({"type":"rbac.assign","assignment_id":"rbac-e2e","subscription_id":"sub-azure","principal_id":NOT_ADMIN,"role_id":READER}), Accepts(&["RbacAssigned"])).await;
    r.check("rbac.remove", &v, json!({"type":"rbac.remove","assignment_id":"rbac-e2e","subscription_id":"sub-azure","principal_id":NOT_ADMIN,"role_id":READER}), Accepts(&["RbacRemoved"])).await;
    r.check("marketplace.product.register", &v, json!({"type":"marketplace.product.register","product_id":"prod-e2e","isv_name":"E2E ISV","support_phone":"+62 21 555 0199"}), Accepts(&["MarketplaceProductRegistered"])).await;
    r.check("support_plan.register", &v, json!({"type":"support_plan.register","plan_id":"plan-e2e","partner_id":PARTNER,"kind":"azure_support_plan","valid_until":"2099-01-01T00:00:00Z"}), Accepts(&["SupportPlanRegistered"])).await;
    r.check("service_health.issue.upsert", &v, json!({"type":"service_health.issue.upsert","issue_id":"MO999001","workload":"ems","title":"Intune delays","classification":"advisory","status":"investigating","is_resolved":false,"start":activated,"customer_ids":[CUSTOMER]}), Accepts(&["ServiceHealthIssueUpserted"])).await;
    r.check("R25 the same fact again appends nothing", &v, json!({"type":"customer.register","customer_id":"22222222-0000-4000-8000-0000000000e1","name":"E2E customer","domains":["e2e-customer.example"],"cloud":"commercial"}), Accepts(&[])).await;

    // Tickets: every type.
    let opened = r.check("ticket.open", &a, open(json!({})), Accepts(&["TicketOpened"])).await;
    let t = opened["ticket_id"].as_str().unwrap().to_owned();
    r.check(
        "ticket.note",
        &a,
        json!({"type":"ticket.note","ticket_id":t,"text":"more detail"}),
        Accepts(&["NoteAdded"]),
    )
    .await;
    r.check(
        "ticket.update",
        &a,
        json!({"type":"ticket.update","ticket_id":t,"severity":2}),
        Accepts(&["TicketUpdated"]),
    )
    .await;
    r.check(
        "ticket.attach",
        &a,
        json!({"type":"ticket.attach","ticket_id":t,"name":"trace.csv","uri":"https://files.example/trace.csv"}),
        Accepts(&["AttachmentAdded"]),
    )
    .await;
    r.check(
        "ticket.escalate",
        &a,
        json!({"type":"ticket.escalate","ticket_id":t,"reason":"business down","incident_id":"MO226784"}),
        Accepts(&["TicketEscalated"]),
    )
    .await;
    r.check(
        "ticket.respond",
        &v,
        json!({"type":"ticket.respond","ticket_id":t,"text":"looking"}),
        Accepts(&["VendorResponded"]),
    )
    .await;
    r.check(
        "ticket.request_attention",
        &v,
        json!({"type":"ticket.request_attention","ticket_id":t,"text":"send logs"}),
        Accepts(&["AttentionRequested"]),
    )
    .await;
    r.check(
        "R17 a partner note returns the ticket to open",
        &a,
        json!({"type":"ticket.note","ticket_id":t,"text":"logs attached"}),
        Accepts(&["NoteAdded", "AttentionCleared"]),
    )
    .await;
    r.check(
        "R17 reopening an open ticket",
        &a,
        json!({"type":"ticket.reopen","ticket_id":t,"reason":"x"}),
        Refuses("ticket.invalid_transition", 17),
    )
    .await;
    r.check(
        "ticket.close",
        &a,
        json!({"type":"ticket.close","ticket_id":t,"resolution":"fixed"}),
        Accepts(&["TicketClosed"]),
    )
    .await;
    r.check(
        "R17 a closed ticket takes only reopen",
        &a,
        json!({"type":"ticket.note","ticket_id":t,"text":"x"}),
        Refuses("ticket.closed", 17),
    )
    .await;
    r.check(
        "ticket.reopen",
        &a,
        json!({"type":"ticket.reopen","ticket_id":t,"reason":"back"}),
        Accepts(&["TicketReopened"]),
    )
    .await;
    r.check(
        "R17 unknown ticket",
        &a,
        json!({"type":"ticket.note","ticket_id":"no-such-ticket","text":"x"}),
        Refuses("ticket.not_found", 17),
    )
    .await;
    r.check(
        "R21 critical tickets escalate on opening",
        &a,
        open(json!({"severity":"Critical"})),
        Accepts(&["TicketOpened", "TicketEscalated"]),
    )
    .await;
    r.check("support.request", &customer_user(), json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-o365","prefer":"vendor","summary":"help"}), Accepts(&["SupportRequestRouted"])).await;
    let isv = r
        .check(
            "R23 a marketplace product routes to its ISV",
            &customer_user(),
            json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-mkt","summary":"help"}),
            Accepts(&["SupportRequestRouted"]),
        )
        .await;
    assert_eq!((isv["route"].as_str(), isv["isv"]["name"].as_str()), (Some("isv"), Some("Northwind ISV")));

    // Every rejection code of R1–R18, R23–R28, with its status and rule.
    r.check("R1", &a, open(json!({"workload":"intune"})), Refuses("ticket.unsupported_workload", 1)).await;
    r.check("R2", &v, open(json!({})), Refuses("auth.forbidden", 2)).await;
    r.check("R3", &agent_of(PARTNER, NOT_ADMIN), open(json!({})), Refuses("partner.not_admin_agent", 3)).await;
    r.check("R4", &a, open(json!({"customer_id":OTHER_CUSTOMER})), Refuses("gdap.no_relationship", 4)).await;
    r.check(
        "R6",
        &agent_of(PARTNER, "33333333-0000-4000-8000-0000000000e1"),
        open(json!({})),
        Refuses("gdap.no_access", 6),
    )
    .await;
    r.check("R7", &agent_of(PARTNER, READER_AGENT), open(json!({})), Refuses("gdap.missing_permission", 7)).await;
    r.check(
        "R8 subscription",
        &a,
        azure(json!({"subscription_id":"sub-other"})),
        Refuses("ticket.subscription_invalid", 8),
    )
    .await;
    r.check("R9 reseller", &agent_of(RESELLER, RESELLER_AGENT), azure(json!({"subscription_id":"sub-indirect","contact":{"first_name":"A","last_name":"B","email":"a@reseller.example","preferred_contact":"email"}})), Refuses("azure.reseller_cannot_file", 9)).await;
    r.check(
        "R9 provider",
        &a,
        azure(json!({"subscription_id":"sub-indirect"})),
        Refuses("azure.not_subscription_provider", 9),
    )
    .await;
    r.check("R10", &a, azure(json!({"support_plan":"premier"})), Refuses("azure.support_plan_must_be_csp", 10)).await;
    r.check("R11", &a, open(json!({"contact":{"first_name":"B","last_name":"S","email":"budi@fabrikam.com","preferred_contact":"email"}})), Refuses("ticket.contact_must_be_partner", 11)).await;
    let isv = r
        .check("R12", &a, azure(json!({"subscription_id":"sub-mkt"})), Refuses("ticket.marketplace_product", 12))
        .await;
    assert_eq!(isv["details"]["support_email"], "help@northwind.example");
    r.check(
        "R13 no plan",
        &a,
        open(json!({"customer_id":PARTNER})),
        Refuses("ticket.own_tenant_needs_support_plan", 13),
    )
    .await;
    r.check(
        "R13 expired plan",
        &a,
        open(json!({"customer_id":PARTNER,"support_plan":"plan-old"})),
        Refuses("ticket.support_plan_invalid", 13),
    )
    .await;
    r.check("R14", &a, open(json!({"customer_id":GOV_CUSTOMER})), Refuses("tenant.cloud_mismatch", 14)).await;
    r.check("R15", &a, open(json!({"severity":"unknown"})), Refuses("validation.bad_severity", 15)).await;
    r.check("R16", &a, open(json!({"country_code":"XX"})), Refuses("validation.invalid", 16)).await;
    r.check(
        "R21",
        &a,
        json!({"type":"ticket.escalate","ticket_id":t,"reason":"x","incident_id":"MO000000"}),
        Refuses("ticket.incident_not_found", 21),
    )
    .await;
    r.check(
        "R23",
        &a,
        json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-o365","summary":"help"}),
        Refuses("auth.forbidden", 23),
    )
    .await;
    r.check(
        "R24 another partner's ticket is not there",
        &agent_of(PROVIDER, PROVIDER_AGENT),
        json!({"type":"ticket.note","ticket_id":t,"text":"mine?"}),
        Refuses("ticket.not_found", 17),
    )
    .await;
    r.check("R25", &sync(RESELLER), relationship("active", &activated, "P730D"), Refuses("auth.forbidden", 25)).await;
    r.check(
        "R28 duration",
        &sync(PARTNER),
        relationship("active", &activated, "P3Y"),
        Refuses("gdap.invalid_relationship", 28),
    )
    .await;
    r.check("R28 roles", &sync(PARTNER), json!({"type":"gdap.assignment.upsert","assignment_id":"asg-9","relationship_id":"rel-1","group_id":GROUP,"roles":[GLOBAL_ADMIN],"status":"active"}), Refuses("gdap.role_not_in_relationship", 28)).await;

    // R27: a stale expected version.
    let mut stale = json!({"type":"ticket.note","ticket_id":t,"text":"x","expected_version":1});
    let conflict = r.check("R27", &a, stale.clone(), Refuses("concurrency.conflict", 27)).await;
    stale["expected_version"] = conflict["details"]["actual"].clone();
    r.check("R27 the right version", &a, stale, Accepts(&["NoteAdded"])).await;

    // R26: the same command id answers the first outcome; another body is refused.
    let keyed = json!({"type":"ticket.note","ticket_id":t,"text":"once","command_id":"e2e-once"});
    let first = r.check("R26 first", &a, keyed.clone(), Accepts(&["NoteAdded"])).await;
    let again = r.check("R26 again", &a, keyed, Accepts(&["NoteAdded"])).await;
    assert_eq!((first["position"].clone(), again["duplicate"].clone()), (again["position"].clone(), json!(true)));
    r.check(
        "R26 another body",
        &a,
        json!({"type":"ticket.note","ticket_id":t,"text":"twice","command_id":"e2e-once"}),
        Refuses("idempotency.key_reused", 26),
    )
    .await;
    // A refusal is a first outcome too (R26, R30).
    let refused = json!({"type":"ticket.open","customer_id":CUSTOMER,"workload":"intune","command_id":"e2e-refused"});
    r.check("R30 refused once", &a, merge(open(json!({})), refused.clone()), Refuses("ticket.unsupported_workload", 1))
        .await;
    r.check(
        "R30 refused again, same answer",
        &a,
        merge(open(json!({})), refused),
        Refuses("ticket.unsupported_workload", 1),
    )
    .await;

    // R5 and R18 last: they take the grant away.
    r.check(
        "R5 expired",
        &sync(PARTNER),
        relationship("active", &now().plus_millis(-800 * 86_400_000).to_string(), "P730D"),
        Accepts(&["RelationshipUpserted"]),
    )
    .await;
    r.check("R5 expired refuses", &a, open(json!({})), Refuses("gdap.relationship_expired", 5)).await;
    r.check(
        "R18 terminated",
        &sync(PARTNER),
        relationship("terminated", &activated, "P730D"),
        Accepts(&["RelationshipUpserted"]),
    )
    .await;
    r.check(
        "R18 the next note is refused",
        &a,
        json!({"type":"ticket.note","ticket_id":t,"text":"still there?"}),
        Refuses("gdap.relationship_inactive", 5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_answered_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    bad_input(Server::start(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_answered_and_changes_nothing_on_nats() {
    let (_nats, dir, server) = on_nats();
    bad_input(server, dir.path()).await;
}

async fn bad_input(server: Server, dir: &std::path::Path) {
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
    assert_eq!(std::fs::metadata(dir.join("admin.token")).unwrap().permissions().mode() & 0o777, 0o600);
}

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
        let (log, report) = behalf_sled_store::SledLog::open(dir.path().join("log"), Default::default()).unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_on_one_ticket_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_writers(Server::start(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_on_one_ticket_lose_no_update_on_nats() {
    let (_nats, _dir, server) = on_nats();
    concurrent_writers(server).await;
}

async fn concurrent_writers(server: Server) {
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
