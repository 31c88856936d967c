//! Events: the facts the log keeps forever. One closed enum; the `type` tag names each
//! kind. Stored bytes are a protocol: add fields with `#[serde(default)]`, never
//! rename; a breaking change gets a new schema version and an upcaster in the log crate.

use crate::facts::{
    Assignment, Customer, GroupMember, HealthIssue, Partner, PartnerUser, Product, RbacAssignment, Relationship,
    Subscription, SupportPlan,
};
use crate::kinds::EventKind;
use crate::rejection::{Code, Rule};
use crate::time::Timestamp;
use crate::{
    AssignmentId, Cloud, CustomerId, EscalationReason, GroupId, IssueId, PartnerId, Permission, PlanId,
    PreferredContact, Principal, ProductId, RbacAssignmentId, RelationshipId, RequestId, RoleId, Route, Severity,
    SubscriptionId, TicketId, UserId, Workload,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A log stream: `<category>-<id>`, e.g. `ticket-01J…`, `gdap-<relationship id>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct StreamId(pub String);

impl StreamId {
    pub fn of(category: &str, id: &str) -> Self {
        StreamId(format!("{category}-{id}"))
    }
    pub fn ticket(id: &TicketId) -> Self {
        StreamId::of("ticket", id.as_str())
    }
    /// The audit stream of refused commands (R30).
    pub fn rejections() -> Self {
        StreamId("audit-rejections".into())
    }
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(self.0.as_str(), |(c, _)| c)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked ticket contact (R16).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Contact {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub preferred_contact: PreferredContact,
}

/// The grant that allowed a partner command (R29).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Grant {
    /// Through GDAP (R4–R8): the relationship, the assignment and its group, the role
    /// and the permission it carries; for Azure also the RBAC assignment.
    Gdap {
        relationship_id: RelationshipId,
        assignment_id: AssignmentId,
        group_id: GroupId,
        role_id: RoleId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        permission: Option<Permission>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rbac_assignment_id: Option<RbacAssignmentId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rbac_role_id: Option<RoleId>,
    },
    /// The partner's own tenant, under its own support plan (R13).
    OwnTenant { plan_id: PlanId },
}

/// R29: what allowed a command, and the log position of the directory state it was
/// judged on. An audit can judge it again from this alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evidence {
    pub directory_position: u64,
    pub user_id: UserId,
    pub grant: Grant,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketOpened {
    pub ticket_id: TicketId,
    pub partner_id: PartnerId,
    pub customer_id: CustomerId,
    pub workload: Workload,
    pub cloud: Cloud,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<SubscriptionId>,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub support_topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_plan: Option<String>,
    pub country_code: String,
    pub contact: Contact,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IssueId>,
    /// R19: filed by a partner through this route.
    pub csp_priority: bool,
    pub at: Timestamp,
    pub evidence: Evidence,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoteAdded {
    pub ticket_id: TicketId,
    pub author: Principal,
    pub text: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketUpdated {
    pub ticket_id: TicketId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    pub at: Timestamp,
    pub evidence: Evidence,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttachmentAdded {
    pub ticket_id: TicketId,
    pub name: String,
    pub uri: String,
    pub at: Timestamp,
    pub evidence: Evidence,
}

/// An escalation carries everything its queue message needs (R19, R21), so routing is
/// a pure function of this one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketEscalated {
    pub ticket_id: TicketId,
    pub reason: EscalationReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IssueId>,
    pub partner_id: PartnerId,
    pub customer_id: CustomerId,
    pub workload: Workload,
    pub cloud: Cloud,
    pub severity: Severity,
    pub csp_priority: bool,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VendorResponded {
    pub ticket_id: TicketId,
    pub text: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttentionRequested {
    pub ticket_id: TicketId,
    pub partner_id: PartnerId,
    pub customer_id: CustomerId,
    pub text: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttentionCleared {
    pub ticket_id: TicketId,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketClosed {
    pub ticket_id: TicketId,
    pub by: Principal,
    pub resolution: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketReopened {
    pub ticket_id: TicketId,
    pub reason: String,
    pub at: Timestamp,
    pub evidence: Evidence,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SlaBreached {
    pub ticket_id: TicketId,
    pub due_at: Timestamp,
    pub at: Timestamp,
}

/// The ISV's contacts, as a routing decision carries them (R12, R23).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Isv {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_phone: Option<String>,
}

impl From<&Product> for Isv {
    fn from(p: &Product) -> Self {
        Isv {
            name: p.isv_name.clone(),
            support_url: p.support_url.clone(),
            support_email: p.support_email.clone(),
            support_phone: p.support_phone.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SupportRequestRouted {
    pub request_id: RequestId,
    pub customer_id: CustomerId,
    pub user_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<SubscriptionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<ProductId>,
    pub route: Route,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<PartnerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isv: Option<Isv>,
    pub summary: String,
    pub at: Timestamp,
}

/// R30: a refused command, recorded without changing any ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandRejected {
    pub command_type: String,
    pub principal: Principal,
    pub code: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    pub message: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, crate::rejection::Detail>,
    /// The ticket the refused command named, as it was sent (it may not be a valid id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub ticket_id: Option<TicketId>,
    pub at: Timestamp,
}

impl CommandRejected {
    /// The rejection this record keeps (R26: a retry answers it again).
    pub fn rejection(&self) -> crate::Rejection {
        crate::Rejection {
            code: self.code,
            rule: self.rule,
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

/// Every event the log holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
#[allow(clippy::large_enum_variant)] // reason: boxing TicketOpened would cost an allocation per event for no gain in a fold
pub enum Event {
    PartnerRegistered(Partner),
    CustomerRegistered(Customer),
    PartnerUserUpserted(PartnerUser),
    GroupMemberAdded(GroupMember),
    GroupMemberRemoved(GroupMember),
    RelationshipUpserted(Relationship),
    AssignmentUpserted(Assignment),
    SubscriptionRegistered(Subscription),
    RbacAssigned(RbacAssignment),
    RbacRemoved(RbacAssignment),
    MarketplaceProductRegistered(Product),
    SupportPlanRegistered(SupportPlan),
    ServiceHealthIssueUpserted(HealthIssue),
    TicketOpened(TicketOpened),
    NoteAdded(NoteAdded),
    TicketUpdated(TicketUpdated),
    AttachmentAdded(AttachmentAdded),
    TicketEscalated(TicketEscalated),
    VendorResponded(VendorResponded),
    AttentionRequested(AttentionRequested),
    AttentionCleared(AttentionCleared),
    TicketClosed(TicketClosed),
    TicketReopened(TicketReopened),
    SlaBreached(SlaBreached),
    SupportRequestRouted(SupportRequestRouted),
    CommandRejected(CommandRejected),
    WebhookSubscribed(crate::webhook::Subscribed),
    WebhookSecretRotated(crate::webhook::Changed),
    WebhookDisabled(crate::webhook::Changed),
    WebhookDeleted(crate::webhook::Changed),
    PersonErased(crate::erasure::PersonErased),
    TicketRedacted(crate::erasure::TicketRedacted),
}

impl Event {
    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::PartnerRegistered(_) => "PartnerRegistered",
            Event::CustomerRegistered(_) => "CustomerRegistered",
            Event::PartnerUserUpserted(_) => "PartnerUserUpserted",
            Event::GroupMemberAdded(_) => "GroupMemberAdded",
            Event::GroupMemberRemoved(_) => "GroupMemberRemoved",
            Event::RelationshipUpserted(_) => "RelationshipUpserted",
            Event::AssignmentUpserted(_) => "AssignmentUpserted",
            Event::SubscriptionRegistered(_) => "SubscriptionRegistered",
            Event::RbacAssigned(_) => "RbacAssigned",
            Event::RbacRemoved(_) => "RbacRemoved",
            Event::MarketplaceProductRegistered(_) => "MarketplaceProductRegistered",
            Event::SupportPlanRegistered(_) => "SupportPlanRegistered",
            Event::ServiceHealthIssueUpserted(_) => "ServiceHealthIssueUpserted",
            Event::TicketOpened(_) => "TicketOpened",
            Event::NoteAdded(_) => "NoteAdded",
            Event::TicketUpdated(_) => "TicketUpdated",
            Event::AttachmentAdded(_) => "AttachmentAdded",
            Event::TicketEscalated(_) => "TicketEscalated",
            Event::VendorResponded(_) => "VendorResponded",
            Event::AttentionRequested(_) => "AttentionRequested",
            Event::AttentionCleared(_) => "AttentionCleared",
            Event::TicketClosed(_) => "TicketClosed",
            Event::TicketReopened(_) => "TicketReopened",
            Event::SlaBreached(_) => "SlaBreached",
            Event::SupportRequestRouted(_) => "SupportRequestRouted",
            Event::CommandRejected(_) => "CommandRejected",
            Event::WebhookSubscribed(_) => "WebhookSubscribed",
            Event::WebhookSecretRotated(_) => "WebhookSecretRotated",
            Event::WebhookDisabled(_) => "WebhookDisabled",
            Event::WebhookDeleted(_) => "WebhookDeleted",
            Event::PersonErased(_) => "PersonErased",
            Event::TicketRedacted(_) => "TicketRedacted",
        }
    }

    /// The ticket an event belongs to, if any.
    pub fn ticket_id(&self) -> Option<&TicketId> {
        match self.kind() {
            EventKind::Ticket(t) => Some(t.ticket_id()),
            EventKind::Directory(_)
            | EventKind::Routed(_)
            | EventKind::Rejected(_)
            | EventKind::Webhook(_)
            | EventKind::PersonErased(_) => None,
        }
    }

    /// The R29 evidence an event carries, if it is an accepted partner action.
    pub fn evidence(&self) -> Option<&Evidence> {
        match self.kind() {
            EventKind::Ticket(t) => t.evidence(),
            EventKind::Directory(_)
            | EventKind::Routed(_)
            | EventKind::Rejected(_)
            | EventKind::Webhook(_)
            | EventKind::PersonErased(_) => None,
        }
    }

    /// Whether the event is folded into the directory (the GDAP projection): a
    /// directory fact or a webhook subscription's change.
    pub fn is_directory(&self) -> bool {
        matches!(self.kind(), EventKind::Directory(_) | EventKind::Webhook(_))
    }
}
