//! [`NatsKeys`]: the keys that seal personal data in the replicated `BEHALF_KEYS`
//! key-value bucket (never in the log's stream): name → opaque entry
//! (`behalf_log::keys`). Every server of a cluster opens and erases alike.

use async_nats::jetstream::{self, kv};
use behalf_log::keys::KeyStore;
use behalf_log::LogError;

use crate::endpoint::{connect_kept, Endpoint};
use crate::storage;

/// The bucket of sealing keys.
pub const KEYS_BUCKET: &str = "BEHALF_KEYS";

/// The key store of a cluster.
#[derive(Clone)]
pub struct NatsKeys {
    kv: kv::Store,
    js: jetstream::Context,
    _kept: crate::endpoint::Kept,
}

impl NatsKeys {
    pub async fn open(to: impl Into<Endpoint>, replicas: usize) -> Result<NatsKeys, LogError> {
        let (client, kept) = connect_kept(&to.into()).await?;
        let js = jetstream::new(client);
        let kv = crate::bucket(&js, KEYS_BUCKET, replicas).await?;
        // New people's keys are created many at a time, in atomic batches; a role
        // that may not change the bucket (it only reads, or another role made it)
        // goes on without (a batch refused is created entry by entry).
        let mut stream = kv.stream.clone();
        let config = &stream.info().await.map_err(|e| storage("cannot read the key bucket", e))?.config;
        if !config.allow_atomic_publish {
            let config = jetstream::stream::Config { allow_atomic_publish: true, ..config.clone() };
            if let Err(e) = js.update_stream(config).await {
                tracing::debug!(error = %e, "the key bucket stays without atomic batches");
            }
        }
        Ok(NatsKeys { kv, js, _kept: kept })
    }

    /// Creates every entry in one atomic batch (one round trip, one sync; each
    /// message expects its subject to be new); if any was there, the batch stores
    /// nothing and each is created on its own.
    async fn create_many_async(&self, entries: &[(String, Vec<u8>)]) -> Result<Vec<bool>, LogError> {
        if entries.len() > 1 && entries.len() <= crate::batch::MAX_BATCH {
            let msgs = entries
                .iter()
                .map(|(name, value)| {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
                    crate::batch::BatchMsg { subject: self.subject(name), headers, payload: value.clone().into() }
                })
                .collect();
            let ack = match crate::batch::publish_atomic(&self.js, msgs).await {
                Ok(pending) => pending.await.map_err(async_nats::Error::from),
                Err(e) => Err(e),
            };
            match ack {
                Ok(_) => return Ok(vec![true; entries.len()]),
                Err(e) => tracing::debug!(error = %e, "a batch of new keys was refused; creating each"),
            }
        }
        let creates = entries.iter().map(|(name, value)| self.create_async(name, value));
        futures::future::join_all(creates).await.into_iter().collect()
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

    /// The subject an entry is written on.
    fn subject(&self, name: &str) -> String {
        format!("{}{name}", self.kv.put_prefix.as_deref().unwrap_or(&self.kv.prefix))
    }

    /// Atomic batches of at most [`crate::batch::MAX_BATCH`] (one round trip and one
    /// sync each); where the bucket takes no batches, every put in flight at once.
    async fn put_many_async(&self, entries: &[(String, Vec<u8>)]) -> Result<(), LogError> {
        let mut batched = true;
        for chunk in entries.chunks(crate::batch::MAX_BATCH) {
            if batched {
                let msgs = chunk
                    .iter()
                    .map(|(name, value)| crate::batch::BatchMsg {
                        subject: self.subject(name),
                        headers: async_nats::HeaderMap::new(),
                        payload: value.clone().into(),
                    })
                    .collect();
                match crate::batch::publish_atomic(&self.js, msgs).await {
                    Ok(pending) => match pending.await {
                        Ok(_) => continue,
                        Err(e) => tracing::debug!(error = %e, "a batch of keys was refused; putting each"),
                    },
                    Err(e) => return Err(storage("cannot store sealing keys", e)),
                }
                batched = false;
            }
            let puts = chunk.iter().map(|(name, value)| self.kv.put(name, value.clone().into()));
            for r in futures::future::join_all(puts).await {
                r.map_err(|e| storage("cannot store a sealing key", e))?;
            }
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

    fn create_many(&self, entries: &[(String, Vec<u8>)]) -> Result<Vec<bool>, LogError> {
        crate::blocking("cannot store sealing keys", self.create_many_async(entries))?
    }

    /// Every read in flight at once (at most [`GETS_IN_FLIGHT`]): one round trip for an
    /// answer that names many tickets, not one per ticket.
    fn get_many(&self, names: &[String]) -> Result<Vec<Option<Vec<u8>>>, LogError> {
        use futures::StreamExt as _;
        let gets = futures::stream::iter(names.iter().map(|name| self.get_async(name))).buffered(GETS_IN_FLIGHT);
        crate::blocking("cannot read sealing keys", gets.collect::<Vec<_>>())?.into_iter().collect()
    }
}

/// Reads of the key bucket in flight at once from one [`KeyStore::get_many`].
const GETS_IN_FLIGHT: usize = 64;
