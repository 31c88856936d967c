//! The read models, as pure functions of events over a key-value overlay, and the
//! projection runner that follows the log and commits each batch of view writes with
//! its checkpoint in one atomic write.
//!
//! Keys (one sorted store):
//! - `t/<ticket>` → [`TicketView`]: fields, status, counts, SLA clock
//!
//! A ticket's history (every event with actor and evidence, R29) and its notes,
//! attachments and escalations are read from the ticket's own stream in the log,
//! which is already indexed by the log; the views hold what the log cannot answer.
//! - `c/<customer>/<ticket>` → [`TicketSummary`]: the per-customer list (ids sort by creation)
//! - `p/<partner>/<ticket>` → [`TicketSummary`]: the partner's tickets across customers
//! - `r/<position:8>` → [`RejectionEntry`]: refused commands (R30)
//!
//! Values are named-field MessagePack of ordered structs, so a rebuild writes the very
//! same bytes as the incremental build.

use std::collections::BTreeMap;

use behalf_domain::event::{Event, TicketOpened};
use behalf_domain::sla::SlaState;
use behalf_domain::{
    Code, CommandId, CustomerId, EscalationReason, IssueId, PartnerId, Principal, Rule, Severity, Ticket, TicketId,
    TicketStatus, Timestamp, Workload,
};
use behalf_log::views::{ViewStore, Write};
use behalf_log::{Commit, EventLog, LogError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoteView {
    pub author: Principal,
    pub text: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttachmentView {
    pub name: String,
    pub uri: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EscalationView {
    pub reason: EscalationReason,
    pub note: Option<String>,
    pub incident_id: Option<IssueId>,
    pub at: Timestamp,
}

/// One ticket, as `/v1/tickets/{id}` shows it: the command side's own ticket state
/// (one fold, [`Ticket::apply`], for both sides) and what only readers need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketView {
    pub ticket: Ticket,
    pub title: String,
    pub description: String,
    pub support_topic: String,
    pub country_code: String,
    pub updated_at: Timestamp,
    /// Its texts' key was deleted (`ticket.redact`, issue 26): retention skips it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// A ticket in a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketSummary {
    pub ticket_id: TicketId,
    pub partner_id: PartnerId,
    pub customer_id: CustomerId,
    pub workload: Workload,
    pub severity: Severity,
    pub status: TicketStatus,
    pub title: String,
    pub opened_at: Timestamp,
}

/// A refused command (R30).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RejectionEntry {
    pub position: u64,
    pub command_id: CommandId,
    pub command_type: String,
    pub principal: Principal,
    pub code: Code,
    pub rule: Option<Rule>,
    pub message: String,
    /// The ticket the refused command named, as it was sent (it may not be a valid id).
    #[schemars(with = "Option<String>")]
    pub ticket_id: Option<TicketId>,
    pub at: Timestamp,
}

impl TicketView {
    pub(crate) fn summary(&self) -> TicketSummary {
        let t = &self.ticket;
        TicketSummary {
            ticket_id: t.case.ticket_id.clone(),
            partner_id: t.case.partner_id.clone(),
            customer_id: t.case.customer_id.clone(),
            workload: t.case.workload,
            severity: t.case.severity,
            status: t.case.status,
            title: self.title.clone(),
            opened_at: t.case.opened_at,
        }
    }

    /// R20 at `now`.
    pub fn sla_at(&self, now: Timestamp) -> SlaState {
        self.ticket.sla_at(now)
    }
}

/// The prefix of every ticket's record.
pub const TICKETS_PREFIX: &[u8] = b"t/";

pub fn ticket_key(id: &TicketId) -> Vec<u8> {
    format!("t/{id}").into_bytes()
}
pub fn customer_prefix(c: &CustomerId) -> Vec<u8> {
    format!("c/{c}/").into_bytes()
}
pub fn partner_prefix(p: &PartnerId) -> Vec<u8> {
    format!("p/{p}/").into_bytes()
}
pub const REJECTIONS_PREFIX: &[u8] = b"r/";

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, LogError> {
    rmp_serde::to_vec_named(v).map_err(|e| LogError::Codec(e.to_string()))
}
pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, LogError> {
    rmp_serde::from_slice(b).map_err(|e| LogError::Codec(e.to_string()))
}

/// Pending writes over a store: reads see the batch's own earlier writes. Tickets are
/// kept decoded for the whole batch and encoded once at its end.
pub struct Overlay<'s, S: ViewStore + ?Sized> {
    store: &'s S,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Each touched ticket: its summary when the batch began, and its view now.
    tickets: BTreeMap<TicketId, (Option<TicketSummary>, TicketView)>,
}

impl<'s, S: ViewStore + ?Sized> Overlay<'s, S> {
    pub fn new(store: &'s S) -> Self {
        Overlay { store, pending: BTreeMap::new(), tickets: BTreeMap::new() }
    }
    fn put<T: Serialize>(&mut self, key: Vec<u8>, v: &T) -> Result<(), LogError> {
        self.pending.insert(key, Some(encode(v)?));
        Ok(())
    }
    fn stored_ticket(&self, id: &TicketId) -> Result<Option<TicketView>, LogError> {
        match self.store.get(&ticket_key(id))? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }
    /// The batch's writes: every touched ticket once, and its list entries where the
    /// summary changed.
    pub fn into_writes(mut self) -> Result<Vec<Write>, LogError> {
        for (id, (before, view)) in std::mem::take(&mut self.tickets) {
            self.put(ticket_key(&id), &view)?;
            let summary = view.summary();
            if before.as_ref() != Some(&summary) {
                let mut ck = customer_prefix(&view.ticket.case.customer_id);
                ck.extend_from_slice(id.as_str().as_bytes());
                let mut pk = partner_prefix(&view.ticket.case.partner_id);
                pk.extend_from_slice(id.as_str().as_bytes());
                let bytes = encode(&summary)?;
                self.pending.insert(ck, Some(bytes.clone()));
                self.pending.insert(pk, Some(bytes));
            }
        }
        Ok(self.pending.into_iter().collect())
    }
}

/// Applies one event of `commit` to the views (by reference: the envelope the feeds
/// show is not built here, it would copy every event).
pub fn apply<S: ViewStore + ?Sized>(o: &mut Overlay<'_, S>, commit: &Commit, e: &Event) -> Result<(), LogError> {
    if let Event::CommandRejected(r) = e {
        let entry = RejectionEntry {
            position: commit.position,
            command_id: commit.command_id.clone(),
            command_type: r.command_type.clone(),
            principal: r.principal.clone(),
            code: r.code,
            rule: r.rule,
            message: r.message.clone(),
            ticket_id: r.ticket_id.clone(),
            at: r.at,
        };
        let mut key = REJECTIONS_PREFIX.to_vec();
        key.extend_from_slice(&commit.position.to_be_bytes());
        return o.put(key, &entry);
    }
    let Some(id) = e.ticket_id() else { return Ok(()) };
    if let Some((_, view)) = o.tickets.get_mut(id) {
        evolve_in_place(view, commit, e);
        return Ok(());
    }
    let before = o.stored_ticket(id)?;
    let before_summary = before.as_ref().map(TicketView::summary);
    let view = match (before, e) {
        (None, Event::TicketOpened(opened)) => match opened_view(opened, e) {
            Some(v) => v,
            None => return Ok(()),
        },
        (Some(mut v), _) => {
            evolve_in_place(&mut v, commit, e);
            v
        }
        (None, _) => return Ok(()),
    };
    o.tickets.insert(id.clone(), (before_summary, view));
    Ok(())
}

fn opened_view(e: &TicketOpened, event: &Event) -> Option<TicketView> {
    Some(TicketView {
        ticket: Ticket::evolve(None, event)?,
        title: e.title.clone(),
        description: e.description.clone(),
        support_topic: e.support_topic.clone(),
        country_code: e.country_code.clone(),
        updated_at: e.at,
        redacted: false,
    })
}

fn evolve_in_place(v: &mut TicketView, commit: &Commit, e: &Event) {
    v.ticket.apply(e);
    v.updated_at = commit.at;
    v.redacted |= matches!(e, Event::TicketRedacted(_));
}

/// Applies a batch of commits and commits the writes with the last position.
pub fn apply_batch<S: ViewStore + ?Sized>(store: &S, commits: &[Commit]) -> Result<u64, LogError> {
    let Some(last) = commits.last() else { return store.checkpoint() };
    let mut o = Overlay::new(store);
    for c in commits {
        for e in &c.events {
            apply(&mut o, c, e)?;
        }
    }
    store.commit(o.into_writes()?, last.position)?;
    Ok(last.position)
}

/// Rebuilds every view from the start of the log into `store` (after clearing it),
/// through [`crate::runner::catch_up`]; `progress(position, head)` after each page.
pub async fn rebuild<L: EventLog, S: ViewStore + ?Sized>(
    log: &L,
    store: &S,
    progress: impl FnMut(u64, u64),
) -> Result<u64, LogError> {
    store.clear()?;
    catch_up(log, store, progress).await
}

/// Brings `store` from its checkpoint up to the log's head (as it is now), then makes
/// it durable; `progress(position, head)` after each page.
pub async fn catch_up<L: EventLog, S: ViewStore + ?Sized>(
    log: &L,
    store: &S,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, LogError> {
    let head = log.head().await?;
    let reached = crate::runner::catch_up(log, store.checkpoint()?, head, |page| {
        let at = apply_batch(store, page)?;
        progress(at, head);
        Ok::<_, LogError>(())
    })
    .await?;
    store.sync()?;
    Ok(reached)
}
