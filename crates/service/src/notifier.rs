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
pub async fn follow<L: EventLog, Q: QueueSink + ?Sized>(log: &L, queues: &Q, batch: usize) -> Result<(), LogError> {
    crate::runner::follow(log, queues.checkpoint()?, batch, |c| forward_batch(queues, c), |_| {}).await
}
