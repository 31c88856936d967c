//! [`NatsQueues`]: the notifier's queues as JetStream work-queue streams, consumed by
//! workload teams and partners with any NATS client.
//!
//! A queue `commercial.azure` is the subject `behalf.q.commercial.azure`, a partner's
//! queue `partner.<id>` is `behalf.q.partner.<id>`; the streams are `BEHALF_Q_<FIRST
//! TOKEN>` (`BEHALF_Q_COMMERCIAL`, `BEHALF_Q_USGOV`, `BEHALF_Q_PARTNER`), made on first
//! use, with work-queue retention: a message is gone once a worker acks it.
//!
//! Each message is JSON (`source_event_id`, `position`, `priority`, `body`) with the
//! headers `Nats-Msg-Id: <source event id>`, `Behalf-Priority` (hex; lower comes first:
//! severity, then CSP priority, R19) and `Behalf-Position`. JetStream's de-duplication
//! (one hour here) drops a message forwarded twice; the forwarder's checkpoint is in
//! the `BEHALF_NOTIFIER` bucket, written after every message of a batch was stored.
//! So a notifier that dies between the two forwards that batch again on restart, and
//! JetStream drops the copies — exactly once, as long as it restarts within the hour.
//! Streams are FIFO: a worker that takes a batch orders it by `Behalf-Priority`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use async_nats::HeaderMap;
use behalf_log::queues::{Enqueue, QueueSink};
use behalf_log::LogError;
use serde::Serialize;

use crate::log::connect;
use crate::storage;

/// The bucket of the forwarder's checkpoint.
pub const NOTIFIER_BUCKET: &str = "BEHALF_NOTIFIER";
const CHECKPOINT_KEY: &str = "checkpoint";
/// How long JetStream remembers a forwarded event id.
pub const QUEUE_DUPLICATE_WINDOW: Duration = Duration::from_secs(60 * 60);

/// The JSON of one queue message.
#[derive(Serialize)]
struct Wire<'a> {
    source_event_id: &'a str,
    position: u64,
    priority: String,
    body: &'a behalf_domain::notify::Outgoing,
}

/// Work queues on JetStream.
pub struct NatsQueues {
    js: jetstream::Context,
    state: kv::Store,
    replicas: usize,
    /// Streams known to exist.
    made: Mutex<HashSet<String>>,
}

/// `behalf.q.<queue>`, with any token that is not a plain subject token escaped.
pub fn queue_subject(queue: &str) -> String {
    let mut s = String::from("behalf.q");
    for token in queue.split('.') {
        s.push('.');
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            s.push_str(token);
        } else {
            s.push_str(&crate::subject::escaped(token));
        }
    }
    s
}

/// The stream of a queue: `BEHALF_Q_` and its first token, upper-cased.
pub fn queue_stream(queue: &str) -> String {
    let first = queue.split('.').next().unwrap_or_default();
    let clean: String = first.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("BEHALF_Q_{}", if clean.is_empty() { "OTHER".into() } else { clean.to_ascii_uppercase() })
}

impl NatsQueues {
    pub async fn open(url: &str, replicas: usize) -> Result<NatsQueues, LogError> {
        let js = jetstream::new(connect(url).await?);
        let state = crate::bucket(&js, NOTIFIER_BUCKET, replicas).await?;
        Ok(NatsQueues { js, state, replicas, made: Mutex::new(HashSet::new()) })
    }

    async fn ensure_stream(&self, queue: &str) -> Result<(), LogError> {
        let name = queue_stream(queue);
        if self.made.lock().expect("streams lock").contains(&name) {
            return Ok(());
        }
        let first = queue.split('.').next().unwrap_or_default();
        let subjects = vec![format!("{}.>", queue_subject(first))];
        self.js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects,
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                duplicate_window: QUEUE_DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| storage(&format!("cannot create the queue stream {name}"), e))?;
        self.made.lock().expect("streams lock").insert(name);
        Ok(())
    }

    /// Forwards a batch; answers how many JetStream had not seen.
    pub async fn forward(&self, messages: Vec<Enqueue>, checkpoint: u64) -> Result<usize, LogError> {
        let mut acks = Vec::with_capacity(messages.len());
        for m in &messages {
            self.ensure_stream(&m.body.queue).await?;
            let priority: String = m.priority.iter().map(|b| format!("{b:02x}")).collect();
            let wire = Wire { source_event_id: &m.source_event_id, position: m.position, priority, body: &m.body };
            let payload = serde_json::to_vec(&wire).map_err(|e| LogError::Codec(e.to_string()))?;
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, m.source_event_id.as_str());
            headers.insert("Behalf-Priority", wire.priority.as_str());
            headers.insert("Behalf-Position", m.position.to_string().as_str());
            headers.insert("Content-Type", "application/json");
            let ack = self
                .js
                .publish_with_headers(queue_subject(&m.body.queue), headers, payload.into())
                .await
                .map_err(|e| storage("cannot forward a notice", e))?;
            acks.push(ack);
        }
        let mut new = 0;
        for ack in acks {
            let ack = ack.await.map_err(|e| storage("JetStream did not store a notice", e))?;
            if !ack.duplicate {
                new += 1;
            }
        }
        self.state
            .put(CHECKPOINT_KEY, checkpoint.to_string().into())
            .await
            .map_err(|e| storage("cannot save the notifier's checkpoint", e))?;
        Ok(new)
    }

    /// Up to `limit` messages waiting on a queue, oldest first, without taking them
    /// (each as its JSON: `source_event_id`, `position`, `priority`, `body`).
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<serde_json::Value>, LogError> {
        let stream = match self.js.get_stream(queue_stream(queue)).await {
            Ok(s) => s,
            Err(_) => return Ok(Vec::new()),
        };
        let subject = queue_subject(queue);
        let (mut out, mut seq) = (Vec::new(), 1);
        while out.len() < limit {
            let got = stream.raw_message_builder().next_by_subject(subject.clone()).sequence(seq).send().await;
            let m = match got {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => break,
                Err(e) => return Err(storage("cannot read a queue", e)),
            };
            seq = m.sequence + 1;
            out.push(serde_json::from_slice(&m.payload).map_err(|e| LogError::Codec(e.to_string()))?);
        }
        Ok(out)
    }

    /// The position up to which everything was forwarded.
    pub async fn forwarded(&self) -> Result<u64, LogError> {
        let v = self.state.get(CHECKPOINT_KEY).await.map_err(|e| storage("cannot read the checkpoint", e))?;
        Ok(v.and_then(|b| std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok())).unwrap_or(0))
    }
}

impl QueueSink for NatsQueues {
    fn enqueue(&self, messages: Vec<Enqueue>, checkpoint: u64) -> Result<usize, LogError> {
        crate::blocking("cannot forward notices", self.forward(messages, checkpoint))?
    }

    fn checkpoint(&self) -> Result<u64, LogError> {
        crate::blocking("cannot read the notifier's checkpoint", self.forwarded())?
    }
}
