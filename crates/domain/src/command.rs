//! Commands: what producers ask for. One closed enum, tagged by the public `type`
//! names of `API.md`. Fields a rule checks (severity, workload, the contact) are kept
//! raw here so that `decide` answers with the rule's own code instead of a parse error.

use crate::facts::{
    Assignment, Customer, GroupMember, HealthIssue, Partner, PartnerUser, Product, RbacAssignment, Relationship,
    Subscription, SupportPlan,
};
use crate::kinds::CommandKind;
use crate::vocab::RawValue;
use crate::{CustomerId, IssueId, ProductId, SubscriptionId, TicketId};
use serde::{Deserialize, Serialize};

/// `decide` refuses these structs' text fields and the contact when missing or empty
/// (R16, `validation.invalid` naming the field); serde defaults them only so that the
/// refusal is `decide`'s, with its code. The document says what a command needs: each
/// such field (its default the empty text, or none) is required, without a default.
fn required_by_decide(schema: &mut schemars::Schema) {
    let mut required: Vec<String> = Vec::new();
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for (name, p) in props.iter_mut() {
            let Some(p) = p.as_object_mut() else { continue };
            let empty = p.get("default").is_some_and(|d| d.is_null() || d.as_str() == Some(""));
            if !empty {
                continue;
            }
            p.remove("default");
            // `anyOf: [X, {"type": "null"}]` (an `Option`): `X`.
            let some = p.get("anyOf").and_then(|a| a.as_array()).and_then(|a| match a.as_slice() {
                [x, n] if n.get("type").and_then(|t| t.as_str()) == Some("null") => x.as_object().cloned(),
                _ => None,
            });
            if let Some(x) = some {
                p.remove("anyOf");
                p.extend(x);
            }
            required.push(name.clone());
        }
    }
    match schema.get_mut("required").and_then(|r| r.as_array_mut()) {
        Some(r) => r.extend(required.into_iter().map(Into::into)),
        None => {
            schema.insert("required".into(), required.into());
        }
    }
}

/// A ticket contact as sent (R16); checked and typed by `decide`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = required_by_decide)]
pub struct ContactInput {
    #[serde(default)]
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    #[serde(default)]
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    #[serde(default)]
    #[schemars(email)]
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default)]
    #[schemars(extend("enum" = ["email", "phone"]))]
    pub preferred_contact: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = required_by_decide)]
pub struct OpenTicket {
    pub customer_id: CustomerId,
    #[serde(default)]
    pub workload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<SubscriptionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<ProductId>,
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    #[serde(default)]
    #[schemars(length(min = 1, max = 10000))]
    pub description: String,
    #[serde(default = "missing")]
    #[schemars(schema_with = "crate::vocab::severity_schema")]
    pub severity: RawValue,
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub support_topic: String,
    /// `cloud_solution_provider` for a customer's Azure ticket (R10); the partner's
    /// own plan id for its own tenant (R13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_plan: Option<String>,
    #[serde(default)]
    #[schemars(regex(pattern = "^[A-Za-z]{2}$"))]
    pub country_code: String,
    #[serde(default)]
    pub contact: Option<ContactInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IssueId>,
}

fn missing() -> RawValue {
    RawValue::Text(String::new())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = required_by_decide)]
pub struct TicketText {
    pub ticket_id: TicketId,
    #[serde(default)]
    #[schemars(length(min = 1, max = 10000))]
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UpdateTicket {
    pub ticket_id: TicketId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::vocab::severity_schema")]
    pub severity: Option<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactInput>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = required_by_decide)]
pub struct AttachToTicket {
    pub ticket_id: TicketId,
    #[serde(default)]
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    #[serde(default)]
    #[schemars(url, length(max = 2048))]
    pub uri: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = required_by_decide)]
pub struct EscalateTicket {
    pub ticket_id: TicketId,
    #[serde(default)]
    #[schemars(length(min = 1, max = 1000))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IssueId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = required_by_decide)]
pub struct CloseTicket {
    pub ticket_id: TicketId,
    #[serde(default)]
    #[schemars(length(min = 1, max = 1000))]
    pub resolution: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = required_by_decide)]
pub struct ReopenTicket {
    pub ticket_id: TicketId,
    #[serde(default)]
    #[schemars(length(min = 1, max = 1000))]
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketRef {
    pub ticket_id: TicketId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = required_by_decide)]
pub struct SupportRequest {
    pub customer_id: CustomerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<SubscriptionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<ProductId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["vendor", "partner", null]))]
    pub prefer: Option<String>,
    #[serde(default)]
    #[schemars(length(min = 1, max = 10000))]
    pub summary: String,
}

/// Every command of `API.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
#[allow(clippy::large_enum_variant)] // reason: commands are decoded one at a time and moved, never stored in bulk
pub enum Command {
    #[serde(rename = "partner.register")]
    PartnerRegister(Partner),
    #[serde(rename = "customer.register")]
    CustomerRegister(Customer),
    #[serde(rename = "partner.user.upsert")]
    PartnerUserUpsert(PartnerUser),
    #[serde(rename = "group.member.add")]
    GroupMemberAdd(GroupMember),
    #[serde(rename = "group.member.remove")]
    GroupMemberRemove(GroupMember),
    #[serde(rename = "gdap.relationship.upsert")]
    RelationshipUpsert(Relationship),
    #[serde(rename = "gdap.assignment.upsert")]
    AssignmentUpsert(Assignment),
    #[serde(rename = "subscription.register")]
    SubscriptionRegister(Subscription),
    #[serde(rename = "rbac.assign")]
    RbacAssign(RbacAssignment),
    #[serde(rename = "rbac.remove")]
    RbacRemove(RbacAssignment),
    #[serde(rename = "marketplace.product.register")]
    ProductRegister(Product),
    #[serde(rename = "support_plan.register")]
    SupportPlanRegister(SupportPlan),
    #[serde(rename = "service_health.issue.upsert")]
    ServiceHealthIssueUpsert(HealthIssue),
    #[serde(rename = "ticket.open")]
    TicketOpen(OpenTicket),
    #[serde(rename = "ticket.note")]
    TicketNote(TicketText),
    #[serde(rename = "ticket.update")]
    TicketUpdate(UpdateTicket),
    #[serde(rename = "ticket.attach")]
    TicketAttach(AttachToTicket),
    #[serde(rename = "ticket.escalate")]
    TicketEscalate(EscalateTicket),
    #[serde(rename = "ticket.respond")]
    TicketRespond(TicketText),
    #[serde(rename = "ticket.request_attention")]
    TicketRequestAttention(TicketText),
    #[serde(rename = "ticket.close")]
    TicketClose(CloseTicket),
    #[serde(rename = "ticket.reopen")]
    TicketReopen(ReopenTicket),
    /// Internal (the notifier, as the vendor side): record an SLA breach if due (R20).
    #[serde(rename = "ticket.sla_check")]
    TicketSlaCheck(TicketRef),
    #[serde(rename = "support.request")]
    SupportRequest(SupportRequest),
    /// Sent by the server for `POST /v1/webhooks` (not accepted at `/v1/commands`).
    #[serde(rename = "webhook.subscribe")]
    #[schemars(skip)] // not accepted at /v1/commands
    WebhookSubscribe(crate::webhook::Subscribe),
    #[serde(rename = "webhook.rotate")]
    #[schemars(skip)] // not accepted at /v1/commands
    WebhookRotate(crate::webhook::WebhookRef),
    #[serde(rename = "webhook.delete")]
    #[schemars(skip)] // not accepted at /v1/commands
    WebhookDelete(crate::webhook::WebhookRef),
    /// Internal (the sender, as the vendor side): the receiver answered `410 Gone`.
    #[serde(rename = "webhook.disable")]
    #[schemars(skip)] // not accepted at /v1/commands
    WebhookDisable(crate::webhook::Disable),
    /// Deletes a person's key: every sealed field of theirs reads as erased.
    #[serde(rename = "person.erase")]
    PersonErase(crate::erasure::ErasePerson),
    /// Deletes a ticket's free-text key.
    #[serde(rename = "ticket.redact")]
    TicketRedact(TicketRef),
}

/// The stream categories of directory facts: what the GDAP projection follows.
pub const DIRECTORY_CATEGORIES: &[&str] = &[
    "partner",
    "customer",
    "user",
    "group",
    "gdap",
    "assignment",
    "subscription",
    "rbac",
    "product",
    "plan",
    "health",
    "webhook",
    // `person.erase`: every process forgets the erased keys as its projection
    // passes it (and a decision waits for the directory's last commit).
    "person",
];

/// Where a command's events go: the stream it appends to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A new ticket (its id comes from the context).
    NewTicket,
    Ticket(TicketId),
    /// A new support request (its id comes from the context).
    NewSupportRequest,
    /// A directory fact's stream.
    Fact(crate::StreamId),
}

impl Command {
    /// The public `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Command::PartnerRegister(_) => "partner.register",
            Command::CustomerRegister(_) => "customer.register",
            Command::PartnerUserUpsert(_) => "partner.user.upsert",
            Command::GroupMemberAdd(_) => "group.member.add",
            Command::GroupMemberRemove(_) => "group.member.remove",
            Command::RelationshipUpsert(_) => "gdap.relationship.upsert",
            Command::AssignmentUpsert(_) => "gdap.assignment.upsert",
            Command::SubscriptionRegister(_) => "subscription.register",
            Command::RbacAssign(_) => "rbac.assign",
            Command::RbacRemove(_) => "rbac.remove",
            Command::ProductRegister(_) => "marketplace.product.register",
            Command::SupportPlanRegister(_) => "support_plan.register",
            Command::ServiceHealthIssueUpsert(_) => "service_health.issue.upsert",
            Command::TicketOpen(_) => "ticket.open",
            Command::TicketNote(_) => "ticket.note",
            Command::TicketUpdate(_) => "ticket.update",
            Command::TicketAttach(_) => "ticket.attach",
            Command::TicketEscalate(_) => "ticket.escalate",
            Command::TicketRespond(_) => "ticket.respond",
            Command::TicketRequestAttention(_) => "ticket.request_attention",
            Command::TicketClose(_) => "ticket.close",
            Command::TicketReopen(_) => "ticket.reopen",
            Command::TicketSlaCheck(_) => "ticket.sla_check",
            Command::SupportRequest(_) => "support.request",
            Command::WebhookSubscribe(_) => "webhook.subscribe",
            Command::WebhookRotate(_) => "webhook.rotate",
            Command::WebhookDelete(_) => "webhook.delete",
            Command::WebhookDisable(_) => "webhook.disable",
            Command::PersonErase(_) => "person.erase",
            Command::TicketRedact(_) => "ticket.redact",
        }
    }

    /// The stream this command appends to.
    pub fn target(&self) -> Target {
        match self.kind() {
            CommandKind::Directory(c) => Target::Fact(c.stream()),
            CommandKind::OpenTicket(_) => Target::NewTicket,
            CommandKind::SupportRequest(_) => Target::NewSupportRequest,
            CommandKind::Ticket(id, _) => Target::Ticket(id.clone()),
            CommandKind::Webhook(c) => Target::Fact(c.stream()),
            CommandKind::ErasePerson(c) => Target::Fact(c.stream()),
        }
    }
}
