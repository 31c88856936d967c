//! The workers a role runs beside its endpoints, on the service's one worker runner
//! (`behalf_service::runner::Workers`: restarts with backoff, stops on a signal):
//! the followers (the projection runner and the notifier's forwarding over one
//! subscription), and the SLA sweep, the one producer.

use std::sync::Arc;

use behalf_log::queues::QueueSink;
use behalf_log::views::ViewStore;
use behalf_log::EventLog;
use behalf_service::clock::Clock;
use behalf_service::commands::CommandService;
use behalf_service::runner::{Backoff, Failure, Workers};
use behalf_service::seal::{erased_keys, Keyring};
use tokio::sync::watch;

/// How long a role waits for its workers when it stops.
pub const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// The projection runner and the notifier's forwarding as one worker over one
/// subscription: each commit is read and decoded once for both, and each applies only
/// what is past its own checkpoint (read from its store at every run, since each
/// store commits its checkpoint with what it covers). Without queues (a projector)
/// only the views are kept. The receiver follows the views' checkpoint (for
/// `min_position` waits).
pub fn spawn_followers<L: EventLog, Q: QueueSink + ?Sized>(
    workers: &mut Workers,
    log: L,
    views: Arc<dyn ViewStore>,
    queues: Option<Arc<Q>>,
    keyring: Option<Arc<Keyring>>,
) -> anyhow::Result<watch::Receiver<u64>> {
    let (tx, rx) = watch::channel(views.checkpoint()?);
    let tx = Arc::new(tx);
    workers.spawn("followers", Backoff::FOLLOWER, move || {
        let (log, views, queues, tx) = (log.clone(), Arc::clone(&views), queues.clone(), Arc::clone(&tx));
        let keyring = keyring.clone();
        async move { follow(&log, views.as_ref(), queues.as_deref(), keyring.as_deref(), &tx).await }
    });
    Ok(rx)
}

/// One run of the followers, from the stores' checkpoints.
async fn follow<L: EventLog, Q: QueueSink + ?Sized>(
    log: &L,
    views: &dyn ViewStore,
    queues: Option<&Q>,
    keyring: Option<&Keyring>,
    tx: &watch::Sender<u64>,
) -> Result<(), Failure> {
    let head = log.head().await?;
    let mut views_at = views.checkpoint()?;
    // After a log was cut back to its last good commit, the views may hold what the
    // log no longer does: rebuild them; the notifier goes on from the new head.
    if views_at > head {
        tracing::warn!(views_at, head, "the views are ahead of the log; rebuilding them");
        views.clear()?;
        views_at = 0;
    }
    tx.send_replace(views_at);
    let mut queues_at = match queues {
        Some(q) => q.checkpoint()?.min(head),
        None => u64::MAX,
    };
    behalf_service::runner::follow(
        log,
        views_at.min(queues_at),
        1024,
        |commits| {
            let past = |cp: u64| commits.partition_point(|c| c.position <= cp);
            let (v, q) = (past(views_at), past(queues_at));
            if v < commits.len() {
                // An erasure made elsewhere: its keys are forgotten here before any
                // view shows it (so a read that sees it sees the fields erased).
                if let Some(keyring) = keyring {
                    commits[v..].iter().flat_map(|c| &c.events).for_each(|e| keyring.forget(erased_keys(e)));
                }
                views_at = behalf_service::views::apply_batch(views, &commits[v..])?;
            }
            if let Some(queues) = queues.filter(|_| q < commits.len()) {
                queues_at = behalf_service::notifier::forward_batch(queues, &commits[q..])?;
            }
            tx.send_replace(views_at);
            Ok(views_at.min(queues_at))
        },
        |_| {},
    )
    .await?;
    Ok(())
}

/// The notifier's forwarding alone (the embedded `behalf notify`), from the queues'
/// checkpoint.
pub fn spawn_forwarding<L: EventLog, Q: QueueSink + ?Sized>(workers: &mut Workers, log: L, queues: Arc<Q>) {
    workers.spawn("notifier", Backoff::FOLLOWER, move || {
        let (log, queues) = (log.clone(), Arc::clone(&queues));
        async move { Ok(behalf_service::notifier::follow(&log, queues.as_ref(), 1024).await?) }
    });
}

/// The webhook sender (`behalf_service::webhooks`): copies subscribed queues' messages
/// to their subscriptions and delivers them, for as long as the process runs.
pub fn spawn_webhooks<L: EventLog>(workers: &mut Workers, sender: Arc<behalf_service::webhooks::Sender<L>>) {
    workers.spawn("webhooks", Backoff::default(), move || {
        let sender = Arc::clone(&sender);
        async move {
            sender.run().await;
            Ok(())
        }
    });
}

/// How often the notifier looks for missed response targets (R20).
pub const SLA_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Every [`SLA_SWEEP_EVERY`], records missed response targets (R20) from the views
/// and the clock — when this process has the sweep's turn on `queues` (one sweeper at
/// a time among the servers sharing them). A failed sweep is logged and tried again
/// at the next tick.
pub fn spawn_sla_sweep<L: EventLog, Q: QueueSink + ?Sized>(
    workers: &mut Workers,
    views: Arc<dyn ViewStore>,
    service: Arc<CommandService<L>>,
    clock: Arc<dyn Clock>,
    queues: Arc<Q>,
    retention: Option<std::time::Duration>,
) {
    let holder = format!("{}-{}", std::process::id(), clock.now().millis());
    let hold_ms = 3 * SLA_SWEEP_EVERY.as_millis() as i64;
    workers.spawn("sla sweep", Backoff::default(), move || {
        let (views, service, clock, queues, holder) =
            (Arc::clone(&views), Arc::clone(&service), Arc::clone(&clock), Arc::clone(&queues), holder.clone());
        async move {
            let mut tick = tokio::time::interval(SLA_SWEEP_EVERY);
            loop {
                tick.tick().await;
                // The queues' calls block (a bucket on NATS): off the async threads.
                let (q, h, now) = (Arc::clone(&queues), holder.clone(), clock.now().millis());
                match tokio::task::spawn_blocking(move || q.take_sweep_turn(&h, now, hold_ms)).await {
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
                let Some(after) = retention else { continue };
                match behalf_service::sla_sweep::retention_sweep(views.as_ref(), &service, clock.now(), after).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(redacted = n, "redacted closed tickets past their retention"),
                    Err(e) => tracing::warn!(error = %e, "the retention sweep failed; trying again next time"),
                }
            }
        }
    });
}
