//! A log that no longer holds what a process saw: JetStream lost commits under it (its
//! node's files damaged while it was down). The process must refuse to build on the
//! shorter or different history, never acknowledge on top of it.

use std::time::{Duration, Instant};

use behalf_log::conformance::request;
use behalf_log::{EventLog, ExpectedVersion, LogError};
use behalf_nats::server::Cluster;
use behalf_nats::{NatsLog, NatsOptions, EVENTS_STREAM};

/// Appends until the answer is not "JetStream is not reachable" (the node may still be
/// starting): the refusal's position and reason. Panics if a command is acknowledged
/// or refused for another reason than a diverged log.
async fn refused_append(log: &NatsLog, id: &str) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = request(&format!("ticket-{id}"), ExpectedVersion::Exact(0), id, 1);
        match log.append(r).await {
            Ok(answer) => panic!("{id} was answered {answer:?} on a log that lost commits this process saw"),
            Err(LogError::Storage(e)) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(LogError::Corrupt { position, what }) => return (position, what),
            Err(e) => panic!("{id} was refused for another reason: {e}"),
        }
    }
}

/// A node, a process that appended 40 commits and whose follower saw them; then the
/// node dies, its last message block loses its second half, and it comes back. Returns
/// the node, that process, and a process opened after (which never saw the lost ones).
async fn lose_the_last_commits() -> (Cluster, NatsLog, NatsLog) {
    let mut nats = Cluster::single().unwrap();
    let urls = nats.urls();
    let options = || NatsOptions { run_indexer: false, ..NatsOptions::new(urls.clone()) };
    let log = NatsLog::open(options()).await.unwrap();
    for i in 0..40 {
        let r = request(&format!("ticket-{i}"), ExpectedVersion::Exact(0), &format!("c{i}"), 1);
        log.append(r).await.unwrap().unwrap();
    }
    // Time for the follower, in this process, to see every commit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.nodes[0].kill();
    let blocks = nats.nodes[0].stream_blocks(EVENTS_STREAM);
    let last = blocks.last().expect("the stream has a message block");
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(len / 2).unwrap();
    nats.nodes[0].start().unwrap();
    let fresh = NatsLog::open(options()).await.unwrap();
    (nats, log, fresh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_never_builds_on_a_log_that_lost_commits_it_saw() {
    let (_nats, log, fresh) = lose_the_last_commits().await;
    let head = fresh.head().await.unwrap();
    assert!(head < 40, "JetStream kept every commit ({head}): the damage did not take");
    eprintln!("JetStream lost commits {} to 40 (its own loss)", head + 1);

    // Once the node answers, every append is refused for as long as the log reads
    // shorter than what this process saw; nothing is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refusals = 0;
    while Instant::now() < deadline {
        let r = request(&format!("ticket-late-{refusals}"), ExpectedVersion::Exact(0), &format!("late-{refusals}"), 1);
        match log.append(r).await {
            Ok(answer) => panic!("answered {answer:?} on a log that lost commits this process saw"),
            Err(LogError::Storage(e)) if e.contains("not built on") => refusals += 1,
            Err(e) => eprintln!("not yet: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refusals > 0, "the shorter log was refused");
    assert_eq!(fresh.head().await.unwrap(), head, "nothing was built on the shorter log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_never_builds_on_a_history_replaced_under_it() {
    let (_nats, log, fresh) = lose_the_last_commits().await;
    // A process that never saw the lost commits cannot tell: it fills their positions
    // and goes past them.
    let lost_from = fresh.head().await.unwrap() + 1;
    assert!(lost_from <= 40, "the damage did not take");
    for i in 0..45 {
        let r = request(&format!("other-{i}"), ExpectedVersion::Exact(0), &format!("o{i}"), 1);
        fresh.append(r).await.unwrap().unwrap();
    }
    let head = fresh.head().await.unwrap();
    assert!(head > 41);
    // The first process's follower meets commit 41, which chains to another commit 40
    // than the one it saw: it refuses to build on that history.
    let (position, what) = refused_append(&log, "on-the-new-history").await;
    assert!(position == 40 || position == 41, "{position}: {what}");
    assert_eq!(fresh.head().await.unwrap(), head, "nothing was built on the other history");
}

/// A record filed under another subject than its stream's (what a damaged node or a
/// rogue writer can leave: JetStream drops a record whose own checksum fails, so the
/// test files a well-formed next commit under the wrong subject itself). The chain
/// verifies record by record, but a lookup by subject misses it and the stream looks
/// a version shorter: an append must not take the version that is already there, and
/// `verify` names the position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_filed_under_another_subject_is_refused() {
    let nats = Cluster::single().unwrap();
    let urls = nats.urls();
    let options = || NatsOptions { run_indexer: false, ..NatsOptions::new(urls.clone()) };
    let log = NatsLog::open(options()).await.unwrap();
    for i in 0..10 {
        let r = request(&format!("ticket-o{i}"), ExpectedVersion::Exact(0), &format!("c{i}"), 1);
        log.append(r).await.unwrap().unwrap();
    }
    let stream = behalf_domain::StreamId("ticket-tx".into());
    let first = log.append(request("ticket-tx", ExpectedVersion::Exact(0), "tx-1", 1)).await.unwrap().unwrap();
    drop(log);
    // Version 2 of ticket-tx, chained to the last record, filed under ticket-ty's subject.
    let js = async_nats::jetstream::new(async_nats::connect(&urls).await.unwrap());
    let events = js.get_stream(EVENTS_STREAM).await.unwrap();
    let last = events.get_raw_message(first.position).await.unwrap();
    let prev = behalf_log::codec::sha256(&last.payload);
    let req = request("ticket-tx", ExpectedVersion::Exact(1), "tx-2", 1);
    let record = behalf_log::record_for(&req, first.position + 1, 2, &prev).unwrap();
    let wrong = behalf_nats::event_subject(&behalf_domain::StreamId("ticket-ty".into()));
    js.publish(wrong, record.into()).await.unwrap().await.unwrap();

    let fresh = NatsLog::open(options()).await.unwrap();
    assert_eq!(fresh.head().await.unwrap(), first.position + 1);
    assert_eq!(fresh.stream_version(&stream).await.unwrap(), 1, "by subject, the stream looks one version shorter");
    let report = fresh.verify().await.unwrap();
    let (bad, what) = report.first_bad.expect("verify names the misfiled record");
    assert_eq!(bad, first.position + 1, "{what}");
    // Appending version 2 again would make a second version 2: refused instead.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match fresh.append(request("ticket-tx", ExpectedVersion::Exact(1), "tx-again", 1)).await {
            Ok(answer) => panic!("an append on the misfiled stream was answered {answer:?}"),
            Err(LogError::Corrupt { position, what }) => {
                assert_eq!(position, first.position + 1, "{what}");
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "refused for another reason: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
