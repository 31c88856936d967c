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
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use behalf_http::{App, Limits, ReadSide, Router};
use behalf_nats::rpc::{self, RpcReply, RpcRequest};
use behalf_nats::{NatsQueues, NatsTokens};
use behalf_service::clock::{Clock, SystemClock};
use behalf_service::commands::CommandService;
use behalf_service::tokens::Tokens;
use behalf_sled_store::{SledQueues, SledViews};
use tokio::net::TcpListener;

/// What every role takes.
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated (e.g. nats://127.0.0.1:4222)
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// Copies of the streams and buckets when they are first created: 1 on one node,
    /// 3 on a cluster
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub nats_replicas: u64,
    /// JetStream's de-duplication window when the event stream is first created, e.g.
    /// 10m or 1s; idempotency (R26) holds beyond it through the command index
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::settings::parse_duration)]
    pub nats_duplicate_window: std::time::Duration,
    /// Where this process keeps what is its own (views, the admin token it made)
    #[arg(long, default_value = crate::settings::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Also serve this role's HTTP endpoints on HOST:PORT (port 0 picks a free port)
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(clap::Args, Debug)]
pub struct CommandArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Commands decided at once before answering 429 / overloaded
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
}

type Shutdown = tokio::sync::watch::Receiver<bool>;

async fn stopped(mut rx: Shutdown) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Answers NATS requests through `router`; `route` turns a request into a method and
/// a path, or a reply of its own (a request that names nothing). Prints `serving
/// <subject>` once the subscription is in place.
async fn serve_nats(
    url: String,
    subject: &str,
    group: &str,
    router: Router,
    route: fn(&RpcRequest) -> Result<(&'static str, String), RpcReply>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let listener = rpc::listen(&url, subject, group).await?;
    println!("serving {subject} (queue group {group})");
    let handler = move |req: RpcRequest| {
        let router = router.clone();
        async move {
            let (method, path) = match route(&req) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            let body = if method == "GET" { Default::default() } else { req.payload.clone() };
            let (status, content_type, body) = behalf_http::dispatch(&router, method, &path, &req.headers, body).await;
            RpcReply { status, content_type, body }
        }
    };
    listener.run(handler, stopped(shutdown)).await?;
    Ok(())
}

/// Serves HTTP too when asked; prints the address like `behalf serve` does.
async fn serve_http(listen: Option<SocketAddr>, router: Router, shutdown: Shutdown) -> anyhow::Result<()> {
    let Some(addr) = listen else { return Ok(()) };
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    behalf_http::serve(listener, router, stopped(shutdown)).await.context("the HTTP server failed")
}

fn shutdown_channel() -> (Shutdown, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        let _ = tx.send(true);
    });
    (rx, signal)
}

fn limits(max_in_flight: usize) -> Limits {
    Limits { max_in_flight, ..Limits::default() }
}

async fn open_tokens(a: &NatsArgs, clock: &dyn Clock) -> anyhow::Result<Tokens<NatsTokens>> {
    let tokens = crate::serve::open_nats_tokens(&a.nats, a.nats_replicas as usize, &a.data_dir).await?;
    if let Some(path) = tokens.bootstrap_admin(&a.data_dir, clock)? {
        println!("admin token written to {} (readable by its owner only)", path.display());
    }
    Ok(tokens)
}

/// The cluster's queues (bucket `BEHALF_QUEUE`), which every role serving HTTP answers
/// `/v1/queues` from.
async fn open_queues(a: &NatsArgs) -> anyhow::Result<Arc<NatsQueues>> {
    Ok(Arc::new(
        NatsQueues::open(&a.nats, a.nats_replicas as usize)
            .await
            .with_context(|| format!("cannot open the queues on NATS at {}", a.nats))?,
    ))
}

fn command_route(_: &RpcRequest) -> Result<(&'static str, String), RpcReply> {
    Ok(("POST", "/v1/commands".into()))
}

/// `behalf command --nats URL`.
pub async fn command(a: CommandArgs) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let log = crate::serve::open_nats(&a.nats.nats, a.nats.nats_replicas as usize, a.nats.nats_duplicate_window, false)
        .await?;
    let tokens = open_tokens(&a.nats, clock.as_ref()).await?;
    let service = Arc::new(CommandService::new(log, Arc::clone(&clock)));
    let queues = open_queues(&a.nats).await?;
    let app =
        App::<_, _, SledViews, _>::new(service, Arc::new(tokens), clock, limits(a.max_in_flight)).with_queues(queues);
    let router = behalf_http::router(Arc::new(app));
    let (shutdown, _signal) = shutdown_channel();
    let nats = serve_nats(
        a.nats.nats.clone(),
        rpc::COMMAND_SUBJECT,
        "behalf-command",
        router.clone(),
        command_route,
        shutdown.clone(),
    );
    let (n, h) = tokio::join!(nats, serve_http(a.nats.listen, router, shutdown));
    n.and(h)
}

/// The query names of `behalf.query.<name>`, with the id each needs in its path.
const QUERIES: &[(&str, &str, &str)] = &[
    ("customer_tickets", "/v1/customers/{}/tickets", "customer_id"),
    ("service_health", "/v1/customers/{}/service-health", "customer_id"),
    ("ticket", "/v1/tickets/{}", "ticket_id"),
    ("history", "/v1/tickets/{}/history", "ticket_id"),
    ("partner_tickets", "/v1/partners/{}/tickets", "partner_id"),
    ("access", "/v1/partners/{}/access", "partner_id"),
    ("rejections", "/v1/audit/rejections", ""),
    ("events", "/v1/events", ""),
];

fn refusal(status: u16, code: &str, message: String) -> RpcReply {
    let body = serde_json::json!({"outcome": "rejected", "code": code, "message": message});
    RpcReply { status, content_type: Some("application/json".into()), body: body.to_string().into() }
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `behalf.query.<name>` with a JSON object of parameters → `GET <path>?<the rest>`.
fn query_route(req: &RpcRequest) -> Result<(&'static str, String), RpcReply> {
    let name = req.subject.strip_prefix(rpc::QUERY_PREFIX).and_then(|s| s.strip_prefix('.')).unwrap_or_default();
    let Some((_, template, id_field)) = QUERIES.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = QUERIES.iter().map(|(n, _, _)| *n).collect();
        return Err(refusal(404, "request.malformed", format!("no query {name:?}; one of {}", names.join(", "))));
    };
    let mut params = if req.payload.is_empty() {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(&req.payload) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) | Err(_) => {
                return Err(refusal(400, "request.malformed", "the parameters are not a JSON object".into()));
            }
        }
    };
    let text = |v: serde_json::Value| if let serde_json::Value::String(s) = v { s } else { v.to_string() };
    let mut path = (*template).to_owned();
    if !id_field.is_empty() {
        let Some(id) = params.remove(*id_field).map(text).filter(|s| !s.is_empty()) else {
            return Err(refusal(422, "validation.invalid", format!("the query {name} needs {id_field}")));
        };
        path = path.replace("{}", &encode(&id));
    }
    let query: Vec<String> = params.into_iter().map(|(k, v)| format!("{}={}", encode(&k), encode(&text(v)))).collect();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    Ok(("GET", path))
}

/// `behalf project --nats URL`.
pub async fn project(a: NatsArgs) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let log = crate::serve::open_nats(&a.nats, a.nats_replicas as usize, a.nats_duplicate_window, false).await?;
    let tokens = open_tokens(&a, clock.as_ref()).await?;
    let views = Arc::new(crate::serve::open_views(&a.data_dir.join("views"))?);
    let (follower, position) = crate::serve::spawn_followers::<_, SledQueues>(log.clone(), Arc::clone(&views), None)?;
    // The GDAP projection scopes every answer (R24); this role decides no commands.
    let service = Arc::new(CommandService::new(log, Arc::clone(&clock)));
    let app = App::new(service, Arc::new(tokens), clock, Limits::default())
        .without_commands()
        .with_read(ReadSide { views, position })
        .with_queues(open_queues(&a).await?);
    let router = behalf_http::router(Arc::new(app));
    let (shutdown, _signal) = shutdown_channel();
    let subject = format!("{}.>", rpc::QUERY_PREFIX);
    let nats = serve_nats(a.nats.clone(), &subject, "behalf-project", router.clone(), query_route, shutdown.clone());
    let (n, h) = tokio::join!(nats, serve_http(a.listen, router, shutdown));
    follower.abort();
    n.and(h)
}

/// `behalf notify --nats URL`.
pub async fn notify(a: NatsArgs) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The notifier also keeps the command index complete (R26 beyond the window).
    let log = crate::serve::open_nats(&a.nats, a.nats_replicas as usize, a.nats_duplicate_window, true).await?;
    let queues = open_queues(&a).await?;
    crate::serve::ensure_dir(&a.data_dir)?;
    let views = Arc::new(crate::serve::open_views(&a.data_dir.join("views"))?);
    let (follower, _) = crate::serve::spawn_followers(log.clone(), Arc::clone(&views), Some(Arc::clone(&queues)))?;
    let service = Arc::new(CommandService::new(log, Arc::clone(&clock)));
    let sweep = crate::serve::spawn_sla_sweep(views, service, clock, Arc::clone(&queues));
    println!("forwarding into the cluster's queues (bucket BEHALF_QUEUE)");
    let (shutdown, _signal) = shutdown_channel();
    stopped(shutdown).await;
    follower.abort();
    sweep.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(subject: &str, payload: &str) -> RpcRequest {
        RpcRequest { subject: subject.into(), headers: Vec::new(), payload: payload.to_owned().into() }
    }

    #[test]
    fn queries_map_to_their_paths() {
        let ok = |s: &str, p: &str| query_route(&req(s, p)).map(|(_, path)| path).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(ok("behalf.query.ticket", r#"{"ticket_id":"t 1"}"#), "/v1/tickets/t%201");
        assert_eq!(
            ok("behalf.query.customer_tickets", r#"{"customer_id":"c1","status":"open","min_position":7}"#),
            "/v1/customers/c1/tickets?min_position=7&status=open"
        );
        assert_eq!(ok("behalf.query.events", ""), "/v1/events");
        let refused = |s: &str, p: &str| query_route(&req(s, p)).unwrap_err().status;
        assert_eq!(refused("behalf.query.nope", "{}"), 404);
        assert_eq!(refused("behalf.query.ticket", "{}"), 422);
        assert_eq!(refused("behalf.query.ticket", "[1]"), 400);
    }
}
