//! The roles as separate processes on the distributed engine (any number of each):
//!
//! - `behalf command --nats URL`: the command service. Serves `behalf.cmd` in the queue
//!   group `behalf-command` and, with `--listen`, `POST /v1/commands` and the token
//!   endpoints over HTTP.
//! - `behalf project --nats URL`: a projector. Follows the log into its own views (in
//!   its data directory) and serves `behalf.query.<name>` in the queue group
//!   `behalf-project` and, with `--listen`, the query endpoints over HTTP.
//! - `behalf notify --nats URL`: the notifier. Forwards escalations and notices into the
//!   cluster's queues (bucket `BEHALF_QUEUE`, served by every role's `/v1/queues`) and
//!   records missed response targets (R20) from its own views. It also runs the command
//!   indexer, which writes the `BEHALF_COMMANDS` entries behind the log.
//!
//! Both transports go through the same router ([`behalf_http::dispatch`]), so a NATS
//! request is answered exactly as the same HTTP request would be.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use behalf_http::{App, Limits, ReadSide, Router};
use behalf_log::queues::QueueStore;
use behalf_log::views::ViewStore;
use behalf_nats::rpc::{self, RpcReply, RpcRequest};
use behalf_nats::Endpoint;
use behalf_nats::{NatsLog, NatsQueues};
use behalf_service::clock::{Clock, SystemClock};
use behalf_service::commands::CommandService;
use behalf_service::runner::{Stop, Workers};
use behalf_service::tokens::Tokens;
use behalf_sled_store::DataDir;

use crate::listen::{shutdown_signal, Http};
use crate::settings::Settings;

/// What a role on NATS runs with, from its [`Settings`].
#[derive(Clone, Debug)]
pub struct NatsArgs {
    pub nats: Endpoint,
    pub nats_replicas: usize,
    pub nats_duplicate_window: std::time::Duration,
    /// Where this process keeps what is its own (views, the admin token it made).
    pub data_dir: DataDir,
    /// Also serve this role's HTTP endpoints here.
    pub listen: Option<SocketAddr>,
    pub limits: Limits,
    pub tls: Option<behalf_http::TlsFiles>,
}

impl NatsArgs {
    /// The role's part of `s`; a role on NATS needs the servers' URLs.
    pub fn of(s: &Settings, role: &str) -> anyhow::Result<NatsArgs> {
        let Some(nats) = s.nats_endpoint()? else {
            anyhow::bail!("behalf {role} runs on NATS: give --nats URL (or nats in the settings, or BEHALF_NATS)")
        };
        Ok(NatsArgs {
            nats,
            nats_replicas: s.nats.replicas,
            nats_duplicate_window: s.nats.duplicate_window,
            data_dir: s.data(),
            listen: s.http.listen,
            limits: s.limits(),
            tls: s.tls_files()?,
        })
    }
}

/// How a role's NATS requests reach the router.
#[derive(Clone, Copy)]
enum Requests {
    /// Every request is a `POST /v1/commands`.
    Commands,
    /// `behalf.query.<name>` with a JSON object of parameters (the http crate's table).
    Queries,
}

/// Answers NATS requests through `router`, exactly as the same HTTP request would be.
/// Prints `serving <subject>` once the subscription is in place.
async fn serve_nats(
    to: Endpoint,
    subject: &str,
    group: &str,
    router: Router,
    requests: Requests,
    stop: Stop,
) -> anyhow::Result<()> {
    let listener = rpc::listen(&to, subject, group).await?;
    println!("serving {subject} (queue group {group})");
    let handler = move |req: RpcRequest| {
        let router = router.clone();
        async move {
            let reply = match requests {
                Requests::Commands => {
                    behalf_http::dispatch(&router, "POST", "/v1/commands", &req.headers, req.payload.clone()).await
                }
                Requests::Queries => {
                    let name = req.subject.strip_prefix(rpc::QUERY_PREFIX).and_then(|s| s.strip_prefix('.'));
                    behalf_http::dispatch_query(&router, name.unwrap_or_default(), &req.headers, &req.payload).await
                }
            };
            RpcReply { status: reply.status, content_type: reply.content_type, body: reply.body }
        }
    };
    listener.run(handler, stop.into_stopped()).await?;
    Ok(())
}

/// Serves HTTP (HTTPS with a certificate) too when asked; prints the address like
/// `behalf serve` does.
async fn serve_http(a: &NatsArgs, router: Router, stop: Stop) -> anyhow::Result<()> {
    let Some(addr) = a.listen else { return Ok(()) };
    let http = Http::bind(addr, a.tls.as_ref()).await?;
    println!("listening on {}", http.addr);
    http.serve(router, stop.into_stopped()).await
}

async fn open_tokens(a: &NatsArgs, clock: &dyn Clock) -> anyhow::Result<Tokens> {
    let tokens = crate::stores::open_nats_tokens(&a.nats, a.nats_replicas, &a.data_dir).await?;
    if let Some(path) = tokens.bootstrap_admin(&a.data_dir.admin_token(), clock)? {
        println!("admin token written to {} (readable by its owner only)", path.display());
    }
    Ok(tokens)
}

/// The cluster's queues (bucket `BEHALF_QUEUE`), which every role serving HTTP answers
/// `/v1/queues` from.
async fn open_queues(a: &NatsArgs) -> anyhow::Result<Arc<dyn QueueStore>> {
    Ok(Arc::new(
        NatsQueues::open(&a.nats, a.nats_replicas)
            .await
            .with_context(|| format!("cannot open the queues on NATS at {}", a.nats.url))?,
    ))
}

/// The cluster's webhook store (bucket `BEHALF_WEBHOOKS`): the command role serves
/// `/v1/webhooks` from it, the notify role sends with it.
async fn open_webhooks(a: &NatsArgs) -> anyhow::Result<Arc<dyn behalf_log::webhooks::WebhookStore>> {
    Ok(Arc::new(
        behalf_nats::NatsWebhooks::open(&a.nats, a.nats_replicas)
            .await
            .with_context(|| format!("cannot open the webhook store on NATS at {}", a.nats.url))?,
    ))
}

/// The role's log and its GDAP projection (which scopes every answer, R24, and
/// decides readiness), and the app over them with tokens and the cluster's queues.
async fn app_on(a: &NatsArgs, index: bool) -> anyhow::Result<App<NatsLog>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let log = crate::stores::open_nats(&a.nats, a.nats_replicas, a.nats_duplicate_window, index).await?;
    let tokens = open_tokens(a, clock.as_ref()).await?;
    let gdap = crate::stores::gdap_projection(&log, &a.data_dir);
    let keyring = open_keyring(a, &log).await?;
    Ok(App::new(log, gdap, Arc::new(tokens), clock, a.limits).with_queues(open_queues(a).await?).with_keyring(keyring))
}

/// The cluster's sealing keys (bucket `BEHALF_KEYS`).
async fn open_keyring(a: &NatsArgs, log: &NatsLog) -> anyhow::Result<Arc<behalf_service::seal::Keyring>> {
    let (store, at) = crate::stores::open_key_store(Some(&a.nats), a.nats_replicas, &a.data_dir).await?;
    crate::stores::open_keyring(store, &at, log).await
}

/// `behalf command --nats URL`.
pub async fn command(s: &Settings) -> anyhow::Result<()> {
    let a = NatsArgs::of(s, "command")?;
    let app = app_on(&a, false).await?;
    let (log, gdap) = (app.log.clone(), Arc::clone(&app.gdap));
    let keyring = Arc::clone(app.keyring.as_ref().expect("app_on opens the keyring"));
    let service =
        CommandService::with_gdap(app.log.clone(), Arc::clone(&app.gdap), Arc::clone(&app.clock)).with_keyring(keyring);
    let webhooks = open_webhooks(&a).await?;
    let app = app.with_commands(Arc::new(service)).with_webhooks(webhooks, s.webhooks.service());
    let router = behalf_http::router(Arc::new(app));
    let stop = Stop::when(shutdown_signal());
    let nats = serve_nats(
        a.nats.clone(),
        rpc::COMMAND_SUBJECT,
        "behalf-command",
        router.clone(),
        Requests::Commands,
        stop.clone(),
    );
    let (n, h) = tokio::join!(nats, serve_http(&a, router, stop));
    gdap.save(&log).await;
    n.and(h)
}

/// `behalf project --nats URL`.
pub async fn project(s: &Settings) -> anyhow::Result<()> {
    let a = NatsArgs::of(s, "project")?;
    // This role decides no commands: the projection alone scopes its answers.
    let app = app_on(&a, false).await?;
    let (log, gdap) = (app.log.clone(), Arc::clone(&app.gdap));
    let views: Arc<dyn ViewStore> = Arc::new(crate::stores::open_views(&a.data_dir)?);
    let mut workers = Workers::default();
    let position = crate::workers::spawn_followers::<_, dyn QueueStore>(
        &mut workers,
        app.log.clone(),
        Arc::clone(&views),
        None,
        app.keyring.clone(),
    )?;
    let router = behalf_http::router(Arc::new(app.with_read(ReadSide { views, position })));
    let stop = Stop::when(shutdown_signal());
    let subject = format!("{}.>", rpc::QUERY_PREFIX);
    let nats = serve_nats(a.nats.clone(), &subject, "behalf-project", router.clone(), Requests::Queries, stop.clone());
    let (n, h) = tokio::join!(nats, serve_http(&a, router, stop));
    workers.stop(crate::workers::STOP_DEADLINE).await;
    gdap.save(&log).await;
    crate::serve::refresh_snapshots(a.data_dir.clone()).await;
    n.and(h)
}

/// `behalf notify --nats URL`.
pub async fn notify(s: &Settings) -> anyhow::Result<()> {
    let a = NatsArgs::of(s, "notify")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The notifier also keeps the command index complete (R26 beyond the window).
    let log = crate::stores::open_nats(&a.nats, a.nats_replicas, a.nats_duplicate_window, true).await?;
    let queues = open_queues(&a).await?;
    crate::stores::ensure_dir(a.data_dir.root())?;
    let views: Arc<dyn ViewStore> = Arc::new(crate::stores::open_views(&a.data_dir)?);
    let mut workers = Workers::default();
    let keyring = open_keyring(&a, &log).await?;
    let k = Some(Arc::clone(&keyring));
    crate::workers::spawn_followers(&mut workers, log.clone(), Arc::clone(&views), Some(Arc::clone(&queues)), k)?;
    let service = Arc::new(CommandService::new(log, Arc::clone(&clock)).with_keyring(keyring));
    let sender = behalf_service::webhooks::Sender::new(
        Arc::clone(&queues),
        Arc::clone(service.gdap()),
        open_webhooks(&a).await?,
        Some(Arc::clone(&service)),
        Arc::clone(&clock),
        s.webhooks.service(),
    );
    crate::workers::spawn_webhooks(&mut workers, sender);
    crate::workers::spawn_sla_sweep(
        &mut workers,
        views,
        service,
        clock,
        Arc::clone(&queues),
        s.retention.closed_tickets(),
    );
    // The SIGTERM handler before the line a supervisor may wait for.
    let stop = Stop::when(shutdown_signal());
    println!("forwarding into the cluster's queues (bucket BEHALF_QUEUE), sending webhooks");
    stop.into_stopped().await;
    workers.stop(crate::workers::STOP_DEADLINE).await;
    crate::serve::refresh_snapshots(a.data_dir.clone()).await;
    Ok(())
}
