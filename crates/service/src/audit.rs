//! Audit over the log: re-judging every accepted partner command from its recorded
//! evidence and the directory as it stood at that position (R29), a ticket's whole
//! story (R29, R30), time travel (state as of a position), and comparing live views
//! with a rebuild. Engine-agnostic: everything reads through [`EventLog`].

use std::collections::{BTreeMap, HashMap};

use behalf_domain::policy::{explain_access, rejudge, TicketScope, WorkloadAccess};
use behalf_domain::{
    CommandId, CustomerId, Directory, Event, Evidence, PartnerId, Principal, StreamId, SubscriptionId, Ticket,
    TicketId, Timestamp, UserId, Workload,
};
use behalf_log::views::{Rows, ViewStore};
use behalf_log::{Commit, EventEnvelope, EventLog, LogError};
use serde::Serialize;

/// Reads the whole log in pages, in order.
pub async fn each_commit<L: EventLog>(log: &L, upto: u64, mut f: impl FnMut(&Commit)) -> Result<u64, LogError> {
    crate::runner::catch_up(log, 0, upto, |page| {
        page.iter().for_each(&mut f);
        Ok::<_, LogError>(())
    })
    .await
}

/// An accepted partner action whose recorded evidence does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub position: u64,
    pub event_id: String,
    pub event_type: &'static str,
    pub ticket_id: Option<TicketId>,
    pub evidence_position: u64,
    pub problem: String,
}

/// What a partner's action was about, captured as the log was read.
struct Pending {
    env: EventEnvelope,
    customer: CustomerId,
    workload: Workload,
    subscription: Option<SubscriptionId>,
    plan: Option<String>,
    email: String,
    evidence: Evidence,
}

impl Pending {
    fn finding(&self, problem: String) -> Finding {
        Finding {
            position: self.env.position,
            event_id: self.env.event_id.clone(),
            event_type: self.env.event_type,
            ticket_id: self.env.event.ticket_id().cloned(),
            evidence_position: self.evidence.directory_position,
            problem,
        }
    }
}

/// Re-judges every accepted partner command that carries evidence. `progress(done,
/// total)` now and then.
pub async fn rejudge_all<L: EventLog>(
    log: &L,
    mut progress: impl FnMut(u64, u64),
) -> Result<(Vec<Finding>, usize), LogError> {
    let head = log.head().await?;
    // First pass: every action with evidence, and the ticket as it stood before it.
    let mut tickets: HashMap<TicketId, Ticket> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    each_commit(log, head, |c| {
        for env in c.envelopes() {
            if let (Some(evidence), Some(id)) = (env.event.evidence().cloned(), env.event.ticket_id().cloned()) {
                let scope = match (&env.event, tickets.get(&id)) {
                    (Event::TicketOpened(o), _) => Some((
                        o.customer_id.clone(),
                        o.workload,
                        o.subscription_id.clone(),
                        o.support_plan.clone(),
                        o.contact.email.clone(),
                    )),
                    (Event::TicketUpdated(u), Some(t)) => Some((
                        t.case.customer_id.clone(),
                        t.case.workload,
                        t.case.subscription_id.clone(),
                        t.case.support_plan.clone(),
                        u.contact.as_ref().map_or(t.case.contact.email.clone(), |c| c.email.clone()),
                    )),
                    (_, Some(t)) => Some((
                        t.case.customer_id.clone(),
                        t.case.workload,
                        t.case.subscription_id.clone(),
                        t.case.support_plan.clone(),
                        t.case.contact.email.clone(),
                    )),
                    (_, None) => None,
                };
                if let Some((customer, workload, subscription, plan, email)) = scope {
                    pending.push(Pending { env: env.clone(), customer, workload, subscription, plan, email, evidence });
                }
            }
            if let Some(id) = env.event.ticket_id() {
                let t = tickets.remove(id);
                if let Some(t) = Ticket::evolve(t, &env.event) {
                    tickets.insert(id.clone(), t);
                }
            }
        }
    })
    .await?;
    // Second pass: fold the directory forward, judging each action at its position.
    pending.sort_by_key(|p| (p.evidence.directory_position, p.env.position));
    let total = pending.len();
    let mut findings = Vec::new();
    let mut dir = Directory::default();
    let mut at = 0u64;
    let mut next = pending.into_iter().peekable();
    let mut done = 0u64;
    while next.peek().is_some() {
        let upto = next.peek().map_or(head, |p| p.evidence.directory_position);
        if upto > at {
            let page = log.read_all(at, (upto - at).min(2048) as usize).await?;
            let Some(last) = page.last() else { break };
            for c in &page {
                for e in &c.events {
                    dir.apply(e);
                }
            }
            at = last.position;
            continue;
        }
        while let Some(p) = next.next_if(|p| p.evidence.directory_position <= at) {
            let scope = TicketScope {
                customer_id: &p.customer,
                workload: p.workload,
                subscription_id: p.subscription.as_ref(),
                support_plan: p.plan.as_deref(),
                contact_email: &p.email,
            };
            let problem = if p.evidence.directory_position >= p.env.position {
                Some(format!(
                    "judged on position {} which is not before the action itself",
                    p.evidence.directory_position
                ))
            } else {
                rejudge(&dir, &p.env.actor, &scope, &p.evidence, p.env.at).err()
            };
            if let Some(problem) = problem {
                findings.push(p.finding(problem));
            }
            done += 1;
            if done.is_multiple_of(1024) {
                progress(done, total as u64);
            }
        }
    }
    for p in next {
        let problem = format!("judged on position {} beyond the end of the log", p.evidence.directory_position);
        findings.push(p.finding(problem));
    }
    progress(total as u64, total as u64);
    findings.sort_by_key(|f| f.position);
    Ok((findings, total))
}

/// One line of a ticket's story.
#[derive(Clone, Debug, Serialize)]
pub struct StoryLine {
    pub position: u64,
    pub at: Timestamp,
    pub actor: Principal,
    pub command_id: CommandId,
    pub kind: &'static str,
    pub event: Event,
}

/// Every command on a ticket — accepted events and refusals — in log order.
pub async fn ticket_story<L: EventLog>(log: &L, id: &TicketId) -> Result<Vec<StoryLine>, LogError> {
    let mut lines = Vec::new();
    let head = log.head().await?;
    each_commit(log, head, |c| {
        for env in c.envelopes() {
            let refused_here =
                if let Event::CommandRejected(r) = &env.event { r.ticket_id.as_ref() == Some(id) } else { false };
            let mine = refused_here || env.event.ticket_id() == Some(id);
            if mine {
                let kind = if matches!(env.event, Event::CommandRejected(_)) { "refused" } else { "accepted" };
                lines.push(StoryLine {
                    position: env.position,
                    at: env.at,
                    actor: env.actor.clone(),
                    command_id: env.command_id.clone(),
                    kind,
                    event: env.event.clone(),
                });
            }
        }
    })
    .await?;
    Ok(lines)
}

/// The last position whose commit happened at or before `time`.
pub async fn position_at<L: EventLog>(log: &L, time: Timestamp) -> Result<u64, LogError> {
    let head = log.head().await?;
    let mut found = 0;
    each_commit(log, head, |c| {
        if c.at <= time {
            found = c.position;
        }
    })
    .await?;
    Ok(found)
}

/// A ticket as it stood at `position`.
pub async fn ticket_as_of<L: EventLog>(log: &L, id: &TicketId, position: u64) -> Result<Option<Ticket>, LogError> {
    let commits = log.read_stream(&StreamId::ticket(id), 1).await?;
    Ok(commits.into_iter().filter(|c| c.position <= position).flat_map(|c| c.events).fold(None, Ticket::evolve_owned))
}

/// What a partner user could do for a customer at `position` (and the time of it).
pub async fn access_as_of<L: EventLog>(
    log: &L,
    position: u64,
    at: Timestamp,
    partner: &PartnerId,
    user: &UserId,
    customer: &CustomerId,
) -> Result<Vec<WorkloadAccess>, LogError> {
    let mut dir = Directory::default();
    let reached = each_commit(log, position, |c| {
        for e in &c.events {
            dir.apply(e);
        }
    })
    .await?;
    Ok(explain_access(&dir, partner, user, customer, at, reached))
}

/// Where a live view differs from a rebuilt one: the view (by key prefix) and the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub view: &'static str,
    pub key: String,
    pub what: &'static str,
}

fn view_of(key: &[u8]) -> &'static str {
    match key.first() {
        Some(b't') => "ticket",
        Some(b'c') => "customer tickets",
        Some(b'p') => "partner tickets",
        Some(b'r') => "refusals",
        Some(0) => "checkpoint",
        Some(_) | None => "unknown",
    }
}

/// Compares two dumps of view stores key by key.
pub fn compare(live: &Rows, rebuilt: &Rows) -> Vec<Difference> {
    let a: BTreeMap<&[u8], &[u8]> = live.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    let b: BTreeMap<&[u8], &[u8]> = rebuilt.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    let mut out = Vec::new();
    for (k, v) in &a {
        match b.get(k) {
            None => out.push(Difference {
                view: view_of(k),
                key: String::from_utf8_lossy(k).into(),
                what: "only in the live views",
            }),
            Some(w) if w != v => {
                out.push(Difference { view: view_of(k), key: String::from_utf8_lossy(k).into(), what: "differs" })
            }
            Some(_) => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(Difference {
            view: view_of(k),
            key: String::from_utf8_lossy(k).into(),
            what: "missing from the live views",
        });
    }
    out
}

/// Rebuilds into `scratch` and compares with `live` (which must be caught up to the
/// same position first).
pub async fn replay_and_compare<L: EventLog, S: ViewStore + ?Sized>(
    log: &L,
    live: &S,
    scratch: &S,
    progress: impl FnMut(u64, u64),
) -> Result<Vec<Difference>, LogError> {
    crate::views::rebuild(log, scratch, progress).await?;
    Ok(compare(&live.dump()?, &scratch.dump()?))
}
