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
