//! Bad bytes on disk: a corrupt, missing, reordered or truncated record is reported
//! with its position and never skipped; the engine refuses to start on a broken chain
//! (walked from its last verified checkpoint, or found by an earlier full walk) unless
//! told to stop at the last good commit, and then it says so.

use std::path::Path;

use behalf_log::conformance::{request, vendor_key};
use behalf_log::{EventLog, ExpectedVersion, LogError};
use behalf_sled_store::{OpenOptions, SledLog};

fn key(pos: u64) -> Vec<u8> {
    let mut k = vec![b'L'];
    k.extend_from_slice(&pos.to_be_bytes());
    k
}

async fn fill(dir: &Path, n: u64) {
    let (log, _) = SledLog::open(dir, OpenOptions::default()).unwrap();
    for i in 0..n {
        log.append(request(&format!("ticket-{}", i % 3), ExpectedVersion::Any, &format!("c{i}"), 2))
            .await
            .unwrap()
            .unwrap();
    }
}

/// sled's IO threads may hold the directory lock a moment after the log is dropped.
fn open_sled(dir: &Path) -> sled::Db {
    for _ in 0..200 {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    sled::open(dir).unwrap()
}

/// Edits the stored records directly, as a disk fault or an attacker would.
fn tamper(dir: &Path, f: impl FnOnce(&sled::Db)) {
    let db = open_sled(dir);
    f(&db);
    db.flush().unwrap();
}

fn refused_at(dir: &Path) -> (u64, String) {
    match SledLog::open(dir, OpenOptions::default()) {
        Err(LogError::Corrupt { position, what }) => (position, what),
        Err(other) => panic!("expected a corrupt-log refusal, got {other}"),
        Ok(_) => panic!("a broken log opened"),
    }
}

#[tokio::test]
async fn flipped_byte_is_named_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10).await;
    tamper(dir.path(), |db| {
        let mut v = db.get(key(5)).unwrap().unwrap().to_vec();
        let i = v.len() - 3; // inside the last event's text
        v[i] ^= 0x01;
        db.insert(key(5), v).unwrap();
    });
    let (pos, what) = refused_at(dir.path());
    assert_eq!(pos, 5, "{what}");
}

#[tokio::test]
async fn flipped_byte_in_the_last_commit_is_caught_by_the_head() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 4).await;
    tamper(dir.path(), |db| {
        let mut v = db.get(key(4)).unwrap().unwrap().to_vec();
        let i = v.len() - 2;
        v[i] ^= 0x20;
        db.insert(key(4), v).unwrap();
    });
    assert_eq!(refused_at(dir.path()).0, 4);
}

#[tokio::test]
async fn dropped_commit_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10).await;
    tamper(dir.path(), |db| {
        db.remove(key(6)).unwrap();
    });
    let (pos, what) = refused_at(dir.path());
    assert_eq!(pos, 6, "{what}");
    assert!(what.contains("missing"), "{what}");
}

#[tokio::test]
async fn reordered_commits_are_named() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10).await;
    tamper(dir.path(), |db| {
        let a = db.get(key(3)).unwrap().unwrap();
        let b = db.get(key(4)).unwrap().unwrap();
        db.insert(key(3), b).unwrap();
        db.insert(key(4), a).unwrap();
    });
    assert_eq!(refused_at(dir.path()).0, 3);
}

#[tokio::test]
async fn truncated_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10).await;
    tamper(dir.path(), |db| {
        let v = db.get(key(8)).unwrap().unwrap();
        db.insert(key(8), &v[..v.len() / 2]).unwrap();
    });
    let (pos, what) = refused_at(dir.path());
    assert_eq!(pos, 8);
    assert!(what.contains("decode"), "{what}");
}

#[tokio::test]
async fn stop_at_last_good_truncates_says_so_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10).await;
    tamper(dir.path(), |db| {
        let v = db.get(key(7)).unwrap().unwrap();
        db.insert(key(7), &v[..10]).unwrap();
    });
    let (log, report) = SledLog::open(dir.path(), OpenOptions { stop_at_last_good: true }).unwrap();
    assert_eq!(report.head, 6);
    assert_eq!(report.truncated.as_ref().map(|t| t.0), Some(7), "it says where it stopped");
    assert_eq!(log.head().await.unwrap(), 6);
    // Commands of the dropped commits are no longer known; the indexes were rebuilt.
    assert!(log.find_command(&vendor_key("c7")).await.unwrap().is_none());
    assert_eq!(log.find_command(&vendor_key("c5")).await.unwrap().unwrap().position, 6);
    let next = log.append(request("ticket-0", ExpectedVersion::Any, "after", 1)).await.unwrap().unwrap();
    assert_eq!(next.position, 7);
    let report = log.verify().await.unwrap();
    assert_eq!((report.verified, report.first_bad), (7, None));
    drop(log);
    // The dropped records are kept aside, not destroyed.
    let db = open_sled(dir.path());
    assert_eq!(db.open_tree("quarantine").unwrap().len(), 4);
}

/// A walk that ended well is a checkpoint: the next open walks only what came after
/// it. Damage behind the checkpoint is found by the next full walk (`verify`, which
/// `behalf serve` runs after it is ready), which records the break: from then on the
/// log refuses to open until it is cut back.
#[tokio::test]
async fn damage_behind_the_checkpoint_is_found_by_the_full_walk_and_kept_on_record() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5).await;
    let (log, _) = SledLog::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(log.verify().await.unwrap().first_bad, None);
    drop(log);
    tamper(dir.path(), |db| {
        db.remove(key(2)).unwrap();
    });
    let (log, report) = SledLog::open(dir.path(), OpenOptions::default()).expect("opens from its checkpoint");
    assert_eq!(report.head, 5);
    let walked = log.verify().await.unwrap();
    assert_eq!(walked.first_bad.as_ref().map(|b| b.0), Some(2), "{walked:?}");
    drop(log);
    let (pos, what) = refused_at(dir.path());
    assert_eq!(pos, 2, "{what}");
    assert!(what.contains("missing"), "{what}");
    // Cut back, it opens and walks clean again.
    let (log, report) = SledLog::open(dir.path(), OpenOptions { stop_at_last_good: true }).unwrap();
    assert_eq!(report.head, 1);
    assert_eq!(log.verify().await.unwrap().first_bad, None);
}

/// The checkpoint is checked when read: one that no longer matches its record is not
/// trusted, and the open walks the whole chain.
#[tokio::test]
async fn a_checkpoint_that_does_not_match_its_record_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 6).await;
    let (log, _) = SledLog::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(log.verify().await.unwrap().first_bad, None);
    drop(log);
    tamper(dir.path(), |db| {
        // Commit 3 changed, and the checkpoint moved back onto it.
        let mut v = db.get(key(3)).unwrap().unwrap().to_vec();
        let i = v.len() - 3;
        v[i] ^= 0x01;
        db.insert(key(3), v).unwrap();
        let mut cp = 3u64.to_be_bytes().to_vec();
        cp.extend_from_slice(&[7u8; 32]);
        db.insert(b"V", cp).unwrap();
    });
    assert_eq!(refused_at(dir.path()).0, 3);
}

/// A store written before command ids were per tenant keeps its meaning: its index
/// (keyed by the bare id, prefix `C`) is replaced on open by one keyed by (tenant, id),
/// the tenant read from each record's actor; retries still answer their first outcome.
#[tokio::test]
async fn an_index_of_bare_command_ids_is_read_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 6).await;
    // What an earlier build left: `C<command id>` → position and digest.
    tamper(dir.path(), |db| {
        let new: Vec<_> = db.scan_prefix(b"K").map(|kv| kv.unwrap()).collect();
        assert_eq!(new.len(), 6, "one index entry per command");
        for (k, v) in new {
            let id = std::str::from_utf8(&k[1..]).unwrap().strip_prefix("vendor/").unwrap().to_owned();
            db.remove(&k).unwrap();
            db.insert([b"C".as_slice(), id.as_bytes()].concat(), v).unwrap();
        }
    });
    let (log, _) = SledLog::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(log.find_command(&vendor_key("c4")).await.unwrap().unwrap().position, 5);
    let again = log.append(request("ticket-9", ExpectedVersion::Exact(0), "c2", 2)).await.unwrap().unwrap();
    assert!(again.duplicate && again.position == 3, "a retry of an old command answers its first outcome");
    assert_eq!(log.head().await.unwrap(), 6);
    drop(log);
    let db = open_sled(dir.path());
    assert_eq!(db.scan_prefix(b"C").count(), 0, "the old index is gone");
    assert_eq!(db.scan_prefix(b"K").count(), 6);
}
