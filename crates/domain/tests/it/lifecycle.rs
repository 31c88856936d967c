//! Property tests of the ticket lifecycle (R17): folding the events `decide` produced
//! reproduces the state; a closed ticket accepts only `reopen`; versions only grow;
//! no sequence of commands — well-formed or not — panics.
#![allow(clippy::wildcard_enum_match_arm)] // reason: a test that panics on the unexpected needs no exhaustive match

use behalf_domain::*;
use behalf_test_support::world::*;
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
enum Op {
    Cmd(Principal, Value),
    /// Moves the clock forward by minutes.
    Wait(i64),
    /// Terminates or restores the partner's relationship (R18).
    Grant(bool),
}

fn principal() -> impl Strategy<Value = Principal> {
    prop_oneof![
        4 => Just(agent()),
        3 => Just(Principal::Vendor),
        1 => Just(agent_of(PROVIDER, PROVIDER_AGENT)),
        1 => Just(customer_user()),
        1 => Just(Principal::Auditor),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z ]{1,20}", 1 => Just(String::new()), 1 => "\\PC{0,30}"]
}

fn ticket_cmd() -> impl Strategy<Value = Value> {
    let sev = prop_oneof![
        Just(json!("critical")),
        Just(json!("moderate")),
        Just(json!(3)),
        Just(json!("unknown")),
        Just(json!(9))
    ];
    prop_oneof![
        text().prop_map(|t| json!({"type":"ticket.note","text":t})),
        sev.prop_map(|s| json!({"type":"ticket.update","severity":s})),
        text().prop_map(|n| json!({"type":"ticket.attach","name":n,"uri":"https://files.example/x"})),
        (text(), prop::option::of(prop_oneof![Just("MO226784"), Just("MO1")]))
            .prop_map(|(r, i)| json!({"type":"ticket.escalate","reason":r,"incident_id":i})),
        text().prop_map(|t| json!({"type":"ticket.respond","text":t})),
        text().prop_map(|t| json!({"type":"ticket.request_attention","text":t})),
        text().prop_map(|t| json!({"type":"ticket.close","resolution":t})),
        text().prop_map(|t| json!({"type":"ticket.reopen","reason":t})),
        Just(json!({"type":"ticket.sla_check"})),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (principal(), ticket_cmd()).prop_map(|(p, c)| Op::Cmd(p, c)),
        2 => (1i64..600).prop_map(Op::Wait),
        1 => any::<bool>().prop_map(Op::Grant),
    ]
}

fn relationship(status: &str) -> Value {
    json!({"type":"gdap.relationship.upsert","relationship_id":"rel-1","partner_id":PARTNER,"customer_id":CUSTOMER,"status":status,"roles":[HELPDESK, GLOBAL_READER, DIRECTORY_READERS],"activated_at":"2026-05-01T00:00:00Z","duration":"P730D","auto_extend":"PT0S"})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lifecycle_holds_under_any_sequence(severity in prop_oneof![Just("critical"), Just("moderate"), Just("minimal")], ops in prop::collection::vec(op(), 1..40)) {
        let mut w = World::standard();
        let id = w.open_ticket(json!({"severity": severity}));
        let mut state = w.ticket(&id);
        for op in ops {
            match op {
                Op::Wait(m) => w.now = w.now.plus_millis(m * 60_000),
                Op::Grant(live) => { w.must(&sync(PARTNER), relationship(if live { "active" } else { "terminated" })); }
                Op::Cmd(who, mut cmd) => {
                    cmd["ticket_id"] = json!(id);
                    let kind = cmd["type"].as_str().unwrap().to_owned();
                    let before = state.clone();
                    match w.run(&who, cmd) {
                        Ok(events) => {
                            // A closed ticket takes only reopen.
                            if before.case.status == TicketStatus::Closed {
                                prop_assert_eq!(&kind, "ticket.reopen");
                            }
                            for e in &events {
                                prop_assert_eq!(e.ticket_id().map(|t| t.as_str()), Some(id.as_str()));
                                state = Ticket::evolve(Some(state), e).unwrap();
                            }
                            // Versions only grow, one per event.
                            prop_assert_eq!(state.case.version, before.case.version + events.len() as u64);
                        }
                        Err(r) => {
                            // A refusal changes nothing and names a rule unless it is a bare request error.
                            prop_assert!(r.rule.is_some(), "{r}");
                        }
                    }
                    // Folding every event of the stream reproduces the state.
                    prop_assert_eq!(&w.ticket(&id), &state);
                    prop_assert_eq!(state.case.version as usize, w.tickets[&TicketId::new(id.as_str())].len());
                }
            }
        }
    }

    /// Arbitrary bodies: whatever parses is decided without panicking, by anyone.
    #[test]
    fn no_command_panics(kind in prop::sample::select(vec![
            "ticket.open","ticket.note","ticket.update","ticket.attach","ticket.escalate","ticket.respond",
            "ticket.request_attention","ticket.close","ticket.reopen","ticket.sla_check","support.request",
            "partner.register","customer.register","partner.user.upsert","group.member.add","group.member.remove",
            "gdap.relationship.upsert","gdap.assignment.upsert","subscription.register","rbac.assign","rbac.remove",
            "marketplace.product.register","support_plan.register","service_health.issue.upsert"]),
        fields in prop::collection::btree_map(
            prop::sample::select(vec!["ticket_id","customer_id","partner_id","user_id","group_id","workload","severity","title","description",
                "support_topic","country_code","contact","text","relationship_id","assignment_id","roles","status","duration","auto_extend",
                "activated_at","subscription_id","product_id","support_plan","prefer","summary","program","domains","cloud","provider_id",
                "name","email","admin_agent","billing","role_id","principal_id","issue_id","start","end","customer_ids","is_resolved",
                "classification","isv_name","kind","valid_until","plan_id","reason","resolution","uri","incident_id"]),
            prop_oneof![
                "\\PC{0,12}".prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
                Just(json!([HELPDESK])),
                Just(json!(["a.example", ""])),
                Just(json!({"first_name":"a","last_name":"b","email":"x@contoso-partner.com","preferred_contact":"phone","phone":"+1 (555) 0100"})),
                Just(json!(CUSTOMER)), Just(json!(PARTNER)), Just(json!("T1")), Just(json!("P99999Y")), Just(json!("2026-06-01T00:00:00Z")),
            ], 0..12),
        who in principal()) {
        let mut w = World::standard();
        w.open_ticket(json!({}));
        let mut body = serde_json::Map::new();
        body.insert("type".into(), json!(kind));
        body.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
        if let Ok(cmd) = serde_json::from_value::<Command>(Value::Object(body)) {
            let ticket = match cmd.target() { Target::Ticket(id) => Ticket::fold(w.tickets.get(&id).into_iter().flatten()), _ => None };
            let ctx = Context { now: w.now, principal: who, new_id: "T99".into(), directory_position: 1, expected_version: None };
            let _ = decide(&State { directory: &w.dir, ticket: ticket.as_ref() }, &cmd, &ctx);
        }
    }
}

#[test]
fn closed_ticket_refuses_everything_but_reopen() {
    let mut w = World::standard();
    let id = w.open_ticket(json!({}));
    w.must(&agent(), json!({"type":"ticket.close","ticket_id":id,"resolution":"done"}));
    for (who, cmd) in [
        (agent(), json!({"type":"ticket.note","ticket_id":id,"text":"x"})),
        (agent(), json!({"type":"ticket.update","ticket_id":id,"severity":"critical"})),
        (agent(), json!({"type":"ticket.attach","ticket_id":id,"name":"a","uri":"https://x.example/a"})),
        (agent(), json!({"type":"ticket.escalate","ticket_id":id,"reason":"x"})),
        (agent(), json!({"type":"ticket.close","ticket_id":id,"resolution":"again"})),
        (Principal::Vendor, json!({"type":"ticket.respond","ticket_id":id,"text":"x"})),
        (Principal::Vendor, json!({"type":"ticket.request_attention","ticket_id":id,"text":"x"})),
        (Principal::Vendor, json!({"type":"ticket.note","ticket_id":id,"text":"x"})),
    ] {
        let r = w.run(&who, cmd.clone()).unwrap_err();
        assert_eq!(r.code, Code::TicketClosed, "{cmd}");
    }
    assert_eq!(w.must(&agent(), json!({"type":"ticket.reopen","ticket_id":id,"reason":"x"})).len(), 1);
    assert_eq!(w.ticket(&id).case.status, TicketStatus::Open);
}
