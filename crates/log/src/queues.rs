//! The queue store contract: durable queues of notices with lease, ack, redelivery after
//! the lease runs out, and order by priority. Messages are keyed by their source event
//! id, and enqueued together with the forwarder's checkpoint in one atomic write, so a
//! crash between forwarding and checkpointing never yields a duplicate.

use behalf_domain::notify::Outgoing;
use serde::{Deserialize, Serialize};

use crate::LogError;

/// A message to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueue {
    /// `<command id>:<index>` of the event that caused it.
    pub source_event_id: String,
    pub position: u64,
    /// The order within the queue (see `behalf_domain::notify::priority_key`).
    pub priority: [u8; 14],
    pub body: Outgoing,
}

/// A message in a queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// Stable within its queue; used to ack.
    pub id: String,
    pub queue: String,
    pub source_event_id: String,
    pub position: u64,
    /// How many times it has been leased.
    pub deliveries: u32,
    /// Milliseconds since the epoch until which the current lease holds (0: none).
    pub leased_until: i64,
    pub body: Outgoing,
}

/// Where the notifier forwards to: the embedded queues, or JetStream work queues.
pub trait QueueSink: Send + Sync + 'static {
    /// Enqueues every message whose source event is new, and sets the checkpoint.
    /// Returns how many were new. The embedded store does both in one atomic write.
    fn enqueue(&self, messages: Vec<Enqueue>, checkpoint: u64) -> Result<usize, LogError>;
    /// The position up to which everything was forwarded.
    fn checkpoint(&self) -> Result<u64, LogError>;
}

/// Queues that are consumed through Behalf itself (lease and ack over HTTP).
pub trait QueueStore: QueueSink {
    /// Leases up to `limit` messages whose lease has run out, in priority order.
    fn lease(&self, queue: &str, limit: usize, now_ms: i64, lease_ms: i64) -> Result<Vec<QueueMessage>, LogError>;
    /// Removes a message; `false` if it is not there.
    fn ack(&self, queue: &str, id: &str) -> Result<bool, LogError>;
    /// Every message of a queue, in priority order, without leasing.
    fn peek(&self, queue: &str, limit: usize) -> Result<Vec<QueueMessage>, LogError>;
    /// Whether a source event was ever enqueued (acked or not).
    fn seen(&self, source_event_id: &str) -> Result<bool, LogError>;
    fn sync(&self) -> Result<(), LogError>;
}
