//! A standard world for rule tests (`tests/fixtures/standard-world.json`, shared with
//! the end-to-end suites): a direct-bill partner, an indirect provider and
//! its reseller, customers in both clouds, GDAP grants and Azure RBAC — all written
//! through `decide` as the real producers would write them.

use std::collections::BTreeMap;

use behalf_domain::{
    decide, Command, Context, Directory, Event, Principal, Rejection, State, Target, Ticket, TicketId, Timestamp,
};
use serde_json::{json, Value};

pub const T0: &str = "2026-06-01T00:00:00Z";
pub const PARTNER: &str = "11111111-0000-4000-8000-000000000001";
pub const PROVIDER: &str = "11111111-0000-4000-8000-000000000002";
pub const RESELLER: &str = "11111111-0000-4000-8000-000000000003";
pub const GOV_PARTNER: &str = "11111111-0000-4000-8000-000000000004";
pub const CUSTOMER: &str = "22222222-0000-4000-8000-000000000001";
pub const GOV_CUSTOMER: &str = "22222222-0000-4000-8000-000000000002";
pub const OTHER_CUSTOMER: &str = "22222222-0000-4000-8000-000000000003";
pub const AGENT: &str = "33333333-0000-4000-8000-000000000001";
pub const NOT_ADMIN: &str = "33333333-0000-4000-8000-000000000002";
pub const READER_AGENT: &str = "33333333-0000-4000-8000-000000000003";
pub const RESELLER_AGENT: &str = "33333333-0000-4000-8000-000000000004";
pub const PROVIDER_AGENT: &str = "33333333-0000-4000-8000-000000000005";
pub const CUSTOMER_USER: &str = "33333333-0000-4000-8000-0000000000c1";
pub const GROUP: &str = "44444444-0000-4000-8000-000000000001";
pub const READER_GROUP: &str = "44444444-0000-4000-8000-000000000002";
pub const RESELLER_GROUP: &str = "44444444-0000-4000-8000-000000000003";
pub const PROVIDER_GROUP: &str = "44444444-0000-4000-8000-000000000004";
pub const HELPDESK: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
pub const GLOBAL_READER: &str = "f2ef992c-3afb-46b9-b7cf-a126ee74c451";
pub const DIRECTORY_READERS: &str = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b";
pub const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

pub fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

pub fn agent() -> Principal {
    Principal::PartnerAgent { partner_id: PARTNER.into(), user_id: AGENT.into() }
}
pub fn agent_of(partner: &str, user: &str) -> Principal {
    Principal::PartnerAgent { partner_id: partner.into(), user_id: user.into() }
}
pub fn sync(partner: &str) -> Principal {
    Principal::PartnerSync { partner_id: partner.into() }
}
pub fn customer_user() -> Principal {
    Principal::Customer { customer_id: CUSTOMER.into(), user_id: CUSTOMER_USER.into() }
}

pub struct World {
    pub dir: Directory,
    pub tickets: BTreeMap<TicketId, Vec<Event>>,
    pub now: Timestamp,
    pub position: u64,
    next_id: u64,
}

impl World {
    pub fn empty() -> Self {
        World { dir: Directory::default(), tickets: BTreeMap::new(), now: at(T0), position: 0, next_id: 0 }
    }

    /// Sends a command as `who`; accepted events are folded in.
    pub fn run(&mut self, who: &Principal, cmd: Value) -> Result<Vec<Event>, Rejection> {
        self.run_expecting(who, cmd, None)
    }

    pub fn run_expecting(
        &mut self,
        who: &Principal,
        cmd: Value,
        expected_version: Option<u64>,
    ) -> Result<Vec<Event>, Rejection> {
        let cmd: Command = serde_json::from_value(cmd).expect("command parses");
        self.next_id += 1;
        let new_id = format!("T{}", self.next_id);
        let ctx = Context {
            now: self.now,
            principal: who.clone(),
            new_id,
            directory_position: self.position,
            expected_version,
        };
        let ticket = match cmd.target() {
            Target::Ticket(id) => Ticket::fold(self.tickets.get(&id).into_iter().flatten()),
            Target::NewTicket | Target::NewSupportRequest | Target::Fact(_) => None,
        };
        let events = decide(&State { directory: &self.dir, ticket: ticket.as_ref() }, &cmd, &ctx)?;
        for e in &events {
            self.position += 1;
            self.dir.apply(e);
            if let Some(id) = e.ticket_id() {
                self.tickets.entry(id.clone()).or_default().push(e.clone());
            }
        }
        Ok(events)
    }

    pub fn must(&mut self, who: &Principal, cmd: Value) -> Vec<Event> {
        let shown = cmd.to_string();
        self.run(who, cmd).unwrap_or_else(|r| panic!("{shown} refused: {r}"))
    }

    pub fn ticket(&self, id: &str) -> Ticket {
        Ticket::fold(self.tickets.get(&TicketId::new(id)).into_iter().flatten()).expect("ticket exists")
    }

    /// Opens an Office 365 ticket as the standard agent; returns its id.
    pub fn open_ticket(&mut self, extra: Value) -> String {
        let events = self.must(&agent(), merge(open_o365(), extra));
        events[0].ticket_id().unwrap().to_string()
    }

    /// The standard world of `tests/fixtures/standard-world.json` (see the module
    /// docs), with its relative times read against `T0`.
    pub fn standard() -> Self {
        let mut w = World::empty();
        for (who, cmd) in standard_world(&FIXED_TIMES) {
            w.must(&who, cmd);
        }
        w
    }
}

/// The standard world's relative times, read against the fixed clock `T0`.
pub const FIXED_TIMES: [(&str, &str); 3] = [
    ("{{ACTIVATED}}", "2026-05-01T00:00:00Z"),
    ("{{PLAN_VALID_UNTIL}}", "2027-01-01T00:00:00Z"),
    ("{{ISSUE_START}}", "2026-05-31T00:00:00Z"),
];

/// The standard world's commands, shared with the end-to-end suites: who sends each,
/// and the command, with the `{{…}}` times replaced.
pub fn standard_world(times: &[(&str, &str)]) -> Vec<(Principal, Value)> {
    let mut text = include_str!("../../../tests/fixtures/standard-world.json").to_owned();
    for (k, v) in times {
        text = text.replace(k, v);
    }
    let rows: Vec<Value> = serde_json::from_str(&text).expect("standard-world.json parses");
    rows.into_iter()
        .map(|r| (serde_json::from_value(r["as"].clone()).expect("a principal"), r["command"].clone()))
        .collect()
}

/// A complete, valid Office 365 `ticket.open` body.
pub fn open_o365() -> Value {
    json!({
        "type": "ticket.open",
        "customer_id": CUSTOMER,
        "workload": "office365",
        "title": "Mailbox cannot receive external mail",
        "description": "Since this morning the shared mailbox bounces external mail.",
        "severity": "moderate",
        "support_topic": "Exchange Online / Mail flow",
        "country_code": "ID",
        "contact": {"first_name":"Ayu","last_name":"Lestari","email":"ayu@contoso-partner.com","preferred_contact":"email"}
    })
}

/// A complete, valid Azure `ticket.open` body.
pub fn open_azure() -> Value {
    merge(
        open_o365(),
        json!({"workload":"azure","subscription_id":"sub-azure","support_plan":"cloud_solution_provider","support_topic":"Virtual machines / cannot start"}),
    )
}

/// `base` with `extra`'s keys replacing (null removes).
pub fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}
