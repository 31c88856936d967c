//! `behalf bench startup --events N`: fills (or reuses) a data directory whose log
//! holds about N events, lets a `behalf serve` run on it until the views, the notifier
//! and the background chain walk have caught up (as a server that has been running
//! would have), stops it, then times cold starts of `behalf serve` until `/readyz`
//! answers ready. Prints the resident memory once ready and the bytes on disk per
//! commit beside the bytes the log stores for a commit.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use behalf_log::EventLog as _;
use behalf_sled_store::DataDir;

use crate::demo::{cast, Demo};

/// A `behalf` role as a child process on a data directory (killed if dropped before
/// it was stopped).
pub(super) struct Server {
    child: Child,
    pub(super) base: String,
    /// From spawning to "listening on".
    listening: Duration,
    /// Where a fresh store's first admin token was written (said before "listening on").
    pub(super) admin_token: Option<PathBuf>,
}

impl Server {
    fn start(dir: &Path) -> anyhow::Result<Server> {
        Server::start_role(&["serve"], dir)
    }

    /// `behalf <role…> --listen 127.0.0.1:0 --data-dir <dir>`.
    pub(super) fn start_role(role: &[&str], dir: &Path) -> anyhow::Result<Server> {
        let t0 = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args(role)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("BEHALF_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut admin_token = None;
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                if let Some(rest) = l.strip_prefix("admin token written to ") {
                    let path = rest.split(" (").next().unwrap_or(rest);
                    admin_token = Some(PathBuf::from(path));
                }
                l.strip_prefix("listening on ").map(str::to_owned)
            })
            .ok_or_else(|| anyhow::anyhow!("behalf {} did not start on {}", role.join(" "), dir.display()))?;
        let listening = t0.elapsed();
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Server { child, base: format!("http://{addr}"), listening, admin_token })
    }

    /// Polls `/readyz` until it answers 200.
    async fn ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "not ready after 10 minutes");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn metric(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<f64> {
        let page = http.get(format!("{}/metrics", self.base)).send().await?.text().await?;
        super::counter(&page, name).ok_or_else(|| anyhow::anyhow!("no metric {name}"))
    }

    /// Resident memory in MiB, from /proc.
    pub(super) fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    }

    /// SIGTERM, then waits for the graceful stop.
    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "behalf serve stopped with {status}");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The directory used when none is given: kept between runs, so a second run reuses it.
pub fn default_dir(events: u64) -> PathBuf {
    std::env::temp_dir().join(format!("behalf-bench-startup-{events}"))
}

const FILLED: &str = "bench-filled";

/// Fills `dir` with the demo's cast (through the API) and about `events` events (into
/// the log directly: tickets opened, notes, escalations, refusals), then runs a server
/// until everything has caught up with the log.
async fn prepare(dir: &Path, events: u64, http: &reqwest::Client) -> anyhow::Result<u64> {
    if let Ok(text) = std::fs::read_to_string(dir.join(FILLED)) {
        if let Some(filled) = text.trim().strip_prefix(&format!("{events} ")).and_then(|f| f.parse().ok()) {
            println!("reusing {} ({filled} events)", dir.display());
            return Ok(filled);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let server = Server::start(dir)?;
    let admin = std::fs::read_to_string(DataDir::new(dir).admin_token())?.trim().to_owned();
    let mut d = Demo::new(server.base.clone())?;
    cast(&mut d, &admin).await?;
    anyhow::ensure!(d.failures.is_empty(), "setting up: {}", d.failures.join("; "));
    server.stop()?;
    let t0 = Instant::now();
    let (log, _) = DataDir::new(dir).open_log(Default::default())?;
    let filled = super::fill(&log, events).await?;
    let head = log.head().await?;
    drop(log);
    println!("filled {filled} events in {head} commits in {:.1} s", t0.elapsed().as_secs_f64());
    // A server that has been running: views, queues and the chain walk caught up.
    let t1 = Instant::now();
    let server = Server::start(dir)?;
    server.ready(http).await?;
    for name in ["behalf_views_position", "behalf_notifier_position", "behalf_log_chain_verified_position"] {
        while server.metric(http, name).await? < head as f64 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let caught_up = t1.elapsed();
    let t2 = Instant::now();
    server.stop()?;
    println!(
        "caught up (views, notifier, chain walk) in {:.1} s; stopped in {:.1} s (sled's snapshots written as it stops)",
        caught_up.as_secs_f64(),
        t2.elapsed().as_secs_f64()
    );
    std::fs::write(dir.join(FILLED), format!("{events} {filled}\n"))?;
    Ok(filled)
}

/// The bytes a file or a directory takes on disk (its blocks, not its length).
pub(super) fn du(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if meta.is_dir() {
        std::fs::read_dir(path).map_or(0, |rd| rd.filter_map(Result::ok).map(|e| du(&e.path())).sum())
    } else {
        use std::os::unix::fs::MetadataExt as _;
        meta.blocks() * 512
    }
}

/// What each store of the (stopped) data directory `dir` takes on disk per commit,
/// beside the bytes the log stores per commit record.
pub(super) async fn disk_per_commit(dir: &Path) -> anyhow::Result<String> {
    let (log, _) = DataDir::new(dir).open_log(Default::default())?;
    let head = log.head().await?;
    let mut record_bytes = 0u64;
    let mut after = 0;
    loop {
        let page = log.read_raw(after, 8192)?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        record_bytes += page.iter().map(|(_, v)| v.len() as u64).sum::<u64>();
    }
    drop(log);
    let per = |b: u64| b as f64 / head.max(1) as f64;
    let mut parts: Vec<(String, u64)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), du(&e.path())))
        .collect();
    parts.sort();
    let total: u64 = parts.iter().map(|(_, b)| b).sum();
    Ok(format!(
        "disk over {head} commits: {} — {:.0} B/commit in all, {:.2} × the {:.0} B the log stores per commit record",
        parts.iter().map(|(p, b)| format!("{p} {:.0} B/commit", per(*b))).collect::<Vec<_>>().join(", "),
        per(total),
        per(total) / per(record_bytes),
        per(record_bytes)
    ))
}

pub async fn run(events: u64, dir: Option<PathBuf>, runs: usize) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| default_dir(events));
    let http = reqwest::Client::new();
    let filled = prepare(&dir, events, &http).await?;
    let mut ready = Vec::new();
    let mut rss = 0.0;
    for i in 0..runs.max(1) {
        let t0 = Instant::now();
        let server = Server::start(&dir)?;
        server.ready(&http).await?;
        let secs = t0.elapsed().as_secs_f64();
        rss = server.rss_mib().unwrap_or(0.0);
        println!(
            "run {}: listening after {:.2} s, ready after {secs:.2} s, {rss:.0} MiB resident when ready",
            i + 1,
            server.listening.as_secs_f64()
        );
        ready.push(secs);
        server.stop()?;
    }
    println!("{}", disk_per_commit(&dir).await?);
    println!("resident memory when ready: {rss:.0} MiB");
    ready.sort_by(f64::total_cmp);
    let median = ready[ready.len() / 2];
    println!("start-up: {median:.2} s to ready over {filled} events");
    Ok(())
}

/// `behalf bench startup --nats`: a local one-node nats-server filled with about
/// `events` events, then cold starts of `behalf command` and `behalf project` (each
/// once before, so its GDAP snapshot is saved) until `/readyz` answers.
pub async fn nats(events: u64, runs: usize) -> anyhow::Result<()> {
    let cluster = behalf_nats::server::Cluster::start(1)?;
    let urls = cluster.urls();
    let t0 = Instant::now();
    let log = behalf_nats::NatsLog::open(behalf_nats::NatsOptions::new(urls.as_str())).await?;
    let filled = super::fill(&log, events).await?;
    let head = log.head().await?;
    drop(log);
    println!("filled {filled} events in {head} commits on NATS in {:.1} s", t0.elapsed().as_secs_f64());
    let http = reqwest::Client::new();
    for role in ["command", "project"] {
        let dir = tempfile::tempdir()?;
        let args = [role, "--nats", urls.as_str()];
        let mut ready = Vec::new();
        for i in 0..=runs.max(1) {
            let t = Instant::now();
            let server = Server::start_role(&args, dir.path())?;
            server.ready(&http).await?;
            let secs = t.elapsed().as_secs_f64();
            let rss = server.rss_mib().unwrap_or(0.0);
            let what = if i == 0 { "first start (no snapshot yet)".to_owned() } else { format!("run {i}") };
            println!("behalf {role} --nats, {what}: ready after {secs:.2} s, {rss:.0} MiB resident when ready");
            if i > 0 {
                ready.push(secs);
            }
            server.stop()?;
        }
        ready.sort_by(f64::total_cmp);
        println!("start-up on NATS, behalf {role}: {:.2} s to ready over {filled} events", ready[ready.len() / 2]);
    }
    Ok(())
}

/// Resident memory of this process in MiB.
pub(super) fn own_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")).map(|v| v.trim().trim_end_matches("kB").trim().to_owned())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `behalf bench gdap --relationships N`.
pub fn gdap(relationships: u64) -> anyhow::Result<()> {
    use behalf_domain::{Directory, Event};
    let samples = behalf_log::samples::every_event_type();
    let find = |name: &str| samples.iter().find(|e| e.type_name() == name).cloned();
    let (
        Some(Event::RelationshipUpserted(rel)),
        Some(Event::AssignmentUpserted(asg)),
        Some(Event::CustomerRegistered(cus)),
    ) = (find("RelationshipUpserted"), find("AssignmentUpserted"), find("CustomerRegistered"))
    else {
        anyhow::bail!("the samples lack a relationship, an assignment or a customer");
    };
    let (Some(Event::PartnerRegistered(par)), Some(Event::PartnerUserUpserted(usr))) =
        (find("PartnerRegistered"), find("PartnerUserUpserted"))
    else {
        anyhow::bail!("the samples lack a partner or a partner user");
    };
    let before = own_rss_mib();
    let t0 = Instant::now();
    let mut dir = Directory::default();
    let partners = (relationships / 1000).max(1);
    let partner_id = |p: u64| format!("{p:08x}-1111-4000-8000-000000000000");
    let group_id = |p: u64| format!("{p:08x}-2222-4000-8000-000000000000");
    let user_id = |p: u64| format!("{p:08x}-3333-4000-8000-000000000000");
    // Each partner with one admin agent in the group its assignments name: a decision
    // below runs every rule of a ticket's (R2–R14) against this directory.
    for p in 0..partners {
        let mut x = par.clone();
        x.partner_id = partner_id(p).as_str().into();
        dir.apply(&Event::PartnerRegistered(x));
        let mut u = usr.clone();
        u.partner_id = partner_id(p).as_str().into();
        u.user_id = user_id(p).as_str().into();
        dir.apply(&Event::PartnerUserUpserted(u));
        dir.apply(&Event::GroupMemberAdded(behalf_domain::facts::GroupMember {
            partner_id: partner_id(p).as_str().into(),
            group_id: group_id(p).as_str().into(),
            user_id: user_id(p).as_str().into(),
        }));
    }
    for i in 0..relationships {
        let customer = format!("{:08x}-0000-4000-8000-{:012x}", i >> 16, i);
        let partner = partner_id(i % partners);
        let mut c = cus.clone();
        c.customer_id = customer.as_str().into();
        c.name = format!("Customer {i}");
        c.domains = vec![format!("customer{i}.example")];
        dir.apply(&Event::CustomerRegistered(c));
        let mut r = rel.clone();
        r.relationship_id = format!("rel-{i:012}").as_str().into();
        r.partner_id = partner.as_str().into();
        r.customer_id = customer.as_str().into();
        dir.apply(&Event::RelationshipUpserted(r));
        let mut a = asg.clone();
        a.assignment_id = format!("asg-{i:012}").as_str().into();
        a.relationship_id = format!("rel-{i:012}").as_str().into();
        a.group_id = group_id(i % partners).as_str().into();
        dir.apply(&Event::AssignmentUpserted(a));
    }
    let built = t0.elapsed().as_secs_f64();
    let after = own_rss_mib();
    // Decisions for customers spread over the whole directory (a fixed stride, so every
    // run asks the same ones).
    let now = rel.activated_at.unwrap_or_default().plus_millis(86_400_000);
    let asked = relationships.min(10_000);
    let mut took = Vec::with_capacity(asked as usize);
    for k in 0..asked {
        let i = (k * 7_919 + 13) % relationships;
        let p = i % partners;
        let principal = behalf_domain::Principal::PartnerAgent {
            partner_id: partner_id(p).as_str().into(),
            user_id: user_id(p).as_str().into(),
        };
        let customer: behalf_domain::CustomerId = format!("{:08x}-0000-4000-8000-{:012x}", i >> 16, i).as_str().into();
        let scope = behalf_domain::policy::TicketScope {
            customer_id: &customer,
            workload: behalf_domain::Workload::Office365,
            subscription_id: None,
            support_plan: None,
            contact_email: &usr.email,
        };
        let t = Instant::now();
        let decided = behalf_domain::policy::authorize_ticket(&dir, &principal, &scope, now, 1);
        took.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(decided.is_ok(), "decision {k} was refused: {decided:?}");
    }
    took.sort_by(f64::total_cmp);
    let pct = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    let t1 = Instant::now();
    use behalf_service::gdap::snapshot::{decode, encode, Anchor};
    let anchor = Anchor { position: 1, prev_hash: [0; 32], key: "vendor/bench".into(), request_hash: [0; 32] };
    let bytes = encode(&anchor, &dir).map_err(anyhow::Error::msg)?;
    let encoded = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let (_, back) = decode(&bytes).map_err(anyhow::Error::msg)?;
    let decoded = t2.elapsed().as_secs_f64();
    anyhow::ensure!(back.gdap_counts() == dir.gdap_counts(), "the snapshot does not hold what was built");
    println!(
        "GDAP projection of {relationships} relationships ({relationships} customers, {partners} partners, one assignment each): \
         {:.0} MiB resident ({:.0} MiB before), built in {built:.1} s",
        after - before,
        before
    );
    println!(
        "its snapshot: {:.0} MiB, encoded in {encoded:.2} s, decoded in {decoded:.2} s",
        bytes.len() as f64 / (1024.0 * 1024.0)
    );
    println!(
        "a ticket's decision (R2–R14) against it: p50 {:.1} µs, p99 {:.1} µs over {asked} customers",
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
