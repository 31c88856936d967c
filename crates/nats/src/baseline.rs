//! The raw figure the distributed engine is measured against: a JetStream publish loop
//! with a fixed window of publishes in flight, each awaiting its acknowledgement, into
//! a stream laid out like `BEHALF_EVENTS` (file storage, same replicas).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use behalf_log::LogError;

use crate::batch::{publish_atomic, BatchMsg};
use crate::log::connect;

async fn baseline_stream(url: &str, replicas: usize) -> Result<jetstream::Context, LogError> {
    let js = jetstream::new(connect(url).await?);
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

/// Acknowledged messages per second published as atomic batches of `batch` messages
/// of `payload_len` bytes, `in_flight` messages (`in_flight / batch` batches) at a
/// time, for `seconds`.
pub async fn atomic_batch_per_sec(
    url: &str,
    replicas: usize,
    in_flight: usize,
    batch: usize,
    payload_len: usize,
    seconds: f64,
) -> Result<f64, LogError> {
    let js = baseline_stream(url, replicas).await?;
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
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| LogError::Storage(e.to_string()))?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = js.delete_stream("BEHALF_BASELINE").await;
    Ok(total as f64 / elapsed)
}

/// Acknowledged publishes per second of `payload_len`-byte messages, `in_flight` at a
/// time, for `seconds`.
pub async fn publish_per_sec(
    url: &str,
    replicas: usize,
    in_flight: usize,
    payload_len: usize,
    seconds: f64,
) -> Result<f64, LogError> {
    let js = baseline_stream(url, replicas).await?;
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
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| LogError::Storage(e.to_string()))?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = js.delete_stream("BEHALF_BASELINE").await;
    Ok(total as f64 / elapsed)
}
