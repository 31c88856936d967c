//! Atomic batch publish (nats-server 2.12+, a stream with `allow_atomic`): several
//! messages stored all together or not at all, in one round trip and, on a replicated
//! stream, one raft proposal. The messages before the last go out without a reply
//! subject; the last carries `Nats-Batch-Commit: 1` and is answered with the
//! acknowledgement of the whole batch (the sequence of its last message).
//!
//! The server's rules (`server/jetstream_batching.go`, `server/stream.go`): at most
//! 1,000 messages and 50 batches in flight per stream, a batch id of at most 64
//! characters; `Nats-Expected-Last-Sequence` only on the first message;
//! `Nats-Expected-Last-Msg-Id` refused; a per-subject expectation refused when that
//! subject is already in the batch or in flight, or when another batch in process
//! already checks that subject (`Nats-Expected-Last-Subject-Sequence-Subject` names the
//! subject checked, a filter; the server keys "in process" by the filter as written —
//! `tests/it/fencing.rs`); a `Nats-Msg-Id` still in the de-duplication window fails the
//! batch.

use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;

/// The most messages one batch takes (nats-server's limit).
pub const MAX_BATCH: usize = 1000;

/// One message of a batch.
pub struct BatchMsg {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: bytes::Bytes,
}

/// A batch id unique to this process run: a random-enough prefix and a counter.
pub fn batch_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("{:x}-{:x}", nanos, std::process::id())
    });
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A test's hook: `BEHALF_TEST_BATCH_STALL_MS=N` makes every batch of two or more
/// messages wait N ms after its first message reached the server and before the rest —
/// the window in which a fault test pauses the process past the server's batch timeout
/// (10 s) and sees the batch abandoned. Unset (always, outside tests): no wait.
fn stall_after_first() -> Option<std::time::Duration> {
    static STALL: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *STALL.get_or_init(|| {
        std::env::var("BEHALF_TEST_BATCH_STALL_MS").ok()?.parse().ok().map(std::time::Duration::from_millis)
    })
}

/// Sends `msgs` (at least one) as one atomic batch; the future is the batch's
/// acknowledgement.
pub async fn publish_atomic(
    js: &jetstream::Context,
    msgs: Vec<BatchMsg>,
) -> Result<PublishAckFuture, async_nats::Error> {
    let id = batch_id();
    let n = msgs.len();
    let client = js.client();
    let mut pending = None;
    for (i, mut m) in msgs.into_iter().enumerate() {
        m.headers.insert("Nats-Batch-Id", id.as_str());
        m.headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        if i + 1 == n {
            m.headers.insert("Nats-Batch-Commit", "1");
            pending = Some(js.publish_with_headers(m.subject, m.headers, m.payload).await?);
        } else {
            client.publish_with_headers(m.subject, m.headers, m.payload).await?;
            if let Some(stall) = stall_after_first().filter(|_| i == 0) {
                client.flush().await?;
                tracing::warn!(batch = %id, messages = n, ?stall, "test hook: a batch is open, stalling");
                tokio::time::sleep(stall).await;
            }
        }
    }
    pending.ok_or_else(|| "an atomic batch needs at least one message".into())
}
