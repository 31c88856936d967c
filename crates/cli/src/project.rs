//! `behalf project`: the projection runner as its own run over a data directory. On
//! the embedded engine a store is held by one process at a time, so this runs while no
//! server holds the directory (`behalf serve` runs the same runner inside).

use std::path::PathBuf;
use std::time::Instant;

use crate::settings::Settings;
use behalf_log::EventLog;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args, Debug)]
pub struct ProjectArgs {
    /// The role's settings; with --nats, a projector worker on NATS JetStream: follow
    /// the log into the views of --data-dir and answer `behalf.query.<name>` (and, with
    /// --listen, the query endpoints over HTTP) until stopped
    #[command(flatten)]
    pub settings: crate::settings::SettingsArgs,
    /// Drop the views and replay the log from position 1
    #[arg(long, conflicts_with = "nats.url")]
    rebuild: bool,
    /// Build the views here instead of `<data-dir>/views` (with --rebuild)
    #[arg(long, requires = "rebuild")]
    into: Option<PathBuf>,
}

pub async fn run(a: ProjectArgs, s: &Settings) -> anyhow::Result<()> {
    if s.nats.url.is_some() {
        return crate::roles::project(s).await;
    }
    let dir = s.data();
    let log = crate::stores::open_existing_log(&dir)?;
    let target = a.into.clone().unwrap_or_else(|| dir.views());
    let views = crate::stores::open_views_at(&target)?;
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
