//! The log conformance suite — the same cases the embedded engine passes — on a real
//! nats-server (one node, its own ports and store) per case, with JetStream's
//! de-duplication window shrunk to a second so that R26 is seen to outlast it.

use std::time::Duration;

use behalf_log::conformance::Harness;
use behalf_nats::server::Cluster;
use behalf_nats::{NatsLog, NatsOptions};

const WINDOW: Duration = Duration::from_secs(1);

struct Nats(Cluster);

impl Harness for Nats {
    type Log = NatsLog;
    async fn open(&self) -> NatsLog {
        NatsLog::open(NatsOptions::new(self.0.urls()).duplicate_window(WINDOW)).await.expect("open the JetStream log")
    }

    async fn past_recent_memory(&self) {
        // JetStream drops expired message ids on a timer of its own: a window and a half.
        tokio::time::sleep(WINDOW * 5 / 2).await;
    }
}

fn fresh() -> Nats {
    Nats(Cluster::single().expect("start nats-server"))
}

behalf_log::conformance_tests!(fresh());
