//! The notifier: follows the log and forwards escalations, attention-needed notices and
//! customers' requests routed to a partner into their queues, exactly once per source
//! event (R21, R23). (Missed response targets are recorded by the SLA sweep, a
//! producer: `crate::sla_sweep`.)

use behalf_domain::notify::{priority_key, route};
use behalf_log::queues::{Enqueue, QueueSink};
use behalf_log::{Commit, EventLog, LogError};

/// Forwards a batch of commits and commits the messages with the checkpoint.
pub fn forward_batch<Q: QueueSink + ?Sized>(queues: &Q, commits: &[Commit]) -> Result<u64, LogError> {
    let Some(last) = commits.last() else { return queues.checkpoint() };
    // Events by reference: most are forwarded nowhere, and an envelope copies the event.
    let mut messages = Vec::new();
    for c in commits {
        for (index, event) in c.events.iter().enumerate() {
            if let Some(body) = route(event) {
                messages.push(Enqueue {
                    priority: priority_key(body.severity, body.csp_priority, c.position, index as u32),
                    source_event_id: c.event_id(index),
                    position: c.position,
                    body,
                });
            }
        }
    }
    queues.enqueue(messages, last.position)?;
    Ok(last.position)
}

/// Follows the log from the queues' checkpoint.
pub async fn follow<L: EventLog, Q: QueueSink + ?Sized>(log: &L, queues: &Q, batch: usize) -> Result<(), LogError> {
    crate::runner::follow(log, queues.checkpoint()?, batch, |c| forward_batch(queues, c), |_| {}).await
}
