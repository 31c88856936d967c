//! The workers a role runs beside its endpoints: the projection runner and the
//! notifier's forwarding (one subscription for both), and the SLA sweep.

use std::sync::Arc;

use behalf_log::queues::QueueSink;
use behalf_log::views::ViewStore;
use behalf_log::EventLog;
use behalf_service::clock::Clock;
use behalf_service::commands::CommandService;

/// The projection runner and the notifier's forwarding in one task over one
/// subscription: each commit is read and decoded once for both, and each applies only
/// what is past its own checkpoint. The receiver follows the views' checkpoint (for
/// `min_position` waits).
pub fn spawn_followers<L: EventLog, Q: QueueSink + ?Sized>(
    log: L,
    views: Arc<dyn ViewStore>,
    queues: Option<Arc<Q>>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, tokio::sync::watch::Receiver<u64>)> {
    // Without queues (a projector), the notifier's checkpoint stands at the end.
    let views_at = views.checkpoint()?;
    let queues_at = match &queues {
        Some(q) => q.checkpoint()?,
        None => u64::MAX,
    };
    let (mut views_at, mut queues_at) = (views_at, queues_at);
    let (tx, rx) = tokio::sync::watch::channel(views_at);
    let task = tokio::spawn(async move {
        let head = loop {
            match behalf_log::EventLog::head(&log).await {
                Ok(head) => break head,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log's head yet; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        // After a log was cut back to its last good commit, the views may hold what the
        // log no longer does: rebuild them; the notifier goes on from the new head.
        if views_at > head {
            tracing::warn!(views_at, head, "the views are ahead of the log; rebuilding them");
            if let Err(e) = views.clear() {
                tracing::error!(error = %e, "cannot clear the views");
                return;
            }
            views_at = 0;
            tx.send_replace(0);
        }
        queues_at = queues_at.min(head);
        // A failure to read (a NATS node lost) or to forward starts the follower again
        // from the checkpoints, which were committed with what they cover.
        loop {
            let r = behalf_service::runner::follow(
                &log,
                views_at.min(queues_at),
                1024,
                |commits| {
                    let past = |cp: u64| commits.partition_point(|c| c.position <= cp);
                    let (v, q) = (past(views_at), past(queues_at));
                    if v < commits.len() {
                        views_at = behalf_service::views::apply_batch(views.as_ref(), &commits[v..])?;
                    }
                    if let Some(queues) = queues.as_ref().filter(|_| q < commits.len()) {
                        queues_at = behalf_service::notifier::forward_batch(queues.as_ref(), &commits[q..])?;
                    }
                    tx.send_replace(views_at);
                    Ok(views_at.min(queues_at))
                },
                |_| {},
            )
            .await;
            match r {
                Ok(()) => return,
                Err(e @ (behalf_log::LogError::Corrupt { .. } | behalf_log::LogError::Codec(_))) => {
                    tracing::error!(error = %e, "the projection runner and notifier stopped");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the projection runner and notifier failed; following again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok((task, rx))
}

/// How often the notifier looks for missed response targets (R20).
pub const SLA_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The notifier as its own role: forwarding from the log into the queues, and the SLA
/// sweep.
pub fn spawn_notifier<L: EventLog, Q: QueueSink + ?Sized>(
    log: L,
    queues: Arc<Q>,
    views: Arc<dyn ViewStore>,
    service: Arc<CommandService<L>>,
    clock: Arc<dyn Clock>,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let forwarding = Arc::clone(&queues);
    let forward = tokio::spawn(async move {
        if let Err(e) = behalf_service::notifier::follow(&log, forwarding.as_ref(), 1024).await {
            tracing::error!(error = %e, "the notifier stopped forwarding");
        }
    });
    let sweep = spawn_sla_sweep(views, service, clock, Arc::clone(&queues));
    (forward, sweep)
}

/// Every [`SLA_SWEEP_EVERY`], records missed response targets (R20) from the views
/// and the clock — when this process has the sweep's turn on `queues` (one sweeper at
/// a time among the servers sharing them).
pub fn spawn_sla_sweep<L: EventLog, Q: QueueSink + ?Sized>(
    views: Arc<dyn ViewStore>,
    service: Arc<CommandService<L>>,
    clock: Arc<dyn Clock>,
    queues: Arc<Q>,
) -> tokio::task::JoinHandle<()> {
    let holder = format!("{}-{}", std::process::id(), clock.now().millis());
    let hold_ms = 3 * SLA_SWEEP_EVERY.as_millis() as i64;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SLA_SWEEP_EVERY);
        loop {
            tick.tick().await;
            let (q, h, now) = (Arc::clone(&queues), holder.clone(), clock.now().millis());
            let turn = tokio::task::spawn_blocking(move || q.take_sweep_turn(&h, now, hold_ms)).await;
            match turn {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot take the SLA sweep's turn; trying again next time");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the SLA sweep's turn failed; trying again next time");
                    continue;
                }
            }
            match behalf_service::sla_sweep::sla_sweep(views.as_ref(), &service, clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(breaches = n, "recorded missed response targets"),
                Err(e) => tracing::warn!(error = %e, "SLA sweep failed; trying again next time"),
            }
        }
    })
}

