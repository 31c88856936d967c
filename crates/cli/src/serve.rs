//! `behalf serve`: the embedded engine, the command service and the HTTP API in one
//! process, until SIGTERM or Ctrl-C; then stop accepting, finish what is in flight,
//! and exit 0. Every acknowledged command was durable before it was acknowledged.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use behalf_http::{App, Limits, ReadSide};
use behalf_log::queues::{QueueSink, QueueStore};
use behalf_log::tokens::TokenStore;
use behalf_log::EventLog;
use behalf_nats::{NatsLog, NatsOptions, NatsTokens};
use behalf_service::clock::{Clock, SystemClock};
use behalf_service::commands::CommandService;
use behalf_service::tokens::Tokens;
use behalf_sled_store::{OpenOptions, SledLog, SledQueues, SledTokens, SledViews};
use tokio::net::TcpListener;

use crate::settings::Settings;

/// Opens the stores of a data directory.
pub fn open_stores(data_dir: &Path) -> anyhow::Result<(SledLog, Tokens<SledTokens>)> {
    open_stores_with(data_dir, false)
}

/// As [`open_stores`]; with `stop_at_last_good`, a broken log is cut back to its last
/// good commit (the rest is kept in a quarantine tree) instead of refusing to start.
pub fn open_stores_with(data_dir: &Path, stop_at_last_good: bool) -> anyhow::Result<(SledLog, Tokens<SledTokens>)> {
    ensure_dir(data_dir)?;
    let in_use = || in_use(data_dir);
    let (log, report) = match SledLog::open(data_dir.join("log"), OpenOptions { stop_at_last_good }) {
        Ok(opened) => opened,
        Err(behalf_log::LogError::Corrupt { position, what }) => anyhow::bail!(
            "the event log in {} is broken at position {position}: {what}. `behalf audit verify` shows the same; \
             `behalf serve --stop-at-last-good` starts from commit {} and keeps the rest in quarantine",
            data_dir.display(),
            position.saturating_sub(1)
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the event log in {}; {}", data_dir.display(), in_use()))
        }
    };
    if let Some((position, what)) = &report.truncated {
        println!("the event log was broken at position {position} ({what}); stopped at the last good commit {}; the rest is kept in quarantine", report.head);
        tracing::warn!(position, %what, head = report.head, "stopped at the last good commit");
    }
    tracing::info!(head = report.head, "event log open");
    Ok((log, open_tokens(data_dir)?))
}

/// Creates the data directory if it is not there.
/// Makes the data directory owner-only (0700) — it holds tickets, contacts and token
/// hashes. A directory found open to others is closed, with a warning.
pub fn ensure_dir(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    }
    let mode = std::fs::metadata(data_dir)
        .with_context(|| format!("cannot read the data directory {}", data_dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %data_dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory was open to other users; making it owner-only (0700)"
        );
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} owner-only", data_dir.display()))?;
    }
    Ok(())
}

/// The token store shared through the NATS cluster (the data directory receives the
/// admin token file when this process makes it).
pub async fn open_nats_tokens(url: &str, replicas: usize, data_dir: &Path) -> anyhow::Result<Tokens<NatsTokens>> {
    ensure_dir(data_dir)?;
    let store = NatsTokens::open(url, replicas)
        .await
        .with_context(|| format!("cannot open the token store on NATS at {url}"))?;
    Ok(Tokens::new(store))
}

fn in_use(data_dir: &Path) -> String {
    format!("is another behalf process using {}?", data_dir.display())
}

/// Opens the token store of a data directory.
pub fn open_tokens(data_dir: &Path) -> anyhow::Result<Tokens<SledTokens>> {
    ensure_dir(data_dir)?;
    let tokens = SledTokens::open(data_dir.join("tokens"))
        .with_context(|| format!("cannot open the token store; {}", in_use(data_dir)))?;
    Ok(Tokens::new(tokens))
}

/// Connects to the JetStream engine (creating its stream and bucket if needed).
/// `index`: whether this process runs the command indexer (the all-in-one server and
/// the notifier do; command services and projectors leave it to them).
pub async fn open_nats(
    url: &str,
    replicas: usize,
    duplicate_window: std::time::Duration,
    index: bool,
) -> anyhow::Result<NatsLog> {
    let options = NatsOptions::new(url).replicas(replicas).duplicate_window(duplicate_window);
    let log = NatsLog::open(NatsOptions { run_indexer: index, ..options })
        .await
        .with_context(|| format!("cannot open the event log on NATS at {url}"))?;
    tracing::info!(head = behalf_log::EventLog::head(&log).await?, "event log open on NATS JetStream");
    Ok(log)
}

/// Opens the views store of a data directory.
pub fn open_views(path: &Path) -> anyhow::Result<SledViews> {
    SledViews::open(path).with_context(|| format!("cannot open the views in {}", path.display()))
}

/// The projection runner and the notifier's forwarding in one task over one
/// subscription: each commit is read and decoded once for both, and each applies only
/// what is past its own checkpoint. The receiver follows the views' checkpoint (for
/// `min_position` waits).
pub fn spawn_followers<L: EventLog + Clone, Q: QueueSink>(
    log: L,
    views: Arc<SledViews>,
    queues: Option<Arc<Q>>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, tokio::sync::watch::Receiver<u64>)> {
    use behalf_log::views::ViewStore as _;
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

/// Opens the queues of a data directory.
pub fn open_queues(path: &Path) -> anyhow::Result<SledQueues> {
    SledQueues::open(path).with_context(|| format!("cannot open the queues in {}", path.display()))
}

/// How often the notifier looks for missed response targets (R20).
pub const SLA_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The notifier as its own role: forwarding from the log into the queues, and the SLA
/// sweep.
pub fn spawn_notifier<L: EventLog + Clone>(
    log: L,
    queues: Arc<SledQueues>,
    views: Arc<SledViews>,
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
pub fn spawn_sla_sweep<L: EventLog, Q: QueueSink>(
    views: Arc<SledViews>,
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

/// A server that is up: its address and where the admin token went, if it was made.
pub struct Started {
    pub addr: SocketAddr,
    pub admin_token: Option<PathBuf>,
}

/// Binds and starts serving; `serving` completes when the server has shut down.
pub async fn start(
    s: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Started, Serving)> {
    match &s.nats {
        Some(url) => {
            let log = open_nats(url, s.nats_replicas, s.nats_duplicate_window, true).await?;
            let tokens = open_nats_tokens(url, s.nats_replicas, &s.data_dir).await?;
            // One set of queues per cluster, whichever server forwards or leases.
            let queues = behalf_nats::NatsQueues::open(url, s.nats_replicas)
                .await
                .with_context(|| format!("cannot open the queues on NATS at {url}"))?;
            start_on(log, tokens, Arc::new(queues), s, shutdown).await
        }
        None => {
            let (log, tokens) = open_stores_with(&s.data_dir, s.stop_at_last_good)?;
            let queues = Arc::new(open_queues(&s.data_dir.join("queues"))?);
            start_on(log, tokens, queues, s, shutdown).await
        }
    }
}

/// What runs until the server has shut down.
pub type Serving = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Serves over an opened log, token store and queues: the projection and the notifier
/// in this process, the views in the data directory.
async fn start_on<L: EventLog + Clone, T: TokenStore, Q: QueueStore>(
    log: L,
    tokens: Tokens<T>,
    queues: Arc<Q>,
    s: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Started, Serving)> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let admin_token = tokens.bootstrap_admin(&s.data_dir, clock.as_ref())?;
    let views = Arc::new(open_views(&s.data_dir.join("views"))?);
    let (followers, position) = spawn_followers(log.clone(), Arc::clone(&views), Some(Arc::clone(&queues)))?;
    let service = Arc::new(CommandService::new(log, Arc::clone(&clock)));
    let sweep = spawn_sla_sweep(Arc::clone(&views), Arc::clone(&service), Arc::clone(&clock), Arc::clone(&queues));
    let limits = Limits { max_body_bytes: s.max_body_bytes, max_in_flight: s.max_in_flight };
    let app = Arc::new(
        App::new(service, Arc::new(tokens), clock, limits).with_read(ReadSide { views, position }).with_queues(queues),
    );
    let listener = TcpListener::bind(s.listen).await.with_context(|| format!("cannot listen on {}", s.listen))?;
    let addr = listener.local_addr()?;
    let serving = async move {
        let served =
            behalf_http::serve(listener, behalf_http::router(app), shutdown).await.context("the HTTP server failed");
        for task in [followers, sweep] {
            task.abort();
            let _ = task.await;
        }
        served?;
        tracing::info!("stopped accepting; in-flight commands finished");
        Ok(())
    };
    Ok((Started { addr, admin_token }, Box::pin(serving)))
}

pub async fn run(s: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (started, serving) = start(&s, shutdown).await?;
    if let Some(path) = &started.admin_token {
        println!("admin token written to {} (readable by its owner only)", path.display());
    }
    println!("listening on {}", started.addr);
    tracing::info!(addr = %started.addr, data_dir = %s.data_dir.display(), "serving");
    serving.await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// A server on a fresh temporary store in this process: the demo's and the
/// benchmarks'.
pub struct Temporary {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub admin_token_path: PathBuf,
    pub admin: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Temporary {
    pub async fn start(max_in_flight: usize) -> anyhow::Result<Temporary> {
        let dir = tempfile::tempdir()?;
        let settings = Settings {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            log_format: crate::settings::LogFormat::Human,
            max_body_bytes: 256 * 1024,
            max_in_flight,
            stop_at_last_good: false,
            nats: None,
            nats_replicas: 1,
            nats_duplicate_window: behalf_nats::DUPLICATE_WINDOW,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, serving) = start(&settings, async move {
            let _ = stopped.await;
        })
        .await?;
        let server = tokio::spawn(serving);
        let admin_token_path = started.admin_token.context("a fresh store creates an admin token")?;
        let admin = std::fs::read_to_string(&admin_token_path)?.trim().to_owned();
        Ok(Temporary { dir, addr: started.addr, admin_token_path, admin, stop, server })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts the server down gracefully; the store stays until the directory is dropped.
    pub async fn stop(self) -> anyhow::Result<tempfile::TempDir> {
        let _ = self.stop.send(());
        self.server.await??;
        Ok(self.dir)
    }
}
