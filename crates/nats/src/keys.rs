//! [`NatsKeys`]: the keys that seal personal data in the replicated `BEHALF_KEYS`
//! key-value bucket (never in the log's stream): name → opaque entry
//! (`behalf_log::keys`). Every server of a cluster opens and erases alike.

use async_nats::jetstream::{self, kv};
use behalf_log::keys::KeyStore;
use behalf_log::LogError;

use crate::endpoint::{connect, Endpoint};
use crate::storage;

/// The bucket of sealing keys.
pub const KEYS_BUCKET: &str = "BEHALF_KEYS";

/// The key store of a cluster.
#[derive(Clone)]
pub struct NatsKeys {
    kv: kv::Store,
}

impl NatsKeys {
    pub async fn open(to: impl Into<Endpoint>, replicas: usize) -> Result<NatsKeys, LogError> {
        let js = jetstream::new(connect(&to.into()).await?);
        Ok(NatsKeys { kv: crate::bucket(&js, KEYS_BUCKET, replicas).await? })
    }

    async fn get_async(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
        match self.kv.entry(name).await.map_err(|e| storage("cannot read a sealing key", e))? {
            Some(e) if e.operation == kv::Operation::Put => Ok(Some(e.value.to_vec())),
            Some(_) | None => Ok(None),
        }
    }

    async fn create_async(&self, name: &str, value: &[u8]) -> Result<bool, LogError> {
        match self.kv.create(name, value.to_vec().into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(storage("cannot store a sealing key", e)),
        }
    }

    /// Every put in flight at once: one round trip for the lot.
    async fn put_many_async(&self, entries: &[(String, Vec<u8>)]) -> Result<(), LogError> {
        let puts = entries.iter().map(|(name, value)| self.kv.put(name, value.clone().into()));
        for r in futures::future::join_all(puts).await {
            r.map_err(|e| storage("cannot store a sealing key", e))?;
        }
        Ok(())
    }
}

impl KeyStore for NatsKeys {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
        crate::blocking("cannot read a sealing key", self.get_async(name))?
    }

    fn create(&self, name: &str, value: &[u8]) -> Result<bool, LogError> {
        crate::blocking("cannot store a sealing key", self.create_async(name, value))?
    }

    fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), LogError> {
        crate::blocking("cannot store sealing keys", self.put_many_async(entries))?
    }
}
