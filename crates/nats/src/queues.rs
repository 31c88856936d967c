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
//! - **Order**: a lease takes the queue's messages sorted by key, so the order is the
//!   priority key's across the whole queue, not within a fetched batch.
//! - **Reading a queue** ([`Watched`]): each process that leases or peeks keeps every
//!   queue's live messages in memory, fed by a watch on the bucket (each key's last
//!   message, then every change). A lease reads the bucket's last sequence, waits for
//!   the watch to have applied it (so it sees every write acknowledged before it
//!   asked, its own and other servers'), and takes from memory. Listing the bucket
//!   instead would read every key it ever held — an acked message's delete marker
//!   stays for ever — so a lease grew with every message the day had seen.
//!
//! The forwarder's checkpoint is in the `BEHALF_NOTIFIER` bucket, written after every
//! message of a batch was stored.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use behalf_log::queues::{Enqueue, QueueMessage, QueueSink, QueueStore};
use behalf_log::LogError;
use futures::StreamExt as _;

use crate::endpoint::{connect_kept, Endpoint};
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

/// How long a lease or a peek waits for this process's watch to reach the writes
/// acknowledged before it asked (then it answers an error: 503).
const CATCH_UP: Duration = Duration::from_secs(5);

/// How long a lease waits for the watch before it reads what the watch has not
/// applied from the bucket's leader itself. The watch's consumer lives on one node,
/// picked at random: if that node is paused or cut off, the client notices only after
/// two missed heartbeats (10 s), and until then every lease answered 503.
const STALL: Duration = Duration::from_millis(500);

/// The most writes a lease reads from the leader when the watch is behind; a longer
/// gap is left to the watch (then the lease answers 503 after [`CATCH_UP`]).
const MAX_READ_PAST_WATCH: u64 = 4096;

/// Queues on JetStream.
pub struct NatsQueues {
    js: jetstream::Context,
    messages: kv::Store,
    state: kv::Store,
    /// The queues' live messages, watched from the first lease or peek on.
    watched: tokio::sync::OnceCell<Arc<Watched>>,
    _kept: crate::endpoint::Kept,
}

impl Drop for NatsQueues {
    fn drop(&mut self) {
        if let Some(task) = self.watched.get().and_then(|w| w.task.get()) {
            task.abort();
        }
    }
}

/// A message as the watch last saw it, and its revision (for the compare-and-set).
type Live = (QueueMessage, u64);

/// Every queue's live messages (queue prefix → key → message), kept by a watch on the
/// bucket (see the module's notes).
struct Watched {
    queues: Mutex<HashMap<String, BTreeMap<String, Live>>>,
    /// The bucket's last sequence the watch has applied.
    seen: tokio::sync::watch::Sender<u64>,
    task: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// Set when a lease read past the watch (it was silent while behind), cleared when
    /// the watch applies a write of its own again: while set, a lease reads past it
    /// at once instead of waiting [`STALL`] first.
    silent: std::sync::atomic::AtomicBool,
    /// Writes read from the leader past the watch (tests).
    read_past: std::sync::atomic::AtomicU64,
    /// Counts the watches made: a read past the watch applies only within the watch
    /// it started under (a new watch starts the index again from nothing). Changed
    /// only under the queues' lock.
    epoch: std::sync::atomic::AtomicU64,
    /// One reader past the watch at a time, each in order of sequence.
    reading_past: tokio::sync::Mutex<()>,
    /// Messages a lease or peek looked at (tests: a lease reads its own queue's live
    /// messages, not the bucket's history).
    examined: std::sync::atomic::AtomicU64,
}

impl Watched {
    fn start(kv: kv::Store) -> Arc<Watched> {
        // Made whole before its task starts: a task that found it half-made (upgrading
        // a `new_cyclic` weak inside the constructor) stopped for good, and the index
        // was never fed (seen under load: leases answered 503 after 5 s).
        let watched = Arc::new(Watched {
            queues: Mutex::default(),
            seen: tokio::sync::watch::Sender::new(0),
            task: std::sync::OnceLock::new(),
            silent: std::sync::atomic::AtomicBool::new(false),
            read_past: std::sync::atomic::AtomicU64::new(0),
            reading_past: tokio::sync::Mutex::new(()),
            epoch: std::sync::atomic::AtomicU64::new(0),
            examined: std::sync::atomic::AtomicU64::new(0),
        });
        let me = Arc::downgrade(&watched);
        {
            let task = tokio::spawn(async move {
                loop {
                    match kv.watch_with_history("m.>").await {
                        Ok(mut watch) => {
                            // A fresh watch delivers each key's last message again: the
                            // index is made anew from it.
                            let Some(w) = me.upgrade() else { return };
                            {
                                let mut queues = w.lock();
                                queues.clear();
                                w.seen.send_replace(0);
                                w.epoch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            drop(w);
                            while let Some(entry) = watch.next().await {
                                let Some(w) = me.upgrade() else { return };
                                match entry {
                                    Ok(e) => {
                                        if w.apply(&e.key, &e.operation, &e.value, e.revision, None) {
                                            w.silent.store(false, std::sync::atomic::Ordering::Relaxed);
                                        }
                                    }
                                    Err(err) => {
                                        tracing::warn!(error = %err, "the queue watch failed; watching again");
                                        break;
                                    }
                                }
                            }
                        }
                        Err(err) => tracing::warn!(error = %err, "cannot watch the queues; trying again"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .abort_handle();
            let _ = watched.task.set(task);
        }
        watched
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, Live>>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one write (`revision` is its sequence in the bucket) unless it is
    /// already applied: the watch and a read past it both apply in order of
    /// sequence, so a write at or below the last one applied is one of them. A read
    /// past the watch names the watch it started under (`epoch`). Whether it was
    /// applied.
    fn apply(&self, key: &str, op: &kv::Operation, value: &[u8], revision: u64, epoch: Option<u64>) -> bool {
        // Under the lock, so that the check and the write are one step for both.
        let mut queues = self.lock();
        if revision <= *self.seen.borrow()
            || epoch.is_some_and(|e| e != self.epoch.load(std::sync::atomic::Ordering::Relaxed))
        {
            return false;
        }
        if let Some(dot) = key.rfind('.') {
            let prefix = &key[..=dot];
            match op {
                kv::Operation::Put => match serde_json::from_slice::<QueueMessage>(value) {
                    Ok(m) => {
                        queues.entry(prefix.to_owned()).or_default().insert(key.to_owned(), (m, revision));
                    }
                    // Not the error's text: serde_json quotes the value it met, and a
                    // message's body may hold personal fields.
                    Err(err) => tracing::warn!(
                        key = %key,
                        category = ?err.classify(),
                        column = err.column(),
                        "skipping a queue message that does not decode"
                    ),
                },
                kv::Operation::Delete | kv::Operation::Purge => {
                    if let Some(q) = queues.get_mut(prefix) {
                        q.remove(key);
                        if q.is_empty() {
                            queues.remove(prefix);
                        }
                    }
                }
            }
        }
        self.seen.send_replace(revision);
        true
    }

    /// Up to `n` messages of the queue after `after`, in key order, that `keep` keeps.
    fn take(
        &self,
        prefix: &str,
        after: Option<&str>,
        n: usize,
        keep: impl Fn(&QueueMessage) -> bool,
    ) -> Vec<(String, Live)> {
        let queues = self.lock();
        let Some(q) = queues.get(prefix) else { return Vec::new() };
        let from = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.to_owned()));
        let mut looked = 0u64;
        let out: Vec<_> = q
            .range((from, Bound::Unbounded))
            .inspect(|_| looked += 1)
            .filter(|(_, (m, _))| keep(m))
            .take(n)
            .map(|(k, live)| (k.clone(), live.clone()))
            .collect();
        self.examined.fetch_add(looked, std::sync::atomic::Ordering::Relaxed);
        out
    }
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
        let (client, kept) = connect_kept(&to.into()).await?;
        let js = jetstream::new(client);
        let messages = crate::bucket(&js, QUEUE_BUCKET, replicas).await?;
        let state = crate::bucket(&js, NOTIFIER_BUCKET, replicas).await?;
        Ok(NatsQueues { js, messages, state, watched: tokio::sync::OnceCell::new(), _kept: kept })
    }

    /// The queues' live messages, once the watch has applied every write acknowledged
    /// before this call (the bucket's last sequence, read from its leader).
    async fn current(&self) -> Result<Arc<Watched>, LogError> {
        let w = Arc::clone(self.watched.get_or_init(|| async { Watched::start(self.messages.clone()) }).await);
        let mut stream = self.messages.stream.clone();
        let last = stream.info().await.map_err(|e| storage("cannot read the queue bucket", e))?.state.last_sequence;
        let mut seen = w.seen.subscribe();
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        // The watch first; if it stays behind (or already was silent), what it has not
        // applied is read from the bucket's leader, in order.
        let first = if w.silent.load(std::sync::atomic::Ordering::Relaxed) { Duration::ZERO } else { STALL };
        if matches!(tokio::time::timeout(first, seen.wait_for(|s| *s >= last)).await, Ok(Ok(_))) {
            return Ok(w);
        }
        if last.saturating_sub(*w.seen.borrow()) <= MAX_READ_PAST_WATCH {
            match tokio::time::timeout_at(deadline, self.read_past_watch(&w, last)).await {
                Ok(Ok(())) if *w.seen.borrow() >= last => return Ok(w),
                Ok(Ok(())) => {} // a new watch started meanwhile: wait for it
                Ok(Err(e)) => return Err(e),
                Err(_) => {}
            }
        }
        if matches!(tokio::time::timeout_at(deadline, seen.wait_for(|s| *s >= last)).await, Ok(Ok(_))) {
            return Ok(w);
        }
        Err(LogError::Storage(format!(
            "the queues as this server watches them have not reached the bucket's last write ({last}) within {CATCH_UP:?}"
        )))
    }

    /// Reads the writes after the watch's last up to `last` from the bucket's leader
    /// and applies them: the watch's node may be paused or cut off (see [`STALL`]).
    async fn read_past_watch(&self, w: &Watched, last: u64) -> Result<(), LogError> {
        let _one = w.reading_past.lock().await;
        w.silent.store(true, std::sync::atomic::Ordering::Relaxed);
        let (epoch, from) = {
            let _queues = w.lock();
            (w.epoch.load(std::sync::atomic::Ordering::Relaxed), *w.seen.borrow() + 1)
        };
        for seq in from..=last {
            if *w.seen.borrow() >= seq {
                continue; // the watch got there first
            }
            match self.messages.stream.raw_message_builder().sequence(seq).send().await {
                Ok(m) => {
                    let key = m.subject.strip_prefix(self.messages.prefix.as_str()).unwrap_or(&m.subject);
                    let op = crate::kv_operation(&m.headers);
                    if w.apply(key, &op, &m.payload, seq, Some(epoch)) {
                        w.read_past.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                // Superseded by a later write of the key (the bucket keeps one
                // revision a key): read here if it is in this range, else it came
                // after the lease asked. An entry left stale meanwhile only loses its
                // compare-and-set.
                Err(e) if crate::log::is_not_found(&e) => {}
                Err(e) => return Err(storage("cannot read the queue bucket", e)),
            }
        }
        // Every write up to `last` is applied or was superseded by a later one.
        let _queues = w.lock();
        if w.epoch.load(std::sync::atomic::Ordering::Relaxed) == epoch {
            w.seen.send_if_modified(|s| {
                let later = last > *s;
                *s = (*s).max(last);
                later
            });
        }
        Ok(())
    }

    /// How many writes leases read from the bucket's leader because the watch was
    /// behind and silent.
    pub fn read_past_watch_count(&self) -> u64 {
        self.watched.get().map_or(0, |w| w.read_past.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// How many messages this process's leases and peeks looked at, in all.
    pub fn examined(&self) -> u64 {
        self.watched.get().map_or(0, |w| w.examined.load(std::sync::atomic::Ordering::Relaxed))
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

    /// A message and its revision; `None` once acked. Read from the bucket's leader:
    /// the bucket allows direct gets, which any replica answers, and a replica that
    /// has not yet applied the message's first write answers that there is none — an
    /// ack of a message just leased was then answered 404, and the message delivered
    /// again once its lease ran out (twice in a 30-minute soak on three nodes).
    async fn entry(&self, key: &str) -> Result<Option<(QueueMessage, u64)>, LogError> {
        // A delete or purge marker (`None`): acked.
        match crate::leader_entry(&self.messages, key, "cannot read a queue message").await? {
            Some((value, revision)) => {
                let message = serde_json::from_slice(&value).map_err(|e| LogError::Codec(e.to_string()))?;
                Ok(Some((message, revision)))
            }
            None => Ok(None),
        }
    }

    pub async fn lease_async(
        &self,
        queue: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<QueueMessage>, LogError> {
        let w = self.current().await?;
        let prefix = queue_prefix(queue);
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        while out.len() < limit {
            // A few more than needed: a compare-and-set lost to another server skips one.
            let chunk = w.take(&prefix, after.as_deref(), limit - out.len() + 8, |m| m.leased_until <= now_ms);
            if chunk.is_empty() {
                break;
            }
            for (key, (mut m, revision)) in chunk {
                if out.len() == limit {
                    break;
                }
                m.deliveries += 1;
                m.leased_until = now_ms.saturating_add(lease_ms);
                let value = serde_json::to_vec(&m).map_err(|e| LogError::Codec(e.to_string()))?;
                // Compare and set: another server that leased or acked it first wins.
                if self.messages.update(&key, value.into(), revision).await.is_ok() {
                    out.push(m);
                }
                after = Some(key);
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
        let w = self.current().await?;
        Ok(w.take(&queue_prefix(queue), None, limit, |_| true).into_iter().map(|(_, (m, _))| m).collect())
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
