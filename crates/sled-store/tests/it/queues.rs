//! The queue contract (`behalf_log::queues::conformance`) on the embedded store.

use behalf_log::queues::conformance;
use behalf_sled_store::SledQueues;

fn fresh() -> (tempfile::TempDir, SledQueues) {
    let dir = tempfile::tempdir().unwrap();
    let q = SledQueues::open(dir.path()).unwrap();
    (dir, q)
}

#[test]
fn lease_ack_redeliver() {
    let (_dir, q) = fresh();
    conformance::lease_ack_redeliver(&q);
}

#[test]
fn each_source_event_once() {
    let (_dir, q) = fresh();
    conformance::each_source_event_once(&[&q]);
}

#[test]
fn order_across_the_whole_queue() {
    let (_dir, q) = fresh();
    conformance::order_across_the_whole_queue(&q);
}

#[test]
fn hold_and_copy() {
    let (_dir, q) = fresh();
    conformance::hold_and_copy(&q);
}

#[test]
fn webhook_secrets_and_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let s = behalf_sled_store::SledWebhooks::open(dir.path()).unwrap();
    behalf_log::webhooks::conformance::secrets_and_attempts(&s);
}

#[test]
fn sealing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = behalf_sled_store::SledKeys::open(dir.path()).unwrap();
    behalf_log::keys::conformance(&s);
}
