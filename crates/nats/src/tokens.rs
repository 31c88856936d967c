//! [`NatsTokens`]: the token store in the `BEHALF_TOKENS` key-value bucket, so every
//! server of a cluster accepts the same tokens. Each process keeps the records in
//! memory, loaded at start and kept current by a watch; a token id it has not seen yet
//! (issued a moment ago elsewhere) is read from the bucket. Issuing and revoking write
//! to the bucket and answer once JetStream has stored the write. A revocation reaches
//! the other servers as fast as the watch delivers it (milliseconds on a healthy
//! cluster).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use behalf_log::tokens::{TokenRecord, TokenStore};
use behalf_log::LogError;
use futures::StreamExt as _;

use crate::endpoint::{connect_kept, Endpoint};
use crate::storage;

/// The bucket of token records (only hashes of secrets, never secrets).
pub const TOKENS_BUCKET: &str = "BEHALF_TOKENS";

/// Tokens shared by every server of a cluster.
#[derive(Clone)]
pub struct NatsTokens {
    kv: kv::Store,
    cache: Arc<RwLock<HashMap<String, TokenRecord>>>,
    watcher: Arc<tokio::task::AbortHandle>,
    _kept: crate::endpoint::Kept,
}

impl Drop for NatsTokens {
    fn drop(&mut self) {
        if Arc::strong_count(&self.watcher) == 1 {
            self.watcher.abort();
        }
    }
}

fn decode(bytes: &[u8]) -> Result<TokenRecord, LogError> {
    rmp_serde::from_slice(bytes).map_err(|e| LogError::Codec(format!("a token record does not decode: {e}")))
}

impl NatsTokens {
    /// Connects, creates the bucket if needed, loads every record and starts watching.
    pub async fn open(to: impl Into<Endpoint>, replicas: usize) -> Result<NatsTokens, LogError> {
        let (client, kept) = connect_kept(&to.into()).await?;
        let js = jetstream::new(client);
        let kv = crate::bucket(&js, TOKENS_BUCKET, replicas).await?;
        // Everything up to now, then every change after it (a change made while loading
        // arrives again through the watch, which is harmless).
        let mut stream = js
            .get_stream(format!("KV_{TOKENS_BUCKET}"))
            .await
            .map_err(|e| storage("cannot read the token bucket", e))?;
        let last = stream.info().await.map_err(|e| storage("cannot read the token bucket", e))?.state.last_sequence;
        let mut records = HashMap::new();
        let mut keys = kv.keys().await.map_err(|e| storage("cannot list tokens", e))?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| storage("cannot list tokens", e))?;
            if let Some(bytes) = kv.get(&key).await.map_err(|e| storage("cannot read a token", e))? {
                let r = decode(&bytes)?;
                records.insert(r.token_id.clone(), r);
            }
        }
        let cache = Arc::new(RwLock::new(records));
        let mut watch =
            kv.watch_all_from_revision(last + 1).await.map_err(|e| storage("cannot watch the token bucket", e))?;
        let feed = Arc::clone(&cache);
        let watcher = tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                match entry {
                    Ok(e) if e.operation == kv::Operation::Put => match decode(&e.value) {
                        Ok(r) => {
                            feed.write().expect("token cache lock").insert(r.token_id.clone(), r);
                        }
                        Err(err) => tracing::warn!(error = %err, "skipping a token record that does not decode"),
                    },
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "the token watch failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
        .abort_handle();
        Ok(NatsTokens { kv, cache, watcher: Arc::new(watcher), _kept: kept })
    }
}

impl TokenStore for NatsTokens {
    fn put(&self, record: &TokenRecord) -> Result<(), LogError> {
        let bytes = rmp_serde::to_vec_named(record).map_err(|e| LogError::Codec(e.to_string()))?;
        crate::blocking("cannot store a token", self.kv.put(&record.token_id, bytes.into()))?
            .map_err(|e| storage("cannot store a token", e))?;
        self.cache.write().expect("token cache lock").insert(record.token_id.clone(), record.clone());
        Ok(())
    }

    fn get(&self, token_id: &str) -> Result<Option<TokenRecord>, LogError> {
        if let Some(r) = self.cache.read().expect("token cache lock").get(token_id) {
            return Ok(Some(r.clone()));
        }
        // Token ids are ours (`[0-9a-z]`); anything else is not a key and not a token.
        if token_id.is_empty() || !token_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Ok(None);
        }
        let got = crate::blocking("cannot read a token", self.kv.get(token_id))?
            .map_err(|e| storage("cannot read a token", e))?;
        match got {
            Some(bytes) => {
                let r = decode(&bytes)?;
                self.cache.write().expect("token cache lock").insert(r.token_id.clone(), r.clone());
                Ok(Some(r))
            }
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Vec<TokenRecord>, LogError> {
        let mut all: Vec<TokenRecord> = self.cache.read().expect("token cache lock").values().cloned().collect();
        all.sort_by(|a, b| a.token_id.cmp(&b.token_id));
        Ok(all)
    }
}
