//! The distributed engine under failure: real `nats-server` nodes (a 3-node cluster with
//! R3 streams) and the roles as real processes (`behalf command`, `behalf project`,
//! `behalf notify`), or `behalf serve --nats`. The nemesis kills and pauses nodes and
//! services while producers retry; see [`nemesis_keeps_exactly_once`].

#[path = "cluster/net.rs"]
mod net;
#[allow(dead_code, unused_macros)] // reason: the nemesis uses part of the suites' shared helpers
#[path = "it/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use behalf_log::EventLog;
use behalf_nats::server::Cluster;
use behalf_nats::{NatsLog, NatsOptions};
use serde_json::{json, Value};
use support::world::*;
use support::*;

async fn reader(nats: &Cluster) -> NatsLog {
    let _ = tracing_subscriber::fmt().with_env_filter("behalf_nats=info,async_nats=info").with_test_writer().try_init();
    NatsLog::open(NatsOptions { run_indexer: false, ..NatsOptions::new(nats.urls()).replicas(nats.replicas()) })
        .await
        .expect("open the log")
}

/// A role process with HTTP on a free port: the process and its base URL.
fn role_on(nats: &Cluster, role: &str, dir: &std::path::Path) -> (Role, String) {
    let replicas = nats.replicas().to_string();
    let dir = dir.to_str().unwrap();
    let args =
        [role, "--nats", &nats.urls(), "--nats-replicas", &replicas, "--data-dir", dir, "--listen", "127.0.0.1:0"];
    let (child, addr) = spawn_until(&args, "listening on ");
    (Role(child), format!("http://{addr}"))
}

/// The faults the nemesis chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGKILL the stream's leader; start it again 3 s later.
    KillLeader,
    /// SIGSTOP the leader past the election timeout (10 s), then SIGCONT.
    PauseLeaderLong,
    /// SIGSTOP the leader shorter than the election timeout (2 s).
    PauseLeaderShort,
    /// SIGKILL a command service; producers move to the other; start it again.
    KillCommandService,
    /// SIGKILL all three nodes at once; start them again.
    KillAllNodes,
    /// Wait past JetStream's (shrunk) de-duplication window, then retry earlier
    /// commands: R26 answers from what lasts.
    PastWindow,
    /// Jepsen's NATS 2.12.1 fault: a node that is not the leader is killed, its last
    /// message block of the log truncated, and started again; then the leader is
    /// killed (3 s), so the damaged node may stand for election.
    DamageMinority,
    /// The same with one bit of the block flipped instead. Not drawn unless named in
    /// `BEHALF_NEMESIS_FAULTS`: nats-server 2.15.1 once served the flipped record back
    /// (a command id changed at its position); Behalf refused every command touching
    /// it (503) rather than acknowledge, but this suite's checks cannot yet tell
    /// JetStream's corruption from Behalf's and fail on it (issue 25).
    FlipBitMinority,
    /// The stream leader cut off from the other two nodes (clients still reach it) for
    /// 8 s, then healed.
    PartitionLeader,
    /// One node cut off from the other two for 8 s, with a command service on each
    /// side (each reaches only its side's nodes).
    SplitMinority,
    /// A command service cut off from every node for 8 s: it answers 503 within its
    /// timeout (no hang) and accepts again after the heal.
    CutCommandService,
    /// 20 % of packets lost and 50 ms delay on every node's link for 10 s.
    LossyLinks,
}

/// The faults that need the suite's own network (not drawn on loopback).
const NET_FAULTS: [Fault; 4] =
    [Fault::PartitionLeader, Fault::SplitMinority, Fault::CutCommandService, Fault::LossyLinks];

const FAULTS: [Fault; 7] = [
    Fault::KillLeader,
    Fault::PauseLeaderLong,
    Fault::PauseLeaderShort,
    Fault::KillCommandService,
    Fault::KillAllNodes,
    Fault::PastWindow,
    Fault::DamageMinority,
];

impl Fault {
    /// The longest pause in accepted answers this fault may cost, given JetStream's own
    /// pause in the same round (the longest stretch in which the raw publisher or the raw
    /// reader of Behalf's streams was paused, [`joined_pause`]): a node fault at most 3 s more and never over 11 s (the whole
    /// cluster measured from its restart) — unless JetStream itself paused past 10 s
    /// (seen: 13 s after a minority partition healed, "JetStream system temporarily
    /// unavailable"), when the issue's own bound holds: JetStream's pause + 3 s (seen
    /// twice after a partitioned leader healed: JetStream 10.1 and 12.1 s, Behalf 1.4 s
    /// more each time — a floor of 1 s more failed both); a command service
    /// killed at most 1 s for its peers. A partition that cuts a command service's own
    /// connection (to the node on the other side, or to a leader cut off from the
    /// majority) costs it up to 3 s more to notice (two missed pings a second apart,
    /// or three failed reads of the log), which the raw probes, whose connections the
    /// suite never cuts, do not pay: seen, a split in which JetStream paused 1.5 s and
    /// the majority's command service, connected to the minority node, 6.2 s.
    fn bound(self, raw: Duration) -> Duration {
        let node_fault = |extra: u64| {
            (raw + Duration::from_secs(3 + extra)).min(Duration::from_secs(11)).max(raw + Duration::from_secs(3))
        };
        match self {
            Fault::KillCommandService => Duration::from_secs(1),
            Fault::PartitionLeader | Fault::SplitMinority => node_fault(3),
            Fault::KillLeader
            | Fault::PauseLeaderLong
            | Fault::PauseLeaderShort
            | Fault::KillAllNodes
            | Fault::PastWindow
            | Fault::DamageMinority
            | Fault::FlipBitMinority
            | Fault::CutCommandService
            | Fault::LossyLinks => node_fault(0),
        }
    }
}

/// Truncates the last message block of the log on a stopped node at a random point, or
/// (`flip`) flips one random bit in it; says which.
fn damage_last_block(node: &behalf_nats::server::Node, rng: &mut Rng, flip: bool) -> String {
    let blocks = node.stream_blocks(behalf_nats::EVENTS_STREAM);
    let Some(last) = blocks.last() else { return "has no message block yet".into() };
    let mut bytes = std::fs::read(last).unwrap();
    if bytes.is_empty() {
        return "has an empty last block".into();
    }
    let at = rng.below(bytes.len());
    let what = if !flip {
        bytes.truncate(at);
        format!("block {} truncated to {at} bytes", last.display())
    } else {
        let bit = rng.below(8);
        bytes[at] ^= 1 << bit;
        format!("block {} had bit {bit} of byte {at} flipped", last.display())
    };
    std::fs::write(last, bytes).unwrap();
    what
}

/// A small seeded generator (xorshift64*), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One keyed command a producer sent, and the answer it finally got.
#[derive(Clone)]
struct Sent {
    id: String,
    body: Value,
    answer: Value,
    at: Instant,
    /// The command service that answered.
    via: String,
}

/// What the producers share: the command services' addresses (a restarted one gets a
/// new port), every command answered, every id ever sent.
struct Load {
    bases: std::sync::RwLock<Vec<String>>,
    answered: std::sync::Mutex<Vec<Sent>>,
    ids: std::sync::Mutex<std::collections::HashSet<String>>,
    stop: std::sync::atomic::AtomicBool,
}

impl Load {
    fn accepted(&self) -> Vec<Sent> {
        self.answered.lock().unwrap().iter().filter(|s| s.answer["outcome"] == "accepted").cloned().collect()
    }
}

/// Sends one keyed command until it is answered (accepted or refused), retrying the
/// same id and body on a failure (no answer, 5xx, 429), alternating services.
async fn send_until_answered(load: &Load, http: &reqwest::Client, token: &str, body: &Value, w: usize) -> Value {
    answered_by(load, http, token, body, w).await.0
}

/// As [`send_until_answered`], with the command service that answered.
async fn answered_by(load: &Load, http: &reqwest::Client, token: &str, body: &Value, w: usize) -> (Value, String) {
    let mut tries = 0usize;
    // Fail rather than hang: no fault here pauses answers for minutes.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        before(deadline, &format!("an answer to {body}"));
        let base = {
            let bases = load.bases.read().unwrap();
            bases[(w + tries) % bases.len()].clone()
        };
        let r = http.post(format!("{base}/v1/commands")).bearer_auth(token).json(body).send().await;
        if let Ok(r) = r {
            let status = r.status().as_u16();
            if let Ok(v) = r.json::<Value>().await {
                if status < 500 && status != 429 {
                    return (v, base);
                }
            }
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(20 * tries.min(10) as u64)).await;
    }
}

fn producer(load: std::sync::Arc<Load>, token: String, w: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Short timeouts: a producer that hears nothing moves on to the other service
        // with the same command, as a real one would.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
        let mut ticket: Option<String> = None;
        let mut i = 0;
        while !load.stop.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            let id = format!("nemesis-{w}-{i}");
            let body = match &ticket {
                Some(t) if i % 8 == 5 => {
                    json!({"type":"ticket.escalate","ticket_id":t,"reason":"down","command_id":id})
                }
                Some(t) if i % 8 != 0 => json!({"type":"ticket.note","ticket_id":t,"text":id,"command_id":id}),
                _ => merge(open_o365(), json!({"command_id": id})),
            };
            load.ids.lock().unwrap().insert(id.clone());
            let (answer, via) = answered_by(&load, &http, &token, &body, w).await;
            if answer["outcome"] == "accepted" {
                if let Some(t) = answer["ticket_id"].as_str() {
                    ticket = Some(t.to_owned());
                }
            }
            load.answered.lock().unwrap().push(Sent { id, body, answer, at: Instant::now(), via });
        }
    })
}

/// Waits until `more` further commands were accepted, or two minutes have passed
/// (progress, not speed: a loaded machine electing leaders may take a while).
async fn until_accepted(load: &Load, more: usize) {
    let count = || load.answered.lock().unwrap().iter().filter(|s| s.answer["outcome"] == "accepted").count();
    let target = count() + more;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count() < target {
        before(deadline, &format!("{more} more accepted commands"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every command service has accepted commands steadily for three seconds
/// (no gap over half a second): a round starts on a cluster that has healed from the
/// one before — TCP connections that lost packets can still be backing off their
/// resends (seen: a round after lossy links, a command index read timing out on the
/// surviving service at the start of the next round). A minute at most, then it fails.
async fn settled(load: &Load) {
    const STEADY: Duration = Duration::from_secs(3);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    loop {
        let now = Instant::now();
        let since = now.checked_sub(STEADY).unwrap_or(start).max(start);
        let bases = load.bases.read().unwrap().clone();
        let steady = now.duration_since(start) >= STEADY
            && bases.iter().all(|base| {
                let mut at: Vec<Instant> = load
                    .answered
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| s.via == *base && s.at >= since && s.answer["outcome"] == "accepted")
                    .map(|s| s.at)
                    .collect();
                at.push(now);
                at.sort();
                let mut last = since;
                at.iter().all(|&t| {
                    let gap = t.duration_since(last);
                    last = t;
                    gap <= Duration::from_millis(500)
                })
            });
        if steady {
            return;
        }
        before(deadline, "every command service accepting steadily before the next round");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The longest pause in `times` (instants of answers) from `from` until now — the time
/// before the first answer counts, and so does the time since the last — and how long
/// after `from` it ended.
#[derive(Clone, Copy, Debug)]
struct Pause {
    longest: Duration,
    ended: Duration,
}

impl Pause {
    fn in_answers(mut times: Vec<Instant>, from: Instant) -> Pause {
        times.retain(|t| *t >= from);
        times.sort();
        times.push(Instant::now());
        let mut prev = from;
        let mut pause = Pause { longest: Duration::ZERO, ended: Duration::ZERO };
        for t in times {
            if t - prev > pause.longest {
                pause = Pause { longest: t - prev, ended: t - from };
            }
            prev = t;
        }
        pause
    }
}

/// The longest stretch from `from` until now in which one or another of the `probes`
/// (instants of each probe's answers) was paused: gaps of 250 ms and more in any probe,
/// overlapping ones joined. Behalf needs JetStream both to take a publish and to answer
/// a read, so it cannot answer again before the later of the two comes back: seen, a
/// split whose publisher came back at 8.3 s while reads of the log paused from 7.4 s to
/// 13.9 s ("JetStream system temporarily unavailable").
fn joined_pause(probes: &[Vec<Instant>], from: Instant) -> Pause {
    let now = Instant::now();
    let mut gaps = Vec::new();
    for times in probes {
        let mut times: Vec<Instant> = times.iter().copied().filter(|t| *t >= from).collect();
        times.sort();
        times.push(now);
        let mut prev = from;
        for t in times {
            if t - prev >= Duration::from_millis(250) {
                gaps.push((prev, t));
            }
            prev = t;
        }
    }
    gaps.sort();
    let mut pause = Pause { longest: Duration::ZERO, ended: Duration::ZERO };
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in gaps {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            _ => Some((start, end)),
        };
        if let Some((s, e)) = current {
            if e - s > pause.longest {
                pause = Pause { longest: e - s, ended: e - from };
            }
        }
    }
    pause
}

impl std::fmt::Display for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1?} (ended {:.1?} in)", self.longest, self.ended)
    }
}

const DUPLICATE_WINDOW: &str = "1s";

/// How the nemesis runs Behalf: the roles as processes of their own (two `behalf
/// command`, a `behalf project`, a `behalf notify`), or two `behalf serve --nats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Roles,
    Serve,
}

/// One nemesis at a time in this binary: both measure pauses, which sharing the cores
/// would distort.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A command service over the cluster (`behalf command`, or `behalf serve`), with the
/// shrunk de-duplication window: in its own network namespace when the suite has one.
fn command_service(nats: &Cluster, dir: &std::path::Path, space: Option<&net::Space>, shape: Shape) -> (Role, String) {
    let replicas = nats.replicas().to_string();
    let listen = format!("{}:0", space.map_or("127.0.0.1", |s| s.addr.as_str()));
    let args = [
        match shape {
            Shape::Roles => "command",
            Shape::Serve => "serve",
        },
        "--nats",
        &nats.urls(),
        "--nats-replicas",
        &replicas,
        "--nats-duplicate-window",
        DUPLICATE_WINDOW,
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    let (child, addr) = spawn_until_in(space.map(|s| s.ns.as_str()), &args, &[], "listening on ");
    (Role(child), format!("http://{addr}"))
}

/// Runs this very test again inside a network namespace of its own (see [`net`]),
/// unless it runs there already (`Ok(false)`: go on) or `BEHALF_NEMESIS_NO_NETNS=1`
/// asks for loopback without the partition faults.
fn in_own_namespace(test: &str, seed: u64) -> bool {
    if std::env::var_os("BEHALF_NEMESIS_IN_NETNS").is_some()
        || std::env::var("BEHALF_NEMESIS_NO_NETNS").is_ok_and(|v| v == "1")
    {
        return false;
    }
    let suite = net::Suite::create().unwrap_or_else(|e| {
        panic!(
            "the nemesis runs every node in a network namespace and cannot make one ({e}): run it as root, \
             or set BEHALF_NEMESIS_NO_NETNS=1 to run it on loopback without the partition faults"
        )
    });
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &suite.name])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env("BEHALF_NEMESIS_IN_NETNS", &suite.name)
        .env("BEHALF_NEMESIS_SEED", seed.to_string())
        .status()
        .expect("the test runs again");
    assert!(status.success(), "the nemesis failed in its namespace (BEHALF_NEMESIS_SEED={seed} replays it)");
    true
}

/// The nemesis: a 3-node cluster (R3), two command services, a projector and a
/// notifier as processes; eight producers retrying every failed command with the same
/// id and body; and faults chosen from a seed — the stream leader killed or paused
/// (longer and shorter than an election), a command service killed, every node killed
/// at once, retries past a shrunk de-duplication window. After healing: every accepted
/// command answers the same again and is in the log once at its position, no
/// (tenant, command id) is in the log twice, positions are dense, the chain verifies,
/// views equal the fold of the log and every escalation is in its work queue once.
/// Every round prints the longest pause in accepted answers beside a raw JetStream
/// publisher's in the same round, and fails over [`Fault::bound`].
///
/// `./dev test` runs one round of each fault, for the roles and for two `serve`. `BEHALF_NEMESIS_ROUNDS=N` runs N
/// (after the first six, faults are drawn at random); `BEHALF_NEMESIS_SEED=S` replays
/// a run (the seed is printed).
#[tokio::test(flavor = "multi_thread")]
async fn nemesis_keeps_exactly_once() {
    nemesis("nemesis_keeps_exactly_once", Shape::Roles).await;
}

/// [`nemesis_keeps_exactly_once`] with two `behalf serve --nats` (each a command
/// service, a projector and a notifier) instead of the roles.
#[tokio::test(flavor = "multi_thread")]
async fn nemesis_keeps_exactly_once_with_two_serve() {
    nemesis("nemesis_keeps_exactly_once_with_two_serve", Shape::Serve).await;
}

async fn nemesis(test: &str, shape: Shape) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let seed: u64 = std::env::var("BEHALF_NEMESIS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    if in_own_namespace(test, seed) {
        return;
    }
    eprintln!("nemesis: Behalf as {shape:?}");
    let mut network = std::env::var_os("BEHALF_NEMESIS_IN_NETNS").map(|_| net::Net::new());
    let lossy = network.as_ref().and_then(net::Net::lossy_kind);
    match (&network, lossy) {
        (Some(_), Some(net::Lossy::Tun)) => {
            eprintln!(
                "nemesis: this kernel has no `tc netem` (sch_netem): lossy links go through a TUN device and delay.py"
            )
        }
        (Some(_), None) => eprintln!("nemesis: neither `tc netem` nor TUN and python3 here: LossyLinks is not drawn"),
        _ => {}
    }
    let all: Vec<Fault> = FAULTS
        .iter()
        .chain(network.iter().flat_map(|_| NET_FAULTS.iter()))
        .filter(|f| lossy.is_some() || **f != Fault::LossyLinks)
        .copied()
        .collect();
    let rounds: usize = std::env::var("BEHALF_NEMESIS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(all.len());
    eprintln!("nemesis: seed {seed}, {rounds} rounds (BEHALF_NEMESIS_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    // `BEHALF_NEMESIS_FAULTS=KillLeader,KillAllNodes` draws from those only.
    let kinds: Vec<Fault> = match std::env::var("BEHALF_NEMESIS_FAULTS") {
        Ok(names) => names
            .split(',')
            .map(|n| {
                *all.iter()
                    .chain(&[Fault::FlipBitMinority])
                    .find(|f| format!("{f:?}") == n.trim())
                    .unwrap_or_else(|| panic!("no fault {n} here"))
            })
            .collect(),
        Err(_) => all.clone(),
    };
    let mut plan = kinds.clone();
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.below(i + 1));
    }
    while plan.len() < rounds {
        plan.push(kinds[rng.below(kinds.len())]);
    }
    plan.truncate(rounds.max(1));

    // Every node and command service in a namespace of its own, when the suite has a
    // network; else all on loopback.
    let node_spaces: Vec<net::Space> =
        network.iter_mut().flat_map(|n| (1..=3).map(|i| n.space(&format!("n{i}"), i)).collect::<Vec<_>>()).collect();
    let service_spaces: Vec<net::Space> = network
        .iter_mut()
        .flat_map(|n| (1..=2).map(|i| n.space(&format!("c{i}"), 10 + i)).collect::<Vec<_>>())
        .collect();
    let mut nats = if node_spaces.is_empty() {
        Cluster::start(3).expect("a 3-node cluster starts")
    } else {
        let places = node_spaces
            .iter()
            .map(|s| behalf_nats::server::Place {
                host: s.addr.clone(),
                netns: Some(s.ns.clone()),
                client_port: 4222,
                cluster_port: 6222,
            })
            .collect();
        Cluster::start_placed(places, "").expect("a 3-node cluster starts in its namespaces")
    };
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut services = [
        command_service(&nats, dirs[0].path(), service_spaces.first(), shape),
        command_service(&nats, dirs[1].path(), service_spaces.get(1), shape),
    ];
    // The split roles: a projector and a notifier of their own (`serve` runs both).
    let replicas = nats.replicas().to_string();
    let notify_args = [
        "notify",
        "--nats",
        &nats.urls(),
        "--nats-replicas",
        &replicas,
        "--data-dir",
        dirs[3].path().to_str().unwrap(),
    ];
    let (project, _notify) = match shape {
        Shape::Roles => {
            (Some(role_on(&nats, "project", dirs[2].path())), Some(Role(spawn_until(&notify_args, "forwarding").0)))
        }
        Shape::Serve => (None, None),
    };
    let admin = std::fs::read_to_string(behalf_sled_store::DataDir::new(dirs[0].path()).admin_token())
        .unwrap()
        .trim()
        .to_owned();
    let c1 = Client::at(&services[0].1);
    send_world(&c1, &admin).await;
    let token = c1.token(&admin, &agent()).await;

    let load = std::sync::Arc::new(Load {
        bases: std::sync::RwLock::new(services.iter().map(|s| s.1.clone()).collect()),
        answered: std::sync::Mutex::new(Vec::new()),
        ids: std::sync::Mutex::new(std::collections::HashSet::new()),
        stop: std::sync::atomic::AtomicBool::new(false),
    });
    let producers: Vec<_> = (0..8).map(|w| producer(load.clone(), token.clone(), w)).collect();
    // A raw JetStream publisher beside them, on its own R3 stream: the pause a fault
    // costs the cluster itself.
    let raw = behalf_nats::baseline::RawPublisher::start(&nats.urls(), nats.replicas()).await.unwrap();
    // And a raw reader of Behalf's own two streams (the log and the command index): a
    // command needs both to have leaders, and each elects on its own.
    let raw_reads = behalf_nats::baseline::RawReader::start(&nats.urls()).await.unwrap();
    until_accepted(&load, 100).await;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let mut stalls = Vec::new();
    for (round, fault) in plan.iter().enumerate() {
        settled(&load).await;
        let leader = nats.leader_of(behalf_nats::EVENTS_STREAM).await;
        if let Some(n) = leader {
            // The raw publisher's stream led by the same node: the same fault for both.
            if !raw.lead_on(&nats.nodes[n].name).await {
                eprintln!("nemesis: the raw stream's leader did not move to {}", nats.nodes[n].name);
            }
        }
        eprintln!("nemesis round {}: {fault:?} (leader {leader:?})", round + 1);
        let mut from = Instant::now();
        match fault {
            Fault::KillLeader => {
                let n = leader.unwrap_or_else(|| rng.below(3));
                nats.nodes[n].kill();
                tokio::time::sleep(Duration::from_secs(3)).await;
                nats.nodes[n].start().expect("the node comes back");
            }
            Fault::PauseLeaderLong | Fault::PauseLeaderShort => {
                let n = leader.unwrap_or_else(|| rng.below(3));
                let pause = if *fault == Fault::PauseLeaderLong { 10 } else { 2 };
                assert!(nats.nodes[n].signal("STOP"), "pause node {n}");
                tokio::time::sleep(Duration::from_secs(pause)).await;
                assert!(nats.nodes[n].signal("CONT"), "resume node {n}");
            }
            Fault::KillCommandService => {
                let i = rng.below(services.len());
                services[i].0.kill9();
                until_accepted(&load, 50).await;
                services[i] = command_service(&nats, dirs[i].path(), service_spaces.get(i), shape);
                load.bases.write().unwrap()[i] = services[i].1.clone();
            }
            Fault::KillAllNodes => {
                for node in &mut nats.nodes {
                    node.kill();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Measured from the restart, Behalf's pause and raw's alike.
                from = Instant::now();
                for node in &mut nats.nodes {
                    node.start().expect("the node comes back");
                }
            }
            Fault::DamageMinority | Fault::FlipBitMinority => {
                let l = leader.unwrap_or_else(|| rng.below(3));
                let n = (l + 1 + rng.below(2)) % 3;
                nats.nodes[n].kill();
                let damage = damage_last_block(&nats.nodes[n], &mut rng, *fault == Fault::FlipBitMinority);
                eprintln!("nemesis: node {n}'s log {damage}");
                nats.nodes[n].start().expect("the node comes back");
                nats.nodes[l].kill();
                tokio::time::sleep(Duration::from_secs(3)).await;
                nats.nodes[l].start().expect("the node comes back");
            }
            Fault::PartitionLeader => {
                let (net, l) = (network.as_ref().unwrap(), leader.unwrap_or_else(|| rng.below(3)));
                let others: Vec<usize> = (0..3).filter(|n| *n != l).collect();
                for &o in &others {
                    net.cut(&node_spaces[l], &node_spaces[o]);
                }
                tokio::time::sleep(Duration::from_secs(8)).await;
                for &o in &others {
                    net.heal(&node_spaces[l], &node_spaces[o]);
                }
            }
            Fault::SplitMinority => {
                let (net, m) = (network.as_ref().unwrap(), rng.below(3));
                let majority: Vec<usize> = (0..3).filter(|n| *n != m).collect();
                let mut cuts = Vec::new();
                for &o in &majority {
                    cuts.push((&node_spaces[m], &node_spaces[o]));
                    cuts.push((&service_spaces[0], &node_spaces[o]));
                }
                cuts.push((&service_spaces[1], &node_spaces[m]));
                for (a, b) in &cuts {
                    net.cut(a, b);
                }
                eprintln!("nemesis: node {m} and command service 0 on the minority side");
                tokio::time::sleep(Duration::from_secs(8)).await;
                for (a, b) in &cuts {
                    net.heal(a, b);
                }
            }
            Fault::CutCommandService => {
                let (net, i) = (network.as_ref().unwrap(), rng.below(2));
                for node in &node_spaces {
                    net.cut(&service_spaces[i], node);
                }
                // Let it notice (two missed pings), then ask it directly: a refusal to
                // retry within its timeout, not a hang.
                tokio::time::sleep(Duration::from_secs(3)).await;
                let body = merge(open_o365(), json!({"command_id": format!("cut-{round}")}));
                let asked = Instant::now();
                let r = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap()
                    .post(format!("{}/v1/commands", services[i].1))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .expect("the cut-off command service answers");
                let took = asked.elapsed();
                assert_eq!(r.status().as_u16(), 503, "a command service cut off from NATS refuses ({took:.1?})");
                assert!(took <= Duration::from_secs(5), "refused within its timeout, not {took:.1?}");
                eprintln!("nemesis: the cut-off command service answered 503 in {took:.1?}");
                tokio::time::sleep(Duration::from_secs(5)).await;
                for node in &node_spaces {
                    net.heal(&service_spaces[i], node);
                }
                // It accepts again once healed (the same command: its first outcome).
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let r = http
                        .post(format!("{}/v1/commands", services[i].1))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status().is_success()) {
                        break;
                    }
                    before(deadline, "the healed command service accepting again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Fault::LossyLinks => {
                let net = network.as_ref().unwrap();
                let how = lossy.expect("drawn only where links can be made lossy");
                for node in &node_spaces {
                    net.lossy(node, how, rng.next());
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
                let mut counted = (0, 0);
                for node in &node_spaces {
                    if let Some((held, dropped)) = net.mend(node, how) {
                        counted = (counted.0 + held, counted.1 + dropped);
                    }
                }
                if how == net::Lossy::Tun {
                    eprintln!(
                        "nemesis round {}: LossyLinks held {} packets 50 ms and dropped {}",
                        round + 1,
                        counted.0,
                        counted.1
                    );
                    assert!(
                        counted.0 > 0 && counted.1 > 0,
                        "the lossy links held or dropped nothing: the fault did not bite"
                    );
                }
            }
            Fault::PastWindow => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let accepted = load.accepted();
                for _ in 0..20 {
                    let s = &accepted[rng.below(accepted.len())];
                    let again = send_until_answered(&load, &http, &token, &s.body, rng.below(2)).await;
                    assert_eq!(again["position"], s.answer["position"], "{} answers its first outcome: {again}", s.id);
                    assert_eq!(again["outcome"], "accepted", "{again}");
                }
            }
        }
        until_accepted(&load, 100).await;
        let stall = Pause::in_answers(load.accepted().iter().map(|s| s.at).collect(), from);
        let raw_stall = Pause::in_answers(raw.acknowledged_since(from), from);
        let read_stall = Pause::in_answers(raw_reads.answered_since(from), from);
        let joined = joined_pause(&[raw.acknowledged_since(from), raw_reads.answered_since(from)], from);
        let jetstream = joined.longest;
        eprintln!(
            "nemesis round {}: {fault:?}: longest pause in accepted answers {stall} (raw JetStream publisher: \
             {raw_stall}; raw reads of the log, the index and the keys: {read_stall}; either paused: {joined})",
            round + 1
        );
        stalls.push((*fault, stall.longest, raw_stall.longest, read_stall.longest, joined.longest));
        assert!(
            stall.longest <= fault.bound(jetstream),
            "round {}: {fault:?} paused accepted answers {stall}, over its bound {:.1?} (raw publisher: {raw_stall}, \
             raw reads: {read_stall}, either paused: {joined})",
            round + 1,
            fault.bound(jetstream)
        );
    }
    load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    drop((raw, raw_reads));
    eprintln!("nemesis: longest pauses (fault, behalf, raw publisher, raw reads, either) {stalls:?}");
    let views = project.as_ref().map_or(&services[0].1, |p| &p.1);
    check_after_healing(&nats, &load, &http, &token, views).await;
}

async fn check_after_healing(nats: &Cluster, load: &Load, http: &reqwest::Client, token: &str, proj: &str) {
    let accepted = load.accepted();
    eprintln!("checking {} accepted of {} sent", accepted.len(), load.ids.lock().unwrap().len());
    // Every accepted command answers the same again.
    for (i, s) in accepted.iter().enumerate() {
        let again = send_until_answered(load, http, token, &s.body, i).await;
        assert_eq!(again["outcome"], "accepted", "{}: {again}", s.id);
        assert_eq!(again["position"], s.answer["position"], "{} answers its first outcome", s.id);
    }
    // The log: dense positions, each key at most once, each accepted command once
    // where it was answered.
    let log = reader(nats).await;
    let mut keys: HashMap<String, (u64, u32)> = HashMap::new();
    // Each stream's last version, read by position: versions dense from 1, none twice.
    let mut versions: HashMap<behalf_domain::StreamId, u64> = HashMap::new();
    let mut after = 0;
    let mut escalations = Vec::new();
    loop {
        let page = tokio::time::timeout(Duration::from_secs(120), log.read_all(after, 2048))
            .await
            .expect("the log reads back")
            .unwrap();
        let Some(last) = page.last() else { break };
        for c in &page {
            assert_eq!(c.position, after + 1, "positions are dense");
            after = c.position;
            let e = keys.entry(c.key().to_string()).or_insert((c.position, 0));
            e.1 += 1;
            assert_eq!(e.1, 1, "{} is in the log twice (at {} and {})", c.key(), e.0, c.position);
            let v = versions.entry(c.stream.clone()).or_insert(0);
            assert_eq!(
                c.first_version,
                *v + 1,
                "{} at {}: a stream's versions are dense, none twice",
                c.stream,
                c.position
            );
            *v = c.last_version();
            escalations.extend(c.envelopes().filter(|e| e.event_type == "TicketEscalated").map(|e| e.event_id));
        }
        assert_eq!(after, last.position);
    }
    let partner = agent().tenant();
    for s in &accepted {
        let key = format!("{partner}/{}", s.id);
        let position = s.answer["position"].as_u64().unwrap();
        assert_eq!(keys.get(&key), Some(&(position, 1)), "{key} accepted at {position} is in the log once");
    }
    // The chain verifies from every node: reads go to the stream's leader, so each node
    // is made the leader in turn and the whole log read from its copy.
    let head = log.head().await.unwrap();
    let addrs: Vec<async_nats::ServerAddr> = nats.nodes.iter().map(|n| n.url().parse().unwrap()).collect();
    let js = async_nats::jetstream::new(async_nats::connect(addrs).await.unwrap());
    for node in &nats.nodes {
        assert!(
            behalf_nats::baseline::lead_stream_on(&js, behalf_nats::EVENTS_STREAM, &node.name).await,
            "{} leads the log",
            node.name
        );
        let report = tokio::time::timeout(Duration::from_secs(120), log.verify()).await.expect("verify ends").unwrap();
        assert_eq!(report.first_bad, None, "the hash chain holds on {}", node.name);
        assert_eq!(report.verified, head, "{} holds the whole log", node.name);
    }

    // The projector's views equal a fold of the log (read by position). A node whose
    // lookups by subject miss a commit it holds is JetStream's own damage: reported,
    // with the position, not Behalf's (Behalf wrote no version twice, checked above).
    let head = log.head().await.unwrap();
    let tickets: std::collections::BTreeSet<String> =
        accepted.iter().filter_map(|s| s.answer["ticket_id"].as_str().map(str::to_owned)).collect();
    assert!(tickets.len() >= 8, "tickets were opened: {}", tickets.len());
    let p = Client::at(proj);
    for t in &tickets {
        let (status, view) = p.get(token, &format!("/v1/tickets/{t}?min_position={head}&wait_ms=30000")).await;
        assert_eq!(status, 200, "{view}");
        let stream = behalf_domain::StreamId::ticket(&behalf_domain::TicketId::new(t.as_str()));
        let version = versions.get(&stream).copied().unwrap_or(0);
        if log.stream_version(&stream).await.ok() != Some(version) {
            for node in &nats.nodes {
                let led = behalf_nats::baseline::lead_stream_on(&js, behalf_nats::EVENTS_STREAM, &node.name).await;
                let v = log.stream_version(&stream).await;
                let events = log
                    .read_stream(&stream, 0)
                    .await
                    .map(|c| c.iter().map(|c| (c.position, c.first_version)).collect::<Vec<_>>());
                if v.as_ref().ok() != Some(&version) {
                    eprintln!(
                        "nemesis: JetStream's own damage: {} (leading: {led}) answers version {v:?} for {stream} \
                         by subject (commits {events:?}) where its log holds version {version}",
                        node.name
                    );
                }
            }
        }
        assert_eq!(view["version"].as_u64(), Some(version), "ticket {t}: the view is the fold of its stream");
    }

    // Every escalation in the log — accepted, or stored while its answer was lost — is
    // in its work queue once.
    escalations.sort();
    assert!(!escalations.is_empty(), "escalations were accepted");
    let queues = behalf_nats::NatsQueues::open(&nats.urls(), nats.replicas()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = loop {
        let waiting = queues.peek_async("commercial.office365", 100_000).await.unwrap();
        if waiting.len() >= escalations.len() {
            break waiting;
        }
        before(deadline, &format!("{} escalations in the queue, {} there", escalations.len(), waiting.len()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut sources: Vec<String> = waiting.iter().map(|m| m.source_event_id.clone()).collect();
    sources.sort();
    assert_eq!(sources, escalations, "each escalation of the log once in the queue, nothing else");
}

#[test]
fn joined_pause_spans_overlapping_gaps_of_either_probe() {
    let from = Instant::now() - Duration::from_secs(20);
    let at = |ms: u64| from + Duration::from_millis(ms);
    let every_100ms = |a: u64, b: u64| (a..b).step_by(100).map(at).collect::<Vec<_>>();
    // The publisher paused 0-8.3 s, reads 7.4-13.9 s: either was paused for 13.9 s.
    let publisher = every_100ms(8_300, 20_000);
    let reads = [every_100ms(0, 7_400), every_100ms(13_900, 20_000)].concat();
    let joined = joined_pause(&[publisher, reads.clone()], from);
    assert_eq!(joined.longest, Duration::from_millis(13_900));
    assert_eq!(joined.ended, Duration::from_millis(13_900));
    // Apart, the longer stands alone.
    let publisher = [every_100ms(0, 1_000), every_100ms(3_000, 20_000)].concat();
    let joined = joined_pause(&[publisher, reads], from);
    assert_eq!(joined.longest, Duration::from_millis(6_600)); // 7.3 s to 13.9 s
}
