//! Benchmark of the embedded log (not a timed test): appends/s at 1, 16 and 64
//! concurrent appenders beside raw sled insert + flush at the same batch sizes, and
//! replay (read all + decode + fold) beside raw sled scan + MessagePack decode — all
//! from the same run, on the same disk.
//!
//! `cargo bench -p behalf-sled-store --bench log` (set `BEHALF_BENCH_EVENTS` to change
//! the replay size, default 1,000,000 events).

use std::collections::HashMap;

/// The allocator the `behalf` binary uses, so the figures are the product's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use behalf_domain::{Event, Principal, StreamId, Ticket, TicketId, Timestamp};
use behalf_log::codec::sha256;
use behalf_log::samples::{note_added, ticket_opened};
use behalf_log::{AppendRequest, EventLog, ExpectedVersion};
use behalf_sled_store::{OpenOptions, SledLog};

fn req(stream: &str, id: &str, events: Vec<Event>) -> AppendRequest {
    AppendRequest {
        stream: StreamId(format!("ticket-{stream}")),
        expected: ExpectedVersion::Any,
        command_id: id.into(),
        request_hash: sha256(id.as_bytes()),
        at: Timestamp::from_millis(1_780_000_000_000),
        actor: Principal::Vendor,
        correlation_id: None,
        causation_id: None,
        events,
        directory_at: None,
    }
}

/// Accepted appends/s with `writers` concurrent appenders for about `secs` seconds.
async fn appends(writers: usize, secs: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SledLog::open(dir.path(), OpenOptions::default()).unwrap();
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop {
                let id = format!("w{w}-{n}");
                let r = req(&id, &id, vec![ticket_opened(&id)]);
                log.append(r).await.unwrap().unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Raw sled: batches of `batch` inserts of a commit-sized value, one flush each.
fn raw_sled(batch: usize, secs: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let value = behalf_log::record_for(&req("x", "x", vec![ticket_opened("x")]), 1, 1, &behalf_log::GENESIS).unwrap();
    behalf_sled_store::baseline::insert_flush_per_sec(dir.path(), batch, &value, secs).unwrap()
}

/// Reads the whole log through `EventLog::read_all`; with `fold`, folds every ticket.
async fn replay(log: &SledLog, fold: bool) -> (f64, usize) {
    let start = Instant::now();
    let mut tickets: HashMap<TicketId, Ticket> = HashMap::new();
    let mut n = 0u64;
    let mut after = 0;
    loop {
        let page = log.read_all(after, 4096).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        for c in page {
            for e in c.events {
                n += 1;
                if !fold {
                    std::hint::black_box(&e);
                    continue;
                }
                let Some(id) = e.ticket_id() else { continue };
                match tickets.get_mut(id) {
                    Some(t) => t.apply(&e),
                    None => {
                        if let Some(t) = Ticket::evolve_owned(None, e) {
                            tickets.insert(t.case.ticket_id.clone(), t);
                        }
                    }
                }
            }
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), tickets.len())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: f64 = std::env::var("BEHALF_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(4.0);
    let only = std::env::var("BEHALF_BENCH_ONLY").unwrap_or_default();
    if only != "replay" {
        append_bench(secs).await;
    }
    if only != "append" {
        replay_bench().await;
    }
}

async fn append_bench(secs: f64) {
    println!("== durable append, embedded (events/commit = 1, TicketOpened) ==");
    println!("{:>10} {:>14} {:>22} {:>8}", "appenders", "behalf/s", "raw sled batch+flush/s", "ratio");
    for writers in [1usize, 16, 64] {
        let ours = appends(writers, secs).await;
        let raw = raw_sled(writers, secs);
        println!("{writers:>10} {ours:>14.0} {raw:>22.0} {:>8.2}", ours / raw);
    }
}

async fn replay_bench() {
    let writers = 64;

    let target: u64 = std::env::var("BEHALF_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let per_writer = target / writers / 2 + 1;
    // BEHALF_BENCH_DIR keeps the filled store between runs (for profiling the replay).
    let tmp = tempfile::tempdir().unwrap();
    let path =
        std::env::var("BEHALF_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| tmp.path().to_path_buf());
    let (log, _) = SledLog::open(&path, OpenOptions::default()).unwrap();
    let log = Arc::new(log);
    let per_writer = if log.head().await.unwrap() > 0 { 0 } else { per_writer };
    let fill = Instant::now();
    // A realistic mix: tickets opened, then notes; 1–3 events per commit.
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut events = 0u64;
            for i in 0..per_writer {
                let t = format!("T{w}-{}", i / 4);
                let id = format!("f{w}-{i}");
                let evs = if i % 4 == 0 {
                    vec![ticket_opened(&t)]
                } else {
                    (0..(1 + i % 3)).map(|k| note_added(&t, &format!("note {k}"))).collect()
                };
                events += evs.len() as u64;
                log.append(req(&t, &id, evs)).await.unwrap().unwrap();
            }
            events
        }));
    }
    let mut events = 0;
    for t in tasks {
        events += t.await.unwrap();
    }
    let commits = log.head().await.unwrap();
    println!(
        "\n== replay over {events} events in {commits} commits (filled in {:.1}s) ==",
        fill.elapsed().as_secs_f64()
    );

    // Raw: sled scan + MessagePack decode of the same bytes.
    let raw_log = log.clone();
    let raw =
        tokio::task::spawn_blocking(move || behalf_sled_store::baseline::scan_decode_per_sec(&raw_log).unwrap().1)
            .await
            .unwrap();

    // Behalf: read all + decode (with upcasting), then the same plus a fold into
    // ticket state (the command side's decision state of every ticket).
    let decode_only = replay(&log, false).await.0;
    let (ours, tickets) = replay(&log, true).await;
    println!("{:>32} {:>14} {:>8}", "", "events/s", "× raw");
    println!("{:>32} {raw:>14.0} {:>8.2}", "raw sled scan + decode", 1.0);
    println!("{:>32} {decode_only:>14.0} {:>8.2}", "behalf read_all + decode", decode_only / raw);
    println!("{:>32} {ours:>14.0} {:>8.2}", "behalf read_all + decode + fold", ours / raw);
    println!("({tickets} tickets folded)");
}
