//! The typed answers of the queries, as every transport shows them (HTTP and NATS
//! answer JSON of these; `behalf audit` prints the same shapes). One envelope view
//! serves the ticket history, `/v1/events` and `audit export`; one access row serves
//! `/v1/partners/{p}/access` and `audit as-of`.

use std::collections::BTreeMap;

use behalf_domain::event::Evidence;
use behalf_domain::policy::WorkloadAccess;
use behalf_domain::sla::SlaState;
use behalf_domain::ticket::TicketCase;
use behalf_domain::{
    Code, CustomerId, PartnerId, RelationshipId, RelationshipStatus, Rule, SubscriptionId, TicketId, Timestamp, UserId,
    Workload,
};
use behalf_log::EventEnvelope;
use schemars::JsonSchema;
use serde::Serialize;

use crate::views::{AttachmentView, EscalationView, NoteView, RejectionEntry, TicketSummary};

/// One event with its envelope and, where it carries one, its R29 evidence.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct EnvelopeView {
    #[serde(flatten)]
    pub envelope: EventEnvelope,
    pub evidence: Option<Evidence>,
}

impl From<EventEnvelope> for EnvelopeView {
    fn from(envelope: EventEnvelope) -> Self {
        EnvelopeView { evidence: envelope.evidence().cloned(), envelope }
    }
}

/// One workload (and Azure subscription) of an access explanation: the grant that
/// allows, or the rule that refuses.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct AccessRow {
    pub workload: Workload,
    pub subscription_id: Option<SubscriptionId>,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<WorkloadAccess> for AccessRow {
    fn from(a: WorkloadAccess) -> Self {
        let (workload, subscription_id) = (a.workload, a.subscription_id);
        match a.outcome {
            Ok(evidence) => AccessRow {
                workload,
                subscription_id,
                allowed: true,
                evidence: Some(evidence),
                code: None,
                rule: None,
                message: None,
            },
            Err(r) => AccessRow {
                workload,
                subscription_id,
                allowed: false,
                evidence: None,
                code: Some(r.code),
                rule: r.rule,
                message: Some(r.message),
            },
        }
    }
}

/// `/v1/partners/{partner}/access`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Access {
    pub partner_id: PartnerId,
    pub user_id: UserId,
    pub customer_id: CustomerId,
    /// The directory position the rows were judged at.
    pub position: u64,
    pub workloads: Vec<AccessRow>,
}

/// `/v1/tickets/{id}`: the ticket's state, what only readers need, and its lists (in
/// place of the command side's counts and SLA clock).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TicketDetail {
    /// The ticket's facts and state, as the command side folds them.
    #[serde(flatten)]
    pub ticket: TicketCase,
    pub title: String,
    pub description: String,
    pub support_topic: String,
    pub country_code: String,
    pub updated_at: Timestamp,
    pub sla: SlaState,
    pub notes: Vec<NoteView>,
    pub attachments: Vec<AttachmentView>,
    pub escalations: Vec<EscalationView>,
}

impl TicketDetail {
    /// The view's ticket at `now`, with the lists read from its stream.
    pub fn new(
        v: crate::views::TicketView,
        now: Timestamp,
        notes: Vec<NoteView>,
        attachments: Vec<AttachmentView>,
        escalations: Vec<EscalationView>,
    ) -> Self {
        let sla = v.sla_at(now);
        TicketDetail {
            ticket: v.ticket.case,
            title: v.title,
            description: v.description,
            support_topic: v.support_topic,
            country_code: v.country_code,
            updated_at: v.updated_at,
            sla,
            notes,
            attachments,
            escalations,
        }
    }
}

/// `/v1/tickets/{id}/history`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct History {
    pub ticket_id: TicketId,
    pub history: Vec<EnvelopeView>,
}

/// `/v1/customers/{customer}/tickets`: a page, newest first; `next` is the cursor.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TicketPage {
    pub tickets: Vec<TicketSummary>,
    pub next: Option<String>,
}

/// `/v1/partners/{partner}/tickets`: with counts by status of what the caller may see.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PartnerTickets {
    pub tickets: Vec<TicketSummary>,
    pub counts: BTreeMap<&'static str, u64>,
}

/// `/v1/customers/{customer}/service-health`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ServiceHealth {
    pub customer_id: CustomerId,
    pub issues: Vec<behalf_domain::directory::HealthIssue>,
}

/// `/v1/audit/rejections`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Rejections {
    pub rejections: Vec<RejectionEntry>,
}

/// `/v1/events`: `next` is the last position returned.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct EventPage {
    pub events: Vec<EnvelopeView>,
    pub next: Option<u64>,
}

/// `/v1/partners/{partner}/customers`: the customers a partner has GDAP relationships
/// with, and whether each relationship is live now (R4, R5).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PartnerCustomers {
    pub partner_id: PartnerId,
    pub customers: Vec<PartnerCustomer>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PartnerCustomer {
    pub customer_id: CustomerId,
    /// The customer's name, where the vendor registered it.
    pub name: Option<String>,
    pub relationships: Vec<RelationshipState>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct RelationshipState {
    pub relationship_id: RelationshipId,
    pub status: RelationshipStatus,
    /// Live now: active and not past its end (R5).
    pub live: bool,
    pub ends_at: Option<Timestamp>,
}

/// `/v1/queues/{queue}`: what is waiting, without leasing anything.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct QueueDepth {
    pub queue: String,
    /// Messages waiting (leased or not), up to the count given; `more` when there are more.
    pub depth: usize,
    pub more: bool,
    /// Of those, leased to a worker right now.
    pub leased: usize,
    /// The oldest message's log position and the time of that commit.
    pub oldest_position: Option<u64>,
    pub oldest_at: Option<Timestamp>,
    /// The first messages in the queue's order (up to 20), as they are: not leased.
    pub first: Vec<behalf_log::queues::QueueMessage>,
}

/// `/v1/audit/verify`: the whole log's hash chain, walked now.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ChainStatus {
    pub verified: u64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
}
