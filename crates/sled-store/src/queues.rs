//! Queues in a sled directory of their own, one tree:
//! `m/<queue>\0<priority>` → message, `e/<source event id>` → queue and priority (the
//! de-duplication index, kept after the ack), and the forwarder's checkpoint.

use std::path::Path;
use std::sync::Mutex;

use behalf_log::queues::{Enqueue, QueueMessage, QueueSink, QueueStore};
use behalf_log::LogError;

const CHECKPOINT: &[u8] = b"\x00checkpoint";

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn queue_prefix(queue: &str) -> Vec<u8> {
    let mut k = b"m/".to_vec();
    k.extend_from_slice(queue.as_bytes());
    k.push(0);
    k
}

fn event_key(id: &str) -> Vec<u8> {
    let mut k = b"e/".to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

pub struct SledQueues {
    db: sled::Db,
    /// Leases and acks read, then write: one at a time.
    lock: Mutex<()>,
}

impl SledQueues {
    /// Whether a source event was ever enqueued (acked or not).
    pub fn seen(&self, source_event_id: &str) -> Result<bool, LogError> {
        self.db.contains_key(event_key(source_event_id)).map_err(storage)
    }

    pub fn open(path: impl AsRef<Path>) -> Result<SledQueues, LogError> {
        Ok(SledQueues { db: crate::log::open_db(path.as_ref(), crate::log::Cache::Small)?, lock: Mutex::new(()) })
    }

    fn decode(&self, v: &[u8]) -> Result<QueueMessage, LogError> {
        rmp_serde::from_slice(v).map_err(storage)
    }
}

impl SledQueues {
    fn put(&self, messages: Vec<Enqueue>, checkpoint: Option<u64>) -> Result<usize, LogError> {
        let mut batch = sled::Batch::default();
        let mut seen = std::collections::HashSet::new();
        let mut new = 0;
        for m in messages {
            if !seen.insert(m.source_event_id.clone())
                || self.db.contains_key(event_key(&m.source_event_id)).map_err(storage)?
            {
                continue;
            }
            let queue = m.body.queue.clone();
            let mut key = queue_prefix(&queue);
            key.extend_from_slice(&m.priority);
            let msg = QueueMessage {
                id: hex(&m.priority),
                queue: queue.clone(),
                source_event_id: m.source_event_id.clone(),
                position: m.position,
                deliveries: 0,
                leased_until: 0,
                body: m.body,
            };
            batch.insert(key.clone(), rmp_serde::to_vec_named(&msg).map_err(storage)?);
            batch.insert(event_key(&m.source_event_id), key);
            new += 1;
        }
        if let Some(checkpoint) = checkpoint {
            batch.insert(CHECKPOINT, &checkpoint.to_be_bytes());
        }
        self.db.apply_batch(batch).map_err(storage)?;
        Ok(new)
    }
}

impl QueueSink for SledQueues {
    fn enqueue(&self, messages: Vec<Enqueue>, checkpoint: u64) -> Result<usize, LogError> {
        self.put(messages, Some(checkpoint))
    }

    fn checkpoint(&self) -> Result<u64, LogError> {
        Ok(match self.db.get(CHECKPOINT).map_err(storage)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            Some(_) | None => 0,
        })
    }
}

impl QueueStore for SledQueues {
    fn lease(&self, queue: &str, limit: usize, now_ms: i64, lease_ms: i64) -> Result<Vec<QueueMessage>, LogError> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut batch = sled::Batch::default();
        for kv in self.db.scan_prefix(queue_prefix(queue)) {
            let (k, v) = kv.map_err(storage)?;
            let mut m = self.decode(&v)?;
            if m.leased_until > now_ms {
                continue;
            }
            m.deliveries += 1;
            m.leased_until = now_ms.saturating_add(lease_ms);
            batch.insert(k, rmp_serde::to_vec_named(&m).map_err(storage)?);
            out.push(m);
            if out.len() == limit {
                break;
            }
        }
        self.db.apply_batch(batch).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(out)
    }

    fn ack(&self, queue: &str, id: &str) -> Result<bool, LogError> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = unhex(id) else { return Ok(false) };
        let mut key = queue_prefix(queue);
        key.extend_from_slice(&p);
        let removed = self.db.remove(key).map_err(storage)?.is_some();
        self.db.flush().map_err(storage)?;
        Ok(removed)
    }

    fn peek(&self, queue: &str, limit: usize) -> Result<Vec<QueueMessage>, LogError> {
        self.db
            .scan_prefix(queue_prefix(queue))
            .take(limit)
            .map(|kv| kv.map_err(storage).and_then(|(_, v)| self.decode(&v)))
            .collect()
    }

    fn sync(&self) -> Result<(), LogError> {
        self.db.flush().map(|_| ()).map_err(storage)
    }

    fn copy(&self, messages: Vec<Enqueue>) -> Result<usize, LogError> {
        let new = self.put(messages, None)?;
        self.db.flush().map_err(storage)?;
        Ok(new)
    }

    fn hold(&self, queue: &str, id: &str, until_ms: i64) -> Result<bool, LogError> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = unhex(id) else { return Ok(false) };
        let mut key = queue_prefix(queue);
        key.extend_from_slice(&p);
        let Some(v) = self.db.get(&key).map_err(storage)? else { return Ok(false) };
        let mut m = self.decode(&v)?;
        m.leased_until = until_ms;
        self.db.insert(key, rmp_serde::to_vec_named(&m).map_err(storage)?).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(true)
    }
}
