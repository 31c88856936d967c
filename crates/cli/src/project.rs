//! `behalf project`: the projection runner as its own run over a data directory. On
//! the embedded engine a store is held by one process at a time, so this runs while no
//! server holds the directory (`behalf serve` runs the same runner inside).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use behalf_log::EventLog;
use behalf_sled_store::{OpenOptions, SledLog};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args, Debug)]
pub struct ProjectArgs {
    /// The data directory whose log is read [default: ./behalf-data]
    #[arg(long, default_value = crate::settings::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Drop the views and replay the log from position 1
    #[arg(long)]
    rebuild: bool,
    /// Build the views here instead of `<data-dir>/views` (with --rebuild)
    #[arg(long, requires = "rebuild")]
    into: Option<PathBuf>,
    /// Run as a projector worker on NATS JetStream at these URLs: follow the log into
    /// the views of --data-dir and answer `behalf.query.<name>` until stopped
    #[arg(long, value_name = "URL", conflicts_with_all = ["rebuild", "into"])]
    nats: Option<String>,
    /// With --nats: copies of the streams when first created (3 on a cluster)
    #[arg(long, default_value_t = 1, requires = "nats", value_parser = clap::value_parser!(u64).range(1..=5))]
    nats_replicas: u64,
    /// With --nats: also answer the query endpoints over HTTP on HOST:PORT
    #[arg(long, requires = "nats")]
    listen: Option<std::net::SocketAddr>,
}

pub async fn run(a: ProjectArgs) -> anyhow::Result<()> {
    if let Some(nats) = a.nats {
        let args = crate::roles::NatsArgs::from_flags(nats, a.nats_replicas, a.data_dir, a.listen);
        return crate::roles::project(args).await;
    }
    let (log, _) = SledLog::open(a.data_dir.join("log"), OpenOptions::default())
        .with_context(|| format!("cannot open the log in {} (is a server running on it?)", a.data_dir.display()))?;
    let target = a.into.clone().unwrap_or_else(|| a.data_dir.join("views"));
    let views = crate::stores::open_views(&target)?;
    let head = log.head().await?;
    let bar = ProgressBar::new(head);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} commits ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let reached = if a.rebuild {
        behalf_service::views::rebuild(&log, &views, |p, _| bar.set_position(p)).await?
    } else {
        behalf_service::views::catch_up(&log, &views, |p, _| bar.set_position(p)).await?
    };
    bar.finish_and_clear();
    let what = if a.rebuild { "rebuilt" } else { "caught up" };
    println!("views in {} {what} to position {reached} in {:.1}s", target.display(), start.elapsed().as_secs_f64());
    Ok(())
}
