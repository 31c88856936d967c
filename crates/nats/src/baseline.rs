//! The raw figure the distributed engine is measured against: a JetStream publish loop
//! with a fixed window of publishes in flight, each awaiting its acknowledgement, into
//! a stream laid out like `BEHALF_EVENTS` (file storage, same replicas).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use behalf_log::LogError;

use crate::log::connect;

/// Acknowledged publishes per second of `payload_len`-byte messages, `in_flight` at a
/// time, for `seconds`.
pub async fn publish_per_sec(
    url: &str,
    replicas: usize,
    in_flight: usize,
    payload_len: usize,
    seconds: f64,
) -> Result<f64, LogError> {
    let js = jetstream::new(connect(url).await?);
    let _ = js.delete_stream("BEHALF_BASELINE").await;
    js.create_stream(stream::Config {
        name: "BEHALF_BASELINE".into(),
        subjects: vec!["behalf.baseline.>".into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| LogError::Storage(format!("cannot create the baseline stream: {e}")))?;
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
