//! `behalf bench http|inprocess|nats|views`: load generators for `ticket.open` on a fresh
//! embedded store — over real HTTP with keep-alive, or straight into the command
//! service — printing accepted/s and p50/p99 latency, beside raw sled insert+flush at
//! the same batch size from the same run. Build with `--release` for real figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use behalf_client::{Client, Retry};
use behalf_domain::Command;
use behalf_domain::Principal;
use behalf_service::clock::{Clock, SystemClock};
use behalf_service::commands::CommandService;
use behalf_service::request;
use behalf_sled_store::DataDir;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::demo::{cast, Demo};

mod soak;
mod startup;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Drive `ticket.open` over HTTP against an embedded `serve` in this process (the
    /// projection, the notifier and the SLA sweep running), after the raw loops and the
    /// in-process figure from the same run.
    Http {
        /// Concurrent keep-alive connections
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to run
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Offered load in requests/s across all connections (default: as fast as possible)
        #[arg(long)]
        rate: Option<f64>,
        /// Record no metrics (to measure what the instrumentation costs)
        #[arg(long)]
        no_metrics: bool,
    },
    /// Projection catch-up over a filled log (a realistic mix) beside raw scan +
    /// decode, then the per-customer list query's latency.
    Views {
        /// Events to fill the log with
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// List queries to time
        #[arg(long, default_value_t = 2_000)]
        queries: usize,
    },
    /// Drive `ticket.open` through `behalf command` over NATS (`behalf.cmd`) on a fresh
    /// local nats-server (one node or a 3-node cluster), beside a raw JetStream
    /// publish loop with the same window in flight, from the same run.
    Nats {
        /// Nodes: 1, or 3 for a cluster with R3 streams
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
        nodes: u64,
        /// Requests in flight at once (and publishes in flight for the raw loop)
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Seconds to run each
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Also run raw atomic batches of 64 chained by their expected last sequence,
        /// this many in flight from one publisher (e.g. `1,2,4,8`): the pipelining the
        /// group commit would need, measured raw, with whether the stream stayed whole
        #[arg(long, value_delimiter = ',')]
        chained: Vec<usize>,
    },
    /// Time a cold `behalf serve` until `/readyz` answers ready, over a data directory
    /// holding about N events (filled, or reused from an earlier run); also prints the
    /// resident memory when ready and the bytes on disk per commit.
    Startup {
        /// Events in the log
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// The data directory to fill or reuse (default: behalf-bench-startup-N in the
        /// system's temporary directory, kept for the next run)
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// Cold starts to time (the median is reported)
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Instead: the roles on NATS JetStream — a local nats-server filled with N
        /// events, then cold starts of `behalf command` and `behalf project` until ready
        #[arg(long)]
        nats: bool,
    },
    /// The GDAP projection's memory with N relationships (each with a customer of its
    /// own and one access assignment, over N/1000 partners), and its snapshot's size and
    /// time to save and to load.
    Gdap {
        /// Relationships
        #[arg(long, default_value_t = 1_000_000)]
        relationships: u64,
    },
    /// A deterministic day over HTTP against an embedded `serve`: partners syncing GDAP
    /// relationships through their lifecycle, agents opening and working tickets, the
    /// vendor working its queue, readers listing; every answer predicted by a model,
    /// figures every minute, checks at the end (exits 0 only when all pass).
    Soak(soak::SoakArgs),
    /// Drive `ticket.open` straight into the command service (no HTTP).
    Inprocess {
        /// Concurrent producers
        #[arg(long, default_value_t = 64)]
        producers: usize,
        /// Seconds to run
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Record no metrics (to measure what the instrumentation costs)
        #[arg(long)]
        no_metrics: bool,
    },
}

impl BenchCmd {
    /// Whether this run records metrics (every process does, unless told not to).
    pub fn records_metrics(&self) -> bool {
        match self {
            BenchCmd::Http { no_metrics, .. } | BenchCmd::Inprocess { no_metrics, .. } => !no_metrics,
            BenchCmd::Views { .. }
            | BenchCmd::Nats { .. }
            | BenchCmd::Startup { .. }
            | BenchCmd::Gdap { .. }
            | BenchCmd::Soak(_) => true,
        }
    }
}

/// A ticket of one of 10,000 contacts (so sealing is measured with keys a cache does
/// not all hold at once).
fn ticket_body(n: u64) -> Value {
    static CONTACTS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let contacts = *CONTACTS.get_or_init(|| {
        std::env::var("BEHALF_BENCH_CONTACTS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(10_000)
    });
    // Spread (a multiplicative hash of n): producers numbered apart meet different
    // contacts, not the same one at the same moment.
    let email = format!("agent{}@contoso-partner.com", (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) % contacts);
    json!({
        "type": "ticket.open", "customer_id": "f0a1b2c3-0000-4000-8000-000000000001", "workload": "office365",
        "title": format!("Load ticket {n}"), "description": "Generated by behalf bench.", "severity": "moderate",
        "support_topic": "Exchange Online / Mail flow", "country_code": "ID",
        "contact": {"first_name": "Ayu", "last_name": "Lestari", "email": email, "preferred_contact": "email"}
    })
}

#[derive(Default)]
struct Stats {
    accepted: u64,
    other: u64,
    /// Of `other`: answered with a refusal (a rule's rejection), not a failure.
    refused: u64,
    latencies_us: Vec<u32>,
}

impl Stats {
    fn record_refused(&mut self, refused: bool) {
        self.refused += u64::from(refused);
    }

    /// One request that started at `t0`, accepted or not.
    fn record(&mut self, t0: Instant, accepted: bool) {
        self.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if accepted {
            self.accepted += 1;
        } else {
            self.other += 1;
        }
    }
}

/// The 50th and 99th percentiles in milliseconds.
fn percentiles(lat: &mut [u32]) -> (f64, f64) {
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0) as f64 / 1000.0;
    (pct(0.50), pct(0.99))
}

fn report(what: &str, s: &mut Stats, elapsed: f64) {
    let (p50, p99) = percentiles(&mut s.latencies_us);
    println!(
        "{what}: {:.0} accepted/s ({} accepted, {} refused, {} failed in {elapsed:.1}s); latency p50 {:.2} ms, p99 {:.2} ms",
        s.accepted as f64 / elapsed,
        s.accepted,
        s.refused,
        s.other - s.refused,
        p50,
        p99
    );
}

/// The raw sled baselines at batches of `batch`, each for `seconds`, printed first
/// (before anything of Behalf runs): one key per commit (the target's baseline), then
/// the three keys a Behalf commit writes. Returns the one-key figure.
fn raw_baselines(batch: usize, seconds: f64) -> anyhow::Result<f64> {
    use behalf_sled_store::baseline::{insert_flush_per_sec, insert_flush_three_keys_per_sec};
    let value = vec![0x5au8; 1100]; // about one ticket.open commit record
    let one = insert_flush_per_sec(tempfile::tempdir()?.path(), batch, &value, seconds)?;
    println!("raw sled insert+flush, batches of {batch}: {one:.0}/s");
    let three = insert_flush_three_keys_per_sec(tempfile::tempdir()?.path(), batch, &value, seconds)?;
    println!("raw sled insert+flush, three keys per commit (record, stream index, command index), batches of {batch}: {three:.0}/s");
    Ok(one)
}

/// Behalf's figure beside the one-key baseline, and the group size the log formed.
fn against_raw(ours: f64, raw: f64, groups: Option<(f64, f64)>) {
    println!("behalf: {:.2} × raw sled insert+flush (one key per commit)", ours / raw);
    if let Some((groups, commits)) = groups {
        println!("group commit: {:.1} commits per group on average ({groups:.0} groups)", commits / groups.max(1.0));
    }
}

/// The log's group counters: (groups, commits in them).
fn group_counters<L: behalf_log::EventLog>(log: &L) -> (f64, f64) {
    let get = |name| log.counters().into_iter().find(|(n, _, _)| *n == name).map_or(0.0, |(_, _, v)| v as f64);
    (get(behalf_log::GROUPS_METRIC), get(behalf_log::GROUPED_COMMITS_METRIC))
}

/// A temporary server with the demo's cast registered; returns it and Ayu's token.
async fn start_server() -> anyhow::Result<(crate::serve::Temporary, String)> {
    let server = crate::serve::Temporary::start(65_536).await?;
    let mut d = Demo::new(server.base())?;
    let c = cast(&mut d, &server.admin).await?;
    anyhow::ensure!(d.failures.is_empty(), "setting up: {}", d.failures.join("; "));
    Ok((server, c.ayu))
}

/// Merges the producers' statistics.
async fn collect(tasks: Vec<tokio::task::JoinHandle<Stats>>) -> anyhow::Result<Stats> {
    let mut all = Stats::default();
    for t in tasks {
        let s = t.await?;
        all.accepted += s.accepted;
        all.other += s.other;
        all.refused += s.refused;
        all.latencies_us.extend(s.latencies_us);
    }
    Ok(all)
}

/// Fills a log with about `events` events: tickets opened for one customer, then
/// one to three notes per commit, an escalation now and then, and refusals.
async fn fill<L: behalf_log::EventLog>(log: &L, events: u64) -> anyhow::Result<u64> {
    use behalf_domain::{CommandId, Event, StreamId, Timestamp};
    use behalf_log::samples::{every_event_type, note_added, ticket_opened};
    use behalf_log::{AppendRequest, ExpectedVersion};
    let escalated = every_event_type().into_iter().find(|e| e.type_name() == "TicketEscalated");
    let rejected = every_event_type().into_iter().find(|e| e.type_name() == "CommandRejected");
    let writers = 64u64;
    let per_writer = events * 10 / 16 / writers + 1; // about 1.6 events a commit
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (log, escalated, rejected) = (log.clone(), escalated.clone(), rejected.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            for i in 0..per_writer {
                let ticket = format!("01BENCH{w:04}{:010}", i / 5);
                let (stream, evs): (StreamId, Vec<Event>) = match i % 5 {
                    0 => (StreamId::of("ticket", &ticket), vec![ticket_opened(&ticket)]),
                    4 if i % 15 == 4 => (StreamId::rejections(), rejected.clone().into_iter().collect()),
                    3 if i % 10 == 3 => {
                        let mut e = escalated.clone().into_iter().collect::<Vec<_>>();
                        if let Some(Event::TicketEscalated(x)) = e.first_mut() {
                            x.ticket_id = ticket.as_str().into();
                        }
                        (StreamId::of("ticket", &ticket), e)
                    }
                    _ => (
                        StreamId::of("ticket", &ticket),
                        (0..1 + i % 3).map(|k| note_added(&ticket, &format!("note {k}"))).collect(),
                    ),
                };
                n += evs.len() as u64;
                let id = format!("fill-{w}-{i}");
                let req = AppendRequest {
                    stream,
                    expected: ExpectedVersion::Any,
                    command_id: CommandId::new(id.as_str()),
                    request_hash: behalf_log::codec::sha256(id.as_bytes()),
                    at: Timestamp::from_millis(1_780_000_000_000 + i as i64),
                    actor: behalf_domain::Principal::Vendor,
                    correlation_id: None,
                    causation_id: None,
                    events: evs,
                    directory_at: None,
                };
                let _ = log.append(req).await;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    Ok(total)
}

async fn views_bench(events: u64, queries: usize) -> anyhow::Result<()> {
    use behalf_log::views::ViewStore as _;
    use behalf_service::queries::{ListFilter, Queries};
    let dir = tempfile::tempdir()?;
    let data = DataDir::new(dir.path());
    let (log, _) = data.open_log(Default::default())?;
    let t0 = Instant::now();
    let filled = fill(&log, events).await?;
    println!("filled {filled} events in {:.1}s", t0.elapsed().as_secs_f64());
    let raw_log = log.clone();
    let (n, raw) =
        tokio::task::spawn_blocking(move || behalf_sled_store::baseline::scan_decode_per_sec(&raw_log)).await??;
    let views = crate::stores::open_views(&data)?;
    let t1 = Instant::now();
    behalf_service::views::rebuild(&log, &views, |_, _| {}).await?;
    let ours = n as f64 / t1.elapsed().as_secs_f64();
    println!("raw sled scan + decode:              {raw:>10.0} events/s");
    println!("projection catch-up into sled views: {ours:>10.0} events/s ({:.2} × raw)", ours / raw);
    // The per-customer list: one customer holds every ticket of the fill.
    let customer: behalf_domain::CustomerId = "7b4e2d3f-0000-4000-8000-00000000000b".into();
    let tickets = views.scan(&behalf_service::views::customer_prefix(&customer), None, usize::MAX)?.len();
    let gdap = behalf_service::gdap::GdapProjection::spawn(&log);
    let q = Queries { views: &views, log: &log, gdap: gdap.as_ref(), now: SystemClock.now() };
    let who =
        Principal::Customer { customer_id: customer.clone(), user_id: "8c5f3e4a-0000-4000-8000-00000000000c".into() };
    let mut lat = Vec::with_capacity(queries);
    let mut after: Option<String> = None;
    for i in 0..queries {
        let t = Instant::now();
        let page = q
            .customer_tickets(&who, &customer, &ListFilter::default(), 50, after.as_deref())
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        lat.push(t.elapsed().as_micros() as u32);
        after = if i % 20 == 19 { None } else { page.next };
    }
    gdap.stop();
    let (p50, p99) = percentiles(&mut lat);
    println!("per-customer list, 50 a page, {tickets} tickets for the customer, {queries} queries: p50 {p50:.2} ms, p99 {p99:.2} ms");
    Ok(())
}

/// `behalf command --nats` as a child process of this binary, with HTTP for the setup,
/// and its data directory.
fn start_command_role(urls: &str, replicas: usize) -> anyhow::Result<(startup::Server, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let replicas = replicas.to_string();
    let role = startup::Server::start_role(&["command", "--nats", urls, "--nats-replicas", &replicas], dir.path())?;
    Ok((role, dir))
}

/// A counter from a Prometheus text page.
fn counter(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// The raw atomic loop's batch size.
const RAW_ATOMIC_BATCH: usize = 64;

async fn nats_bench(nodes: usize, in_flight: usize, seconds: f64, chained: &[usize]) -> anyhow::Result<()> {
    use behalf_nats::rpc::{RpcClient, COMMAND_SUBJECT};
    let cluster = behalf_nats::server::Cluster::start(nodes)?;
    let (urls, replicas) = (cluster.urls(), cluster.replicas());
    let (role, dir) = start_command_role(&urls, replicas)?;
    let admin = std::fs::read_to_string(DataDir::new(dir.path()).admin_token())?.trim().to_owned();
    let mut d = Demo::new(role.base.clone())?;
    let c = cast(&mut d, &admin).await?;
    anyhow::ensure!(d.failures.is_empty(), "setting up: {}", d.failures.join("; "));
    let rpc = RpcClient::connect(&urls).await?;
    let bearer = format!("Bearer {}", c.ayu);
    // The role's group counters and stage histograms, from its /metrics.
    let metrics = || async {
        let page = reqwest::get(format!("{}/metrics", role.base)).await?.text().await?;
        // No batch size is assumed: a /metrics without the group counters is an error.
        let get = |name: &str| {
            counter(&page, name).ok_or_else(|| anyhow::anyhow!("the command role's /metrics has no {name}"))
        };
        let groups = (get(behalf_log::GROUPS_METRIC)?, get(behalf_log::GROUPED_COMMITS_METRIC)?);
        anyhow::Ok((groups, stage_histograms_in(&page)))
    };
    let ((batches_before, commits_before), stages_before) = metrics().await?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..in_flight {
        let (rpc, bearer) = (rpc.clone(), bearer.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = Stats::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let body = ticket_body(w as u64 * 1_000_000_000 + n).to_string();
                let t0 = Instant::now();
                let r = rpc.call(COMMAND_SUBJECT, &[("Authorization", &bearer)], body.into()).await;
                s.record_refused(matches!(&r, Ok(r) if (400..500).contains(&r.status)));
                s.record(t0, matches!(r, Ok(r) if r.status == 201));
            }
            s
        }));
    }
    let mut all = collect(tasks).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let ((batches, commits), stages) = metrics().await?;
    let per_batch = ((commits - commits_before) / (batches - batches_before).max(1.0)).max(1.0);
    drop(role);
    let cluster_kind = if nodes == 1 { "1 node".to_owned() } else { format!("{nodes}-node cluster, R{replicas}") };
    report(&format!("behalf command over NATS, {cluster_kind}, {in_flight} in flight"), &mut all, elapsed);
    let ours = all.accepted as f64 / elapsed;
    println!("  group commit: {per_batch:.1} commits per atomic batch on average");
    report_stages(&stages_before, &stages);
    let raw = behalf_nats::baseline::publish_per_sec(&urls, replicas, in_flight, 700, seconds).await?;
    println!(
        "raw JetStream publish, {in_flight} in flight, 700 B: {raw:.0} publishes/s (behalf: {:.2} × this)",
        ours / raw
    );
    // A fixed batch, so the baseline does not move with Behalf's own batching.
    let batch = RAW_ATOMIC_BATCH;
    let atomic = behalf_nats::baseline::atomic_batch_per_sec(&urls, replicas, in_flight, batch, 700, seconds).await?;
    println!(
        "raw JetStream atomic batches of {batch}, {in_flight} messages in flight, 700 B: {atomic:.0} publishes/s (behalf: {:.2} × this)",
        ours / atomic
    );
    println!("behalf against the faster raw loop: {:.2} ×", ours / raw.max(atomic));
    sealing_on_nats(&urls, replicas, in_flight, seconds).await?;
    for &depth in chained {
        let c = behalf_nats::baseline::chained_atomic_per_sec(&urls, replicas, depth, batch, 700, seconds).await?;
        println!(
            "raw JetStream atomic batches of {batch} chained by expected last sequence, {depth} in flight: {:.0} publishes/s, {} refused, stream whole after: {}",
            c.per_sec,
            c.refused,
            if c.healthy { "yes" } else { "NO" }
        );
    }
    Ok(())
}

/// `ticket.open` straight into the command service over a store with the demo's cast,
/// from `producers` tasks for `seconds`; prints the figures and returns accepted/s.
async fn inprocess(producers: usize, seconds: f64, raw: f64, sealed: bool) -> anyhow::Result<f64> {
    let (server, _) = start_server().await?;
    let dir = server.stop().await?;
    // Reopen the same store in this process, without HTTP.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let data = DataDir::new(dir.path());
    let (log, _tokens) = crate::stores::open_stores(&data, false)?;
    let mut service = CommandService::new(log.clone(), clock);
    if sealed {
        let (keys, at) = crate::stores::open_key_store(None, 1, &data).await?;
        service = service.with_keyring(crate::stores::open_keyring(keys, &at, &log).await?);
    }
    // Sealed is the server's way; the other figure says what sealing costs.
    let label = format!("in-process, {producers} producers{}", if sealed { "" } else { ", not sealed" });
    let ours = drive_service(&label, Arc::new(service), producers, seconds).await?;
    let (groups, commits) = group_counters(&log);
    against_raw(ours, raw, Some((groups, commits)));
    Ok(ours)
}

/// `ticket.open` straight into `service` (over a store with the demo's cast) from
/// `producers` tasks for `seconds`; prints the figures and stages, returns accepted/s.
async fn drive_service<L: behalf_log::EventLog>(
    label: &str,
    service: Arc<CommandService<L>>,
    producers: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let ayu = Principal::PartnerAgent {
        partner_id: "c0a1b2c3-0000-4000-8000-000000000001".into(),
        user_id: "a0a1b2c3-0000-4000-8000-000000000001".into(),
    };
    let stages_before = stage_histograms();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..producers {
        let (service, ayu) = (Arc::clone(&service), ayu.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = Stats::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let req =
                    request::from_value(ticket_body(w as u64 * 1_000_000_000 + n), None).expect("a valid request");
                let t0 = Instant::now();
                let done = service.execute(ayu.clone(), req).await;
                s.record_refused(matches!(done, Err(behalf_service::Refused::Rejected(_))));
                s.record(t0, done.is_ok());
            }
            s
        }));
    }
    let mut all = collect(tasks).await?;
    let elapsed = start.elapsed().as_secs_f64();
    report(label, &mut all, elapsed);
    report_stages(&stages_before, &stage_histograms());
    service.gdap().stop();
    Ok(all.accepted as f64 / elapsed)
}

/// What sealing costs on NATS: the command service in this process over the same
/// server (the cast already there), with and without sealing, one after the other.
async fn sealing_on_nats(urls: &str, replicas: usize, producers: usize, seconds: f64) -> anyhow::Result<()> {
    let to = behalf_nats::Endpoint::from(urls);
    let mut figures = Vec::new();
    for sealed in [true, false] {
        let log = crate::stores::open_nats(&to, replicas, Duration::from_secs(600), true).await?;
        let mut service = CommandService::new(log.clone(), Arc::new(SystemClock));
        if sealed {
            let dir = tempfile::tempdir()?;
            let (keys, at) = crate::stores::open_key_store(Some(&to), replicas, &DataDir::new(dir.path())).await?;
            service = service.with_keyring(crate::stores::open_keyring(keys, &at, &log).await?);
        }
        let label = format!("in-process over NATS, {producers} producers{}", if sealed { "" } else { ", not sealed" });
        figures.push(drive_service(&label, Arc::new(service), producers, seconds).await?);
    }
    println!(
        "sealing personal data on NATS (10,000 contacts): sealed ÷ not sealed from this run: {:.3} ({:+.1} %)",
        figures[0] / figures[1],
        (figures[0] / figures[1] - 1.0) * 100.0
    );
    Ok(())
}

/// What one send came back as.
enum Sent {
    Accepted,
    Refused,
    Failed,
}

/// Sends `send(worker, n)` from `concurrency` tasks for `seconds`, as fast as answers
/// come or, with `rate`, at that many a second in all (open loop: latency counts from
/// the scheduled send, so a slow answer delays no measurement). Answers the figures
/// and the seconds it ran.
async fn drive<F, Fut>(concurrency: usize, seconds: f64, rate: Option<f64>, send: F) -> anyhow::Result<(Stats, f64)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Sent> + Send,
{
    let send = Arc::new(send);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let send = Arc::clone(&send);
        tasks.push(tokio::spawn(async move {
            let mut s = Stats::default();
            let mut next = Instant::now();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t0 = match interval {
                    Some(i) => {
                        tokio::time::sleep_until(next.into()).await;
                        next += i;
                        next - i
                    }
                    None => Instant::now(),
                };
                n += 1;
                let sent = send(w, n).await;
                s.record_refused(matches!(sent, Sent::Refused));
                s.record(t0, matches!(sent, Sent::Accepted));
            }
            s
        }));
    }
    let all = collect(tasks).await?;
    Ok((all, start.elapsed().as_secs_f64()))
}

/// The raw HTTP baseline: the same client, connections and serve loop, one sled key
/// per request through a raw group commit, answered after the flush.
async fn raw_http(concurrency: usize, seconds: f64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let commit = Arc::new(behalf_sled_store::baseline::GroupCommit::open(dir.path())?);
    let router = behalf_http::baseline::raw_router(move |body: Vec<u8>| {
        let commit = Arc::clone(&commit);
        async move { commit.write(body).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/raw", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(behalf_http::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let (all, elapsed) = drive(concurrency, seconds, None, move |w, n| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = serde_json::to_vec(&ticket_body(w as u64 * 1_000_000_000 + n)).unwrap_or_default();
            let sent = http.post(&url).header("content-type", "application/json").body(body).send().await;
            match sent {
                Ok(r) if r.status().as_u16() == 201 => Sent::Accepted,
                Ok(_) | Err(_) => Sent::Failed,
            }
        }
    })
    .await?;
    let _ = stop.send(());
    server.await??;
    let ours = all.accepted as f64 / elapsed;
    println!("raw HTTP + sled group commit, {concurrency} connections: {ours:.0}/s");
    Ok(ours)
}

/// The command stages' histograms in a Prometheus page (this process's recorder's, or a
/// role's `/metrics`): stage → (upper bound in seconds, requests at or below it); and,
/// as the stage `server`, the router's whole time for `POST /v1/commands`.
fn stage_histograms_in(page: &str) -> std::collections::BTreeMap<String, Vec<(f64, f64)>> {
    let stage = format!("{}_bucket{{stage=\"", behalf_log::metrics::STAGE_SECONDS);
    let server =
        format!("{}_bucket{{route=\"/v1/commands\",method=\"POST\",status=\"", behalf_log::metrics::HTTP_SECONDS);
    let mut out: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for line in page.lines() {
        let (name, rest) = if let Some(rest) = line.strip_prefix(&stage) {
            let Some((name, rest)) = rest.split_once("\",le=\"") else { continue };
            (name.to_owned(), rest)
        } else if let Some(rest) = line.strip_prefix(&server) {
            // Summed over the statuses (the accepted ones are 201).
            let Some((_, rest)) = rest.split_once("\",le=\"") else { continue };
            ("server".to_owned(), rest)
        } else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
        let count: f64 = count.trim().parse().unwrap_or(0.0);
        let buckets = out.entry(name).or_default();
        match buckets.iter_mut().find(|(l, _)| *l == le) {
            Some(b) => b.1 += count,
            None => buckets.push((le, count)),
        }
    }
    out
}

/// [`stage_histograms_in`] this process's recorder.
fn stage_histograms() -> std::collections::BTreeMap<String, Vec<(f64, f64)>> {
    stage_histograms_in(&behalf_http::metrics::install().render())
}

/// The q-quantile of a cumulative histogram, interpolated within its bucket (as
/// Prometheus's `histogram_quantile`).
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(below.0);
            }
            let within = if count > below.1 { (rank - below.1) / (count - below.1) } else { 1.0 };
            return Some(below.0 + (le - below.0) * within);
        }
        below = (le, count);
    }
    None
}

/// Each stage's p50 and p99 over what was recorded between two readings.
fn report_stages(
    before: &std::collections::BTreeMap<String, Vec<(f64, f64)>>,
    after: &std::collections::BTreeMap<String, Vec<(f64, f64)>>,
) {
    if after.is_empty() {
        println!("stages: no metrics recorded (--no-metrics)");
        return;
    }
    let names = behalf_log::metrics::Stage::ALL.map(|s| s.name());
    for name in names.iter().copied().chain(["server"]) {
        let Some(now) = after.get(name) else { continue };
        let earlier = before.get(name);
        let delta: Vec<(f64, f64)> = now
            .iter()
            .enumerate()
            .map(|(i, &(le, c))| (le, c - earlier.and_then(|e| e.get(i)).map_or(0.0, |e| e.1)))
            .collect();
        let n = delta.last().map_or(0.0, |d| d.1);
        // Below the first bucket's bound the histogram cannot say more than that.
        let first = delta.first().map_or(0.0, |d| d.0);
        let ms = |q: f64| match quantile(&delta, q) {
            Some(v) if v <= first => format!("< {:.1} ms", first * 1000.0),
            Some(v) => format!("{:.3} ms", v * 1000.0),
            None => "-".to_owned(),
        };
        if n > 0.0 {
            println!("stage {name}: p50 {}, p99 {} ({n:.0} recorded)", ms(0.5), ms(0.99));
        } else {
            println!("stage {name}: nothing recorded");
        }
    }
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build; run `cargo run --release -p behalf -- bench …` for real figures");
    }
    match cmd {
        BenchCmd::Views { events, queries } => views_bench(events, queries).await?,
        BenchCmd::Startup { events, nats: true, runs, .. } => startup::nats(events, runs).await?,
        BenchCmd::Startup { events, data_dir, runs, nats: false } => startup::run(events, data_dir, runs).await?,
        BenchCmd::Gdap { relationships } => startup::gdap(relationships)?,
        BenchCmd::Soak(a) => soak::run(a).await?,
        BenchCmd::Nats { nodes, in_flight, seconds, chained } => {
            nats_bench(nodes as usize, in_flight, seconds, &chained).await?;
        }
        BenchCmd::Http { concurrency, seconds, rate, .. } => {
            let raw = raw_baselines(concurrency, seconds)?;
            let raw_http = raw_http(concurrency, seconds).await?;
            // The in-process figure from the same run, for the ratio.
            let inproc = inprocess(concurrency, seconds, raw, true).await?;
            let (server, token) = start_server().await?;
            let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
            // The producers' client, sending once: refusals and latency as they are.
            let client = Arc::new(Client::with_http(http, &server.base(), &token).with_retry(Retry::NONE));
            let stages_before = stage_histograms();
            let (mut all, elapsed) = drive(concurrency, seconds, rate, move |w, n| {
                let client = Arc::clone(&client);
                async move {
                    let Ok(command) = serde_json::from_value::<Command>(ticket_body(w as u64 * 1_000_000_000 + n))
                    else {
                        return Sent::Failed;
                    };
                    match client.send_as(&command, &format!("bench-{w}-{n}"), None).await {
                        Ok(a) if !a.duplicate => Sent::Accepted,
                        Ok(_) => Sent::Failed,
                        Err(behalf_client::Error::Refused { .. }) => Sent::Refused,
                        Err(_) => Sent::Failed,
                    }
                }
            })
            .await?;
            let stages = stage_histograms();
            server.stop().await?;
            let label = match rate {
                Some(r) => format!("HTTP, {concurrency} connections, offered {r:.0}/s"),
                None => format!("HTTP, {concurrency} connections"),
            };
            report(&label, &mut all, elapsed);
            report_stages(&stages_before, &stages);
            let ours = all.accepted as f64 / elapsed;
            against_raw(ours, raw, None);
            println!("HTTP ÷ raw HTTP + sled group commit from this run: {:.2}", ours / raw_http);
            println!("HTTP ÷ in-process from this run: {:.2}", ours / inproc);
        }
        BenchCmd::Inprocess { producers, seconds, .. } => {
            let raw = raw_baselines(producers, seconds)?;
            let sealed = inprocess(producers, seconds, raw, true).await?;
            let clear = inprocess(producers, seconds, raw, false).await?;
            println!(
                "sealing personal data (10,000 contacts): sealed ÷ not sealed from this run: {:.3} ({:+.1} %)",
                sealed / clear,
                (sealed / clear - 1.0) * 100.0
            );
        }
    }
    Ok(())
}
