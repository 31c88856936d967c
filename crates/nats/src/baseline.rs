//! The raw figure the distributed engine is measured against: a JetStream publish loop
//! with a fixed window of publishes in flight, each awaiting its acknowledgement, into
//! a stream laid out like `BEHALF_EVENTS` (file storage, same replicas).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use behalf_log::LogError;

use crate::batch::{publish_atomic, BatchMsg};
use crate::endpoint::{connect, Endpoint};

async fn baseline_stream(to: impl Into<Endpoint>, replicas: usize) -> Result<jetstream::Context, LogError> {
    let js = jetstream::new(connect(&to.into()).await?);
    let _ = js.delete_stream("BEHALF_BASELINE").await;
    js.create_stream(stream::Config {
        name: "BEHALF_BASELINE".into(),
        subjects: vec!["behalf.baseline.>".into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .map_err(|e| LogError::Storage(format!("cannot create the baseline stream: {e}")))?;
    Ok(js)
}

/// Sums the loops' counts into a rate since `start`, and drops the baseline stream.
async fn per_sec(
    js: &jetstream::Context,
    start: Instant,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
) -> Result<f64, LogError> {
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| LogError::Storage(e.to_string()))?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = js.delete_stream("BEHALF_BASELINE").await;
    Ok(total as f64 / elapsed)
}

/// Acknowledged messages per second published as atomic batches of `batch` messages
/// of `payload_len` bytes, `in_flight` messages (`in_flight / batch` batches) at a
/// time, for `seconds`.
pub async fn atomic_batch_per_sec(
    to: impl Into<Endpoint>,
    replicas: usize,
    in_flight: usize,
    batch: usize,
    payload_len: usize,
    seconds: f64,
) -> Result<f64, LogError> {
    let js = baseline_stream(to, replicas).await?;
    let batch = batch.clamp(1, crate::batch::MAX_BATCH);
    let payload = bytes::Bytes::from(vec![0x5a; payload_len]);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..(in_flight / batch).max(1) {
        let (js, payload) = (js.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut k = 0u64;
            while Instant::now() < deadline {
                let msgs = (0..batch)
                    .map(|i| BatchMsg {
                        subject: format!("behalf.baseline.{w}.{}", (k + i as u64) % 64),
                        headers: async_nats::HeaderMap::new(),
                        payload: payload.clone(),
                    })
                    .collect();
                k += batch as u64;
                let Ok(ack) = publish_atomic(&js, msgs).await else { continue };
                if ack.await.is_ok() {
                    n += batch as u64;
                }
            }
            n
        }));
    }
    per_sec(&js, start, tasks).await
}

/// What a chained pipeline of atomic batches did: see [`chained_atomic_per_sec`].
#[derive(Clone, Copy, Debug)]
pub struct Chained {
    /// Acknowledged messages per second.
    pub per_sec: f64,
    /// Batches refused or unanswered (each drains the pipeline and starts again on the
    /// stream's last sequence, read anew).
    pub refused: u64,
    /// Whether the stream still took a publish at the end, right after what it held,
    /// and held at least every acknowledged message (a stream stopped by a race fails
    /// this).
    pub healthy: bool,
}

/// The pipelining Behalf's group commit would need, measured raw: atomic batches of
/// `batch` messages, up to `depth` in flight from one publisher, each chained to the one
/// before by `Nats-Expected-Last-Sequence` on its first message (the sequence the
/// previous batch will end at once stored). One publisher, no competitor: every refusal
/// is the server's own. Whether several chained batches in flight are safe and fast on
/// this server is what it answers (ARCHITECTURE records a stream stopped by a race with
/// several publishes in flight on 2.15.1).
pub async fn chained_atomic_per_sec(
    to: impl Into<Endpoint>,
    replicas: usize,
    depth: usize,
    batch: usize,
    payload_len: usize,
    seconds: f64,
) -> Result<Chained, LogError> {
    use futures::StreamExt as _;
    let js = baseline_stream(to, replicas).await?;
    let batch = batch.clamp(1, crate::batch::MAX_BATCH);
    let payload = bytes::Bytes::from(vec![0x5a; payload_len]);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (mut acked, mut refused, mut k) = (0u64, 0u64, 0u64);
    let last_sequence = |js: jetstream::Context| async move {
        let mut s = js.get_stream("BEHALF_BASELINE").await.map_err(|e| LogError::Storage(e.to_string()))?;
        s.info().await.map(|i| i.state.last_sequence).map_err(|e| LogError::Storage(e.to_string()))
    };
    let mut expected = last_sequence(js.clone()).await?;
    let mut pending = futures::stream::FuturesOrdered::new();
    while Instant::now() < deadline || !pending.is_empty() {
        if pending.len() < depth.max(1) && Instant::now() < deadline {
            let msgs: Vec<BatchMsg> = (0..batch)
                .map(|i| {
                    let mut headers = async_nats::HeaderMap::new();
                    if i == 0 {
                        headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, expected.to_string().as_str());
                    }
                    BatchMsg {
                        subject: format!("behalf.baseline.c.{}", (k + i as u64) % 64),
                        headers,
                        payload: payload.clone(),
                    }
                })
                .collect();
            k += batch as u64;
            expected += batch as u64;
            let stored: std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> =
                match publish_atomic(&js, msgs).await {
                    Ok(ack) => Box::pin(async move { ack.await.is_ok() }),
                    Err(_) => Box::pin(async { false }),
                };
            pending.push_back(stored);
            continue;
        }
        match pending.next().await {
            Some(true) => acked += batch as u64,
            Some(false) => {
                // Everything after a refused batch is refused too (it expects a
                // sequence that will not be): drain, and start again on the real tail.
                refused += 1;
                while let Some(stored) = pending.next().await {
                    if stored {
                        acked += batch as u64;
                    } else {
                        refused += 1;
                    }
                }
                expected = last_sequence(js.clone()).await?;
            }
            None => {}
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let healthy = async {
        let held = last_sequence(js.clone()).await.ok()?;
        let ack = js.publish("behalf.baseline.c.end", payload.clone()).await.ok()?.await.ok()?;
        Some(held >= acked && ack.sequence == held + 1)
    };
    let healthy = tokio::time::timeout(Duration::from_secs(10), healthy).await.ok().flatten().unwrap_or(false);
    let _ = js.delete_stream("BEHALF_BASELINE").await;
    Ok(Chained { per_sec: acked as f64 / elapsed, refused, healthy })
}

/// Acknowledged publishes per second of `payload_len`-byte messages, `in_flight` at a
/// time, for `seconds`.
pub async fn publish_per_sec(
    to: impl Into<Endpoint>,
    replicas: usize,
    in_flight: usize,
    payload_len: usize,
    seconds: f64,
) -> Result<f64, LogError> {
    let js = baseline_stream(to, replicas).await?;
    let payload = bytes::Bytes::from(vec![0x5a; payload_len]);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..in_flight {
        let (js, payload) = (js.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let subject = format!("behalf.baseline.{w}.{}", n % 64);
                let Ok(ack) = js.publish(subject, payload.clone()).await else { continue };
                if ack.await.is_ok() {
                    n += 1;
                }
            }
            n
        }));
    }
    per_sec(&js, start, tasks).await
}

/// Moves `stream`'s leader to the server named `server` (a leader step-down with that
/// server preferred, asked again until it leads); whether it got there within five
/// seconds.
pub async fn lead_stream_on(js: &jetstream::Context, stream: &str, server: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let leader = match js.get_stream(stream).await {
            Ok(mut s) => s.info().await.ok().and_then(|i| i.cluster.as_ref().and_then(|c| c.leader.clone())),
            Err(_) => None,
        };
        if leader.as_deref() == Some(server) {
            return true;
        }
        let request = format!(r#"{{"placement":{{"preferred":"{server}"}}}}"#);
        let _ = js.client().request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"), request.into()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

/// A raw JetStream publisher running beside a fault test: one message at a time into
/// a stream laid out like `BEHALF_EVENTS`, each acknowledgement's time kept, so that
/// the longest pause a fault causes Behalf can be set beside the raw one.
pub struct RawPublisher {
    js: jetstream::Context,
    acks: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawPublisher {
    pub async fn start(to: impl Into<Endpoint>, replicas: usize) -> Result<RawPublisher, LogError> {
        let js = baseline_stream(to, replicas).await?;
        let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(js.client());
        let acks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&acks);
        let publisher = js.clone();
        let task = tokio::spawn(async move {
            let js = publisher;
            let payload = bytes::Bytes::from(vec![0x5a; 700]);
            loop {
                let sent =
                    tokio::time::timeout(Duration::from_secs(2), js.publish("behalf.baseline.raw", payload.clone()));
                let acked = match sent.await {
                    Ok(Ok(ack)) => ack.await.is_ok(),
                    Ok(Err(_)) | Err(_) => false,
                };
                if acked {
                    kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Ok(RawPublisher { js, acks, task })
    }

    /// Moves the raw stream's leader to the server named `server` (so that a fault
    /// of the log's leader is a fault of this one's too); whether it got there within
    /// five seconds.
    pub async fn lead_on(&self, server: &str) -> bool {
        lead_stream_on(&self.js, "BEHALF_BASELINE", server).await
    }

    /// When each acknowledgement at or after `from` came.
    pub fn acknowledged_since(&self, from: Instant) -> Vec<Instant> {
        let acks = self.acks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        acks.iter().copied().filter(|t| *t >= from).collect()
    }
}

impl Drop for RawPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw JetStream reader running beside a fault test: every 50 ms it reads the last
/// message of the log's stream, of the command index's and of the sealing keys' bucket
/// (once that bucket exists: a server makes it at its first start), from their leaders,
/// each read given 500 ms; the time of every round in which all answered is kept. A
/// command needs all three streams to have leaders (a new person's key is created in
/// the keys' bucket before the command's append), so after a fault that moves leaders
/// this is JetStream's own pause for what Behalf uses (the streams elect one by one:
/// 4.2–7.6 s each after a whole-cluster restart here).
pub struct RawReader {
    answered: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawReader {
    pub async fn start(to: impl Into<Endpoint>) -> Result<RawReader, LogError> {
        let js = jetstream::new(connect(&to.into()).await?);
        let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&answered);
        let task = tokio::spawn(async move {
            let index = format!("KV_{}", crate::COMMANDS_BUCKET);
            let keys = format!("KV_{}", crate::KEYS_BUCKET);
            let mut keys_there = false;
            let last = |stream: String, subject: &'static str| {
                let js = js.clone();
                async move {
                    let read = async {
                        let s = js.get_stream_no_info(stream).await.ok()?;
                        s.get_last_raw_message_by_subject(subject).await.ok()
                    };
                    matches!(tokio::time::timeout(Duration::from_millis(500), read).await, Ok(Some(_)))
                }
            };
            loop {
                let (events, commands, sealing) = tokio::join!(
                    last(crate::EVENTS_STREAM.to_owned(), "behalf.ev.>"),
                    last(index.clone(), "$KV.BEHALF_COMMANDS.>"),
                    last(keys.clone(), "$KV.BEHALF_KEYS.>")
                );
                keys_there |= sealing;
                if events && commands && (sealing || !keys_there) {
                    kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Ok(RawReader { answered, task })
    }

    /// When each round at or after `from` had both streams answer.
    pub fn answered_since(&self, from: Instant) -> Vec<Instant> {
        let answered = self.answered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        answered.iter().copied().filter(|t| *t >= from).collect()
    }
}

impl Drop for RawReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
