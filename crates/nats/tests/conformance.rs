//! The log conformance suite — the same cases the embedded engine passes — on a real
//! nats-server (one node, its own ports and store) per case.

use behalf_log::conformance::Harness;
use behalf_nats::server::Cluster;
use behalf_nats::{NatsLog, NatsOptions};

struct Nats(Cluster);

impl Harness for Nats {
    type Log = NatsLog;
    async fn open(&self) -> NatsLog {
        NatsLog::open(NatsOptions::new(self.0.urls())).await.expect("open the JetStream log")
    }
}

fn fresh() -> Nats {
    Nats(Cluster::single().expect("start nats-server"))
}

behalf_log::conformance_tests!(fresh());
