//! [`NatsQueues`]: the notifier's queues on JetStream, one set per cluster, with the
//! contract the embedded engine has (lease for a time chosen per request, ack,
//! redelivery after the lease with `deliveries` counting, order by priority across the
//! whole queue), so every process serving HTTP answers `/v1/queues` alike.
//!
//! **Layout.** One key-value bucket, `BEHALF_QUEUE`: a message is the key
//! `m.<queue>.<priority>` (the queue escaped into one token, the 14-byte priority key
//! in hex: severity, CSP priority, then log position and index, R19), its value the
//! message as JSON with its lease (`deliveries`, `leased_until`).
//!
//! - **Exactly once per source event**, with any number of notifiers and for ever:
//!   the priority key is a function of the source event (its position and index), and
//!   a message is written with `Nats-Expected-Last-Subject-Sequence: 0`, so only the
//!   first write of a key is stored; an ack deletes the key, and the delete marker
//!   stays the subject's last message, so a notifier forwarding again from an older
//!   checkpoint is refused too. No de-duplication window is involved.
//! - **Leases** are compare-and-set updates of the value (`leased_until`, and
//!   `deliveries` + 1) on the revision read: of two servers leasing the same message at
//!   once, one wins. A lease per request needs no consumer: JetStream's ack wait is a
//!   consumer's setting and a work-queue stream forbids overlapping consumers, which is
//!   why the queues are not work-queue streams.
//! - **Order**: a lease lists the queue's keys and takes them sorted, so the order is
//!   the priority key's across the whole queue, not within a fetched batch.
//!
//! The forwarder's checkpoint is in the `BEHALF_NOTIFIER` bucket, written after every
//! message of a batch was stored.

use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use behalf_log::queues::{Enqueue, QueueMessage, QueueSink, QueueStore};
use behalf_log::LogError;
use futures::StreamExt as _;

use crate::endpoint::{connect, Endpoint};
use crate::storage;

/// The bucket of the queues' messages.
pub const QUEUE_BUCKET: &str = "BEHALF_QUEUE";
/// The bucket of the forwarder's checkpoint.
pub const NOTIFIER_BUCKET: &str = "BEHALF_NOTIFIER";
const CHECKPOINT_KEY: &str = "checkpoint";
/// Who runs the SLA sweep, and until when, in [`NOTIFIER_BUCKET`].
const SWEEP_KEY: &str = "sla-sweep";

/// The SLA sweep's turn: who holds it, until when (milliseconds since the epoch).
#[derive(serde::Serialize, serde::Deserialize)]
struct Turn {
    holder: String,
    until: i64,
}

/// Queues on JetStream.
pub struct NatsQueues {
    js: jetstream::Context,
    messages: kv::Store,
    state: kv::Store,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The key-space prefix of a queue: `m.<queue as one escaped token>.`.
fn queue_prefix(queue: &str) -> String {
    format!("m.{}.", crate::subject::escaped(queue))
}

/// Whether `id` can be a message id (the priority key in hex).
fn is_message_id(id: &str) -> bool {
    id.len() == 28 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl NatsQueues {
    pub async fn open(to: impl Into<Endpoint>, replicas: usize) -> Result<NatsQueues, LogError> {
        let js = jetstream::new(connect(&to.into()).await?);
        let messages = crate::bucket(&js, QUEUE_BUCKET, replicas).await?;
        let state = crate::bucket(&js, NOTIFIER_BUCKET, replicas).await?;
        Ok(NatsQueues { js, messages, state })
    }

    /// Forwards a batch; answers how many were new.
    pub async fn forward(&self, messages: Vec<Enqueue>, checkpoint: u64) -> Result<usize, LogError> {
        let new = self.store(messages).await?;
        self.state
            .put(CHECKPOINT_KEY, checkpoint.to_string().into())
            .await
            .map_err(|e| storage("cannot save the notifier's checkpoint", e))?;
        Ok(new)
    }

    /// Stores every message whose key was never written (see the module's notes).
    async fn store(&self, messages: Vec<Enqueue>) -> Result<usize, LogError> {
        let mut acks = Vec::with_capacity(messages.len());
        let mut keys = std::collections::HashSet::new();
        for m in messages {
            let id = hex(&m.priority);
            let key = format!("{}{id}", queue_prefix(&m.body.queue));
            if !keys.insert(key.clone()) {
                continue;
            }
            let msg = QueueMessage {
                id,
                queue: m.body.queue.clone(),
                source_event_id: m.source_event_id,
                position: m.position,
                deliveries: 0,
                leased_until: 0,
                body: m.body,
            };
            let payload = serde_json::to_vec(&msg).map_err(|e| LogError::Codec(e.to_string()))?;
            let mut headers = HeaderMap::new();
            // Only the first write of a key, ever (an ack leaves a delete marker).
            headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
            let subject = format!("{}{key}", self.messages.prefix);
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(|e| storage("cannot forward a notice", e))?;
            acks.push(ack);
        }
        let mut new = 0;
        for ack in acks {
            match ack.await {
                Ok(_) => new += 1,
                Err(e) if matches!(e.kind(), jetstream::context::PublishErrorKind::WrongLastSequence) => {}
                Err(e) => return Err(storage("JetStream did not store a notice", e)),
            }
        }
        Ok(new)
    }

    /// Sets a message's lease end (compare and set on the revision read, tried again
    /// if another server changed it in between).
    pub async fn hold_async(&self, queue: &str, id: &str, until_ms: i64) -> Result<bool, LogError> {
        if !is_message_id(id) {
            return Ok(false);
        }
        let key = format!("{}{id}", queue_prefix(queue));
        for _ in 0..10 {
            let Some((mut m, revision)) = self.entry(&key).await? else { return Ok(false) };
            m.leased_until = until_ms;
            let value = serde_json::to_vec(&m).map_err(|e| LogError::Codec(e.to_string()))?;
            if self.messages.update(&key, value.into(), revision).await.is_ok() {
                return Ok(true);
            }
        }
        Err(LogError::Storage(format!("cannot hold message {id} of {queue}: it keeps changing")))
    }

    /// The position up to which everything was forwarded.
    pub async fn forwarded(&self) -> Result<u64, LogError> {
        let v = self.state.get(CHECKPOINT_KEY).await.map_err(|e| storage("cannot read the checkpoint", e))?;
        Ok(v.and_then(|b| std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok())).unwrap_or(0))
    }

    /// Takes or renews the SLA sweep's turn for `holder`, unless another holds it
    /// still: a compare-and-set on the turn's revision, so two servers never both take it.
    pub async fn take_sweep_turn_async(&self, holder: &str, now_ms: i64, hold_ms: i64) -> Result<bool, LogError> {
        let value = serde_json::to_vec(&Turn { holder: holder.into(), until: now_ms.saturating_add(hold_ms) })
            .map_err(|e| LogError::Codec(e.to_string()))?;
        let entry = self.state.entry(SWEEP_KEY).await.map_err(|e| storage("cannot read the sweep's turn", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let held: Option<Turn> = serde_json::from_slice(&e.value).ok();
                if held.is_some_and(|t| t.holder != holder && t.until > now_ms) {
                    return Ok(false);
                }
                Ok(self.state.update(SWEEP_KEY, value.into(), e.revision).await.is_ok())
            }
            Some(_) | None => Ok(self.state.create(SWEEP_KEY, value.into()).await.is_ok()),
        }
    }

    /// The keys of a queue's messages, in priority order.
    async fn queue_keys(&self, queue: &str) -> Result<Vec<String>, LogError> {
        let prefix = queue_prefix(queue);
        let mut keys: Vec<String> = Vec::new();
        let mut listed = self.messages.keys().await.map_err(|e| storage("cannot list a queue", e))?;
        while let Some(k) = listed.next().await {
            let k = k.map_err(|e| storage("cannot list a queue", e))?;
            if k.starts_with(&prefix) {
                keys.push(k);
            }
        }
        keys.sort_unstable();
        Ok(keys)
    }

    /// A message and its revision; `None` once acked.
    async fn entry(&self, key: &str) -> Result<Option<(QueueMessage, u64)>, LogError> {
        let entry = self.messages.entry(key).await.map_err(|e| storage("cannot read a queue message", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let m = serde_json::from_slice(&e.value).map_err(|e| LogError::Codec(e.to_string()))?;
                Ok(Some((m, e.revision)))
            }
            Some(_) | None => Ok(None),
        }
    }

    pub async fn lease_async(
        &self,
        queue: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<QueueMessage>, LogError> {
        let mut out = Vec::new();
        for key in self.queue_keys(queue).await? {
            if out.len() == limit {
                break;
            }
            let Some((mut m, revision)) = self.entry(&key).await? else { continue };
            if m.leased_until > now_ms {
                continue;
            }
            m.deliveries += 1;
            m.leased_until = now_ms.saturating_add(lease_ms);
            let value = serde_json::to_vec(&m).map_err(|e| LogError::Codec(e.to_string()))?;
            // Compare and set: another server that leased or acked it first wins.
            if self.messages.update(&key, value.into(), revision).await.is_ok() {
                out.push(m);
            }
        }
        Ok(out)
    }

    pub async fn ack_async(&self, queue: &str, id: &str) -> Result<bool, LogError> {
        if !is_message_id(id) {
            return Ok(false);
        }
        let key = format!("{}{id}", queue_prefix(queue));
        let Some((_, revision)) = self.entry(&key).await? else { return Ok(false) };
        match self.messages.delete_expect_revision(&key, Some(revision)).await {
            Ok(()) => Ok(true),
            // Leased again, or acked, in between: ack what is there now.
            Err(_) => match self.entry(&key).await? {
                Some(_) => {
                    self.messages.delete(&key).await.map_err(|e| storage("cannot ack a message", e))?;
                    Ok(true)
                }
                None => Ok(false),
            },
        }
    }

    /// Up to `limit` messages waiting on a queue, in priority order, without leasing.
    pub async fn peek_async(&self, queue: &str, limit: usize) -> Result<Vec<QueueMessage>, LogError> {
        let mut out = Vec::new();
        for key in self.queue_keys(queue).await? {
            if out.len() == limit {
                break;
            }
            if let Some((m, _)) = self.entry(&key).await? {
                out.push(m);
            }
        }
        Ok(out)
    }
}

impl QueueSink for NatsQueues {
    fn enqueue(&self, messages: Vec<Enqueue>, checkpoint: u64) -> Result<usize, LogError> {
        crate::blocking("cannot forward notices", self.forward(messages, checkpoint))?
    }

    fn checkpoint(&self) -> Result<u64, LogError> {
        crate::blocking("cannot read the notifier's checkpoint", self.forwarded())?
    }

    fn take_sweep_turn(&self, holder: &str, now_ms: i64, hold_ms: i64) -> Result<bool, LogError> {
        crate::blocking("cannot take the sweep's turn", self.take_sweep_turn_async(holder, now_ms, hold_ms))?
    }
}

impl QueueStore for NatsQueues {
    fn lease(&self, queue: &str, limit: usize, now_ms: i64, lease_ms: i64) -> Result<Vec<QueueMessage>, LogError> {
        crate::blocking("cannot lease", self.lease_async(queue, limit, now_ms, lease_ms))?
    }

    fn ack(&self, queue: &str, id: &str) -> Result<bool, LogError> {
        crate::blocking("cannot ack", self.ack_async(queue, id))?
    }

    fn peek(&self, queue: &str, limit: usize) -> Result<Vec<QueueMessage>, LogError> {
        crate::blocking("cannot read a queue", self.peek_async(queue, limit))?
    }

    fn sync(&self) -> Result<(), LogError> {
        // Every write was acknowledged by JetStream: nothing waits to be flushed.
        Ok(())
    }

    fn copy(&self, messages: Vec<Enqueue>) -> Result<usize, LogError> {
        crate::blocking("cannot copy notices", self.store(messages))?
    }

    fn hold(&self, queue: &str, id: &str, until_ms: i64) -> Result<bool, LogError> {
        crate::blocking("cannot hold a message", self.hold_async(queue, id, until_ms))?
    }
}
