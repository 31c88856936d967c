//! `behalf bench soak`: a deterministic model of a working day, driven over HTTP
//! through `behalf-client` against `behalf serve` — a child process, on a temporary
//! directory (embedded) or on a local NATS cluster — whose resident memory it reports.
//!
//! Partners sync their users, groups and GDAP relationships through a lifecycle
//! (approval pending → active → expiring → expired, auto-extended, renewed; access
//! assignments removed and restored); their admin agents open tickets for their
//! customers and work them (notes, attachments, escalations, closing, reopening); a
//! non-admin user and a customer of another partner are tried now and then; the vendor
//! responds and works the escalation queue; readers list and open tickets as the
//! console does. Each worker owns its partners, so the model knows, before it sends,
//! how every command must be answered (accepted, or refused by which rule) and what
//! every read must show. Any other answer is a mismatch; the run exits 0 only when
//! every check at the end passes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use behalf_client::{Accepted, Client};
use behalf_domain::Command;
use serde_json::{json, Value};

use super::{counter, percentiles};

/// `behalf bench soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Minutes to run the day (figures are printed every `--report-seconds`; RSS and
    /// p99 bounds are asserted only from 10 minutes on)
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Partner tenants (each with a directory sync, an admin agent and a plain user)
    #[arg(long, default_value_t = 20)]
    pub partners: usize,
    /// Customers in all, spread over the partners (one GDAP relationship each)
    #[arg(long, default_value_t = 400)]
    pub customers: usize,
    /// Operations a second offered in all (commands and reads)
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Concurrent clients (each owns partners; at most one per partner)
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// The seed of the day: the same seed makes the same ids and the same choices
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds between the printed figures
    #[arg(long, default_value_t = 60)]
    pub report_seconds: u64,
    /// Run on NATS JetStream instead of the embedded engine: a local nats-server of
    /// this many nodes (3: a cluster with R3 streams) started for the day, the server
    /// being `behalf serve --nats` on it
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub nats_nodes: Option<u64>,
}

const HELPDESK: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
/// The queue escalations of office365 tickets go to (R21).
const QUEUE: &str = "commercial.office365";
const DAY_MS: i64 = 86_400_000;

/// Where a relationship stands in its lifecycle, as the model drove it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Grant {
    Pending,
    Active,
    Expiring,
    /// Status `active`, its end passed, no auto-extension.
    Expired,
    /// Status `active`, its end passed, rolled forward by auto-extension (R5).
    Extended,
}

impl Grant {
    /// R4/R5/R24: whether the partner may act for and see the customer.
    fn live(self) -> bool {
        matches!(self, Grant::Active | Grant::Extended)
    }
}

struct Customer {
    id: String,
    grant: Grant,
    /// The access assignment on the relationship is active (R6).
    assigned: bool,
    tickets: Vec<usize>,
}

impl Customer {
    /// R18 for the partner's admin agent: `None` when it may act, else the code.
    fn refusal(&self) -> Option<&'static str> {
        match self.grant {
            Grant::Pending | Grant::Expiring => Some("gdap.relationship_inactive"),
            Grant::Expired => Some("gdap.relationship_expired"),
            Grant::Active | Grant::Extended if !self.assigned => Some("gdap.no_access"),
            Grant::Active | Grant::Extended => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Open,
    /// The vendor asked for the partner's attention; the partner's next note clears it.
    Attention,
    Closed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Attention => "attention_needed",
            Status::Closed => "closed",
        }
    }
}

struct Ticket {
    id: String,
    customer: usize,
    status: Status,
    version: u64,
    notes: usize,
}

struct Partner {
    id: String,
    group: String,
    sync: Client,
    agent: Client,
    agent_token: String,
    plain: Client,
    customers: Vec<Customer>,
    tickets: Vec<Ticket>,
    /// Attention requests accepted on the partner's tickets (each a notice on its queue).
    attention: u64,
    /// The notices its agent took from `partner.<id>`, by source event.
    notices: HashMap<String, u32>,
}

/// What the model expects of one command.
enum Expect {
    Accepted,
    Refused(&'static str),
}

/// Figures of one report window.
#[derive(Default)]
struct Window {
    accepted: BTreeMap<&'static str, u64>,
    latency_us: BTreeMap<&'static str, Vec<u32>>,
    refused: BTreeMap<String, u64>,
}

/// Everything the workers share: the window, the run's totals and its failures.
#[derive(Default)]
struct Shared {
    window: Window,
    /// Command latencies by third of the run (for the p99 bound).
    thirds: [Vec<u32>; 3],
    predicted: BTreeMap<String, u64>,
    mismatches: Vec<String>,
    mismatch_count: u64,
    failures: Vec<String>,
    failure_count: u64,
    operations: u64,
    escalations: u64,
    last_position: u64,
}

impl Shared {
    fn mismatch(&mut self, what: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < 20 {
            self.mismatches.push(what);
        }
    }
    fn failure(&mut self, what: String) {
        self.failure_count += 1;
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }
}

/// One run's context for the workers.
struct Day {
    http: reqwest::Client,
    base: String,
    vendor: String,
    vendor_client: Client,
    shared: Mutex<Shared>,
    started: Instant,
    length: Duration,
}

impl Day {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn third(&self) -> usize {
        ((self.started.elapsed().as_secs_f64() / self.length.as_secs_f64()) * 3.0).min(2.0) as usize
    }

    /// Sends `body` with `client` as the model expects; answers the acceptance, if any.
    async fn command(&self, kind: &'static str, client: &Client, body: Value, expect: Expect) -> Option<Accepted> {
        let t0 = Instant::now();
        let sent = match serde_json::from_value::<Command>(body) {
            Ok(command) => client.send(&command).await,
            Err(e) => {
                self.lock().failure(format!("{kind}: the soak built a command the API does not have: {e}"));
                return None;
            }
        };
        let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let third = self.third();
        let mut s = self.lock();
        s.operations += 1;
        s.window.latency_us.entry("command").or_default().push(us);
        s.thirds[third].push(us);
        if let Expect::Refused(code) = expect {
            *s.predicted.entry(code.to_owned()).or_default() += 1;
        }
        match (sent, expect) {
            (Ok(a), Expect::Accepted) => {
                *s.window.accepted.entry(kind).or_default() += 1;
                s.last_position = s.last_position.max(a.position);
                Some(a)
            }
            (Err(behalf_client::Error::Refused { refusal, .. }), Expect::Refused(code)) if refusal.code == code => {
                let rule = refusal.rule.unwrap_or_else(|| refusal.code.clone());
                *s.window.refused.entry(rule).or_default() += 1;
                None
            }
            (Ok(a), Expect::Refused(code)) => {
                s.mismatch(format!("{kind}: accepted at {}, the model expected {code}", a.position));
                s.last_position = s.last_position.max(a.position);
                None
            }
            (Err(behalf_client::Error::Refused { refusal, .. }), expect) => {
                let wanted = match expect {
                    Expect::Accepted => "acceptance",
                    Expect::Refused(code) => code,
                };
                s.mismatch(format!(
                    "{kind}: refused {} ({}), the model expected {wanted}",
                    refusal.code, refusal.message
                ));
                None
            }
            (Err(e), _) => {
                s.failure(format!("{kind}: {e}"));
                None
            }
        }
    }

    /// A read: its status and JSON body, timed under `route`.
    async fn read(&self, route: &'static str, token: &str, path: &str) -> Option<(u16, Value)> {
        let t0 = Instant::now();
        let answer = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await;
        let answer = match answer {
            Ok(r) => {
                let status = r.status().as_u16();
                r.json::<Value>().await.map(|v| (status, v))
            }
            Err(e) => Err(e),
        };
        let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let mut s = self.lock();
        s.operations += 1;
        s.window.latency_us.entry(route).or_default().push(us);
        match answer {
            Ok((status, v)) if status >= 500 => {
                s.failure(format!("{route} {path}: {status} {v}"));
                None
            }
            Ok(a) => Some(a),
            Err(e) => {
                s.failure(format!("{route} {path}: {e}"));
                None
            }
        }
    }

    fn position(&self) -> u64 {
        self.lock().last_position
    }
}

/// `n` days before now, as the API writes times.
fn days_ago(n: i64) -> String {
    use behalf_service::clock::Clock as _;
    behalf_service::clock::SystemClock.now().plus_millis(-n * DAY_MS).to_string()
}

fn relationship(p: &Partner, c: &Customer, rel: &str) -> Value {
    let (status, activated, auto_extend) = match c.grant {
        Grant::Pending => ("approval_pending", None, "PT0S"),
        Grant::Active => ("active", Some(days_ago(30)), "PT0S"),
        Grant::Expiring => ("expiring", Some(days_ago(700)), "PT0S"),
        Grant::Expired => ("active", Some(days_ago(800)), "PT0S"),
        Grant::Extended => ("active", Some(days_ago(800)), "P180D"),
    };
    let mut v = json!({"type":"gdap.relationship.upsert","relationship_id":rel,"partner_id":p.id,"customer_id":c.id,
        "status":status,"roles":[HELPDESK],"duration":"P730D","auto_extend":auto_extend});
    if let Some(at) = activated {
        v["activated_at"] = at.into();
    }
    v
}

fn assignment(p: &Partner, rel: &str, active: bool) -> Value {
    json!({"type":"gdap.assignment.upsert","assignment_id":format!("{rel}-helpdesk"),"relationship_id":rel,
        "group_id":p.group,"roles":[HELPDESK],"status": if active { "active" } else { "deleted" }})
}

fn ticket_open(customer: &str, partner: usize, n: u64, critical: bool, contacts: u64) -> Value {
    json!({
        "type": "ticket.open", "customer_id": customer, "workload": "office365",
        "title": format!("Soak ticket {n}"), "description": "Mail flow stopped for the sales team since this morning.",
        "severity": if critical { "critical" } else { "moderate" },
        "support_topic": "Exchange Online / Mail flow", "country_code": "ID",
        "contact": {"first_name": "Dewi", "last_name": "Sari", "preferred_contact": "email",
            "email": format!("agent{}@p{partner}.soak.example", n % contacts)}
    })
}

/// A deterministic id of the day: `kind` tells partners, users, groups and customers apart.
fn id(seed: u64, kind: u16, n: usize) -> String {
    format!("{:08x}-{kind:04x}-4000-8000-{n:012x}", seed & 0xffff_ffff)
}

/// `behalf bench soak`.
pub async fn run(a: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.partners > 0 && a.workers > 0 && a.minutes > 0.0 && a.rate > 0.0, "nothing to run");
    anyhow::ensure!(a.customers >= a.partners, "--customers must be at least --partners (one each)");
    let cluster = a.nats_nodes.map(|n| behalf_nats::server::Cluster::start(n as usize)).transpose()?;
    // The server is `behalf serve`, a child process of its own: the RSS figures are the
    // server's alone, not this process's model of the day.
    let dir = tempfile::Builder::new().permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700)).tempdir()?;
    let role: Vec<String> = match &cluster {
        Some(c) => {
            vec!["serve".into(), "--nats".into(), c.urls(), "--nats-replicas".into(), c.replicas().to_string()]
        }
        None => vec!["serve".into()],
    };
    let role: Vec<&str> = role.iter().map(String::as_str).collect();
    let server = super::startup::Server::start_role(&role, dir.path())?;
    let admin_path = server.admin_token.clone().context("a fresh store writes an admin token")?;
    let admin = std::fs::read_to_string(&admin_path)?.trim().to_owned();
    // Where the log's bytes are: the data directory, or every node's store.
    let stores: Vec<std::path::PathBuf> = match &cluster {
        Some(c) => c.nodes.iter().map(|n| n.dir.clone()).collect(),
        None => vec![dir.path().to_path_buf()],
    };
    let base = server.base.clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let demo = crate::demo::Demo::new(base.clone())?;
    let vendor = demo.token(&admin, json!({"kind": "vendor", "label": "soak vendor"})).await?;
    let auditor = demo.token(&admin, json!({"kind": "auditor", "label": "soak auditor"})).await?;
    let client = |token: &str| Client::with_http(http.clone(), &base, token);
    let day = Arc::new(Day {
        http: http.clone(),
        base: base.clone(),
        vendor: vendor.clone(),
        vendor_client: client(&vendor),
        shared: Mutex::new(Shared::default()),
        started: Instant::now(),
        length: Duration::from_secs_f64(a.minutes * 60.0),
    });

    // The cast: partners, their users and group, customers, relationships, assignments.
    println!(
        "soak: {} partners, {} customers, {:.0} operations/s offered by {} workers for {} min, seed {}, on {}",
        a.partners,
        a.customers,
        a.rate,
        a.workers,
        a.minutes,
        a.seed,
        match a.nats_nodes {
            Some(n) => format!("NATS JetStream ({n} node(s), R{})", n.min(3)),
            None => "the embedded engine (sled)".into(),
        }
    );
    let mut partners = Vec::with_capacity(a.partners);
    for p in 0..a.partners {
        let pid = id(a.seed, 0x5000, p);
        let (admin_user, plain_user, group) = (id(a.seed, 0x5a00, p), id(a.seed, 0x5b00, p), id(a.seed, 0x5900, p));
        let sync = demo.token(&admin, json!({"kind": "partner_sync", "partner_id": pid})).await?;
        let agent_token =
            demo.token(&admin, json!({"kind": "partner_agent", "partner_id": pid, "user_id": admin_user})).await?;
        let plain =
            demo.token(&admin, json!({"kind": "partner_agent", "partner_id": pid, "user_id": plain_user})).await?;
        let partner = Partner {
            id: pid.clone(),
            group: group.clone(),
            sync: client(&sync),
            agent: client(&agent_token),
            agent_token,
            plain: client(&plain),
            customers: Vec::new(),
            tickets: Vec::new(),
            attention: 0,
            notices: HashMap::new(),
        };
        let domain = format!("p{p}.soak.example");
        let setup = [
            (
                &day.vendor_client,
                json!({"type":"partner.register","partner_id":pid,"name":format!("Partner {p}"),"program":"direct_bill","domains":[domain],"cloud":"commercial"}),
            ),
            (
                &partner.sync,
                json!({"type":"partner.user.upsert","partner_id":pid,"user_id":admin_user,"email":format!("admin@{domain}"),"admin_agent":true}),
            ),
            (
                &partner.sync,
                json!({"type":"partner.user.upsert","partner_id":pid,"user_id":plain_user,"email":format!("user@{domain}"),"admin_agent":false}),
            ),
            (&partner.sync, json!({"type":"group.member.add","partner_id":pid,"group_id":group,"user_id":admin_user})),
            (&partner.sync, json!({"type":"group.member.add","partner_id":pid,"group_id":group,"user_id":plain_user})),
        ];
        for (c, body) in setup {
            day.command("setup", c, body, Expect::Accepted).await.context("setting up a partner")?;
        }
        partners.push(partner);
    }
    for c in 0..a.customers {
        let p = c % a.partners;
        let cid = id(a.seed, 0x5c00, c);
        day.command(
            "setup",
            &day.vendor_client,
            json!({"type":"customer.register","customer_id":cid,"name":format!("Customer {c}"),"domains":[format!("c{c}.soak.example")],"cloud":"commercial"}),
            Expect::Accepted,
        )
        .await
        .context("registering a customer")?;
        let customer = Customer { id: cid, grant: Grant::Active, assigned: true, tickets: Vec::new() };
        let partner = &partners[p];
        let rel = format!("rel-{}", customer.id);
        day.command("setup", &partner.sync, relationship(partner, &customer, &rel), Expect::Accepted)
            .await
            .context("granting a relationship")?;
        day.command("setup", &partner.sync, assignment(partner, &rel, true), Expect::Accepted)
            .await
            .context("assigning access")?;
        partners[p].customers.push(customer);
    }
    {
        let s = day.lock();
        anyhow::ensure!(
            s.failures.is_empty() && s.mismatches.is_empty(),
            "setting up: {:?} {:?}",
            s.failures,
            s.mismatches
        );
    }
    let partners: Vec<Arc<tokio::sync::Mutex<Partner>>> =
        partners.into_iter().map(|p| Arc::new(tokio::sync::Mutex::new(p))).collect();

    // The vendor works the escalation queue: every message leased, counted, acked.
    let delivered: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let queue_worker = {
        let (day, delivered, stop) = (Arc::clone(&day), Arc::clone(&delivered), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if work_queue(&day, &delivered).await == 0 {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        })
    };

    // The workers: each owns the partners p with p % workers == its number.
    let workers = a.workers.min(a.partners);
    let deadline = Instant::now() + day.length;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let own: Vec<_> = partners.iter().skip(w).step_by(workers).cloned().collect();
        let all = partners.clone();
        let day = Arc::clone(&day);
        let interval = Duration::from_secs_f64(workers as f64 / a.rate);
        let seed = a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w as u64;
        let partner_count = a.partners;
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut next = Instant::now();
            let mut n = 0u64;
            while Instant::now() < deadline {
                tokio::time::sleep_until(next.into()).await;
                next = (next + interval).max(Instant::now() - interval * 4);
                n += 1;
                let mine = rng.usize(..own.len());
                let index = (w + mine * workers) % partner_count;
                let mut p = own[mine].lock().await;
                let other = all[(index + 1) % partner_count].clone();
                step(&day, &mut rng, &mut p, index, &other, n * workers as u64 + w as u64).await;
            }
        }));
    }

    // Every report window: throughput by kind, latency by route, refusals by rule,
    // RSS, disk per commit, follower lag, queue depth.
    let server_rss = || server.rss_mib().unwrap_or(0.0);
    let mut rss_by_third: [f64; 3] = [server_rss(), 0.0, 0.0];
    let mut window_no = 0u32;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(a.report_seconds.max(1)))).await;
        window_no += 1;
        let w = std::mem::take(&mut day.lock().window);
        let rss = server_rss();
        let own_rss = super::startup::own_rss_mib();
        let third = day.third();
        rss_by_third[third] = rss_by_third[third].max(rss);
        let metrics = day.http.get(format!("{base}/metrics")).send().await?.text().await.unwrap_or_default();
        let head = counter(&metrics, "behalf_log_head").unwrap_or(0.0);
        let (views_lag, gdap_lag) = (
            counter(&metrics, "behalf_views_lag").unwrap_or(-1.0),
            counter(&metrics, "behalf_gdap_lag").unwrap_or(-1.0),
        );
        let depth = day
            .read("queue", &vendor, &format!("/v1/queues/{QUEUE}"))
            .await
            .map_or(-1, |(_, v)| v["depth"].as_i64().unwrap_or(-1));
        let disk = stores.iter().map(|d| super::startup::du(d)).sum::<u64>() as f64 / head.max(1.0);
        let secs = a.report_seconds.max(1) as f64;
        let kinds: Vec<String> = w.accepted.iter().map(|(k, n)| format!("{k} {:.1}/s", *n as f64 / secs)).collect();
        let routes: Vec<String> = w
            .latency_us
            .into_iter()
            .map(|(r, mut l)| {
                let (p50, p99) = percentiles(&mut l);
                format!("{r} {p50:.1}/{p99:.1}")
            })
            .collect();
        let refused: Vec<String> = w.refused.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!(
            "[{window_no}] accepted: {} | p50/p99 ms: {} | refused: {} | RSS {rss:.0} MiB (the day's model {own_rss:.0}) | disk {:.0} B/commit | lag: views {views_lag}, gdap {gdap_lag} commits | queue {depth}",
            kinds.join(", "),
            routes.join(", "),
            if refused.is_empty() { "none".to_owned() } else { refused.join(", ") },
            disk
        );
    }
    for t in tasks {
        t.await?;
    }

    // The end: the queue drained, every ticket read back, the chain, the views.
    let expected_escalations = day.lock().escalations;
    let drained_by = Instant::now() + Duration::from_secs(60);
    while delivered.lock().map(|d| d.len() as u64).unwrap_or(0) < expected_escalations && Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    queue_worker.await?;
    let mut problems = Vec::new();
    {
        let d = delivered.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let twice = d.values().filter(|&&n| n > 1).count();
        println!("escalations: {expected_escalations} accepted, {} delivered, {twice} delivered twice", d.len());
        if d.len() as u64 != expected_escalations || twice > 0 {
            problems.push(format!(
                "escalations: {expected_escalations} accepted but {} delivered ({twice} twice)",
                d.len()
            ));
        }
    }
    let mut attention = (0, 0, 0);
    for p in &partners {
        let mut p = p.lock().await;
        let drained_by = Instant::now() + Duration::from_secs(30);
        while (p.notices.len() as u64) < p.attention && Instant::now() < drained_by {
            if take_notices(&day, &mut p).await == 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        attention.0 += p.attention;
        attention.1 += p.notices.len() as u64;
        attention.2 += p.notices.values().filter(|&&n| n > 1).count();
    }
    println!(
        "attention requests: {} accepted, {} notices taken by the partners, {} twice",
        attention.0, attention.1, attention.2
    );
    if attention.0 != attention.1 || attention.2 > 0 {
        problems.push(format!(
            "attention notices: {} requested, {} taken ({} twice)",
            attention.0, attention.1, attention.2
        ));
    }
    let (tickets, unreadable) = read_back(&day, &partners).await;
    println!("tickets read back as the vendor: {tickets}, {unreadable} not as acknowledged");
    if unreadable > 0 {
        problems.push(format!("{unreadable} tickets do not read as their acknowledged commands left them"));
    }
    let verify = day.read("verify", &auditor, "/v1/audit/verify").await;
    match verify {
        Some((200, v)) if v["ok"] == json!(true) => println!("chain: {} commits verify", v["verified"]),
        other => problems.push(format!("the chain does not verify: {other:?}")),
    }

    let s = std::mem::take(&mut *day.lock());
    server.stop()?;
    if cluster.is_none() {
        println!("{}", super::startup::disk_per_commit(dir.path()).await?);
    }
    let views_equal =
        crate::audit::run(crate::audit::AuditCmd::replay(dir.path(), cluster.as_ref().map(|c| c.urls()))).await?;
    if !views_equal {
        problems.push("the views differ from a rebuild from the log".into());
    }
    let predicted: Vec<String> = s.predicted.iter().map(|(c, n)| format!("{c} {n}")).collect();
    println!("predicted refusals: {}", predicted.join(", "));
    for code in ["partner.not_admin_agent", "gdap.no_relationship", "gdap.relationship_inactive", "gdap.no_access"] {
        if s.predicted.get(code).copied().unwrap_or(0) == 0 {
            problems.push(format!("the day predicted no {code} refusal: make it longer or larger"));
        }
    }
    if s.mismatch_count > 0 {
        problems.push(format!("{} answers the model did not predict, e.g. {:#?}", s.mismatch_count, s.mismatches));
    }
    if s.failure_count > 0 {
        problems.push(format!("{} failures (5xx, transport), e.g. {:#?}", s.failure_count, s.failures));
    }
    let mut thirds = s.thirds;
    let p99: Vec<f64> = thirds.iter_mut().map(|t| percentiles(t).1).collect();
    println!(
        "by third of the run: command p99 {:.1} / {:.1} / {:.1} ms; RSS {:.0} / {:.0} / {:.0} MiB",
        p99[0], p99[1], p99[2], rss_by_third[0], rss_by_third[1], rss_by_third[2]
    );
    if a.minutes >= 10.0 {
        if rss_by_third[2] > 1.1 * rss_by_third[1] {
            problems.push(format!("RSS grew {:.0} → {:.0} MiB over the last third", rss_by_third[1], rss_by_third[2]));
        }
        if p99[2] > 2.0 * p99[0] {
            problems.push(format!("command p99 {:.1} ms in the last third, {:.1} in the first", p99[2], p99[0]));
        }
    }
    println!("operations: {} in {:.1} min", s.operations, day.started.elapsed().as_secs_f64() / 60.0);
    if problems.is_empty() {
        println!("soak: ok");
        Ok(())
    } else {
        for p in &problems {
            println!("FAILED: {p}");
        }
        anyhow::bail!("soak: {} checks failed", problems.len())
    }
}

/// One operation of a worker for partner `p` (number `index`); `other` is another
/// partner, whose customers `p` has no relationship with.
async fn step(
    day: &Day,
    rng: &mut fastrand::Rng,
    p: &mut Partner,
    index: usize,
    other: &tokio::sync::Mutex<Partner>,
    n: u64,
) {
    let roll = rng.u32(..100);
    let open: Vec<usize> = (0..p.tickets.len()).filter(|&t| p.tickets[t].status != Status::Closed).collect();
    let closed: Vec<usize> = (0..p.tickets.len()).filter(|&t| p.tickets[t].status == Status::Closed).collect();
    match roll {
        // Open a ticket for one of the partner's customers.
        0..=23 => {
            let c = rng.usize(..p.customers.len());
            let critical = rng.u32(..10) == 0;
            let expect = p.customers[c].refusal().map_or(Expect::Accepted, Expect::Refused);
            let body = ticket_open(&p.customers[c].id, index, n, critical, 5_000);
            if let Some(a) = day.command("ticket.open", &p.agent, body, expect).await {
                let Some(id) = a.ticket_id else {
                    day.lock().mismatch("ticket.open accepted without a ticket id".into());
                    return;
                };
                day.lock().escalations += u64::from(critical);
                p.customers[c].tickets.push(p.tickets.len());
                p.tickets.push(Ticket { id, customer: c, status: Status::Open, version: a.version, notes: 0 });
            }
        }
        // A user who is not an admin agent (R3), and a customer of another partner (R4).
        24..=25 => {
            let c = rng.usize(..p.customers.len());
            let body = ticket_open(&p.customers[c].id, index, n, false, 5_000);
            day.command("ticket.open", &p.plain, body, Expect::Refused("partner.not_admin_agent")).await;
        }
        26..=27 => {
            let foreign = {
                let o = other.try_lock();
                match o {
                    Ok(o) if o.id != p.id => o.customers.first().map(|c| c.id.clone()),
                    Ok(_) | Err(_) => None,
                }
            };
            if let Some(customer) = foreign {
                let body = ticket_open(&customer, index, n, false, 5_000);
                day.command("ticket.open", &p.agent, body, Expect::Refused("gdap.no_relationship")).await;
            }
        }
        // Work an open ticket: note, attach, escalate, close; the vendor responds.
        28..=60 if !open.is_empty() => {
            let t = open[rng.usize(..open.len())];
            let (id, c) = (p.tickets[t].id.clone(), p.tickets[t].customer);
            let expect = || p.customers[c].refusal().map_or(Expect::Accepted, Expect::Refused);
            let (kind, client, body) = match roll {
                28..=45 => (
                    "ticket.note",
                    &p.agent,
                    json!({"type":"ticket.note","ticket_id":id,"text":format!("Tried step {n}.")}),
                ),
                46..=48 => (
                    "ticket.attach",
                    &p.agent,
                    json!({"type":"ticket.attach","ticket_id":id,"name":format!("trace-{n}.har"),"uri":format!("https://files.p{index}.soak.example/{n}")}),
                ),
                49..=52 => (
                    "ticket.escalate",
                    &p.agent,
                    json!({"type":"ticket.escalate","ticket_id":id,"reason":"business impact grows"}),
                ),
                53..=54 => (
                    "ticket.respond",
                    &day.vendor_client,
                    json!({"type":"ticket.respond","ticket_id":id,"text":"We are looking into it."}),
                ),
                55 => (
                    "ticket.request_attention",
                    &day.vendor_client,
                    json!({"type":"ticket.request_attention","ticket_id":id,"text":"Please send the message trace."}),
                ),
                _ => (
                    "ticket.close",
                    &p.agent,
                    json!({"type":"ticket.close","ticket_id":id,"resolution":"Mail flows again."}),
                ),
            };
            let expect = match kind {
                "ticket.respond" => Expect::Accepted,
                "ticket.request_attention" if p.tickets[t].status == Status::Attention => {
                    Expect::Refused("ticket.invalid_transition")
                }
                "ticket.request_attention" => Expect::Accepted,
                _ => expect(),
            };
            if let Some(a) = day.command(kind, client, body, expect).await {
                let ticket = &mut p.tickets[t];
                ticket.version = a.version;
                match kind {
                    "ticket.note" => {
                        ticket.notes += 1;
                        ticket.status = Status::Open;
                    }
                    "ticket.close" => ticket.status = Status::Closed,
                    "ticket.escalate" => day.lock().escalations += 1,
                    "ticket.request_attention" => {
                        ticket.status = Status::Attention;
                        p.attention += 1;
                    }
                    _ => {}
                }
            }
        }
        61..=63 if !closed.is_empty() => {
            let t = closed[rng.usize(..closed.len())];
            let c = p.tickets[t].customer;
            let expect = p.customers[c].refusal().map_or(Expect::Accepted, Expect::Refused);
            let body = json!({"type":"ticket.reopen","ticket_id":p.tickets[t].id,"reason":"It happened again."});
            if let Some(a) = day.command("ticket.reopen", &p.agent, body, expect).await {
                p.tickets[t].version = a.version;
                p.tickets[t].status = Status::Open;
            }
        }
        // The partner's agent works its own queue (the vendor's requests for attention).
        64..=65 => {
            take_notices(day, p).await;
        }
        // Read as the console does: a customer's tickets, then one ticket.
        66..=79 => {
            let c = rng.usize(..p.customers.len());
            let customer = &p.customers[c];
            let path = format!("/v1/customers/{}/tickets?limit=500&min_position={}", customer.id, day.position());
            if let Some((status, v)) = day.read("list", &p.agent_token, &path).await {
                let mut got: Vec<&str> =
                    v["tickets"].as_array().into_iter().flatten().filter_map(|t| t["ticket_id"].as_str()).collect();
                got.sort_unstable();
                let mut want: Vec<&str> = if customer.grant.live() {
                    customer.tickets.iter().map(|&t| p.tickets[t].id.as_str()).collect()
                } else {
                    Vec::new()
                };
                want.sort_unstable();
                if status != 200 || (want.len() <= 500 && got != want) || (want.len() > 500 && got.len() != 500) {
                    day.lock().mismatch(format!(
                        "list of customer {} ({:?}): {status}, {} tickets, the model expected {}",
                        customer.id,
                        customer.grant,
                        got.len(),
                        want.len()
                    ));
                }
            }
        }
        80..=93 if !p.tickets.is_empty() => {
            let t = &p.tickets[rng.usize(..p.tickets.len())];
            let visible = p.customers[t.customer].grant.live();
            let path = format!("/v1/tickets/{}?min_position={}", t.id, day.position());
            if let Some((status, v)) = day.read("ticket", &p.agent_token, &path).await {
                let ok = match visible {
                    true => status == 200 && v["version"] == json!(t.version),
                    false => status == 404 && v["code"] == json!("ticket.not_found"),
                };
                if !ok {
                    day.lock().mismatch(format!(
                        "ticket {} (version {}, visible {visible}): {status} version {}",
                        t.id, t.version, v["version"]
                    ));
                }
            }
        }
        // The partner's directory sync moves a relationship along its lifecycle, or
        // removes or restores its access assignment.
        94..=99 => {
            let c = rng.usize(..p.customers.len());
            let rel = format!("rel-{}", p.customers[c].id);
            // Most grants stay live: a removed assignment is restored at its next turn, and
            // an active relationship is mostly renewed (a new activation time).
            if !p.customers[c].assigned || rng.u32(..8) == 0 {
                let active = !p.customers[c].assigned;
                if day
                    .command("gdap.assignment", &p.sync, assignment(p, &rel, active), Expect::Accepted)
                    .await
                    .is_some()
                {
                    p.customers[c].assigned = active;
                }
            } else {
                let next = match p.customers[c].grant {
                    Grant::Pending => Grant::Active,
                    Grant::Active => match rng.u32(..5) {
                        0 => Grant::Expiring,
                        1 => Grant::Pending,
                        _ => Grant::Active,
                    },
                    Grant::Expiring if rng.bool() => Grant::Expired,
                    Grant::Expiring => Grant::Extended,
                    Grant::Expired | Grant::Extended => Grant::Active,
                };
                let before = p.customers[c].grant;
                p.customers[c].grant = next;
                let body = relationship(p, &p.customers[c], &rel);
                if day.command("gdap.relationship", &p.sync, body, Expect::Accepted).await.is_none() {
                    p.customers[c].grant = before;
                }
            }
        }
        // Nothing to work on yet: open one instead next time.
        _ => {}
    }
}

/// The vendor leases what the escalation queue holds; see [`lease_and_ack`].
async fn work_queue(day: &Day, delivered: &Mutex<HashMap<String, u32>>) -> usize {
    let mut taken = HashMap::new();
    let n = lease_and_ack(day, QUEUE, &day.vendor, &mut taken).await;
    if let Ok(mut d) = delivered.lock() {
        taken.into_iter().for_each(|(k, v)| *d.entry(k).or_default() += v);
    }
    n
}

/// The partner's agent takes the notices of its own queue; see [`lease_and_ack`].
async fn take_notices(day: &Day, p: &mut Partner) -> usize {
    let token = p.agent_token.clone();
    lease_and_ack(day, &format!("partner.{}", p.id), &token, &mut p.notices).await
}

/// Leases up to 100 messages of `queue` with `token`, counts each by its source event
/// in `delivered` and acks it; answers how many it took.
async fn lease_and_ack(day: &Day, queue: &str, token: &str, delivered: &mut HashMap<String, u32>) -> usize {
    let path = format!("/v1/queues/{queue}/messages?limit=100&lease_ms=60000");
    let Some((200, v)) = day.read("lease", token, &path).await else {
        return 0;
    };
    let messages = v["messages"].as_array().or_else(|| v.as_array()).cloned().unwrap_or_default();
    for m in &messages {
        let (Some(id), Some(source)) = (m["id"].as_str(), m["source_event_id"].as_str()) else {
            day.lock().mismatch(format!("a queue message without an id: {m}"));
            continue;
        };
        *delivered.entry(source.to_owned()).or_default() += 1;
        let ack =
            day.http.post(format!("{}/v1/queues/{queue}/messages/{id}/ack", day.base)).bearer_auth(token).send().await;
        if !matches!(ack.as_ref().map(reqwest::Response::status), Ok(s) if s.as_u16() == 204) {
            day.lock().failure(format!("ack of {id}: {ack:?}"));
        }
    }
    messages.len()
}

/// Reads every ticket the model holds as the vendor; answers how many and how many do
/// not read as the acknowledged commands left them (version, status, notes).
async fn read_back(day: &Day, partners: &[Arc<tokio::sync::Mutex<Partner>>]) -> (usize, usize) {
    let (mut count, mut bad) = (0, 0);
    let at = day.position();
    for p in partners {
        let p = p.lock().await;
        for t in &p.tickets {
            count += 1;
            let path = format!("/v1/tickets/{}?min_position={at}", t.id);
            let ok = match day.read("ticket", &day.vendor, &path).await {
                Some((200, v)) => {
                    let status = t.status.as_str();
                    let notes = v["notes"].as_array().map_or(0, |n| {
                        n.iter().filter(|n| n["author"].as_str().is_none_or(|a| !a.contains("vendor"))).count()
                    });
                    v["version"] == json!(t.version) && v["status"] == json!(status) && notes >= t.notes
                }
                _ => false,
            };
            if !ok {
                bad += 1;
                day.lock().mismatch(format!("ticket {} does not read as acknowledged (version {})", t.id, t.version));
            }
        }
    }
    (count, bad)
}
