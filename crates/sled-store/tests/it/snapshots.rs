//! `DataDir::refresh_snapshots`, which `serve` runs as it stops: sled 0.34 writes the
//! snapshot of its page table only when it opens, so without it the next start replays
//! everything the last process wrote. After it the newest snapshot stands past those
//! writes, and the log still reads every commit.

use behalf_log::conformance::request;
use behalf_log::{EventLog as _, ExpectedVersion};
use behalf_sled_store::{DataDir, OpenOptions};

/// The log sequence number the newest `snap.<lsn>` file in `dir` stands on.
fn newest_snapshot(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_refresh_writes_a_snapshot_past_the_last_run_s_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let (log, _) = data.open_log(OpenOptions::default()).unwrap();
    for i in 0..300 {
        log.append(request("ticket-1", ExpectedVersion::Any, &format!("c{i}"), 3)).await.unwrap().unwrap();
    }
    drop(log);
    let before = newest_snapshot(&data.log());
    data.refresh_snapshots().unwrap();
    let after = newest_snapshot(&data.log());
    assert!(after > before, "no newer snapshot: {before:X} then {after:X}");
    // A store not there is not made.
    assert!(!data.views().exists(), "the refresh made a views store");
    let (log, _) = data.open_log(OpenOptions::default()).unwrap();
    assert_eq!(log.head().await.unwrap(), 300);
    // Refreshing with the log open waits for its lock, then says why not.
    assert!(data.refresh_snapshots().is_err(), "refreshed a store another handle holds open");
}
