//! The log conformance suite on the embedded engine, on disk.

use behalf_log::conformance::Harness;
use behalf_sled_store::{OpenOptions, SledLog};

struct Sled(tempfile::TempDir);

impl Harness for Sled {
    type Log = SledLog;
    async fn open(&self) -> SledLog {
        SledLog::open(self.0.path(), OpenOptions::default()).expect("open").0
    }
}

fn fresh() -> Sled {
    Sled(tempfile::tempdir().expect("temp dir"))
}

behalf_log::conformance_tests!(fresh());

/// The embedded engine checks the directory position a command was decided against:
/// a directory commit stored after it refuses the append (decide again); at or past
/// the last directory commit it goes in. It tells where the last durable one is, so a
/// decision waits for the GDAP projection only that far.
#[tokio::test]
async fn an_append_decided_against_an_old_directory_is_refused() {
    use behalf_log::conformance::request;
    use behalf_log::{AppendRefused, AppendRequest, EventLog, ExpectedVersion};
    let h = fresh();
    let log = h.open().await;
    let at = |r: AppendRequest, d: u64| AppendRequest { directory_at: Some(d), ..r };
    log.append(request("ticket-a", ExpectedVersion::Any, "t1", 1)).await.unwrap().unwrap();
    let dir = log.append(request("customer-c", ExpectedVersion::Any, "d1", 1)).await.unwrap().unwrap();
    assert_eq!(log.directory_head(), Some(dir.position));
    log.append(request("ticket-a", ExpectedVersion::Any, "t2", 1)).await.unwrap().unwrap();
    let stale = log.append(at(request("ticket-b", ExpectedVersion::Any, "t3", 1), dir.position - 1)).await.unwrap();
    assert_eq!(stale, Err(AppendRefused::DirectoryMoved { position: dir.position }));
    let fresh_enough = log.append(at(request("ticket-b", ExpectedVersion::Any, "t3", 1), dir.position)).await.unwrap();
    assert!(fresh_enough.is_ok(), "{fresh_enough:?}");
    // Ticket commits do not move the directory.
    assert_eq!(log.directory_head(), Some(dir.position));
    // After a restart the engine does not know where the last one was: the head.
    let head = log.head().await.unwrap();
    drop(log);
    let log = h.open().await;
    assert_eq!(log.directory_head(), Some(head));
}
