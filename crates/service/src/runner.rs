//! The one loop every follower of the log shares (projections, the notifier): from a
//! checkpoint, catch up then follow live, handing batches of commits to `apply`, which
//! commits its own writes with the new checkpoint and returns it.

use behalf_log::{Commit, EventLog, LogError, Subscription};

/// Runs until the log closes or `apply` fails. Batches hold up to `batch` commits:
/// the first waits for the log; the rest are only those already durable.
pub async fn follow<L: EventLog>(
    log: &L,
    checkpoint: u64,
    batch: usize,
    mut apply: impl FnMut(&[Commit]) -> Result<u64, LogError>,
    mut progress: impl FnMut(u64),
) -> Result<(), LogError> {
    let mut sub = log.subscribe(checkpoint);
    loop {
        let first = sub.next().await?;
        let first_position = first.position;
        let mut commits = vec![first];
        // How far the log is, to batch what is already there; if the log cannot say
        // right now (a cluster moving a leader), this batch is just the first commit.
        let head = match log.head().await {
            Ok(head) => head,
            Err(e) => {
                tracing::debug!(error = %e, "the log's head is unknown for now");
                first_position
            }
        };
        while commits.len() < batch && commits.last().is_some_and(|c| c.position < head) {
            commits.push(sub.next().await?);
        }
        progress(apply(&commits)?);
    }
}
