//! The rules of `RULES.md` as given/when/then cases, one labelled case per rule
//! outcome: the domain's rule table runs each against `decide`
//! (`crates/domain/tests/it/rules.rs`, which also checks that every rule has a pass and
//! a refusal), and the end-to-end suite sends the ones a live server can stage over
//! HTTP (`crates/cli/tests/it/e2e.rs`), with the status from the code table.

use crate::cases::Then::{Accepts, Refuses};
use crate::world::{
    agent, agent_of, at, customer_user, merge, open_azure, open_o365, sync, World, AGENT, CONTRIBUTOR, CUSTOMER,
    DIRECTORY_READERS, GLOBAL_ADMIN, GLOBAL_READER, GOV_CUSTOMER, GROUP, HELPDESK, NOT_ADMIN, OTHER_CUSTOMER, PARTNER,
    PROVIDER, PROVIDER_AGENT, READER, READER_AGENT, RESELLER, RESELLER_AGENT, T0,
};
use behalf_domain::Principal;
use serde_json::{json, Value};

/// What a case starts from, beside the standard world.
pub enum Given {
    Nothing,
    /// A ticket opened by the standard agent (`__ticket__` in the command).
    Ticket,
    /// That ticket, closed by the agent.
    ClosedTicket,
    /// That ticket, waiting for the partner's attention (asked by the vendor).
    AttentionTicket,
    /// Anything else, on the domain's world only (its clock, its directory).
    World(fn(&mut World)),
}

impl Given {
    /// Sets the world up as the case needs.
    pub fn apply(&self, w: &mut World) {
        let steps = match self {
            Given::Nothing => return,
            Given::World(f) => return f(w),
            Given::Ticket | Given::ClosedTicket | Given::AttentionTicket => {
                let id = w.open_ticket(json!({}));
                self.after_open(&id)
            }
        };
        for (who, cmd) in steps {
            w.must(&who, cmd);
        }
    }

    /// What follows the opening of the case's ticket `id` (who sends what).
    pub fn after_open(&self, id: &str) -> Vec<(Principal, Value)> {
        match self {
            Given::ClosedTicket => vec![(agent(), json!({"type":"ticket.close","ticket_id":id,"resolution":"done"}))],
            Given::AttentionTicket => vec![(
                Principal::Vendor,
                json!({"type":"ticket.request_attention","ticket_id":id,"text":"please send logs"}),
            )],
            Given::Nothing | Given::Ticket | Given::World(_) => Vec::new(),
        }
    }
}

/// Replaces the `__ticket__` placeholder with `ticket` and pulls out the `__expected`
/// version (R27).
pub fn resolve(ticket: Option<&str>, mut cmd: Value) -> (Value, Option<u64>) {
    let obj = cmd.as_object_mut().expect("command object");
    let expected = obj.remove("__expected").and_then(|v| v.as_u64());
    if obj.get("ticket_id").and_then(Value::as_str) == Some("__ticket__") {
        obj.insert("ticket_id".into(), Value::String(ticket.expect("a ticket was opened").to_owned()));
    }
    (cmd, expected)
}

pub enum Then {
    /// Accepted, with these event types.
    Accepts(&'static [&'static str]),
    /// Refused with this code by this rule.
    Refuses(&'static str, u8),
}

pub struct Case {
    pub label: &'static str,
    pub given: Given,
    pub who: fn() -> Principal,
    pub when: fn() -> Value,
    pub then: Then,
}

pub fn vendor() -> Principal {
    Principal::Vendor
}
pub fn open(extra: Value) -> Value {
    merge(open_o365(), extra)
}
pub fn azure(extra: Value) -> Value {
    merge(open_azure(), extra)
}
pub fn on_t2(cmd: &str, extra: Value) -> Value {
    // The first id `World::standard` hands out after its set-up commands is predictable,
    // but the tests look the ticket up instead of guessing it.
    merge(json!({"type": cmd, "ticket_id": "__ticket__"}), extra)
}
pub fn relationship(status: &str) -> Value {
    json!({"type":"gdap.relationship.upsert","relationship_id":"rel-1","partner_id":PARTNER,"customer_id":CUSTOMER,"status":status,"roles":[HELPDESK, GLOBAL_READER, DIRECTORY_READERS],"activated_at":"2026-05-01T00:00:00Z","duration":"P730D","auto_extend":"PT0S"})
}

pub fn cases() -> Vec<Case> {
    vec![
        // R1 workloads
        Case {
            label: "R1 office365 ticket is accepted",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R1 unsupported workload is refused",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"workload":"intune"})),
            then: Refuses("ticket.unsupported_workload", 1),
        },
        // R2 who acts
        Case {
            label: "R2 the partner agent of the token files",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"workload":"EMS"})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R2 a customer user cannot file for customers",
            given: Given::Nothing,
            who: customer_user,
            when: || open(json!({})),
            then: Refuses("auth.forbidden", 2),
        },
        Case {
            label: "R2 the vendor cannot file for customers",
            given: Given::Nothing,
            who: vendor,
            when: || open(json!({})),
            then: Refuses("auth.forbidden", 2),
        },
        // R3 admin agent
        Case {
            label: "R3 admin agent with GDAP role files",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"workload":"dynamics_crm_online"})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R3 user without the Admin agent role is refused",
            given: Given::Nothing,
            who: || agent_of(PARTNER, NOT_ADMIN),
            when: || open(json!({})),
            then: Refuses("partner.not_admin_agent", 3),
        },
        // R4 relationship exists
        Case {
            label: "R4 relationship with the customer exists",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R4 no relationship with the customer",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"customer_id":OTHER_CUSTOMER})),
            then: Refuses("gdap.no_relationship", 4),
        },
        // R5 relationship is live
        Case {
            label: "R5 auto-extended relationship stays live past its first end",
            given: Given::World(|w| w.now = at("2027-06-01T00:00:00Z")),
            who: || agent_of(PROVIDER, PROVIDER_AGENT),
            when: || {
                open(
                    json!({"contact":{"first_name":"A","last_name":"B","email":"a@provider.example","preferred_contact":"email"}}),
                )
            },
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R5 terminated relationship is inactive",
            given: Given::World(|w| {
                w.must(&sync(PARTNER), relationship("terminated"));
            }),
            who: agent,
            when: || open(json!({})),
            then: Refuses("gdap.relationship_inactive", 5),
        },
        Case {
            label: "R5 relationship past its end has expired",
            given: Given::World(|w| w.now = at("2028-05-01T00:00:00Z")),
            who: agent,
            when: || open(json!({})),
            then: Refuses("gdap.relationship_expired", 5),
        },
        Case {
            label: "R5 one millisecond before its end the relationship is live",
            given: Given::World(|w| w.now = at("2028-04-29T23:59:59.999Z")),
            who: agent,
            when: || open(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R5 at exactly its end the relationship has expired",
            given: Given::World(|w| w.now = at("2028-04-30T00:00:00Z")),
            who: agent,
            when: || open(json!({})),
            then: Refuses("gdap.relationship_expired", 5),
        },
        Case {
            label: "R5 an approval_pending relationship is inactive",
            given: Given::World(|w| {
                w.must(&sync(PARTNER), relationship("approval_pending"));
            }),
            who: agent,
            when: || open(json!({})),
            then: Refuses("gdap.relationship_inactive", 5),
        },
        Case {
            label: "R5 an expiring relationship is inactive",
            given: Given::World(|w| {
                w.must(&sync(PARTNER), relationship("expiring"));
            }),
            who: agent,
            when: || open(json!({})),
            then: Refuses("gdap.relationship_inactive", 5),
        },
        // R6 assignment reaches the user
        Case {
            label: "R6 assignment through the user's group",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R6 user outside every assigned group",
            given: Given::World(|w| {
                w.must(
                    &sync(PARTNER),
                    json!({"type":"group.member.remove","partner_id":PARTNER,"group_id":GROUP,"user_id":AGENT}),
                );
            }),
            who: agent,
            when: || open(json!({})),
            then: Refuses("gdap.no_access", 6),
        },
        Case {
            label: "R6 deleted assignment reaches nobody",
            given: Given::World(|w| {
                w.must(&sync(PARTNER), json!({"type":"gdap.assignment.upsert","assignment_id":"asg-1","relationship_id":"rel-1","group_id":GROUP,"roles":[HELPDESK],"status":"deleted"}));
            }),
            who: agent,
            when: || open(json!({})),
            then: Refuses("gdap.no_access", 6),
        },
        // R7 permission
        Case {
            label: "R7 Helpdesk Administrator carries supportTickets",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R7 Global Reader lacks supportTickets",
            given: Given::Nothing,
            who: || agent_of(PARTNER, READER_AGENT),
            when: || open(json!({})),
            then: Refuses("gdap.missing_permission", 7),
        },
        // R8 Azure: GDAP and RBAC
        Case {
            label: "R8 Azure with GDAP and Contributor",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R8 Azure without an RBAC role",
            given: Given::World(|w| {
                w.must(&Principal::Vendor, json!({"type":"rbac.remove","assignment_id":"rbac-1","subscription_id":"sub-azure","principal_id":AGENT,"role_id":CONTRIBUTOR}));
            }),
            who: agent,
            when: || azure(json!({})),
            then: Refuses("azure.rbac_missing", 8),
        },
        Case {
            label: "R8 Azure with only Reader",
            given: Given::World(|w| {
                w.must(&Principal::Vendor, json!({"type":"rbac.assign","assignment_id":"rbac-1","subscription_id":"sub-azure","principal_id":AGENT,"role_id":READER}));
            }),
            who: agent,
            when: || azure(json!({})),
            then: Refuses("azure.rbac_missing", 8),
        },
        Case {
            label: "R8 Azure subscription of another customer",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({"subscription_id":"sub-other"})),
            then: Refuses("ticket.subscription_invalid", 8),
        },
        Case {
            label: "R8 Azure ticket on an Office 365 subscription",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({"subscription_id":"sub-o365"})),
            then: Refuses("ticket.subscription_invalid", 8),
        },
        Case {
            label: "R8 Azure ticket without a subscription",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({"subscription_id":null})),
            then: Refuses("ticket.subscription_invalid", 8),
        },
        // R9 only the provider files Azure tickets
        Case {
            label: "R9 the indirect provider files for its subscription",
            given: Given::Nothing,
            who: || agent_of(PROVIDER, PROVIDER_AGENT),
            when: || {
                azure(
                    json!({"subscription_id":"sub-indirect","contact":{"first_name":"A","last_name":"B","email":"a@provider.example","preferred_contact":"email"}}),
                )
            },
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R9 the indirect reseller is refused even with RBAC",
            given: Given::Nothing,
            who: || agent_of(RESELLER, RESELLER_AGENT),
            when: || {
                azure(
                    json!({"subscription_id":"sub-indirect","contact":{"first_name":"A","last_name":"B","email":"a@reseller.example","preferred_contact":"email"}}),
                )
            },
            then: Refuses("azure.reseller_cannot_file", 9),
        },
        Case {
            label: "R9 an advisor is refused even with RBAC",
            given: Given::World(|w| {
                w.must(
                    &vendor(),
                    json!({"type":"partner.register","partner_id":RESELLER,"name":"Small Advisor","program":"advisor","domains":["reseller.example"],"cloud":"commercial"}),
                );
            }),
            who: || agent_of(RESELLER, RESELLER_AGENT),
            when: || {
                azure(
                    json!({"subscription_id":"sub-indirect","contact":{"first_name":"A","last_name":"B","email":"a@reseller.example","preferred_contact":"email"}}),
                )
            },
            then: Refuses("azure.reseller_cannot_file", 9),
        },
        Case {
            label: "R9 a provider cannot file for another provider's subscription",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({"subscription_id":"sub-indirect"})),
            then: Refuses("azure.not_subscription_provider", 9),
        },
        // R10 Azure support plan
        Case {
            label: "R10 Azure ticket names cloud_solution_provider",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({"support_plan":"Cloud_Solution_Provider"})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R10 Azure ticket with another plan",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({"support_plan":"premier"})),
            then: Refuses("azure.support_plan_must_be_csp", 10),
        },
        // R11 partner's contact
        Case {
            label: "R11 contact on the partner's domain",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R11 the customer's own e-mail as contact",
            given: Given::Nothing,
            who: agent,
            when: || {
                open(
                    json!({"contact":{"first_name":"Budi","last_name":"S","email":"budi@fabrikam.com","preferred_contact":"email"}}),
                )
            },
            then: Refuses("ticket.contact_must_be_partner", 11),
        },
        Case {
            label: "R11 contact on a domain of nobody's",
            given: Given::Nothing,
            who: agent,
            when: || {
                open(
                    json!({"contact":{"first_name":"Budi","last_name":"S","email":"budi@gmail.com","preferred_contact":"email"}}),
                )
            },
            then: Refuses("ticket.contact_must_be_partner", 11),
        },
        // R12 marketplace products
        Case {
            label: "R12 a first-party Azure subscription is CSP-supported",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R12 a marketplace product goes to its ISV",
            given: Given::Nothing,
            who: agent,
            when: || azure(json!({"subscription_id":"sub-mkt"})),
            then: Refuses("ticket.marketplace_product", 12),
        },
        // R13 partner's own subscriptions
        Case {
            label: "R13 own tenant under a valid support plan",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"customer_id":PARTNER,"support_plan":"plan-1"})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R13 own tenant without a plan",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"customer_id":PARTNER})),
            then: Refuses("ticket.own_tenant_needs_support_plan", 13),
        },
        Case {
            label: "R13 own tenant with an expired plan",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"customer_id":PARTNER,"support_plan":"plan-old"})),
            then: Refuses("ticket.support_plan_invalid", 13),
        },
        // R14 one cloud
        Case {
            label: "R14 same cloud",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R14 commercial partner, usgov customer",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"customer_id":GOV_CUSTOMER})),
            then: Refuses("tenant.cloud_mismatch", 14),
        },
        Case {
            label: "R14 a relationship across clouds is refused",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"gdap.relationship.upsert","relationship_id":"rel-x","partner_id":PARTNER,"customer_id":GOV_CUSTOMER,"status":"active","roles":[HELPDESK],"activated_at":T0,"duration":"P30D","auto_extend":"PT0S"}),
            then: Refuses("tenant.cloud_mismatch", 14),
        },
        // R15 severity
        Case {
            label: "R15 legacy integer severity 3",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"severity":3})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R15 upper-case severity",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"severity":"MINIMAL"})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R15 unknown severity",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"severity":"unknown"})),
            then: Refuses("validation.bad_severity", 15),
        },
        Case {
            label: "R15 severity 0",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"severity":0})),
            then: Refuses("validation.bad_severity", 15),
        },
        // R16 required fields
        Case {
            label: "R16 phone contact with a phone",
            given: Given::Nothing,
            who: agent,
            when: || {
                open(
                    json!({"contact":{"first_name":"A","last_name":"B","email":"a@contoso-partner.com","preferred_contact":"phone","phone":"+62 21 555 0100"}}),
                )
            },
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R16 missing title",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"title":null})),
            then: Refuses("validation.invalid", 16),
        },
        Case {
            label: "R16 title over 200 characters",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"title":"x".repeat(201)})),
            then: Refuses("validation.invalid", 16),
        },
        Case {
            label: "R16 title of exactly 200 characters",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"title": "t".repeat(200)})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R16 description of exactly 10,000 characters",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"description": "d".repeat(10_000)})),
            then: Accepts(&["TicketOpened"]),
        },
        Case {
            label: "R16 description over 10,000 characters",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"description": "d".repeat(10_001)})),
            then: Refuses("validation.invalid", 16),
        },
        Case {
            label: "R16 contact e-mail without a domain",
            given: Given::Nothing,
            who: agent,
            when: || {
                open(json!({"contact":{"first_name":"A","last_name":"B","email":"ayu@","preferred_contact":"email"}}))
            },
            then: Refuses("validation.invalid", 16),
        },
        Case {
            label: "R16 phone contact without a phone",
            given: Given::Nothing,
            who: agent,
            when: || {
                open(
                    json!({"contact":{"first_name":"A","last_name":"B","email":"a@contoso-partner.com","preferred_contact":"phone"}}),
                )
            },
            then: Refuses("validation.invalid", 16),
        },
        Case {
            label: "R16 country code not ISO 3166",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"country_code":"XX"})),
            then: Refuses("validation.invalid", 16),
        },
        Case {
            label: "R16 missing contact",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"contact":null})),
            then: Refuses("validation.invalid", 16),
        },
        // R17 lifecycle
        Case {
            label: "R17 a note on an open ticket",
            given: Given::Ticket,
            who: agent,
            when: || on_t2("ticket.note", json!({"text":"more detail"})),
            then: Accepts(&["NoteAdded"]),
        },
        Case {
            label: "R17 partner note returns attention_needed to open",
            given: Given::AttentionTicket,
            who: agent,
            when: || on_t2("ticket.note", json!({"text":"logs attached"})),
            then: Accepts(&["NoteAdded", "AttentionCleared"]),
        },
        Case {
            label: "R17 reopen a closed ticket",
            given: Given::ClosedTicket,
            who: agent,
            when: || on_t2("ticket.reopen", json!({"reason":"came back"})),
            then: Accepts(&["TicketReopened"]),
        },
        Case {
            label: "R17 a closed ticket takes only reopen",
            given: Given::ClosedTicket,
            who: agent,
            when: || on_t2("ticket.note", json!({"text":"hello?"})),
            then: Refuses("ticket.closed", 17),
        },
        Case {
            label: "R17 reopening an open ticket",
            given: Given::Ticket,
            who: agent,
            when: || on_t2("ticket.reopen", json!({"reason":"why"})),
            then: Refuses("ticket.invalid_transition", 17),
        },
        Case {
            label: "R17 unknown ticket",
            given: Given::Nothing,
            who: agent,
            when: || json!({"type":"ticket.note","ticket_id":"nope","text":"x"}),
            then: Refuses("ticket.not_found", 17),
        },
        // R18 authority every time
        Case {
            label: "R18 authorised partner escalates",
            given: Given::Ticket,
            who: agent,
            when: || on_t2("ticket.escalate", json!({"reason":"business down"})),
            then: Accepts(&["TicketEscalated"]),
        },
        Case {
            label: "R18 a terminated grant loses the ticket",
            given: Given::World(|w| {
                Given::Ticket.apply(w);
                w.must(&sync(PARTNER), relationship("terminated"));
            }),
            who: agent,
            when: || on_t2("ticket.note", json!({"text":"still there?"})),
            then: Refuses("gdap.relationship_inactive", 5),
        },
        Case {
            label: "R18 a removed member loses the ticket",
            given: Given::World(|w| {
                Given::Ticket.apply(w);
                w.must(
                    &sync(PARTNER),
                    json!({"type":"group.member.remove","partner_id":PARTNER,"group_id":GROUP,"user_id":AGENT}),
                );
            }),
            who: agent,
            when: || on_t2("ticket.close", json!({"resolution":"done"})),
            then: Refuses("gdap.no_access", 6),
        },
        // R19 CSP priority (checked on the event below as well)
        Case {
            label: "R19 partner tickets carry CSP priority",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({})),
            then: Accepts(&["TicketOpened"]),
        },
        // R20 SLA breach recorded once
        Case {
            label: "R20 a missed target is recorded and escalates",
            given: Given::World(|w| {
                Given::Ticket.apply(w);
                w.now = at("2026-06-01T05:00:00Z");
            }),
            who: vendor,
            when: || on_t2("ticket.sla_check", json!({})),
            then: Accepts(&["SlaBreached", "TicketEscalated"]),
        },
        Case {
            label: "R20 a target not yet missed records nothing",
            given: Given::World(|w| {
                Given::Ticket.apply(w);
                w.now = at("2026-06-01T01:00:00Z");
            }),
            who: vendor,
            when: || on_t2("ticket.sla_check", json!({})),
            then: Accepts(&[]),
        },
        Case {
            label: "R2 partners do not record SLA breaches (R20 is the vendor side's)",
            given: Given::Ticket,
            who: agent,
            when: || on_t2("ticket.sla_check", json!({})),
            then: Refuses("auth.forbidden", 2),
        },
        // R21 escalation
        Case {
            label: "R21 critical tickets escalate on opening",
            given: Given::Nothing,
            who: agent,
            when: || open(json!({"severity":"critical"})),
            then: Accepts(&["TicketOpened", "TicketEscalated"]),
        },
        Case {
            label: "R21 escalation citing a known incident",
            given: Given::Ticket,
            who: agent,
            when: || on_t2("ticket.escalate", json!({"reason":"see incident","incident_id":"MO226784"})),
            then: Accepts(&["TicketEscalated"]),
        },
        Case {
            label: "R21 escalation citing an unknown incident",
            given: Given::Ticket,
            who: agent,
            when: || on_t2("ticket.escalate", json!({"reason":"see incident","incident_id":"MO000000"})),
            then: Refuses("ticket.incident_not_found", 21),
        },
        // R23 routing
        Case {
            label: "R23 a paid subscription routes to the partner by default",
            given: Given::Nothing,
            who: customer_user,
            when: || json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-o365","summary":"help"}),
            then: Accepts(&["SupportRequestRouted"]),
        },
        Case {
            label: "R23 only customers send support requests",
            given: Given::Nothing,
            who: agent,
            when: || json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-o365","summary":"help"}),
            then: Refuses("auth.forbidden", 23),
        },
        Case {
            label: "R23 another customer's subscription",
            given: Given::Nothing,
            who: customer_user,
            when: || json!({"type":"support.request","customer_id":CUSTOMER,"subscription_id":"sub-other","summary":"help"}),
            then: Refuses("ticket.subscription_invalid", 23),
        },
        // R25 facts come from their owner
        Case {
            label: "R25 a partner writes its own users",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"partner.user.upsert","partner_id":PARTNER,"user_id":"33333333-0000-4000-8000-0000000000ff","email":"new@contoso-partner.com","admin_agent":false}),
            then: Accepts(&["PartnerUserUpserted"]),
        },
        Case {
            label: "R25 a partner cannot write another partner's facts",
            given: Given::Nothing,
            who: || sync(RESELLER),
            when: || relationship("active"),
            then: Refuses("auth.forbidden", 25),
        },
        Case {
            label: "R25 partners cannot write vendor facts",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"customer.register","customer_id":OTHER_CUSTOMER,"name":"x","domains":["x.example"],"cloud":"commercial"}),
            then: Refuses("auth.forbidden", 25),
        },
        Case {
            label: "R25 the vendor registers customers",
            given: Given::Nothing,
            who: vendor,
            when: || json!({"type":"customer.register","customer_id":"22222222-0000-4000-8000-0000000000aa","name":"New","domains":["new.example"],"cloud":"commercial"}),
            then: Accepts(&["CustomerRegistered"]),
        },
        Case {
            label: "R25 the same fact again appends nothing",
            given: Given::Nothing,
            who: vendor,
            when: || json!({"type":"customer.register","customer_id":OTHER_CUSTOMER,"name":"Other","domains":["other.example"],"cloud":"commercial"}),
            then: Accepts(&[]),
        },
        // R27 optimistic concurrency (expected_version is set by the case runner for "R27" labels)
        Case {
            label: "R27 expected version matches",
            given: Given::Ticket,
            who: agent,
            when: || on_t2("ticket.note", json!({"text":"x","__expected":1})),
            then: Accepts(&["NoteAdded"]),
        },
        Case {
            label: "R27 the ticket has moved on",
            given: Given::Ticket,
            who: agent,
            when: || on_t2("ticket.note", json!({"text":"x","__expected":0})),
            then: Refuses("concurrency.conflict", 27),
        },
        // R28 valid GDAP facts
        Case {
            label: "R28 a two-year relationship without auto-extend",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"gdap.relationship.upsert","relationship_id":"rel-2","partner_id":PARTNER,"customer_id":OTHER_CUSTOMER,"status":"active","roles":[GLOBAL_ADMIN],"activated_at":T0,"duration":"P2Y","auto_extend":"P0D"}),
            then: Accepts(&["RelationshipUpserted"]),
        },
        Case {
            label: "R28 a one-day relationship",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || merge(relationship("active"), json!({"relationship_id":"rel-1d","duration":"P1D"})),
            then: Accepts(&["RelationshipUpserted"]),
        },
        Case {
            label: "R28 P730D is two years",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || merge(relationship("active"), json!({"relationship_id":"rel-730","duration":"P730D"})),
            then: Accepts(&["RelationshipUpserted"]),
        },
        Case {
            label: "R28 P731D is past two years",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || merge(relationship("active"), json!({"relationship_id":"rel-731","duration":"P731D"})),
            then: Refuses("gdap.invalid_relationship", 28),
        },
        Case {
            label: "R28 a zero-day relationship",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || merge(relationship("active"), json!({"relationship_id":"rel-0","duration":"P0D"})),
            then: Refuses("gdap.invalid_relationship", 28),
        },
        Case {
            label: "R28 duration longer than two years",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"gdap.relationship.upsert","relationship_id":"rel-2","partner_id":PARTNER,"customer_id":OTHER_CUSTOMER,"status":"active","roles":[HELPDESK],"activated_at":T0,"duration":"P3Y","auto_extend":"PT0S"}),
            then: Refuses("gdap.invalid_relationship", 28),
        },
        Case {
            label: "R28 auto-extend with Global Administrator",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"gdap.relationship.upsert","relationship_id":"rel-2","partner_id":PARTNER,"customer_id":OTHER_CUSTOMER,"status":"active","roles":[GLOBAL_ADMIN],"activated_at":T0,"duration":"P30D","auto_extend":"P180D"}),
            then: Refuses("gdap.invalid_relationship", 28),
        },
        Case {
            label: "R28 auto-extend other than 180 days",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"gdap.relationship.upsert","relationship_id":"rel-2","partner_id":PARTNER,"customer_id":OTHER_CUSTOMER,"status":"active","roles":[HELPDESK],"activated_at":T0,"duration":"P30D","auto_extend":"P90D"}),
            then: Refuses("gdap.invalid_relationship", 28),
        },
        Case {
            label: "R28 assignment role outside its relationship",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"gdap.assignment.upsert","assignment_id":"asg-9","relationship_id":"rel-1","group_id":GROUP,"roles":[GLOBAL_ADMIN],"status":"active"}),
            then: Refuses("gdap.role_not_in_relationship", 28),
        },
        Case {
            label: "R28 assignment within its relationship",
            given: Given::Nothing,
            who: || sync(PARTNER),
            when: || json!({"type":"gdap.assignment.upsert","assignment_id":"asg-9","relationship_id":"rel-1","group_id":GROUP,"roles":[GLOBAL_READER],"status":"active"}),
            then: Accepts(&["AssignmentUpserted"]),
        },
    ]
}
