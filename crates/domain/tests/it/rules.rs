//! The rules of `RULES.md` as given/when/then cases. Every rule the domain decides
//! has at least one case that passes and one that is refused; each case is labelled
//! with its rule id. `every_rule_has_a_pass_and_a_refusal` checks that coverage.
#![allow(clippy::wildcard_enum_match_arm)] // reason: a test that panics on the unexpected needs no exhaustive match

use std::collections::BTreeSet;

use behalf_domain::*;
use behalf_test_support::cases::Then::*;
use behalf_test_support::cases::*;
use behalf_test_support::world::*;
use serde_json::{json, Value};

fn run_case(c: &Case) -> Result<Vec<Event>, Rejection> {
    let mut w = World::standard();
    c.given.apply(&mut w);
    let newest = w.tickets.keys().next_back().map(|t| t.to_string());
    let (cmd, expected) = resolve(newest.as_deref(), (c.when)());
    w.run_expecting(&(c.who)(), cmd, expected)
}

#[test]
fn rule_table() {
    let mut failures = Vec::new();
    for c in cases() {
        let got = run_case(&c);
        let ok = match (&c.then, &got) {
            (Accepts(types), Ok(events)) => events.iter().map(Event::type_name).collect::<Vec<_>>() == *types,
            (Refuses(code, rule), Err(r)) => r.code.as_str() == *code && r.rule == Rule::from_number(*rule),
            (Accepts(_), Err(_)) | (Refuses(..), Ok(_)) => false,
        };
        if !ok {
            let shown = match &got {
                Ok(events) => format!("accepted {:?}", events.iter().map(Event::type_name).collect::<Vec<_>>()),
                Err(r) => format!("refused {r}"),
            };
            failures.push(format!("{}: {shown}", c.label));
        }
    }
    assert!(failures.is_empty(), "rule cases that did not hold:\n  {}", failures.join("\n  "));
}

/// Rules the domain decides; R22 and R24 are read policies (tested below), R26 and
/// R30 are the log's and the service's, with their domain halves tested below.
/// The rule a case's label names (`R16 …` → 16).
fn r_of(c: &Case) -> u8 {
    c.label[1..].split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

const DOMAIN_RULES: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 23, 25, 27, 28];

#[test]
fn every_rule_has_a_pass_and_a_refusal() {
    let all = cases();
    for rule in DOMAIN_RULES {
        let prefix = format!("R{rule} ");
        // A refusal counts for the rule it asserts (the rule the refusal must name), not
        // for its label; a passing case for the rule its label names.
        let passes = all.iter().any(|c| c.label.starts_with(&prefix) && matches!(c.then, Accepts(_)));
        // R18 re-runs R2–R11 on every command on a ticket: its refusals are theirs.
        let asserts = |r: u8| r == *rule || (*rule == 18 && (2..=11).contains(&r));
        let refusals =
            all.iter().any(|c| matches!(c.then, Refuses(_, r) if asserts(r)) && (r_of(c) == *rule || *rule != 18));
        assert!(passes, "R{rule} has no passing case");
        // R20 has no rejection of its own (RULES.md names none): a target not yet missed
        // records nothing instead.
        assert!(refusals || *rule == 20, "R{rule} has no case asserting a refusal by R{rule}");
    }
    for c in &all {
        if let Refuses(_, r) = c.then {
            let by_label = r_of(c);
            assert!(
                by_label == r || (by_label == 18 && (2..=11).contains(&r)),
                "{:?} asserts a refusal by R{r}",
                c.label
            );
        }
    }
    let labels: BTreeSet<&str> = all.iter().map(|c| c.label).collect();
    assert_eq!(labels.len(), all.len(), "case labels are unique");
}

#[test]
fn r9_reseller_rejection_names_the_provider() {
    let mut w = World::standard();
    let r = w
        .run(&agent_of(RESELLER, RESELLER_AGENT), azure(json!({"subscription_id":"sub-indirect","contact":{"first_name":"A","last_name":"B","email":"a@reseller.example","preferred_contact":"email"}})))
        .unwrap_err();
    assert_eq!(r.details.get("provider_id"), Some(&rejection::Detail::Text(PROVIDER.into())));
}

#[test]
fn r12_rejection_carries_the_isv_and_every_contact() {
    let mut w = World::standard();
    let r = w.run(&agent(), azure(json!({"subscription_id":"sub-mkt"}))).unwrap_err();
    let text = |k: &str| match r.details.get(k) {
        Some(rejection::Detail::Text(s)) => s.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(text("isv_name"), "Northwind ISV");
    assert_eq!(text("support_url"), "https://support.northwind.example");
    assert_eq!(text("support_email"), "help@northwind.example");
}

#[test]
fn r19_and_r29_open_carries_priority_and_evidence() {
    let mut w = World::standard();
    w.position = 4242;
    let events = w.must(&agent(), open_azure());
    let Event::TicketOpened(e) = &events[0] else { panic!("not opened") };
    assert!(e.csp_priority, "R19");
    assert_eq!(e.evidence.directory_position, 4242, "R29 position");
    assert_eq!(e.evidence.user_id.as_str(), AGENT);
    match &e.evidence.grant {
        Grant::Gdap { relationship_id, assignment_id, group_id, role_id, rbac_assignment_id, .. } => {
            assert_eq!(relationship_id.as_str(), "rel-1");
            assert_eq!(assignment_id.as_str(), "asg-1");
            assert_eq!(group_id.as_str(), GROUP);
            assert_eq!(role_id.as_str(), HELPDESK);
            assert_eq!(rbac_assignment_id.as_ref().map(|x| x.as_str()), Some("rbac-1"));
        }
        Grant::OwnTenant { .. } => panic!("expected a GDAP grant"),
    }
    let m365 = w.must(&agent(), open_o365());
    let Event::TicketOpened(e) = &m365[0] else { panic!() };
    assert!(matches!(&e.evidence.grant, Grant::Gdap { permission: Some(Permission::SupportTickets), .. }));
}

#[test]
fn r29_every_accepted_partner_ticket_command_carries_evidence() {
    let mut w = World::standard();
    let id = w.open_ticket(json!({}));
    for cmd in [
        json!({"type":"ticket.note","ticket_id":id,"text":"n"}),
        json!({"type":"ticket.update","ticket_id":id,"severity":"minimal"}),
        json!({"type":"ticket.attach","ticket_id":id,"name":"log.txt","uri":"https://files.example/log.txt"}),
        json!({"type":"ticket.escalate","ticket_id":id,"reason":"urgent"}),
        json!({"type":"ticket.close","ticket_id":id,"resolution":"fixed"}),
        json!({"type":"ticket.reopen","ticket_id":id,"reason":"back"}),
    ] {
        for e in w.must(&agent(), cmd) {
            assert!(e.evidence().is_some(), "{} has no evidence", e.type_name());
        }
    }
}

#[test]
fn r13_own_tenant_evidence_names_the_plan() {
    let mut w = World::standard();
    let events = w.must(&agent(), open(json!({"customer_id":PARTNER,"support_plan":"plan-1"})));
    assert!(
        matches!(&events[0].evidence().unwrap().grant, Grant::OwnTenant { plan_id } if plan_id.as_str() == "plan-1")
    );
}

#[test]
fn r22_service_health_needs_the_permission() {
    let w = World::standard();
    let now = w.now;
    let c = CustomerId::new(CUSTOMER);
    // Global Reader carries serviceHealth.
    assert!(policy::authorize_service_health(&w.dir, &agent_of(PARTNER, READER_AGENT), &c, now, 1).is_ok());
    assert!(policy::authorize_service_health(&w.dir, &agent(), &c, now, 1).is_ok());
    // Another partner without a relationship is refused.
    let r = policy::authorize_service_health(&w.dir, &agent_of(GOV_PARTNER, AGENT), &c, now, 1).unwrap_err();
    assert_eq!(r.code, Code::NoRelationship);
    // Directory Readers alone carries nothing.
    let mut w = World::standard();
    w.must(&sync(PARTNER), json!({"type":"gdap.assignment.upsert","assignment_id":"asg-2","relationship_id":"rel-1","group_id":READER_GROUP,"roles":[DIRECTORY_READERS],"status":"active"}));
    let r = policy::authorize_service_health(&w.dir, &agent_of(PARTNER, READER_AGENT), &c, now, 1).unwrap_err();
    assert_eq!((r.code, r.rule), (Code::MissingPermission, Some(Rule::R22)));
}

#[test]
fn r24_reads_are_scoped() {
    let mut w = World::standard();
    let now = w.now;
    let (p, c) = (PartnerId::new(PARTNER), CustomerId::new(CUSTOMER));
    assert!(policy::r24_can_see_ticket(&w.dir, &agent(), &p, &c, now));
    assert!(
        !policy::r24_can_see_ticket(&w.dir, &agent_of(PROVIDER, PROVIDER_AGENT), &p, &c, now),
        "another partner's ticket"
    );
    assert!(policy::r24_can_see_ticket(&w.dir, &customer_user(), &p, &c, now));
    assert!(policy::r24_can_see_ticket(&w.dir, &Principal::Auditor, &p, &c, now));
    assert!(!policy::r24_can_see_ticket(&w.dir, &Principal::Admin, &p, &c, now));
    w.must(&sync(PARTNER), relationship("terminated"));
    assert!(!policy::r24_can_see_ticket(&w.dir, &agent(), &p, &c, now), "terminated relationship hides the customer");
}

#[test]
fn r24_another_partners_ticket_is_not_found() {
    let mut w = World::standard();
    let id = w.open_ticket(json!({}));
    let r = w
        .run(&agent_of(PROVIDER, PROVIDER_AGENT), json!({"type":"ticket.note","ticket_id":id,"text":"mine?"}))
        .unwrap_err();
    assert_eq!(r.code, Code::TicketNotFound);
}

#[test]
fn r23_routing_decisions() {
    let mut w = World::standard();
    let route = |events: Vec<Event>| match &events[0] {
        Event::SupportRequestRouted(r) => (r.route, r.partner_id.clone().map(|p| p.to_string()), r.isv.clone()),
        other => panic!("{other:?}"),
    };
    let req = |extra: Value| merge(json!({"type":"support.request","customer_id":CUSTOMER,"summary":"help"}), extra);
    let (r, p, _) = route(w.must(&customer_user(), req(json!({"subscription_id":"sub-trial","prefer":"vendor"}))));
    assert_eq!((r, p.as_deref()), (Route::Partner, Some(PARTNER)), "trial routes to the partner only");
    let (r, _, _) = route(w.must(&customer_user(), req(json!({"subscription_id":"sub-o365","prefer":"Vendor"}))));
    assert_eq!(r, Route::Vendor, "paid: the customer may choose the vendor");
    let (r, p, _) = route(w.must(&customer_user(), req(json!({"subscription_id":"sub-indirect"}))));
    assert_eq!((r, p.as_deref()), (Route::Partner, Some(RESELLER)), "the reseller is the customer's partner");
    let (r, _, isv) = route(w.must(&customer_user(), req(json!({"subscription_id":"sub-mkt"}))));
    assert_eq!(r, Route::Isv);
    assert_eq!(isv.unwrap().support_email.as_deref(), Some("help@northwind.example"));
}

#[test]
fn r26_r30_rejections_become_audit_records() {
    let w = World::standard();
    let ctx =
        Context { now: w.now, principal: agent(), new_id: "x".into(), directory_position: 7, expected_version: None };
    let r = Rejection::new(Code::ResellerCannotFile, Rule::R9, "no");
    let Event::CommandRejected(e) = rejection_event("ticket.open", &r, &ctx, None) else { panic!() };
    assert_eq!((e.code, e.rule, e.principal), (Code::ResellerCannotFile, Some(Rule::R9), agent()));
    assert_eq!(StreamId::rejections().category(), "audit");
}

#[test]
fn r20_sla_clock_pauses_while_attention_is_needed() {
    let mut w = World::standard();
    let id = w.open_ticket(json!({"severity":"critical"}));
    w.now = at("2026-06-01T01:00:00Z");
    w.must(&Principal::Vendor, json!({"type":"ticket.request_attention","ticket_id":id,"text":"logs?"}));
    w.now = at("2026-06-01T05:00:00Z");
    let t = w.ticket(&id);
    let s = t.sla_at(w.now);
    assert!(s.paused && !s.breached, "paused for 4 h, 1 h used of 2 h: {s:?}");
    assert_eq!(s.due_at, at("2026-06-01T06:00:00Z"));
    assert!(w.must(&Principal::Vendor, json!({"type":"ticket.sla_check","ticket_id":id})).is_empty());
    w.must(&agent(), json!({"type":"ticket.note","ticket_id":id,"text":"here"}));
    w.now = at("2026-06-01T06:00:01Z");
    let events = w.must(&Principal::Vendor, json!({"type":"ticket.sla_check","ticket_id":id}));
    assert_eq!(events.iter().map(Event::type_name).collect::<Vec<_>>(), ["SlaBreached", "TicketEscalated"]);
    w.now = at("2026-06-02T00:00:00Z");
    assert!(w.must(&Principal::Vendor, json!({"type":"ticket.sla_check","ticket_id":id})).is_empty(), "recorded once");
}

#[test]
fn r20_on_time_response_is_not_a_breach() {
    let mut w = World::standard();
    let id = w.open_ticket(json!({"severity":"minimal"}));
    w.now = at("2026-06-01T07:59:00Z");
    w.must(&Principal::Vendor, json!({"type":"ticket.respond","ticket_id":id,"text":"looking"}));
    w.now = at("2026-06-03T00:00:00Z");
    let s = sla::sla_state(w.tickets.values().next().unwrap(), w.now);
    assert!(!s.breached && s.responded_at.is_some());
    assert!(w.must(&Principal::Vendor, json!({"type":"ticket.sla_check","ticket_id":id})).is_empty());
}

#[test]
fn access_explanation_uses_the_same_policy() {
    let w = World::standard();
    let rows = policy::explain_access(&w.dir, &PARTNER.into(), &AGENT.into(), &CUSTOMER.into(), w.now, 1);
    let azure_ok = rows.iter().any(|r| {
        r.workload == Workload::Azure
            && r.subscription_id.as_ref().map(|s| s.as_str()) == Some("sub-azure")
            && r.outcome.is_ok()
    });
    assert!(azure_ok, "{rows:#?}");
    let reader = policy::explain_access(&w.dir, &PARTNER.into(), &READER_AGENT.into(), &CUSTOMER.into(), w.now, 1);
    let o365 = reader.iter().find(|r| r.workload == Workload::Office365).unwrap();
    assert_eq!(o365.outcome.as_ref().unwrap_err().code, Code::MissingPermission);
}

#[test]
fn r29_rejudge_holds_for_recorded_evidence_and_catches_a_revoked_assignment() {
    let mut w = World::standard();
    let events = w.must(&agent(), open_azure());
    let Event::TicketOpened(e) = &events[0] else { panic!() };
    let scope = policy::TicketScope {
        customer_id: &e.customer_id,
        workload: e.workload,
        subscription_id: e.subscription_id.as_ref(),
        support_plan: e.support_plan.as_deref(),
        contact_email: &e.contact.email,
    };
    assert_eq!(policy::rejudge(&w.dir, &agent(), &scope, &e.evidence, w.now), Ok(()));
    let mut tampered = e.evidence.clone();
    if let Grant::Gdap { assignment_id, .. } = &mut tampered.grant {
        *assignment_id = "asg-2".into(); // the Global Reader group's, not the agent's
    }
    assert!(policy::rejudge(&w.dir, &agent(), &scope, &tampered, w.now).is_err());
    w.must(&sync(PARTNER), json!({"type":"gdap.assignment.upsert","assignment_id":"asg-1","relationship_id":"rel-1","group_id":GROUP,"roles":[HELPDESK],"status":"deleted"}));
    let why = policy::rejudge(&w.dir, &agent(), &scope, &e.evidence, w.now).unwrap_err();
    assert!(why.contains("deleted"), "{why}");
}

#[test]
fn every_directory_fact_stream_is_a_directory_category() {
    for (_, cmd) in standard_world(&FIXED_TIMES) {
        let cmd: Command = serde_json::from_value(cmd).unwrap();
        if let Target::Fact(stream) = cmd.target() {
            assert!(command::DIRECTORY_CATEGORIES.contains(&stream.category()), "{stream}");
        }
    }
    for t in ["ticket", "support", "audit"] {
        assert!(!command::DIRECTORY_CATEGORIES.contains(&t));
    }
}

#[test]
fn r12_rejection_carries_the_isv_support_phone() {
    let mut w = World::standard();
    w.must(
        &Principal::Vendor,
        json!({"type":"marketplace.product.register","product_id":"prod-1","isv_name":"Northwind ISV","support_phone":"+62 21 555 0100"}),
    );
    let r = w.run(&agent(), azure(json!({"subscription_id":"sub-mkt"}))).unwrap_err();
    assert_eq!(r.code, Code::MarketplaceProduct);
    assert_eq!(r.details.get("support_phone"), Some(&rejection::Detail::Text("+62 21 555 0100".into())));
}

#[test]
fn r19_csp_work_comes_first_at_the_same_severity_in_the_queue_order() {
    use behalf_domain::notify::priority_key;
    let csp_later = priority_key(Some(Severity::Moderate), true, 900, 0);
    let other_earlier = priority_key(Some(Severity::Moderate), false, 1, 0);
    assert!(csp_later < other_earlier, "CSP before non-CSP at the same severity, whatever the age");
    let critical_other = priority_key(Some(Severity::Critical), false, 900, 0);
    assert!(critical_other < csp_later, "severity first");
    let older_csp = priority_key(Some(Severity::Moderate), true, 5, 0);
    assert!(older_csp < csp_later, "then age");
}

#[test]
fn r23_a_partner_routed_request_is_forwarded_to_the_partners_queue() {
    let mut w = World::standard();
    let events = w.must(
        &customer_user(),
        json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-o365","summary":"help"}),
    );
    let out = behalf_domain::notify::route(&events[0]).expect("a partner-routed request is forwarded");
    assert_eq!(out.queue, behalf_domain::notify::partner_queue(&PartnerId::new(PARTNER)));
    assert_eq!(out.notice, behalf_domain::notify::Notice::CustomerRequest);
    let vendor_routed = w.must(
        &customer_user(),
        json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-o365","prefer":"vendor","summary":"help"}),
    );
    assert!(behalf_domain::notify::route(&vendor_routed[0]).is_none(), "a vendor-routed request goes to no partner");
}

#[test]
fn queues_are_consumed_by_their_owners() {
    use behalf_domain::policy::may_consume_queue;
    assert!(may_consume_queue(&Principal::Vendor, "commercial.azure"));
    assert!(may_consume_queue(&Principal::Vendor, &format!("partner.{PARTNER}")));
    assert!(may_consume_queue(&agent(), &format!("partner.{PARTNER}")));
    assert!(may_consume_queue(&sync(PARTNER), &format!("partner.{PARTNER}")));
    assert!(!may_consume_queue(&agent(), "commercial.azure"), "a partner does not consume workload queues");
    assert!(!may_consume_queue(&agent(), &format!("partner.{PROVIDER}")), "nor another partner's");
    assert!(!may_consume_queue(&customer_user(), &format!("partner.{PARTNER}")));
    assert!(!may_consume_queue(&Principal::Auditor, "commercial.azure"));
    assert!(!may_consume_queue(&Principal::Admin, "commercial.azure"));
}
