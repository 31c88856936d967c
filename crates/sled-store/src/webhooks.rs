//! Webhook secrets and delivery attempts in a sled directory of their own:
//! `s/<webhook id>` → MessagePack `Secrets`; `a/<webhook id>\0<time><seq>` → `Attempt`
//! (at most [`KEPT`] per subscription: the oldest go as new ones come).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use behalf_log::webhooks::{Attempt, Secrets, WebhookStore};
use behalf_log::LogError;

/// Attempts kept per subscription.
pub const KEPT: usize = 1000;

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

fn secrets_key(id: &str) -> Vec<u8> {
    [b"s/", id.as_bytes()].concat()
}

fn attempts_prefix(id: &str) -> Vec<u8> {
    [b"a/", id.as_bytes(), b"\0"].concat()
}

/// The embedded webhook store.
pub struct SledWebhooks {
    db: sled::Db,
    seq: AtomicU32,
}

impl SledWebhooks {
    pub fn open(path: impl AsRef<Path>) -> Result<SledWebhooks, LogError> {
        Ok(SledWebhooks { db: crate::log::open_db(path.as_ref(), crate::log::Cache::Small)?, seq: AtomicU32::new(0) })
    }
}

impl WebhookStore for SledWebhooks {
    fn put_secrets(&self, webhook_id: &str, secrets: &Secrets) -> Result<(), LogError> {
        let bytes = rmp_serde::to_vec_named(secrets).map_err(storage)?;
        self.db.insert(secrets_key(webhook_id), bytes).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    fn secrets(&self, webhook_id: &str) -> Result<Option<Secrets>, LogError> {
        match self.db.get(secrets_key(webhook_id)).map_err(storage)? {
            Some(v) => rmp_serde::from_slice(&v).map(Some).map_err(storage),
            None => Ok(None),
        }
    }

    fn delete(&self, webhook_id: &str) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        batch.remove(secrets_key(webhook_id));
        for kv in self.db.scan_prefix(attempts_prefix(webhook_id)) {
            batch.remove(kv.map_err(storage)?.0);
        }
        self.db.apply_batch(batch).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    fn record(&self, webhook_id: &str, attempt: &Attempt) -> Result<(), LogError> {
        let mut key = attempts_prefix(webhook_id);
        key.extend_from_slice(&attempt.at_ms.to_be_bytes());
        key.extend_from_slice(&self.seq.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let mut batch = sled::Batch::default();
        batch.insert(key, rmp_serde::to_vec_named(attempt).map_err(storage)?);
        let held = self.db.scan_prefix(attempts_prefix(webhook_id)).count();
        for kv in self.db.scan_prefix(attempts_prefix(webhook_id)).take((held + 1).saturating_sub(KEPT)) {
            batch.remove(kv.map_err(storage)?.0);
        }
        self.db.apply_batch(batch).map_err(storage)?;
        Ok(())
    }

    fn attempts(&self, webhook_id: &str, limit: usize) -> Result<Vec<Attempt>, LogError> {
        self.db
            .scan_prefix(attempts_prefix(webhook_id))
            .rev()
            .take(limit)
            .map(|kv| kv.map_err(storage).and_then(|(_, v)| rmp_serde::from_slice(&v).map_err(storage)))
            .collect()
    }
}
