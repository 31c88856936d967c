//! `behalf serve`: every role in one process — the HTTP API, the command service, the
//! GDAP projection, the views and the notifier — over the embedded engine (the data
//! directory), or with `--nats` over NATS JetStream (log, tokens and queues in the
//! cluster; views and the GDAP snapshot in the data directory). It runs until SIGTERM
//! or Ctrl-C; then it stops accepting, finishes what is in flight, and exits 0. Every
//! acknowledged command was durable before it was acknowledged.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use behalf_http::{App, ReadSide};
use behalf_log::queues::QueueStore;
use behalf_log::EventLog;
use behalf_service::clock::{Clock, SystemClock};
use behalf_service::commands::CommandService;
use behalf_service::gdap::GdapProjection;
use behalf_service::runner::Workers;
use behalf_service::tokens::Tokens;
use behalf_sled_store::DataDir;

use crate::listen::Http;
use crate::settings::{Settings, DEFAULT_LISTEN};
use crate::stores::{broken, gdap_projection, open_nats, open_nats_tokens, open_queues, open_stores, open_views};
use crate::workers::{spawn_followers, spawn_sla_sweep, spawn_webhooks, STOP_DEADLINE};

/// A server that is up: its address and where the admin token went, if it was made.
pub struct Started {
    pub addr: SocketAddr,
    pub admin_token: Option<PathBuf>,
}

/// Binds and starts serving; `serving` completes when the server has shut down. With
/// `stop_at_last_good` (a deliberate recovery, a flag only), a broken embedded log is
/// cut back to its last good commit instead of refusing to start.
pub async fn start(
    s: &Settings,
    stop_at_last_good: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Started, Serving)> {
    let dir = s.data();
    let replicas = s.nats.replicas;
    match &s.nats_endpoint()? {
        Some(to) => {
            let log = open_nats(to, replicas, s.nats.duplicate_window, true).await?;
            let tokens = open_nats_tokens(to, replicas, &dir).await?;
            // One set of queues per cluster, whichever server forwards or leases.
            let queues = behalf_nats::NatsQueues::open(to, replicas)
                .await
                .with_context(|| format!("cannot open the queues on NATS at {}", to.url))?;
            let webhooks = Arc::new(
                behalf_nats::NatsWebhooks::open(to, replicas)
                    .await
                    .with_context(|| format!("cannot open the webhook store on NATS at {}", to.url))?,
            );
            let keys = crate::stores::open_key_store(Some(to), replicas, &dir).await?;
            start_on(log, Stores { tokens, queues: Arc::new(queues), webhooks, keys }, s, &dir, shutdown, None).await
        }
        None => {
            let (log, tokens) = open_stores(&dir, stop_at_last_good)?;
            let queues = Arc::new(open_queues(&dir)?);
            let webhooks = Arc::new(
                dir.open_webhooks()
                    .with_context(|| format!("cannot open the webhook store in {}", dir.webhooks().display()))?,
            );
            let log_for_walk = log.clone();
            let walk: ChainWalk = Box::new(move |gdap| Box::pin(walk_after_ready(log_for_walk, gdap)));
            let keys = crate::stores::open_key_store(None, replicas, &dir).await?;
            start_on(log, Stores { tokens, queues, webhooks, keys }, s, &dir, shutdown, Some(walk)).await
        }
    }
}

/// What runs until the server has shut down.
pub type Serving = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// The full walk of the hash chain a server runs once it is ready; it completes only
/// if it finds a break (the server then stops, and the log refuses to open until it is
/// cut back).
type ChainWalk =
    Box<dyn FnOnce(Arc<GdapProjection>) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Error> + Send>> + Send>;

/// Waits until the GDAP projection has caught up (the server is ready), then walks the
/// whole chain of the embedded log with progress in the log every 10 s. Opening walked
/// only what followed the last verified checkpoint; this covers the rest.
async fn walk_after_ready(log: behalf_sled_store::SledLog, gdap: Arc<GdapProjection>) -> anyhow::Error {
    while !gdap.ready(&log).await {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let started = std::time::Instant::now();
    let mut said = std::time::Instant::now();
    tracing::info!("walking the whole hash chain in the background");
    // The walk runs on a blocking thread: when this future is dropped (the server
    // stops) the guard tells it to end where it is (it keeps what it verified).
    struct EndOnDrop(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for EndOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let end = EndOnDrop(Arc::default());
    let ended = Arc::clone(&end.0);
    let walked = log
        .verify_with(move |position, head| {
            if said.elapsed() >= std::time::Duration::from_secs(10) {
                said = std::time::Instant::now();
                tracing::info!(position, head, "walking the hash chain: {position} of {head}");
            }
            !ended.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
    drop(end);
    match walked {
        Ok(report) => match report.first_bad {
            None => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(
                    verified = report.verified,
                    "hash chain verified through {} in {secs:.1} s",
                    report.verified
                );
                std::future::pending().await
            }
            Some((position, what)) => broken(log.path().parent().unwrap_or(log.path()), position, &what),
        },
        Err(e) => {
            tracing::warn!(error = %e, "the background walk of the hash chain could not finish");
            std::future::pending().await
        }
    }
}

/// The stores beside the log a server keeps: on the embedded engine in the data
/// directory, on NATS in the cluster's buckets.
struct Stores {
    tokens: Tokens,
    queues: Arc<dyn QueueStore>,
    webhooks: Arc<dyn behalf_log::webhooks::WebhookStore>,
    /// The key store (and where it is, for messages).
    keys: (Arc<dyn behalf_log::keys::KeyStore>, String),
}

/// Serves over an opened log, token store and queues: the projection and the notifier
/// in this process, the views in the data directory.
async fn start_on<L: EventLog>(
    log: L,
    stores: Stores,
    s: &Settings,
    dir: &DataDir,
    shutdown: impl Future<Output = ()> + Send + 'static,
    walk: Option<ChainWalk>,
) -> anyhow::Result<(Started, Serving)> {
    let Stores { tokens, queues, webhooks, keys } = stores;
    let keyring = crate::stores::open_keyring(keys.0, &keys.1, &log).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let admin_token = tokens.bootstrap_admin(&dir.admin_token(), clock.as_ref())?;
    let views: Arc<dyn behalf_log::views::ViewStore> = Arc::new(open_views(dir)?);
    let mut workers = Workers::default();
    let position = spawn_followers(
        &mut workers,
        log.clone(),
        Arc::clone(&views),
        Some(Arc::clone(&queues)),
        Some(Arc::clone(&keyring)),
    )?;
    let gdap = gdap_projection(&log, dir);
    let (gdap_for_walk, gdap_to_save, log_to_save) = (Arc::clone(&gdap), Arc::clone(&gdap), log.clone());
    let service = Arc::new(
        CommandService::with_gdap(log.clone(), Arc::clone(&gdap), Arc::clone(&clock))
            .with_keyring(Arc::clone(&keyring)),
    );
    let (v, sv, c, q) = (Arc::clone(&views), Arc::clone(&service), Arc::clone(&clock), Arc::clone(&queues));
    spawn_sla_sweep(&mut workers, v, sv, c, q, s.retention.closed_tickets());
    let sender = behalf_service::webhooks::Sender::new(
        Arc::clone(&queues),
        Arc::clone(&gdap),
        Arc::clone(&webhooks),
        Some(Arc::clone(&service)),
        Arc::clone(&clock),
        s.webhooks.service(),
    );
    spawn_webhooks(&mut workers, sender);
    let app = Arc::new(
        App::new(log, gdap, Arc::new(tokens), clock, s.limits())
            .with_commands(service)
            .with_read(ReadSide { views, position })
            .with_queues(queues)
            .with_webhooks(webhooks, s.webhooks.service())
            .with_keyring(keyring),
    );
    let listen = s.http.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"));
    let http = Http::bind(listen, s.tls_files()?.as_ref()).await?;
    let addr = http.addr;
    // A break found by the chain walk stops the server as a signal would, and then
    // fails it.
    let broken = Arc::new(std::sync::Mutex::new(None));
    let walk = walk.map(|w| w(Arc::clone(&gdap_for_walk)));
    let found = Arc::clone(&broken);
    let shutdown = async move {
        match walk {
            Some(walk) => tokio::select! {
                () = shutdown => {}
                e = walk => {
                    tracing::error!("{e:#}");
                    *found.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            },
            None => shutdown.await,
        }
    };
    let serving = async move {
        let served = http.serve(behalf_http::router(app), shutdown).await;
        workers.stop(STOP_DEADLINE).await;
        gdap_to_save.save(&log_to_save).await;
        if let Some(e) = broken.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        served?;
        tracing::info!("stopped accepting; in-flight commands finished");
        Ok(())
    };
    Ok((Started { addr, admin_token }, Box::pin(serving)))
}

/// `behalf serve` until `shutdown`; `stop_at_last_good` as [`start`]'s.
pub async fn run(
    s: Settings,
    stop_at_last_good: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (started, serving) = start(&s, stop_at_last_good, shutdown).await?;
    if let Some(path) = &started.admin_token {
        println!("admin token written to {} (readable by its owner only)", path.display());
    }
    println!("listening on {}", started.addr);
    tracing::info!(addr = %started.addr, data_dir = %s.data_dir.display(), "serving");
    serving.await?;
    refresh_snapshots(s.data()).await;
    Ok(())
}

/// Once every store is closed: has sled write the page-table snapshots of the data
/// directory's stores (see [`DataDir::refresh_snapshots`]), so that the next start
/// does not replay what this process wrote. A failure costs only that replay.
pub async fn refresh_snapshots(dir: DataDir) {
    let done = tokio::task::spawn_blocking(move || dir.refresh_snapshots().map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match done {
        Ok(took) => tracing::info!(seconds = took.as_secs_f64(), "sled's snapshots written for the next start"),
        Err(error) => tracing::warn!(error, "sled's snapshots not written: the next start replays this run's writes"),
    }
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
        Temporary::start_on(max_in_flight, "127.0.0.1:0".parse()?).await
    }

    /// As [`Temporary::start`], listening on `listen`.
    pub async fn start_on(max_in_flight: usize, listen: SocketAddr) -> anyhow::Result<Temporary> {
        let dir = tempfile::tempdir()?;
        let mut settings = Settings { data_dir: dir.path().to_path_buf(), ..Settings::default() };
        settings.http.listen = Some(listen);
        settings.http.max_in_flight = max_in_flight;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, serving) = start(&settings, false, async move {
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
