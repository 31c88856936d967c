//! The protocol enums, nested by what they act on.
//!
//! [`Command`] and [`Event`] stay flat: their variants are the wire format (the API's
//! `type`s, the log's golden bytes). Code that decides or folds matches on these
//! borrowed, nested views instead, so a fold over ticket events names the other groups
//! once, not every variant it ignores, and a ticket command cannot reach a
//! directory decision. Each flat enum is matched in full exactly once, here.

use crate::command::{
    AttachToTicket, CloseTicket, EscalateTicket, OpenTicket, ReopenTicket, SupportRequest, TicketText, UpdateTicket,
};
use crate::erasure::{ErasePerson, PersonErased, TicketRedacted};
use crate::event::{
    AttachmentAdded, AttentionCleared, AttentionRequested, NoteAdded, SlaBreached, SupportRequestRouted, TicketClosed,
    TicketEscalated, TicketOpened, TicketReopened, TicketUpdated, VendorResponded,
};
use crate::facts::{
    Assignment, Customer, GroupMember, HealthIssue, Partner, PartnerUser, Product, RbacAssignment, Relationship,
    Subscription, SupportPlan,
};
use crate::ids::TicketId;
use crate::webhook::{WebhookCommand, WebhookEvent};
use crate::{Command, CommandRejected, Event, Evidence, StreamId};

/// A command, by what it acts on.
#[derive(Clone, Copy, Debug)]
pub enum CommandKind<'a> {
    /// A directory fact: appended to the fact's own stream (R25, R28).
    Directory(DirectoryCommand<'a>),
    /// `ticket.open`: a new ticket stream.
    OpenTicket(&'a OpenTicket),
    /// `support.request`: a new support request stream (R23).
    SupportRequest(&'a SupportRequest),
    /// A command on an existing ticket.
    Ticket(&'a TicketId, TicketCommand<'a>),
    /// A webhook subscription's (`crate::webhook`).
    Webhook(WebhookCommand<'a>),
    /// `person.erase` (`crate::erasure`).
    ErasePerson(&'a ErasePerson),
}

#[derive(Clone, Copy, Debug)]
pub enum DirectoryCommand<'a> {
    PartnerRegister(&'a Partner),
    CustomerRegister(&'a Customer),
    PartnerUserUpsert(&'a PartnerUser),
    GroupMemberAdd(&'a GroupMember),
    GroupMemberRemove(&'a GroupMember),
    RelationshipUpsert(&'a Relationship),
    AssignmentUpsert(&'a Assignment),
    SubscriptionRegister(&'a Subscription),
    RbacAssign(&'a RbacAssignment),
    RbacRemove(&'a RbacAssignment),
    ProductRegister(&'a Product),
    SupportPlanRegister(&'a SupportPlan),
    ServiceHealthIssueUpsert(&'a HealthIssue),
}

#[derive(Clone, Copy, Debug)]
pub enum TicketCommand<'a> {
    Note(&'a TicketText),
    Update(&'a UpdateTicket),
    Attach(&'a AttachToTicket),
    Escalate(&'a EscalateTicket),
    Respond(&'a TicketText),
    RequestAttention(&'a TicketText),
    Close(&'a CloseTicket),
    Reopen(&'a ReopenTicket),
    SlaCheck,
    Redact,
}

impl Command {
    /// This command, nested by what it acts on.
    pub fn kind(&self) -> CommandKind<'_> {
        use CommandKind::{Directory as D, Ticket as T};
        use DirectoryCommand as Dc;
        use TicketCommand as Tc;
        match self {
            Command::PartnerRegister(x) => D(Dc::PartnerRegister(x)),
            Command::CustomerRegister(x) => D(Dc::CustomerRegister(x)),
            Command::PartnerUserUpsert(x) => D(Dc::PartnerUserUpsert(x)),
            Command::GroupMemberAdd(x) => D(Dc::GroupMemberAdd(x)),
            Command::GroupMemberRemove(x) => D(Dc::GroupMemberRemove(x)),
            Command::RelationshipUpsert(x) => D(Dc::RelationshipUpsert(x)),
            Command::AssignmentUpsert(x) => D(Dc::AssignmentUpsert(x)),
            Command::SubscriptionRegister(x) => D(Dc::SubscriptionRegister(x)),
            Command::RbacAssign(x) => D(Dc::RbacAssign(x)),
            Command::RbacRemove(x) => D(Dc::RbacRemove(x)),
            Command::ProductRegister(x) => D(Dc::ProductRegister(x)),
            Command::SupportPlanRegister(x) => D(Dc::SupportPlanRegister(x)),
            Command::ServiceHealthIssueUpsert(x) => D(Dc::ServiceHealthIssueUpsert(x)),
            Command::TicketOpen(x) => CommandKind::OpenTicket(x),
            Command::SupportRequest(x) => CommandKind::SupportRequest(x),
            Command::TicketNote(x) => T(&x.ticket_id, Tc::Note(x)),
            Command::TicketUpdate(x) => T(&x.ticket_id, Tc::Update(x)),
            Command::TicketAttach(x) => T(&x.ticket_id, Tc::Attach(x)),
            Command::TicketEscalate(x) => T(&x.ticket_id, Tc::Escalate(x)),
            Command::TicketRespond(x) => T(&x.ticket_id, Tc::Respond(x)),
            Command::TicketRequestAttention(x) => T(&x.ticket_id, Tc::RequestAttention(x)),
            Command::TicketClose(x) => T(&x.ticket_id, Tc::Close(x)),
            Command::TicketReopen(x) => T(&x.ticket_id, Tc::Reopen(x)),
            Command::TicketSlaCheck(x) => T(&x.ticket_id, Tc::SlaCheck),
            Command::WebhookSubscribe(x) => CommandKind::Webhook(WebhookCommand::Subscribe(x)),
            Command::WebhookRotate(x) => CommandKind::Webhook(WebhookCommand::Rotate(x)),
            Command::WebhookDelete(x) => CommandKind::Webhook(WebhookCommand::Delete(x)),
            Command::WebhookDisable(x) => CommandKind::Webhook(WebhookCommand::Disable(x)),
            Command::PersonErase(x) => CommandKind::ErasePerson(x),
            Command::TicketRedact(x) => T(&x.ticket_id, Tc::Redact),
        }
    }
}

impl DirectoryCommand<'_> {
    /// The fact's stream.
    pub fn stream(&self) -> StreamId {
        use DirectoryCommand as Dc;
        match self {
            Dc::PartnerRegister(p) => StreamId::of("partner", p.partner_id.as_str()),
            Dc::CustomerRegister(c) => StreamId::of("customer", c.customer_id.as_str()),
            Dc::PartnerUserUpsert(u) => StreamId::of("user", u.user_id.as_str()),
            Dc::GroupMemberAdd(m) | Dc::GroupMemberRemove(m) => StreamId::of("group", m.group_id.as_str()),
            Dc::RelationshipUpsert(r) => StreamId::of("gdap", r.relationship_id.as_str()),
            Dc::AssignmentUpsert(a) => StreamId::of("assignment", a.assignment_id.as_str()),
            Dc::SubscriptionRegister(s) => StreamId::of("subscription", s.subscription_id.as_str()),
            Dc::RbacAssign(r) | Dc::RbacRemove(r) => StreamId::of("rbac", r.assignment_id.as_str()),
            Dc::ProductRegister(p) => StreamId::of("product", p.product_id.as_str()),
            Dc::SupportPlanRegister(p) => StreamId::of("plan", p.plan_id.as_str()),
            Dc::ServiceHealthIssueUpsert(i) => StreamId::of("health", i.issue_id.as_str()),
        }
    }
}

/// An event, by what it is about.
#[derive(Clone, Copy, Debug)]
pub enum EventKind<'a> {
    /// A directory fact, folded into the GDAP projection.
    Directory(DirectoryEvent<'a>),
    /// An event of a ticket's stream.
    Ticket(TicketEvent<'a>),
    /// A support request's recorded route (R23).
    Routed(&'a SupportRequestRouted),
    /// A refused command, in the audit stream (R30).
    Rejected(&'a CommandRejected),
    /// A webhook subscription's lifecycle (folded into the directory with the facts).
    Webhook(WebhookEvent<'a>),
    /// A person's keys deleted (`crate::erasure`).
    PersonErased(&'a PersonErased),
}

#[derive(Clone, Copy, Debug)]
pub enum DirectoryEvent<'a> {
    PartnerRegistered(&'a Partner),
    CustomerRegistered(&'a Customer),
    PartnerUserUpserted(&'a PartnerUser),
    GroupMemberAdded(&'a GroupMember),
    GroupMemberRemoved(&'a GroupMember),
    RelationshipUpserted(&'a Relationship),
    AssignmentUpserted(&'a Assignment),
    SubscriptionRegistered(&'a Subscription),
    RbacAssigned(&'a RbacAssignment),
    RbacRemoved(&'a RbacAssignment),
    MarketplaceProductRegistered(&'a Product),
    SupportPlanRegistered(&'a SupportPlan),
    ServiceHealthIssueUpserted(&'a HealthIssue),
}

#[derive(Clone, Copy, Debug)]
pub enum TicketEvent<'a> {
    Opened(&'a TicketOpened),
    NoteAdded(&'a NoteAdded),
    Updated(&'a TicketUpdated),
    AttachmentAdded(&'a AttachmentAdded),
    Escalated(&'a TicketEscalated),
    VendorResponded(&'a VendorResponded),
    AttentionRequested(&'a AttentionRequested),
    AttentionCleared(&'a AttentionCleared),
    Closed(&'a TicketClosed),
    Reopened(&'a TicketReopened),
    SlaBreached(&'a SlaBreached),
    Redacted(&'a TicketRedacted),
}

impl Event {
    /// This event, nested by what it is about.
    pub fn kind(&self) -> EventKind<'_> {
        use DirectoryEvent as De;
        use EventKind::{Directory as D, Ticket as T};
        use TicketEvent as Te;
        match self {
            Event::PartnerRegistered(x) => D(De::PartnerRegistered(x)),
            Event::CustomerRegistered(x) => D(De::CustomerRegistered(x)),
            Event::PartnerUserUpserted(x) => D(De::PartnerUserUpserted(x)),
            Event::GroupMemberAdded(x) => D(De::GroupMemberAdded(x)),
            Event::GroupMemberRemoved(x) => D(De::GroupMemberRemoved(x)),
            Event::RelationshipUpserted(x) => D(De::RelationshipUpserted(x)),
            Event::AssignmentUpserted(x) => D(De::AssignmentUpserted(x)),
            Event::SubscriptionRegistered(x) => D(De::SubscriptionRegistered(x)),
            Event::RbacAssigned(x) => D(De::RbacAssigned(x)),
            Event::RbacRemoved(x) => D(De::RbacRemoved(x)),
            Event::MarketplaceProductRegistered(x) => D(De::MarketplaceProductRegistered(x)),
            Event::SupportPlanRegistered(x) => D(De::SupportPlanRegistered(x)),
            Event::ServiceHealthIssueUpserted(x) => D(De::ServiceHealthIssueUpserted(x)),
            Event::TicketOpened(x) => T(Te::Opened(x)),
            Event::NoteAdded(x) => T(Te::NoteAdded(x)),
            Event::TicketUpdated(x) => T(Te::Updated(x)),
            Event::AttachmentAdded(x) => T(Te::AttachmentAdded(x)),
            Event::TicketEscalated(x) => T(Te::Escalated(x)),
            Event::VendorResponded(x) => T(Te::VendorResponded(x)),
            Event::AttentionRequested(x) => T(Te::AttentionRequested(x)),
            Event::AttentionCleared(x) => T(Te::AttentionCleared(x)),
            Event::TicketClosed(x) => T(Te::Closed(x)),
            Event::TicketReopened(x) => T(Te::Reopened(x)),
            Event::SlaBreached(x) => T(Te::SlaBreached(x)),
            Event::SupportRequestRouted(x) => EventKind::Routed(x),
            Event::CommandRejected(x) => EventKind::Rejected(x),
            Event::WebhookSubscribed(x) => EventKind::Webhook(WebhookEvent::Subscribed(x)),
            Event::WebhookSecretRotated(x) => EventKind::Webhook(WebhookEvent::SecretRotated(x)),
            Event::WebhookDisabled(x) => EventKind::Webhook(WebhookEvent::Disabled(x)),
            Event::WebhookDeleted(x) => EventKind::Webhook(WebhookEvent::Deleted(x)),
            Event::PersonErased(x) => EventKind::PersonErased(x),
            Event::TicketRedacted(x) => T(Te::Redacted(x)),
        }
    }
}

impl<'a> TicketEvent<'a> {
    /// The ticket the event belongs to.
    pub fn ticket_id(&self) -> &'a TicketId {
        match *self {
            TicketEvent::Opened(e) => &e.ticket_id,
            TicketEvent::NoteAdded(e) => &e.ticket_id,
            TicketEvent::Updated(e) => &e.ticket_id,
            TicketEvent::AttachmentAdded(e) => &e.ticket_id,
            TicketEvent::Escalated(e) => &e.ticket_id,
            TicketEvent::VendorResponded(e) => &e.ticket_id,
            TicketEvent::AttentionRequested(e) => &e.ticket_id,
            TicketEvent::AttentionCleared(e) => &e.ticket_id,
            TicketEvent::Closed(e) => &e.ticket_id,
            TicketEvent::Reopened(e) => &e.ticket_id,
            TicketEvent::SlaBreached(e) => &e.ticket_id,
            TicketEvent::Redacted(e) => &e.ticket_id,
        }
    }

    /// The R29 evidence, if it is an accepted partner action.
    pub fn evidence(&self) -> Option<&'a Evidence> {
        match *self {
            TicketEvent::Opened(e) => Some(&e.evidence),
            TicketEvent::Updated(e) => Some(&e.evidence),
            TicketEvent::AttachmentAdded(e) => Some(&e.evidence),
            TicketEvent::Reopened(e) => Some(&e.evidence),
            TicketEvent::NoteAdded(e) => e.evidence.as_ref(),
            TicketEvent::Escalated(e) => e.evidence.as_ref(),
            TicketEvent::Closed(e) => e.evidence.as_ref(),
            TicketEvent::Redacted(e) => e.evidence.as_ref(),
            TicketEvent::VendorResponded(_)
            | TicketEvent::AttentionRequested(_)
            | TicketEvent::AttentionCleared(_)
            | TicketEvent::SlaBreached(_) => None,
        }
    }
}
