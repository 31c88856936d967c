//! End-to-end: the real `behalf serve` binary on a free port with a temporary data
//! directory, driven over HTTP: every command type of API.md and every rejection code
//! of RULES.md R1–R18 and R23–R28 with its HTTP status and rule, as one scenario on both
//! engines. (Bad input: `bad_input.rs`; the process under signals: `process.rs`; the
//! rule table: `rule_table.rs`.)

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

use crate::support;

use behalf_domain::Principal;
use serde_json::{json, Value};
use support::world::*;
use support::{now, send_world, Client, Server, Tokens};

use behalf_test_support::cases::Then::{self, *};

struct Run {
    tokens: Tokens,
}

impl Run {
    async fn check(&mut self, label: &str, who: &Principal, body: Value, then: Then) -> Value {
        let token = self.tokens.of(who).await;
        let (status, answer) = self.tokens.c.post(&token, &body).await;
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

on_both_engines!(every_command_and_rejection);

async fn every_command_and_rejection(server: Server) {
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let mut r = Run { tokens: Tokens::new(c, &server.admin) };
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
