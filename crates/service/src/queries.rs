//! The queries of `API.md`, over the views and the GDAP projection, each scoped by the
//! principal (R24: a partner sees only its own tickets and only while its relationship
//! with the customer is live; what it may not see answers as not found). Transport
//! agnostic: answers are JSON values or rejections.

use behalf_domain::policy::{authorize_service_health, explain_access, r24_can_see_ticket};
use behalf_domain::*;
use behalf_log::views::ViewStore;
use behalf_log::{EventLog, LogError};
use serde_json::{json, Value};

use crate::gdap::GdapProjection;
use crate::views::*;

/// A query's failure: a rejection for the caller, or an internal error.
#[derive(Debug)]
pub enum QueryError {
    Rejected(Rejection),
    Internal(LogError),
}

impl From<LogError> for QueryError {
    fn from(e: LogError) -> Self {
        QueryError::Internal(e)
    }
}

impl From<Rejection> for QueryError {
    fn from(r: Rejection) -> Self {
        QueryError::Rejected(r)
    }
}

type Answer = Result<Value, QueryError>;

fn forbidden(why: &str) -> QueryError {
    QueryError::Rejected(Rejection::new(Code::Forbidden, Rule::R24, why))
}

fn not_found(id: &str) -> QueryError {
    QueryError::Rejected(Rejection::new(Code::TicketNotFound, Rule::R24, format!("ticket {id} not found")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The partner's own agents, or the vendor side and auditors; anyone else is refused.
fn own_partner_or_reader(who: &Principal, partner: &PartnerId, why: &str) -> Result<(), QueryError> {
    match who {
        Principal::PartnerAgent { partner_id, .. } if partner_id == partner => Ok(()),
        Principal::Vendor | Principal::Auditor => Ok(()),
        Principal::PartnerAgent { .. }
        | Principal::PartnerSync { .. }
        | Principal::Customer { .. }
        | Principal::Admin => Err(forbidden(why)),
    }
}

/// Filters of the per-customer list.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<TicketStatus>,
    pub workload: Option<Workload>,
    pub severity: Option<Severity>,
    pub customer_id: Option<CustomerId>,
}

impl ListFilter {
    fn keeps(&self, s: &TicketSummary) -> bool {
        self.status.is_none_or(|x| x == s.status)
            && self.workload.is_none_or(|x| x == s.workload)
            && self.severity.is_none_or(|x| x == s.severity)
            && self.customer_id.as_ref().is_none_or(|x| x == &s.customer_id)
    }
}

/// The query side: views, the directory for scoping, the log for ticket streams.
pub struct Queries<'a, S: ViewStore, L: EventLog> {
    pub views: &'a S,
    pub log: &'a L,
    pub gdap: &'a GdapProjection,
    pub now: Timestamp,
}

impl<S: ViewStore, L: EventLog> Queries<'_, S, L> {
    /// R24 for one list row, against a directory read once per query.
    fn visible(&self, dir: &Directory, who: &Principal, s: &TicketSummary) -> bool {
        r24_can_see_ticket(dir, who, &s.partner_id, &s.customer_id, self.now)
    }

    fn readers_only(who: &Principal) -> Result<(), QueryError> {
        match who {
            Principal::PartnerSync { .. } | Principal::Admin => Err(forbidden("this principal reads no tickets")),
            Principal::PartnerAgent { .. } | Principal::Customer { .. } | Principal::Vendor | Principal::Auditor => {
                Ok(())
            }
        }
    }

    /// `/v1/customers/{customer}/tickets`: newest first; `after` is the last ticket id of
    /// the previous page (ids sort by creation, so new tickets never shift a cursor).
    pub fn customer_tickets(
        &self,
        who: &Principal,
        customer: &CustomerId,
        f: &ListFilter,
        limit: usize,
        after: Option<&str>,
    ) -> Answer {
        Self::readers_only(who)?;
        let view = self.gdap.view();
        let prefix = customer_prefix(customer);
        let mut cursor = after.map(|a| [prefix.clone(), a.as_bytes().to_vec()].concat());
        let mut out = Vec::new();
        'pages: loop {
            let page = self.views.scan_rev(&prefix, cursor.as_deref(), 512)?;
            if page.is_empty() {
                break;
            }
            for (k, v) in &page {
                let s: TicketSummary = decode(v)?;
                if f.keeps(&s) && self.visible(&view.directory, who, &s) {
                    out.push(s);
                    if out.len() == limit {
                        break 'pages;
                    }
                }
                cursor = Some(k.clone());
            }
        }
        let next = if out.len() == limit { out.last().map(|s| s.ticket_id.to_string()) } else { None };
        Ok(json!({ "tickets": to_json(&out), "next": next }))
    }

    fn ticket_view(&self, who: &Principal, id: &TicketId) -> Result<TicketView, QueryError> {
        Self::readers_only(who)?;
        let v: TicketView = match self.views.get(&ticket_key(id))? {
            Some(b) => decode(&b)?,
            None => return Err(not_found(id.as_str())),
        };
        if !r24_can_see_ticket(&self.gdap.view().directory, who, &v.ticket.partner_id, &v.ticket.customer_id, self.now)
        {
            return Err(not_found(id.as_str()));
        }
        Ok(v)
    }

    /// The ticket's own stream: its history, straight from the log.
    async fn history_entries(&self, id: &TicketId) -> Result<Vec<behalf_log::EventEnvelope>, QueryError> {
        let commits = self.log.read_stream(&StreamId::ticket(id), 1).await?;
        Ok(commits.iter().flat_map(|c| c.envelopes()).collect())
    }

    /// `/v1/tickets/{id}`: fields, status, notes, attachments, escalations, SLA state.
    pub async fn ticket(&self, who: &Principal, id: &TicketId) -> Answer {
        let v = self.ticket_view(who, id)?;
        let (mut notes, mut attachments, mut escalations) = (Vec::new(), Vec::new(), Vec::new());
        for h in self.history_entries(id).await? {
            // Only these events add list entries; every other event leaves them as they are.
            if let Event::NoteAdded(e) = h.event {
                notes.push(NoteView { author: e.author, text: e.text, at: e.at });
            } else if let Event::AttachmentAdded(e) = h.event {
                attachments.push(AttachmentView { name: e.name, uri: e.uri, at: e.at });
            } else if let Event::TicketEscalated(e) = h.event {
                escalations.push(EscalationView {
                    reason: e.reason,
                    note: e.note,
                    incident_id: e.incident_id,
                    at: e.at,
                });
            }
        }
        let mut out = to_json(&v.ticket);
        if let Value::Object(m) = &mut out {
            m.insert("title".into(), to_json(&v.title));
            m.insert("description".into(), to_json(&v.description));
            m.insert("support_topic".into(), to_json(&v.support_topic));
            m.insert("country_code".into(), to_json(&v.country_code));
            m.insert("updated_at".into(), to_json(&v.updated_at));
            m.insert("sla".into(), to_json(&v.sla_at(self.now)));
            m.insert("notes".into(), to_json(&notes));
            m.insert("attachments".into(), to_json(&attachments));
            m.insert("escalations".into(), to_json(&escalations));
        }
        Ok(out)
    }

    /// `/v1/tickets/{id}/history`: every event with actor and evidence (R29).
    pub async fn history(&self, who: &Principal, id: &TicketId) -> Answer {
        self.ticket_view(who, id)?;
        let entries: Vec<Value> = self
            .history_entries(id)
            .await?
            .into_iter()
            .map(|e| {
                json!({
                    "version": e.version, "position": e.position, "event_id": e.event_id, "type": e.event_type,
                    "actor": e.actor, "at": e.at, "command_id": e.command_id, "evidence": e.evidence(), "event": e.event,
                })
            })
            .collect();
        Ok(json!({ "ticket_id": id, "history": entries }))
    }

    /// `/v1/partners/{partner}/tickets`: across customers, with counts by status.
    pub fn partner_tickets(&self, who: &Principal, partner: &PartnerId, f: &ListFilter, limit: usize) -> Answer {
        own_partner_or_reader(who, partner, "a partner reads its own tickets only")?;
        let view = self.gdap.view();
        let mut tickets = Vec::new();
        let mut counts = std::collections::BTreeMap::<&str, u64>::new();
        for (_, v) in self.views.scan_rev(&partner_prefix(partner), None, usize::MAX)? {
            let s: TicketSummary = decode(&v)?;
            if !f.keeps(&s) || !self.visible(&view.directory, who, &s) {
                continue;
            }
            *counts.entry(s.status.as_str()).or_default() += 1;
            if tickets.len() < limit {
                tickets.push(s);
            }
        }
        Ok(json!({ "tickets": to_json(&tickets), "counts": counts }))
    }

    /// `/v1/customers/{customer}/service-health` (R22). An issue with no customers
    /// listed affects every customer.
    pub fn service_health(&self, who: &Principal, customer: &CustomerId) -> Answer {
        let view = self.gdap.view();
        authorize_service_health(&view.directory, who, customer, self.now, view.position)?;
        let issues: Vec<_> = view
            .directory
            .issues
            .values()
            .filter(|i| i.customer_ids.is_empty() || i.customer_ids.contains(customer))
            .collect();
        Ok(json!({ "customer_id": customer, "issues": to_json(&issues) }))
    }

    /// `/v1/partners/{partner}/access?user_id=&customer_id=`: per workload, the grant
    /// that allows or the rule that refuses — the command service's own policy.
    pub fn access(&self, who: &Principal, partner: &PartnerId, user: &UserId, customer: &CustomerId) -> Answer {
        own_partner_or_reader(who, partner, "a partner reads its own users' access only")?;
        let view = self.gdap.view();
        let rows: Vec<Value> = explain_access(&view.directory, partner, user, customer, self.now, view.position)
            .into_iter()
            .map(|a| match a.outcome {
                Ok(evidence) => json!({"workload": a.workload, "subscription_id": a.subscription_id, "allowed": true, "evidence": evidence}),
                Err(r) => json!({"workload": a.workload, "subscription_id": a.subscription_id, "allowed": false, "code": r.code, "rule": r.rule, "message": r.message}),
            })
            .collect();
        Ok(
            json!({ "partner_id": partner, "user_id": user, "customer_id": customer, "position": view.position, "workloads": rows }),
        )
    }

    /// `/v1/audit/rejections?after=&limit=` (auditor, vendor).
    pub fn rejections(&self, who: &Principal, after: u64, limit: usize) -> Answer {
        match who {
            Principal::Vendor | Principal::Auditor => {}
            Principal::PartnerAgent { .. }
            | Principal::PartnerSync { .. }
            | Principal::Customer { .. }
            | Principal::Admin => return Err(forbidden("refusals are for auditors and the vendor side")),
        }
        let mut from = REJECTIONS_PREFIX.to_vec();
        from.extend_from_slice(&after.to_be_bytes());
        let rows = self.views.scan(REJECTIONS_PREFIX, Some(&from), limit)?;
        let entries: Vec<RejectionEntry> = rows.iter().map(|(_, v)| decode(v)).collect::<Result<_, _>>()?;
        Ok(json!({ "rejections": to_json(&entries) }))
    }
}

/// `/v1/events?after=&limit=`: the raw feed in log order (auditor, vendor).
pub async fn events<L: EventLog>(log: &L, who: &Principal, after: u64, limit: usize) -> Answer {
    match who {
        Principal::Vendor | Principal::Auditor => {}
        Principal::PartnerAgent { .. }
        | Principal::PartnerSync { .. }
        | Principal::Customer { .. }
        | Principal::Admin => return Err(forbidden("the event feed is for auditors and the vendor side")),
    }
    let commits = log.read_all(after, limit).await?;
    let events: Vec<Value> = commits
        .iter()
        .flat_map(|c| c.envelopes())
        .map(|e| {
            json!({
                "position": e.position, "index": e.index, "stream": e.stream, "version": e.version,
                "event_id": e.event_id, "type": e.event_type, "schema_version": e.schema_version,
                "at": e.at, "actor": e.actor, "command_id": e.command_id, "correlation_id": e.correlation_id,
                "event": e.event,
            })
        })
        .collect();
    Ok(json!({ "events": events, "next": commits.last().map(|c| c.position) }))
}
