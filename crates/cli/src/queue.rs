//! `behalf queue tail|ack` on a data directory no server holds, or on the cluster's
//! queues with `--nats` (while servers run); and `behalf notify`. (`behalf serve` runs
//! the notifier inside; consume its queues over HTTP then.)

use std::sync::Arc;

use anyhow::bail;
use behalf_log::queues::{QueueSink as _, QueueStore};
use behalf_log::EventLog;
use behalf_service::clock::{Clock, SystemClock};
use behalf_service::commands::CommandService;
use behalf_sled_store::DataDir;
use clap::Subcommand;

use crate::settings::Source;

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Show a queue's messages in priority order, without leasing them.
    Tail {
        /// e.g. commercial.azure, usgov.office365, partner.<partner id>
        queue: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        at: Source,
    },
    /// Acknowledge (remove) a message.
    Ack {
        queue: String,
        id: String,
        #[command(flatten)]
        at: Source,
    },
}

fn on_queues<T>(at: &Source, f: impl FnOnce(&dyn QueueStore) -> anyhow::Result<T>) -> anyhow::Result<T> {
    match at.nats_endpoint()? {
        Some(to) => {
            // The NATS store runs its requests on a multi-threaded runtime.
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let q = rt.block_on(behalf_nats::NatsQueues::open(&to, 1))?;
            rt.block_on(async { tokio::task::block_in_place(|| f(&q)) })
        }
        None => f(&crate::stores::open_queues(&DataDir::new(&at.data_dir))?),
    }
}

pub fn run(cmd: QueueCmd) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::Tail { queue, limit, at } => on_queues(&at, |q| {
            for m in q.peek(&queue, limit)? {
                println!("{}", serde_json::to_string(&m)?);
            }
            Ok(())
        }),
        QueueCmd::Ack { queue, id, at } => on_queues(&at, |q| {
            if !q.ack(&queue, &id)? {
                bail!("no message {id} in {queue}");
            }
            println!("acked {id}");
            Ok(())
        }),
    }
}

#[derive(clap::Args, Debug)]
pub struct NotifyArgs {
    /// The role's settings; with --nats, forward into the cluster's queues (bucket
    /// BEHALF_QUEUE; the views for the SLA sweep stay in --data-dir) until stopped
    #[command(flatten)]
    pub settings: crate::settings::SettingsArgs,
    /// Forward what the log holds, sweep the SLA targets once, and exit
    #[arg(long, conflicts_with = "nats.url")]
    once: bool,
}

/// The notifier as its own process.
pub async fn notify(a: NotifyArgs, s: &crate::settings::Settings) -> anyhow::Result<()> {
    if s.nats.url.is_some() {
        return crate::roles::notify(s).await;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = s.data();
    let (log, _tokens) = crate::stores::open_stores(&dir, false)?;
    let queues = Arc::new(crate::stores::open_queues(&dir)?);
    let views = Arc::new(crate::stores::open_views(&dir)?);
    if a.once {
        let head = log.head().await?;
        let at = behalf_service::runner::catch_up(&log, queues.checkpoint()?, head, |page| {
            behalf_service::notifier::forward_batch(queues.as_ref(), page).map(drop)
        })
        .await?;
        queues.sync()?;
        let service = Arc::new(CommandService::new(log, Arc::clone(&clock)));
        let n = behalf_service::sla_sweep::sla_sweep(views.as_ref(), &service, clock.now()).await?;
        println!("forwarded up to position {at}; recorded {n} missed response target(s)");
        return Ok(());
    }
    let stop = crate::listen::shutdown_signal();
    let service = Arc::new(CommandService::new(log.clone(), Arc::clone(&clock)));
    let mut workers = behalf_service::runner::Workers::default();
    crate::workers::spawn_forwarding(&mut workers, log, Arc::clone(&queues));
    crate::workers::spawn_sla_sweep(&mut workers, views, service, clock, queues, None);
    stop.await;
    workers.stop(crate::workers::STOP_DEADLINE).await;
    Ok(())
}
