//! # behalf-domain
//!
//! The pure core of Behalf: identifiers, the directory (GDAP projection), commands,
//! events, rejections, and the one function that matters:
//!
//! ```text
//! decide(&State, &Command, &Context) -> Result<Vec<Event>, Rejection>
//! ```
//!
//! **Invariant:** no I/O, no clock, no randomness, no async. Time and new ids arrive in
//! the [`Context`]; `cargo tree -p behalf-domain` names only serde and schemars (the types described for the OpenAPI document).
//!
//! Where the rules live: [`policy`] (R2–R14, R18, R22, R24), [`ticket`] (R1, R15–R21,
//! R27), [`directory`] (R25, R28), [`routing`] (R23), [`sla`] (R20), [`event::Evidence`]
//! (R29), [`rejection_event`] (R30).

pub mod command;
pub mod directory;
pub mod erasure;
pub mod event;
pub mod facts;
pub mod ids;
pub mod kinds;
pub mod notify;
pub mod policy;
pub mod rejection;
pub mod roles;
pub mod routing;
pub mod sla;
pub mod ticket;
pub mod time;
pub mod vocab;
pub mod webhook;

pub use command::{Command, Target};
pub use directory::Directory;
pub use event::{CommandRejected, Event, Evidence, Grant, StreamId};
pub use ids::{
    is_guid, AssignmentId, CommandId, CustomerId, GroupId, IssueId, PartnerId, PlanId, ProductId, RbacAssignmentId,
    RelationshipId, RequestId, RoleId, SubscriptionId, TicketId, UserId,
};
pub use kinds::{CommandKind, DirectoryCommand, DirectoryEvent, EventKind, TicketCommand, TicketEvent};
pub use rejection::{Code, Rejection, Rule};
use serde::{Deserialize, Serialize};
pub use ticket::Ticket;
pub use time::Timestamp;
pub use vocab::{
    AssignmentStatus, Billing, Classification, Cloud, EscalationReason, Permission, PreferredContact, PrincipalKind,
    Program, RawValue, RelationshipStatus, Route, Severity, SupportPlanKind, TicketStatus, Workload,
};

/// Who is acting: always taken from the token, never from a request body (R2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Principal {
    PartnerAgent { partner_id: PartnerId, user_id: UserId },
    PartnerSync { partner_id: PartnerId },
    Customer { customer_id: CustomerId, user_id: UserId },
    Vendor,
    Auditor,
    Admin,
}

impl Principal {
    pub fn kind(&self) -> PrincipalKind {
        match self {
            Principal::PartnerAgent { .. } => PrincipalKind::PartnerAgent,
            Principal::PartnerSync { .. } => PrincipalKind::PartnerSync,
            Principal::Customer { .. } => PrincipalKind::Customer,
            Principal::Vendor => PrincipalKind::Vendor,
            Principal::Auditor => PrincipalKind::Auditor,
            Principal::Admin => PrincipalKind::Admin,
        }
    }
}

/// Whose command ids a principal uses (R26): its partner, its customer, or the vendor
/// side (the vendor, auditors and admins share one).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tenant {
    Partner(PartnerId),
    Customer(CustomerId),
    Vendor,
}

impl Principal {
    /// The tenant this principal acts for: the owner of its command ids (R26).
    pub fn tenant(&self) -> Tenant {
        match self {
            Principal::PartnerAgent { partner_id, .. } | Principal::PartnerSync { partner_id } => {
                Tenant::Partner(partner_id.clone())
            }
            Principal::Customer { customer_id, .. } => Tenant::Customer(customer_id.clone()),
            Principal::Vendor | Principal::Auditor | Principal::Admin => Tenant::Vendor,
        }
    }
}

impl std::fmt::Display for Tenant {
    /// `partner:<id>`, `customer:<id>` or `vendor` — never holds a `/`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tenant::Partner(p) => write!(f, "partner:{p}"),
            Tenant::Customer(c) => write!(f, "customer:{c}"),
            Tenant::Vendor => f.write_str("vendor"),
        }
    }
}

/// R26's key: a command id within its sender's tenant. Another tenant's use of the
/// same id is another key. Written `<tenant>/<command id>` (the tenant holds no `/`),
/// which is how event ids, de-duplication ids and index keys spell it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandKey {
    pub tenant: Tenant,
    pub id: CommandId,
}

impl CommandKey {
    pub fn of(principal: &Principal, id: &CommandId) -> CommandKey {
        CommandKey { tenant: principal.tenant(), id: id.clone() }
    }
}

impl std::fmt::Display for CommandKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.tenant, self.id)
    }
}

/// Everything about a request besides its body, supplied by the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The decision time (R5, R13, R20).
    pub now: Timestamp,
    /// The authenticated principal (R2).
    pub principal: Principal,
    /// The id a new ticket or support request gets (server-generated, sortable).
    pub new_id: String,
    /// The log position the directory state was folded up to (R29).
    pub directory_position: u64,
    /// R27: the ticket version the caller expects, if it said.
    pub expected_version: Option<u64>,
}

/// What a decision reads: the GDAP projection and, for a ticket command, the ticket.
#[derive(Clone, Copy, Debug)]
pub struct State<'a> {
    pub directory: &'a Directory,
    pub ticket: Option<&'a Ticket>,
}

/// Decides a command: the events to append, or the rule that refuses it. Pure.
pub fn decide(state: &State<'_>, command: &Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    let dir = state.directory;
    let p = &ctx.principal;
    match command.kind() {
        CommandKind::Directory(c) => directory::decide(dir, p, c),
        CommandKind::OpenTicket(x) => ticket::decide_open(dir, x, ctx),
        CommandKind::SupportRequest(x) => routing::decide_support_request(dir, x, ctx),
        CommandKind::Ticket(id, c) => ticket::decide_existing(dir, state.ticket, id, c, ctx),
        CommandKind::Webhook(c) => webhook::decide(&dir.webhooks, p, c, ctx.now),
        CommandKind::ErasePerson(c) => erasure::decide_erase_person(p, c, ctx.now),
    }
}

/// R30: the audit record of a refused command. It goes to the rejections stream and
/// changes no ticket.
pub fn rejection_event(command_type: &str, rejection: &Rejection, ctx: &Context, ticket_id: Option<TicketId>) -> Event {
    Event::CommandRejected(CommandRejected {
        command_type: command_type.to_owned(),
        principal: ctx.principal.clone(),
        code: rejection.code,
        rule: rejection.rule,
        message: rejection.message.clone(),
        details: rejection.details.clone(),
        ticket_id,
        at: ctx.now,
    })
}
