//! The queries of `API.md`, over the views and the GDAP projection, each scoped by the
//! principal (R24: a partner sees only its own tickets and only while its relationship
//! with the customer is live; what it may not see answers as not found). Transport
//! agnostic: answers are the typed views of [`crate::answers`], or [`Refused`].

use crate::answers::{
    Access, AccessRow, ChainStatus, EnvelopeView, EventPage, History, PartnerCustomer, PartnerCustomers,
    PartnerTickets, Rejections, RelationshipState, ServiceHealth, TicketDetail, TicketPage,
};
use crate::gdap::GdapProjection;
use crate::views::{
    customer_prefix, decode, partner_prefix, ticket_key, AttachmentView, EscalationView, NoteView, RejectionEntry,
    TicketSummary, TicketView, REJECTIONS_PREFIX, TICKETS_PREFIX,
};
use crate::Refused;
use behalf_domain::policy::{authorize_service_health, explain_access, r24_can_see_ticket};
use behalf_domain::{
    Code, CustomerId, Directory, Event, PartnerId, Principal, Rejection, Rule, Severity, StreamId, TicketId,
    TicketStatus, Timestamp, UserId, Workload,
};
use behalf_log::views::ViewStore;
use behalf_log::EventLog;

type Answer<T> = Result<T, Refused>;

fn forbidden(why: &str) -> Refused {
    Refused::Rejected(Rejection::new(Code::Forbidden, Rule::R24, why))
}

fn not_found(id: &str) -> Refused {
    Refused::Rejected(Rejection::new(Code::TicketNotFound, Rule::R24, format!("ticket {id} not found")))
}

/// The partner's own agents, or the vendor side and auditors; anyone else is refused.
fn own_partner_or_reader(who: &Principal, partner: &PartnerId, why: &str) -> Result<(), Refused> {
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
pub struct Queries<'a, L: EventLog> {
    pub views: &'a dyn ViewStore,
    pub log: &'a L,
    pub gdap: &'a GdapProjection,
    pub now: Timestamp,
}

impl<L: EventLog> Queries<'_, L> {
    /// R24 for one list row, against a directory read once per query.
    fn visible(&self, dir: &Directory, who: &Principal, s: &TicketSummary) -> bool {
        r24_can_see_ticket(dir, who, &s.partner_id, &s.customer_id, self.now)
    }

    fn readers_only(who: &Principal) -> Result<(), Refused> {
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
    ) -> Answer<TicketPage> {
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
        Ok(TicketPage { tickets: out, next })
    }

    fn ticket_view(&self, who: &Principal, id: &TicketId) -> Answer<TicketView> {
        Self::readers_only(who)?;
        let v: TicketView = match self.views.get(&ticket_key(id))? {
            Some(b) => decode(&b)?,
            None => return Err(not_found(id.as_str())),
        };
        if !r24_can_see_ticket(
            &self.gdap.view().directory,
            who,
            &v.ticket.case.partner_id,
            &v.ticket.case.customer_id,
            self.now,
        ) {
            return Err(not_found(id.as_str()));
        }
        Ok(v)
    }

    /// The ticket's own stream: its history, straight from the log.
    async fn history_entries(&self, id: &TicketId) -> Answer<Vec<behalf_log::EventEnvelope>> {
        let commits = self.log.read_stream(&StreamId::ticket(id), 1).await?;
        Ok(commits.iter().flat_map(|c| c.envelopes()).collect())
    }

    /// `/v1/tickets/{id}`: fields, status, notes, attachments, escalations, SLA state.
    pub async fn ticket(&self, who: &Principal, id: &TicketId) -> Answer<TicketDetail> {
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
        Ok(TicketDetail::new(v, self.now, notes, attachments, escalations))
    }

    /// `/v1/tickets/{id}/history`: every event with actor and evidence (R29).
    pub async fn history(&self, who: &Principal, id: &TicketId) -> Answer<History> {
        self.ticket_view(who, id)?;
        let history = self.history_entries(id).await?.into_iter().map(EnvelopeView::from).collect();
        Ok(History { ticket_id: id.clone(), history })
    }

    /// `/v1/partners/{partner}/tickets`: across customers, with counts by status.
    pub fn partner_tickets(
        &self,
        who: &Principal,
        partner: &PartnerId,
        f: &ListFilter,
        limit: usize,
    ) -> Answer<PartnerTickets> {
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
        Ok(PartnerTickets { tickets, counts })
    }

    /// `/v1/customers/{customer}/service-health` (R22). An issue with no customers
    /// listed affects every customer.
    pub fn service_health(&self, who: &Principal, customer: &CustomerId) -> Answer<ServiceHealth> {
        let view = self.gdap.view();
        authorize_service_health(&view.directory, who, customer, self.now, view.position)?;
        let issues = view
            .directory
            .issues
            .values()
            .filter(|i| i.customer_ids.is_empty() || i.customer_ids.contains(customer))
            .cloned()
            .collect();
        Ok(ServiceHealth { customer_id: customer.clone(), issues })
    }

    /// `/v1/partners/{partner}/access?user_id=&customer_id=`: per workload, the grant
    /// that allows or the rule that refuses — the command service's own policy.
    pub fn access(&self, who: &Principal, partner: &PartnerId, user: &UserId, customer: &CustomerId) -> Answer<Access> {
        own_partner_or_reader(who, partner, "a partner reads its own users' access only")?;
        let view = self.gdap.view();
        let workloads = explain_access(&view.directory, partner, user, customer, self.now, view.position)
            .into_iter()
            .map(AccessRow::from)
            .collect();
        Ok(Access {
            partner_id: partner.clone(),
            user_id: user.clone(),
            customer_id: customer.clone(),
            position: view.position,
            workloads,
        })
    }

    /// `/v1/audit/rejections?after=&limit=` (auditor, vendor).
    pub fn rejections(&self, who: &Principal, after: u64, limit: usize) -> Answer<Rejections> {
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
        let rejections = rows.iter().map(|(_, v)| decode(v)).collect::<Result<_, _>>()?;
        Ok(Rejections { rejections })
    }
}

impl<L: EventLog> Queries<'_, L> {
    /// `/v1/tickets?status=&workload=&severity=&customer_id=&limit=` (the vendor side,
    /// auditors): tickets across partners, newest first — e.g. those waiting for a
    /// partner (`status=attention_needed`).
    pub fn tickets(&self, who: &Principal, f: &ListFilter, limit: usize) -> Answer<TicketPage> {
        match who {
            Principal::Vendor | Principal::Auditor => {}
            Principal::PartnerAgent { .. }
            | Principal::PartnerSync { .. }
            | Principal::Customer { .. }
            | Principal::Admin => {
                return Err(forbidden(
                    "tickets across partners are the vendor side's and auditors'; partners read their own lists",
                ))
            }
        }
        let mut tickets = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        'pages: loop {
            let page = self.views.scan_rev(TICKETS_PREFIX, cursor.as_deref(), 512)?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(last.clone());
            for (_, v) in &page {
                let s = decode::<TicketView>(v)?.summary();
                if f.keeps(&s) {
                    tickets.push(s);
                    if tickets.len() == limit {
                        break 'pages;
                    }
                }
            }
        }
        Ok(TicketPage { tickets, next: None })
    }

    /// `/v1/partners/{partner}/customers`: from the GDAP projection.
    pub fn partner_customers(&self, who: &Principal, partner: &PartnerId) -> Answer<PartnerCustomers> {
        own_partner_or_reader(who, partner, "a partner reads its own customers only")?;
        let view = self.gdap.view();
        let dir = &view.directory;
        let customers = dir
            .customers_of(partner)
            .into_iter()
            .map(|(customer, relationships)| PartnerCustomer {
                name: dir.customer(&customer).map(|c| c.name),
                customer_id: customer,
                relationships: relationships
                    .iter()
                    .map(|r| RelationshipState {
                        relationship_id: r.relationship_id.clone(),
                        status: r.status,
                        live: behalf_domain::policy::r5_is_live(r, self.now).is_ok(),
                        ends_at: r.end_at(self.now),
                    })
                    .collect(),
            })
            .collect();
        Ok(PartnerCustomers { partner_id: partner.clone(), customers })
    }

    /// `/v1/partners/{partner}/rejections?after=&limit=`: the partner's own refusals
    /// (R30), for its agents; the vendor side and auditors too.
    pub fn partner_rejections(
        &self,
        who: &Principal,
        partner: &PartnerId,
        after: u64,
        limit: usize,
    ) -> Answer<Rejections> {
        own_partner_or_reader(who, partner, "a partner reads its own refusals only")?;
        let mut from = REJECTIONS_PREFIX.to_vec();
        from.extend_from_slice(&after.to_be_bytes());
        let mut rejections = Vec::new();
        let mut cursor = Some(from);
        'pages: loop {
            let page = self.views.scan(REJECTIONS_PREFIX, cursor.as_deref(), 512)?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(last.clone());
            for (_, v) in &page {
                let entry: RejectionEntry = decode(v)?;
                if entry.principal.tenant() == behalf_domain::Tenant::Partner(partner.clone()) {
                    rejections.push(entry);
                    if rejections.len() == limit {
                        break 'pages;
                    }
                }
            }
        }
        Ok(Rejections { rejections })
    }
}

/// `/v1/audit/verify` (auditor, vendor): walks the whole chain now.
pub async fn verify<L: EventLog>(log: &L, who: &Principal) -> Answer<ChainStatus> {
    match who {
        Principal::Vendor | Principal::Auditor => {}
        Principal::PartnerAgent { .. }
        | Principal::PartnerSync { .. }
        | Principal::Customer { .. }
        | Principal::Admin => return Err(forbidden("the chain's status is for auditors and the vendor side")),
    }
    let report = log.verify().await?;
    Ok(ChainStatus {
        verified: report.verified,
        ok: report.first_bad.is_none(),
        first_bad_position: report.first_bad.as_ref().map(|(p, _)| *p),
        what: report.first_bad.map(|(_, w)| w),
    })
}

/// `/v1/events?after=&limit=`: the raw feed in log order (auditor, vendor).
pub async fn events<L: EventLog>(log: &L, who: &Principal, after: u64, limit: usize) -> Answer<EventPage> {
    match who {
        Principal::Vendor | Principal::Auditor => {}
        Principal::PartnerAgent { .. }
        | Principal::PartnerSync { .. }
        | Principal::Customer { .. }
        | Principal::Admin => return Err(forbidden("the event feed is for auditors and the vendor side")),
    }
    let commits = log.read_all(after, limit).await?;
    let events = commits.iter().flat_map(|c| c.envelopes()).map(EnvelopeView::from).collect();
    Ok(EventPage { events, next: commits.last().map(|c| c.position) })
}
