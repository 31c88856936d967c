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

/// A log holding the standard world and a ticket, in `dir`.
async fn world_log(dir: &Path) -> SledLog {
    let (log, _) = SledLog::open(dir, OpenOptions::default()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(at("2026-06-01T00:00:00Z")));
    let service = CommandService::new(log.clone(), clock);
    for (who, cmd) in standard_world(&FIXED_TIMES) {
        service.execute(who, request::from_value(cmd, None).unwrap()).await.unwrap();
    }
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

/// The directory holds each id once: a partner named by many relationships, a
/// relationship named by its assignment, a role named everywhere — as folded, and again
/// once decoded from a snapshot (issue 29: the directory's memory).
#[test]
fn the_directory_holds_each_id_once_folded_and_decoded() {
    use behalf_domain::{Directory, Event};
    use behalf_service::gdap::snapshot::{decode, encode, Anchor};
    let samples = behalf_log::samples::every_event_type();
    let find = |name: &str| samples.iter().find(|e| e.type_name() == name).cloned().unwrap();
    let (Event::RelationshipUpserted(rel), Event::AssignmentUpserted(asg)) =
        (find("RelationshipUpserted"), find("AssignmentUpserted"))
    else {
        unreachable!()
    };
    let mut dir = Directory::default();
    for i in 0..3 {
        let mut r = rel.clone();
        r.relationship_id = format!("rel-{i}").as_str().into();
        r.customer_id = format!("{i:08x}-0000-4000-8000-000000000000").as_str().into();
        dir.apply(&Event::RelationshipUpserted(r));
        let mut a = asg.clone();
        a.assignment_id = format!("asg-{i}").as_str().into();
        a.relationship_id = format!("rel-{i}").as_str().into();
        dir.apply(&Event::AssignmentUpserted(a));
    }
    let shared = |dir: &Directory| {
        let rels: Vec<_> = dir.relationships.values().collect();
        let a = dir.assignments.values().next().unwrap();
        let (key, r0) = dir.relationships.iter().next().unwrap();
        Arc::ptr_eq(&rels[0].partner_id.0, &rels[2].partner_id.0)
            && Arc::ptr_eq(&rels[0].roles[0].0, &rels[1].roles[0].0)
            && Arc::ptr_eq(&a.relationship_id.0, &r0.relationship_id.0)
            && Arc::ptr_eq(&key.0, &r0.relationship_id.0)
    };
    assert!(shared(&dir), "folded");
    let anchor = Anchor { position: 1, prev_hash: [0; 32], key: "vendor/test".into(), request_hash: [0; 32] };
    let (_, back) = decode(&encode(&anchor, &dir).unwrap()).unwrap();
    assert_eq!(back, dir);
    assert!(shared(&back), "decoded from a snapshot");
}
