//! The notifier: follows the log and forwards escalations, attention-needed notices and
//! customers' requests routed to a partner into their queues, exactly once per source
//! event (R21, R23); and records missed response targets (R20) from the views and a
//! clock — never from in-memory timers — so they survive restarts.

use std::sync::Arc;

use behalf_domain::notify::{priority_key, route};
use behalf_domain::{Principal, Timestamp};
use behalf_log::queues::{Enqueue, QueueSink};
use behalf_log::views::ViewStore;
use behalf_log::{Commit, EventLog, LogError};

use crate::commands::{CommandService, Outcome};
use crate::request::Request;
use crate::views::{decode, TicketView};
use crate::ServiceError;

/// Forwards a batch of commits and commits the messages with the checkpoint.
pub fn forward_batch<Q: QueueSink>(queues: &Q, commits: &[Commit]) -> Result<u64, LogError> {
    let Some(last) = commits.last() else { return queues.checkpoint() };
    let messages: Vec<Enqueue> = commits
        .iter()
        .flat_map(|c| c.envelopes())
        .filter_map(|env| {
            route(&env.event).map(|body| Enqueue {
                priority: priority_key(body.severity, body.csp_priority, env.position, env.index),
                source_event_id: env.event_id,
                position: env.position,
                body,
            })
        })
        .collect();
    queues.enqueue(messages, last.position)?;
    Ok(last.position)
}

/// Follows the log from the queues' checkpoint.
pub async fn follow<L: EventLog, Q: QueueSink>(log: &L, queues: &Q, batch: usize) -> Result<(), LogError> {
    crate::runner::follow(log, queues.checkpoint()?, batch, |c| forward_batch(queues, c), |_| {}).await
}

/// R20: every open ticket of the views whose response target has passed unanswered
/// gets `ticket.sla_check` (as the vendor side), which records `SlaBreached` and an
/// `sla_breach` escalation once. The command id names the ticket and the version the
/// view saw, so a check is idempotent and a later state gets a fresh one. Returns how
/// many breaches were recorded.
pub async fn sla_sweep<L: EventLog, S: ViewStore>(
    views: &S,
    service: &Arc<CommandService<L>>,
    now: Timestamp,
) -> Result<usize, ServiceError> {
    let mut recorded = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = views.scan(b"t/", after.as_deref(), 1024)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (_, v) in &page {
            let view: TicketView = decode(v)?;
            let sla = view.sla_at(now);
            let t = &view.ticket;
            if t.status == behalf_domain::TicketStatus::Closed
                || !sla.breached
                || sla.breach_recorded
                || sla.responded_at.is_some()
            {
                continue;
            }
            let cmd = behalf_domain::Command::TicketSlaCheck(behalf_domain::command::TicketRef {
                ticket_id: t.ticket_id.clone(),
            });
            let req = Request {
                command_id: Some(behalf_domain::CommandId::new(format!("sla:{}:v{}", t.ticket_id, t.version))),
                expected_version: None,
                command: cmd,
            };
            if let Outcome::Accepted(a) = service.execute(Principal::Vendor, req).await? {
                if !a.events.is_empty() && !a.duplicate {
                    recorded += 1;
                }
            }
        }
    }
    Ok(recorded)
}
