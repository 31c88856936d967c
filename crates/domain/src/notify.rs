//! Where events are forwarded (R14, R19, R21, R23), as a pure function of one event:
//! an escalation to the queue of its ticket's cloud and workload (never another
//! cloud's), the vendor's request for attention and a customer's request routed to
//! the partner to that partner's queue.

use crate::event::Event;
use crate::kinds::{EventKind, TicketEvent};
use crate::{Cloud, CustomerId, IssueId, PartnerId, Route, Severity, TicketId, Workload};
use serde::{Deserialize, Serialize};

/// A queue's name: `<cloud>.<workload>` or `partner.<partner id>`.
pub fn workload_queue(cloud: Cloud, workload: Workload) -> String {
    format!("{cloud}.{workload}")
}

pub fn partner_queue(partner: &PartnerId) -> String {
    format!("partner.{partner}")
}

/// Why a message was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    Escalation,
    AttentionNeeded,
    CustomerRequest,
}

/// One queue message, before it has an id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outgoing {
    pub queue: String,
    pub notice: Notice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<TicketId>,
    pub customer_id: CustomerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<PartnerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// R19: CSP tickets come before other work of the same severity.
    pub csp_priority: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IssueId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The message an event sends, if any.
pub fn route(event: &Event) -> Option<Outgoing> {
    match event.kind() {
        EventKind::Ticket(TicketEvent::Escalated(e)) => Some(Outgoing {
            queue: workload_queue(e.cloud, e.workload),
            notice: Notice::Escalation,
            ticket_id: Some(e.ticket_id.clone()),
            customer_id: e.customer_id.clone(),
            partner_id: Some(e.partner_id.clone()),
            workload: Some(e.workload),
            severity: Some(e.severity),
            csp_priority: e.csp_priority,
            reason: Some(e.reason.as_str().to_owned()),
            incident_id: e.incident_id.clone(),
            text: e.note.clone(),
        }),
        EventKind::Ticket(TicketEvent::AttentionRequested(e)) => Some(Outgoing {
            queue: partner_queue(&e.partner_id),
            notice: Notice::AttentionNeeded,
            ticket_id: Some(e.ticket_id.clone()),
            customer_id: e.customer_id.clone(),
            partner_id: Some(e.partner_id.clone()),
            workload: None,
            severity: None,
            csp_priority: false,
            reason: None,
            incident_id: None,
            text: Some(e.text.clone()),
        }),
        EventKind::Routed(r) => match (&r.route, &r.partner_id) {
            (Route::Partner, Some(p)) => Some(Outgoing {
                queue: partner_queue(p),
                notice: Notice::CustomerRequest,
                ticket_id: None,
                customer_id: r.customer_id.clone(),
                partner_id: Some(p.clone()),
                workload: None,
                severity: None,
                csp_priority: false,
                reason: None,
                incident_id: None,
                text: Some(r.summary.clone()),
            }),
            (Route::Partner | Route::Vendor | Route::Isv, _) => None,
        },
        EventKind::Ticket(
            TicketEvent::Opened(_)
            | TicketEvent::NoteAdded(_)
            | TicketEvent::Updated(_)
            | TicketEvent::AttachmentAdded(_)
            | TicketEvent::VendorResponded(_)
            | TicketEvent::AttentionCleared(_)
            | TicketEvent::Closed(_)
            | TicketEvent::Reopened(_)
            | TicketEvent::SlaBreached(_)
            | TicketEvent::Redacted(_),
        )
        | EventKind::Directory(_)
        | EventKind::Rejected(_)
        | EventKind::Webhook(_)
        | EventKind::PersonErased(_) => None,
    }
}

/// The order within a queue: severity, then CSP priority, then age (the log position
/// and the event's index in its commit). Smaller sorts first.
pub fn priority_key(severity: Option<Severity>, csp_priority: bool, position: u64, index: u32) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[0] = severity.map_or(9, Severity::rank);
    k[1] = u8::from(!csp_priority);
    k[2..10].copy_from_slice(&position.to_be_bytes());
    k[10..14].copy_from_slice(&index.to_be_bytes());
    k
}
