//! What nats-server's atomic batches allow a pipelined writer (issue 25), on a real
//! three-node cluster (R3). Today the log keeps one batch in flight per process
//! (`log/group.rs`) because of the first test: a second batch chained to a first that
//! failed is stored on whatever filled the first's positions. The rest are the fences a
//! pipelined writer under a lease could rest on: a lease subject every batch expects
//! unchanged refuses a holder once another writer took it; through wildcard filters
//! (one per batch in flight) it pipelines but does not see a take in flight, so it is no
//! fence; one literal lease subject per batch in flight (slots), every one written by a
//! take, pipelines and refuses the holder behind a take in flight.
//! These are the server's rules, asserted so that an upgrade that changes them fails
//! here first (docs/SCALING.md, "Several batches in flight").

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use behalf_nats::batch::{publish_atomic, BatchMsg};
use behalf_nats::server::Cluster;

const STREAM: &str = "FENCING";
const LEASE: &str = "fence.lease";

async fn stream_on(nats: &Cluster) -> jetstream::Context {
    let client = behalf_nats::connect(&nats.urls().into()).await.unwrap();
    let js = jetstream::new(client);
    // A request can time out while the cluster elects its meta leader, and a create
    // that timed out may still have made the stream: look for it first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if js.get_stream(STREAM).await.is_ok() {
            return js;
        }
        let made = js
            .create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["fence.>".into()],
                storage: stream::StorageType::File,
                num_replicas: nats.replicas(),
                allow_atomic_publish: true,
                ..Default::default()
            })
            .await;
        match made {
            Ok(_) => return js,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("the stream is not made yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("cannot make the stream: {e}"),
        }
    }
}

async fn last_sequence(js: &jetstream::Context) -> u64 {
    js.get_stream(STREAM).await.unwrap().info().await.unwrap().state.last_sequence
}

/// `n` messages on subjects of their own (`fence.<writer>.<i>`), the first expecting the
/// stream to end at `after` and, with `lease`, the lease subject to end at that sequence.
fn batch(writer: &str, from: u64, n: u64, after: u64, lease: Option<u64>) -> Vec<BatchMsg> {
    batch_checking(writer, from, n, after, lease, LEASE)
}

fn batch_checking(writer: &str, from: u64, n: u64, after: u64, lease: Option<u64>, filter: &str) -> Vec<BatchMsg> {
    (0..n)
        .map(|i| {
            let mut headers = HeaderMap::new();
            if i == 0 {
                headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, after.to_string().as_str());
                if let Some(seq) = lease {
                    headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, seq.to_string().as_str());
                    headers.insert("Nats-Expected-Last-Subject-Sequence-Subject", filter);
                }
            }
            BatchMsg { subject: format!("fence.{writer}.{}", from + i), headers, payload: "x".into() }
        })
        .collect()
}

/// Publishes and waits: the sequence of the batch's last message, or why not.
async fn stored(js: &jetstream::Context, msgs: Vec<BatchMsg>) -> Result<u64, String> {
    let ack = publish_atomic(js, msgs).await.map_err(|e| e.to_string())?;
    ack.await.map(|a| a.sequence).map_err(|e| e.to_string())
}

/// A writer's lease message: the lease subject's last sequence must be `previous`.
async fn take_lease(js: &jetstream::Context, writer: &str, previous: u64) -> Result<u64, String> {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, previous.to_string().as_str());
    let ack = js.publish_with_headers(LEASE, headers, writer.to_owned().into()).await.map_err(|e| e.to_string())?;
    ack.await.map(|a| a.sequence).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_chained_to_one_that_failed_is_stored_on_another_writers_messages() {
    let nats = Cluster::start(3).unwrap();
    let js = stream_on(&nats).await;
    let tail = last_sequence(&js).await;
    // B appends one message: A's first batch, built on the tail before it, is refused.
    stored(&js, batch("b", 0, 1, tail, None)).await.unwrap();
    let first = stored(&js, batch("a", 0, 2, tail, None)).await;
    assert!(first.is_err(), "A's first batch was stored on a moved tail: {first:?}");
    // B appends one more: its two messages fill exactly the positions A's first batch
    // would have taken. A's second batch, chained to the first, expects the stream to end
    // there — and it does.
    stored(&js, batch("b", 1, 1, tail + 1, None)).await.unwrap();
    let second = stored(&js, batch("a", 2, 2, tail + 2, None)).await;
    assert_eq!(
        second,
        Ok(tail + 4),
        "the hazard that keeps one batch in flight: a batch chained to a failed one is stored on B's messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_fences_the_holders_batches_and_another_writer_taking_it_refuses_them() {
    let nats = Cluster::start(3).unwrap();
    let js = stream_on(&nats).await;
    let lease = take_lease(&js, "a", 0).await.unwrap();
    let mut tail = lease;
    for k in 0..4u64 {
        assert_eq!(stored(&js, batch("a", k * 8, 8, tail, Some(lease))).await, Ok(tail + 8), "A's batch {k}");
        tail += 8;
    }
    // B takes the lease (fenced on A's). A's next batch — chained to the tail A knew,
    // which B's lease message moved — is refused; so is one chained to the tail as it is
    // now: the lease alone refuses it.
    let b = take_lease(&js, "b", lease).await.unwrap();
    assert_eq!(b, tail + 1, "B's lease message follows A's last batch");
    assert!(stored(&js, batch("a", 200, 2, tail, Some(lease))).await.is_err(), "A's batch on a moved tail");
    let why = stored(&js, batch("a", 300, 2, b, Some(lease))).await.expect_err("A wrote after B took the lease");
    assert!(why.contains("wrong last sequence"), "refused for another reason: {why}");
    // A lease taken twice from the same predecessor: the second is refused.
    assert!(take_lease(&js, "c", lease).await.is_err(), "a lease taken on a stale one");
    assert_eq!(stored(&js, batch("b", 0, 3, b, Some(b))).await, Ok(b + 3), "B writes under its lease");
}

/// Sends `depth` batches of 16 at once, each chained to the one before and fenced by
/// `lease` through `filters[k % filters.len()]`: how many were stored (a prefix, each
/// exactly where predicted), and the tail after them.
async fn pipelined(js: &jetstream::Context, depth: u64, lease: u64, filters: &[&str]) -> u64 {
    let start = last_sequence(js).await;
    let mut acks = Vec::new();
    for k in 0..depth {
        let filter = filters[k as usize % filters.len()];
        let msgs = batch_checking("a", start + k * 16, 16, start + k * 16, Some(lease), filter);
        acks.push(publish_atomic(js, msgs).await.unwrap());
    }
    let mut stored = 0;
    for (k, ack) in acks.into_iter().enumerate() {
        match ack.await {
            Ok(a) => {
                assert_eq!(stored, k as u64, "batch {k} was stored after one before it was refused");
                assert_eq!(a.sequence, start + 16 * (k as u64 + 1), "batch {k} stored elsewhere than predicted");
                stored += 1;
            }
            Err(e) => eprintln!("pipelined batch {k} (filter {}): {e}", filters[k % filters.len()]),
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_batches_pipeline_when_each_in_flight_checks_the_lease_through_its_own_filter() {
    let nats = Cluster::start(3).unwrap();
    let js = stream_on(&nats).await;
    let lease = take_lease(&js, "a", 0).await.unwrap();
    // The server holds one expectation per checked subject in process (its
    // `expectedPerSubjectInProcess`), keyed by the filter as written: batches in flight
    // that all name the lease subject are refused after the first still in process.
    let same = pipelined(&js, 8, lease, &[LEASE]).await;
    eprintln!("8 in flight naming the lease subject alike: {same} stored");
    // Four filters that match the lease subject and nothing else (it is the stream's only
    // subject of two tokens): four in flight, every one stored where predicted.
    let filters = ["fence.lease", "fence.*", "*.lease", "*.*"];
    for round in 0..5 {
        assert_eq!(pipelined(&js, 4, lease, &filters).await, 4, "round {round}: a fenced batch in flight was refused");
    }
}

/// A lease taken while a fenced batch is on its way: the taker's lease message is
/// published (not yet acknowledged) and the holder's batch right behind it expects the
/// stream to end just after it — as if the taker had filled exactly the positions of a
/// batch of the holder's that failed — and the lease to be still the holder's, checked
/// through `filter`. Rounds of it, the lease changing hands each time: how many of the
/// holder's batches were stored on top of a lease message that replaced its lease.
async fn fenced_behind_a_take(js: &jetstream::Context, filter: &str, rounds: u32) -> u32 {
    let mut lease = take_lease(js, "w0", last_lease(js).await).await.unwrap();
    let mut breaches = 0;
    for round in 0..rounds {
        let tail = last_sequence(js).await;
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, lease.to_string().as_str());
        let take = js.publish_with_headers(LEASE, headers, format!("w{}", round + 1).into()).await.unwrap();
        let holder = publish_atomic(js, batch_checking("h", u64::from(round) * 2, 2, tail + 1, Some(lease), filter))
            .await
            .unwrap();
        let took = take.await.map(|a| a.sequence);
        let fenced = holder.await.map(|a| a.sequence);
        assert_eq!(took.as_ref().ok(), Some(&(tail + 1)), "round {round}: the take was not stored first");
        if let Ok(at) = fenced {
            eprintln!(
                "round {round} ({filter}): the holder's batch was stored at {at}, after the take at {}",
                tail + 1
            );
            breaches += 1;
        }
        // Once the take is stored, the same fence refuses the holder, however named.
        let now = last_sequence(js).await;
        let after = stored(js, batch_checking("h", 1000 + u64::from(round), 1, now, Some(lease), filter)).await;
        assert!(after.is_err(), "round {round} ({filter}): fenced on a lease replaced and stored: {after:?}");
        lease = tail + 1;
    }
    breaches
}

async fn last_lease(js: &jetstream::Context) -> u64 {
    match js.get_stream(STREAM).await.unwrap().get_last_raw_message_by_subject(LEASE).await {
        Ok(m) => m.sequence,
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_lease_subject_itself_fences_against_a_take_in_flight() {
    let nats = Cluster::start(3).unwrap();
    let js = stream_on(&nats).await;
    // Named as written, the lease subject is one a proposal in flight writes (the
    // server's `inflight`, keyed by subject): the holder's batch is refused, every round.
    assert_eq!(fenced_behind_a_take(&js, LEASE, 30).await, 0, "the lease subject let a fenced batch through");
    // Named through a wildcard filter, the check reads the stream as applied, which does
    // not hold the take yet: the holder's batch is stored on top of it.
    let breaches = fenced_behind_a_take(&js, "*.lease", 30).await;
    eprintln!("through a filter: {breaches} of 30 fenced batches stored behind a take in flight");
    assert!(breaches > 0, "a filter fenced every batch against a take in flight: the fence through filters may hold");
}

/// How many lease subjects (slots) the sound fence below uses: one per batch in flight.
const SLOTS: u64 = 4;

fn slot(k: u64) -> String {
    format!("fence.slot.{k}")
}

/// A take of the lease: one message on every slot, each expecting its slot to end
/// where the taker read it (`last[k]`).
fn take_every_slot(last: &[u64]) -> Vec<BatchMsg> {
    (0..SLOTS)
        .map(|k| {
            let mut headers = HeaderMap::new();
            headers
                .insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, last[k as usize].to_string().as_str());
            BatchMsg { subject: slot(k), headers, payload: "take".into() }
        })
        .collect()
}

/// A holder's batch on slot `k`: its first message is on the slot itself, expecting
/// the stream to end at `after` and the slot at `slot_last` (the holder's own last
/// message there); `n` messages of the holder's after it.
fn on_slot(k: u64, slot_last: u64, after: u64, n: u64, from: u64) -> Vec<BatchMsg> {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, after.to_string().as_str());
    headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, slot_last.to_string().as_str());
    let mut msgs = vec![BatchMsg { subject: slot(k), headers, payload: "mark".into() }];
    msgs.extend((0..n).map(|i| BatchMsg {
        subject: format!("fence.h.{}", from + i),
        headers: HeaderMap::new(),
        payload: "x".into(),
    }));
    msgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_per_batch_in_flight_pipelines_and_every_take_in_flight_refuses_the_holder() {
    let nats = Cluster::start(3).unwrap();
    let js = stream_on(&nats).await;
    let start = last_sequence(&js).await;
    let took = stored(&js, take_every_slot(&[0; SLOTS as usize])).await.unwrap();
    // Each slot's last message, as the holder knows it.
    let mut slots: Vec<u64> = (0..SLOTS).map(|k| start + 1 + k).collect();
    assert_eq!(took, start + SLOTS);
    // Pipelined: a batch on every slot at once, each chained to the one before; every one
    // stored where predicted, round after round.
    for round in 0..5u64 {
        let tail = last_sequence(&js).await;
        let mut acks = Vec::new();
        for k in 0..SLOTS {
            let msgs = on_slot(k, slots[k as usize], tail + k * 16, 15, round * 100 + k * 16);
            acks.push(publish_atomic(&js, msgs).await.unwrap());
        }
        for (k, ack) in acks.into_iter().enumerate() {
            let at = ack.await.unwrap_or_else(|e| panic!("round {round}: batch on slot {k} refused: {e}")).sequence;
            assert_eq!(at, tail + 16 * (k as u64 + 1), "round {round}: batch on slot {k} stored elsewhere");
            slots[k] = tail + 16 * k as u64 + 1;
        }
    }
    // A take in flight, the holder's batch right behind it chained as if the take had
    // filled exactly the positions of one of its batches that failed: refused, whichever
    // slot it is on, every round.
    for round in 0..30u64 {
        let tail = last_sequence(&js).await;
        let take = publish_atomic(&js, take_every_slot(&slots)).await.unwrap();
        let k = round % SLOTS;
        let holder =
            publish_atomic(&js, on_slot(k, slots[k as usize], tail + SLOTS, 2, 10_000 + round * 4)).await.unwrap();
        assert_eq!(take.await.map(|a| a.sequence).ok(), Some(tail + SLOTS), "round {round}: the take");
        let fenced = holder.await.map(|a| a.sequence);
        assert!(fenced.is_err(), "round {round}: the holder's batch on slot {k} was stored behind a take: {fenced:?}");
        slots = (0..SLOTS).map(|k| tail + 1 + k).collect();
    }
}
