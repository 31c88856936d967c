//! R26 on JetStream beyond its de-duplication window, answered by what lasts: the
//! durable command index (a process that never saw the command), and the command-id
//! follower (the index entry never written: the appender died first, the indexer has
//! not caught up).

use std::time::Duration;

use async_nats::jetstream;
use behalf_log::conformance::{request, vendor_key};
use behalf_log::{EventLog, ExpectedVersion};
use behalf_nats::server::Cluster;
use behalf_nats::{command_key, NatsLog, NatsOptions, COMMANDS_BUCKET};

const WINDOW: Duration = Duration::from_secs(1);

fn options(nats: &Cluster, indexer: bool) -> NatsOptions {
    NatsOptions { run_indexer: indexer, ..NatsOptions::new(nats.urls()).duplicate_window(WINDOW) }
}

async fn bucket(nats: &Cluster) -> jetstream::kv::Store {
    let client = async_nats::connect(nats.urls()).await.unwrap();
    jetstream::new(client).get_key_value(COMMANDS_BUCKET).await.unwrap()
}

async fn fill(log: &NatsLog, n: usize) {
    for i in 0..n {
        let r = request(&format!("ticket-{i}"), ExpectedVersion::Exact(0), &format!("c{i}"), 1);
        assert!(!log.append(r).await.unwrap().unwrap().duplicate);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_in_a_new_process_is_answered_by_the_index() {
    let nats = Cluster::single().unwrap();
    let first = NatsLog::open(options(&nats, true)).await.unwrap();
    fill(&first, 20).await;
    let kv = bucket(&nats).await;
    // Wait for the indexer to pass every commit (its checkpoint is the new floor).
    let mut indexed = 0;
    for _ in 0..200 {
        indexed =
            kv.get("tenant-checkpoint").await.unwrap().map_or(0, |b| String::from_utf8_lossy(&b).parse().unwrap());
        if indexed >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(indexed, 20, "the indexer caught up");
    drop(first);
    tokio::time::sleep(WINDOW * 5 / 2).await;

    // A new process starts past the index's checkpoint: only the index knows c3.
    let later = NatsLog::open(options(&nats, false)).await.unwrap();
    let again = later.append(request("ticket-elsewhere", ExpectedVersion::Exact(0), "c3", 1)).await.unwrap().unwrap();
    assert!(again.duplicate, "a retry under a new ticket id is the first command");
    assert_eq!(again.position, 4);
    assert_eq!(later.find_command(&vendor_key("c3")).await.unwrap().map(|c| c.position), Some(4));
    assert_eq!(later.head().await.unwrap(), 20, "nothing was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_whose_index_entry_was_never_written_is_found_in_the_log() {
    let nats = Cluster::single().unwrap();
    let first = NatsLog::open(options(&nats, false)).await.unwrap();
    fill(&first, 10).await;
    drop(first);
    // The appender died before its index write; nobody has indexed since.
    let kv = bucket(&nats).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    kv.purge(command_key(&vendor_key("c7"))).await.unwrap();
    assert!(kv.get(command_key(&vendor_key("c7"))).await.unwrap().is_none());
    tokio::time::sleep(WINDOW * 5 / 2).await;

    let later = NatsLog::open(options(&nats, false)).await.unwrap();
    let again = later.append(request("ticket-new", ExpectedVersion::Exact(0), "c7", 1)).await.unwrap().unwrap();
    assert!(again.duplicate);
    assert_eq!(again.position, 8);
    assert_eq!(later.head().await.unwrap(), 10, "nothing was appended");
}
