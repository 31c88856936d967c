//! Tickets: state, `evolve`, and the decisions of R16–R21 and R27 for ticket commands.
//! Authorisation is [`crate::policy`]'s; this module says what a ticket is and how it
//! moves through its lifecycle.

use crate::event::{Contact, TicketEscalated};
use crate::kinds::{EventKind, TicketEvent};
use crate::policy::TicketScope;
use crate::sla::{SlaClock, SlaState};
use crate::time::Timestamp;
use crate::{
    Cloud, CustomerId, EscalationReason, Event, Evidence, IssueId, PartnerId, Severity, SubscriptionId, TicketId,
    TicketStatus, UserId, Workload,
};
use serde::{Deserialize, Serialize};

mod decide;

pub use decide::check_contact;
pub(crate) use decide::{decide_existing, decide_open};

/// A ticket as the command side folds it from its stream: what decisions need, and
/// no more. Titles, descriptions, notes and attachments are the views' business
/// (the projectors keep them); keeping them out of here keeps replay fast and lean.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ticket {
    /// What the ticket is about and where it stands (what readers see too).
    #[serde(flatten)]
    pub case: TicketCase,
    /// How many notes, attachments and escalations it has had.
    pub notes: u32,
    pub attachments: u32,
    pub escalations: u32,
    pub sla: SlaClock,
}

/// A ticket's facts and state: whose it is, what for, how severe, who to contact,
/// its status and version — shared by the command side's [`Ticket`] and the readers'
/// answers (which add its texts and lists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketCase {
    pub ticket_id: TicketId,
    pub partner_id: PartnerId,
    pub customer_id: CustomerId,
    pub workload: Workload,
    pub cloud: Cloud,
    pub subscription_id: Option<SubscriptionId>,
    pub severity: Severity,
    pub support_plan: Option<String>,
    pub contact: Contact,
    pub incident_id: Option<IssueId>,
    pub csp_priority: bool,
    pub status: TicketStatus,
    /// Events in the ticket's stream; the log's stream version.
    pub version: u64,
    pub opened_by: UserId,
    pub opened_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

impl Ticket {
    /// Folds one event of the ticket's stream into its state (`None` before opening).
    pub fn evolve(state: Option<Ticket>, event: &Event) -> Option<Ticket> {
        Ticket::evolve_owned(state, event.clone())
    }

    /// As [`Ticket::evolve`], moving the event's fields instead of copying them (replay).
    pub fn evolve_owned(state: Option<Ticket>, event: Event) -> Option<Ticket> {
        let mut t = match (state, event) {
            (Some(t), event) => {
                let mut t = t;
                t.apply(&event);
                return Some(t);
            }
            (None, Event::TicketOpened(e)) => {
                let mut sla = SlaClock::default();
                sla.open(e.at, e.severity);
                Ticket {
                    case: TicketCase {
                        ticket_id: e.ticket_id,
                        partner_id: e.partner_id,
                        customer_id: e.customer_id,
                        workload: e.workload,
                        cloud: e.cloud,
                        subscription_id: e.subscription_id,
                        severity: e.severity,
                        support_plan: e.support_plan,
                        contact: e.contact,
                        incident_id: e.incident_id,
                        csp_priority: e.csp_priority,
                        status: TicketStatus::Open,
                        version: 0,
                        opened_by: e.evidence.user_id,
                        opened_at: e.at,
                        closed_at: None,
                    },
                    notes: 0,
                    attachments: 0,
                    escalations: 0,
                    sla,
                }
            }
            (None, _) => return None,
        };
        t.case.version = 1;
        Some(t)
    }

    /// Folds one later event of the ticket's stream into its state.
    pub fn apply(&mut self, event: &Event) {
        let t = self;
        t.case.version += 1;
        t.sla.apply(event);
        let EventKind::Ticket(e) = event.kind() else { return };
        match e {
            TicketEvent::Opened(_)
            | TicketEvent::VendorResponded(_)
            | TicketEvent::SlaBreached(_)
            | TicketEvent::Redacted(_) => {}
            TicketEvent::NoteAdded(_) => t.notes += 1,
            TicketEvent::Updated(e) => {
                if let Some(s) = e.severity {
                    t.case.severity = s;
                }
                if let Some(c) = &e.contact {
                    t.case.contact = c.clone();
                }
            }
            TicketEvent::AttachmentAdded(_) => t.attachments += 1,
            TicketEvent::Escalated(_) => t.escalations += 1,
            TicketEvent::AttentionRequested(_) => t.case.status = TicketStatus::AttentionNeeded,
            TicketEvent::AttentionCleared(_) => t.case.status = TicketStatus::Open,
            TicketEvent::Closed(e) => {
                t.case.status = TicketStatus::Closed;
                t.case.closed_at = Some(e.at);
            }
            TicketEvent::Reopened(_) => {
                t.case.status = TicketStatus::Open;
                t.case.closed_at = None;
            }
        }
    }

    /// Folds a whole stream.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Ticket> {
        events.into_iter().fold(None, Ticket::evolve)
    }

    /// R20 at `now`.
    pub fn sla_at(&self, now: Timestamp) -> SlaState {
        self.sla.state(now)
    }

    fn scope<'a>(&'a self, contact_email: &'a str) -> TicketScope<'a> {
        TicketScope {
            customer_id: &self.case.customer_id,
            workload: self.case.workload,
            subscription_id: self.case.subscription_id.as_ref(),
            support_plan: self.case.support_plan.as_deref(),
            contact_email,
        }
    }

    fn escalation(
        &self,
        reason: EscalationReason,
        note: Option<String>,
        incident_id: Option<IssueId>,
        at: Timestamp,
        evidence: Option<Evidence>,
    ) -> Event {
        Event::TicketEscalated(TicketEscalated {
            ticket_id: self.case.ticket_id.clone(),
            reason,
            note,
            incident_id,
            partner_id: self.case.partner_id.clone(),
            customer_id: self.case.customer_id.clone(),
            workload: self.case.workload,
            cloud: self.case.cloud,
            severity: self.case.severity,
            csp_priority: self.case.csp_priority,
            at,
            evidence,
        })
    }
}
