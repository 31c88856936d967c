//! The GDAP projection's snapshot on the real embedded log: a start-up from it holds
//! exactly what folding from position 1 holds, and a snapshot that does not check (its
//! bytes changed, or the log no longer holds the commit it stands on) is not used.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use behalf_log::EventLog;
use behalf_service::clock::{Clock, ManualClock};
use behalf_service::commands::CommandService;
use behalf_service::gdap::GdapProjection;
use behalf_service::request;
use behalf_sled_store::{DataDir, OpenOptions, SledLog};
use behalf_test_support::world::*;

/// A log holding the standard world, in `dir`, and a service on it.
async fn standard_log(dir: &Path) -> (SledLog, CommandService<SledLog>) {
    let (log, _) = SledLog::open(dir, OpenOptions::default()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(at("2026-06-01T00:00:00Z")));
    let service = CommandService::new(log.clone(), clock);
    for (who, cmd) in standard_world(&FIXED_TIMES) {
        service.execute(who, request::from_value(cmd, None).unwrap()).await.unwrap();
    }
    (log, service)
}

/// A log holding the standard world and a ticket, in `dir`.
async fn world_log(dir: &Path) -> SledLog {
    let (log, service) = standard_log(dir).await;
    service.execute(agent(), request::from_value(open_o365(), None).unwrap()).await.unwrap();
    log
}

async fn caught_up(p: &GdapProjection, log: &SledLog) {
    p.wait_for(log.head().await.unwrap(), Duration::from_secs(10)).await.unwrap();
}

fn folded(p: &GdapProjection) -> String {
    format!("{:?}", *p.view().directory)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_from_the_snapshot_holds_what_the_full_fold_holds() {
    let dir = tempfile::tempdir().unwrap();
    let file = DataDir::new(dir.path()).gdap_snapshot();
    let log = world_log(&DataDir::new(dir.path()).log()).await;
    let head = log.head().await.unwrap();
    let first = GdapProjection::spawn_with_snapshot(&log, file.clone());
    caught_up(&first, &log).await;
    assert_eq!(first.started_from(), None, "there was no snapshot yet");
    assert_eq!(first.save(&log).await, Some(head));
    assert_eq!(first.save(&log).await, None, "nothing moved since");
    let full = folded(&first);
    drop(first);
    // More directory facts after the snapshot: the start folds only those.
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(at("2026-06-02T00:00:00Z")));
    let service = CommandService::new(log.clone(), clock);
    let more = serde_json::json!({"type":"customer.register","customer_id":"33333333-0000-4000-8000-0000000000e1","name":"Later","domains":["later.example"],"cloud":"commercial"});
    service.execute(behalf_domain::Principal::Vendor, request::from_value(more, None).unwrap()).await.unwrap();
    let second = GdapProjection::spawn_with_snapshot(&log, file.clone());
    caught_up(&second, &log).await;
    assert_eq!(second.started_from(), Some(head));
    let scratch = GdapProjection::spawn(&log);
    caught_up(&scratch, &log).await;
    assert_eq!(folded(&second), folded(&scratch), "snapshot + tail = the whole fold");
    assert_ne!(folded(&second), full, "the tail was applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_that_does_not_check_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let file = DataDir::new(dir.path()).gdap_snapshot();
    let log = world_log(&DataDir::new(dir.path()).log()).await;
    let p = GdapProjection::spawn_with_snapshot(&log, file.clone());
    caught_up(&p, &log).await;
    assert!(p.save(&log).await.is_some());
    let want = folded(&p);
    drop(p);
    let good = std::fs::read(&file).unwrap();

    // A changed byte: the checksum does not match.
    let mut flipped = good.clone();
    let i = flipped.len() - 5;
    flipped[i] ^= 0x40;
    std::fs::write(&file, &flipped).unwrap();
    let q = GdapProjection::spawn_with_snapshot(&log, file.clone());
    caught_up(&q, &log).await;
    assert_eq!((q.started_from(), folded(&q)), (None, want.clone()));
    drop(q);

    // Whole, but of another log: the commit it stands on is not this log's.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = SledLog::open(other_dir.path(), OpenOptions::default()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(at("2026-07-01T00:00:00Z")));
    let s = CommandService::new(other.clone(), clock);
    for (who, cmd) in standard_world(&FIXED_TIMES) {
        s.execute(who, request::from_value(cmd, None).unwrap()).await.unwrap();
    }
    s.execute(agent(), request::from_value(open_o365(), None).unwrap()).await.unwrap();
    std::fs::write(&file, &good).unwrap();
    let r = GdapProjection::spawn_with_snapshot(&other, file.clone());
    caught_up(&r, &other).await;
    assert_eq!(r.started_from(), None, "not this log's snapshot");

    // Cut short.
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let t = GdapProjection::spawn_with_snapshot(&log, file.clone());
    caught_up(&t, &log).await;
    assert_eq!((t.started_from(), folded(&t)), (None, want));
}

/// The packed directory (issue 29: its memory) gives back every fact as it was folded,
/// through every index and in id order — as folded, and again once decoded from a
/// snapshot; a fact upserted again replaces its row and its index entries.
#[test]
fn the_packed_directory_gives_back_what_was_folded_and_decoded() {
    use behalf_domain::{Directory, Event, RelationshipStatus};
    use behalf_service::gdap::snapshot::{decode, encode, Anchor};
    let samples = behalf_log::samples::every_event_type();
    let find = |name: &str| samples.iter().find(|e| e.type_name() == name).cloned().unwrap();
    let (Event::RelationshipUpserted(rel), Event::AssignmentUpserted(asg), Event::CustomerRegistered(cus)) =
        (find("RelationshipUpserted"), find("AssignmentUpserted"), find("CustomerRegistered"))
    else {
        unreachable!()
    };
    let mut dir = Directory::default();
    let customer = |i: u32| format!("{i:08x}-0000-4000-8000-000000000000");
    let mut rels = Vec::new();
    let mut asgs = Vec::new();
    // Folded out of id order: relationship 2 before 0 and 1; two relationships for customer 0.
    for (i, c) in [(2u32, 1u32), (0, 0), (1, 0)] {
        let mut k = cus.clone();
        k.customer_id = customer(c).as_str().into();
        k.name = format!("Customer {c}");
        dir.apply(&Event::CustomerRegistered(k));
        let mut r = rel.clone();
        r.relationship_id = format!("rel-{i}").as_str().into();
        r.customer_id = customer(c).as_str().into();
        dir.apply(&Event::RelationshipUpserted(r.clone()));
        rels.push(r);
        for j in [1, 0] {
            let mut a = asg.clone();
            a.assignment_id = format!("asg-{i}-{j}").as_str().into();
            a.relationship_id = format!("rel-{i}").as_str().into();
            dir.apply(&Event::AssignmentUpserted(a.clone()));
            asgs.push(a);
        }
    }
    // Upserted again: its row is replaced, nothing is added.
    rels[1].status = RelationshipStatus::Terminated;
    dir.apply(&Event::RelationshipUpserted(rels[1].clone()));
    let check = |dir: &Directory| {
        assert_eq!(dir.gdap_counts(), (2, 3, 6));
        for r in &rels {
            assert_eq!(dir.relationship(&r.relationship_id).as_ref(), Some(r));
        }
        for a in &asgs {
            assert_eq!(dir.assignment(&a.assignment_id).as_ref(), Some(a));
        }
        let between: Vec<String> = dir
            .relationships_between(&rel.partner_id, &customer(0).as_str().into())
            .iter()
            .map(|r| r.relationship_id.to_string())
            .collect();
        assert_eq!(between, ["rel-0", "rel-1"]);
        let on: Vec<String> = dir.assignments_on(&"rel-2".into()).iter().map(|a| a.assignment_id.to_string()).collect();
        assert_eq!(on, ["asg-2-0", "asg-2-1"]);
        let of: Vec<(String, usize)> =
            dir.customers_of(&rel.partner_id).iter().map(|(c, rs)| (c.to_string(), rs.len())).collect();
        assert_eq!(of, [(customer(0), 2), (customer(1), 1)]);
        assert_eq!(dir.customer(&customer(1).as_str().into()).map(|c| c.name), Some("Customer 1".to_string()));
        assert!(dir.relationship(&"rel-9".into()).is_none());
        assert!(dir.relationships_between(&rel.partner_id, &customer(9).as_str().into()).is_empty());
    };
    check(&dir);
    let anchor = Anchor { position: 1, prev_hash: [0; 32], key: "vendor/test".into(), request_hash: [0; 32] };
    let (_, back) = decode(&encode(&anchor, &dir).unwrap()).unwrap();
    assert_eq!(back, dir);
    check(&back);
    let mut other = back.clone();
    other.apply(&Event::RelationshipUpserted(rels[0].clone()));
    assert_eq!(other, dir, "the same fact again changes nothing");
    let mut changed = rels[2].clone();
    changed.duration = "P30D".into();
    other.apply(&Event::RelationshipUpserted(changed));
    assert_ne!(other, dir);
}

/// A log that reads shorter than the projection (on a cluster: a leader that has not
/// yet applied what a replica delivered) defers the save; it is not lost, and the
/// next save against the log as it is saves it.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_reads_shorter_defers_the_save() {
    let dir = tempfile::tempdir().unwrap();
    let file = DataDir::new(dir.path()).gdap_snapshot();
    let log = world_log(&DataDir::new(dir.path()).log()).await;
    let head = log.head().await.unwrap();
    let (shorter, _) = standard_log(&dir.path().join("shorter")).await; // the same, without the ticket
    assert!(shorter.head().await.unwrap() < head);
    let p = GdapProjection::spawn_with_snapshot(&log, file.clone());
    caught_up(&p, &log).await;
    for _ in 0..4 {
        assert_eq!(p.save(&shorter).await, None, "not saved on a log without its position");
    }
    assert!(!file.exists());
    assert_eq!(p.save(&log).await, Some(head), "saved once the log holds it");
}
