//! [`NatsWebhooks`]: webhook URLs, signing secrets and recent attempts in the
//! `BEHALF_WEBHOOKS` key-value bucket, so every server of a cluster signs and sends
//! alike: `s.<webhook id>` → MessagePack `Secrets`; `a.<webhook id>` → the newest
//! [`KEPT`] attempts (a compare-and-set on the revision read, so two senders recording
//! at once both keep theirs).

use async_nats::jetstream::{self, kv};
use behalf_log::webhooks::{Attempt, Secrets, WebhookStore};
use behalf_log::LogError;

use crate::endpoint::{connect_kept, Endpoint};
use crate::storage;

/// The bucket of webhook URLs, secrets and attempts (never in the log).
pub const WEBHOOKS_BUCKET: &str = "BEHALF_WEBHOOKS";

/// Attempts kept per subscription.
pub const KEPT: usize = 200;

/// The webhook store of a cluster.
#[derive(Clone)]
pub struct NatsWebhooks {
    kv: kv::Store,
    _kept: crate::endpoint::Kept,
}

fn codec(e: impl std::fmt::Display) -> LogError {
    LogError::Codec(format!("a webhook record does not decode: {e}"))
}

impl NatsWebhooks {
    pub async fn open(to: impl Into<Endpoint>, replicas: usize) -> Result<NatsWebhooks, LogError> {
        let (client, kept) = connect_kept(&to.into()).await?;
        let js = jetstream::new(client);
        Ok(NatsWebhooks { kv: crate::bucket(&js, WEBHOOKS_BUCKET, replicas).await?, _kept: kept })
    }

    async fn put_secrets_async(&self, id: &str, secrets: &Secrets) -> Result<(), LogError> {
        let bytes = rmp_serde::to_vec_named(secrets).map_err(codec)?;
        self.kv
            .put(format!("s.{id}"), bytes.into())
            .await
            .map_err(|e| storage("cannot store a webhook's secrets", e))?;
        Ok(())
    }

    async fn secrets_async(&self, id: &str) -> Result<Option<Secrets>, LogError> {
        match self.kv.get(format!("s.{id}")).await.map_err(|e| storage("cannot read a webhook's secrets", e))? {
            Some(b) => rmp_serde::from_slice(&b).map(Some).map_err(codec),
            None => Ok(None),
        }
    }

    async fn delete_async(&self, id: &str) -> Result<(), LogError> {
        for key in [format!("s.{id}"), format!("a.{id}")] {
            self.kv.purge(&key).await.map_err(|e| storage("cannot delete a webhook's secrets", e))?;
        }
        Ok(())
    }

    async fn attempts_entry(&self, id: &str) -> Result<(Vec<Attempt>, u64), LogError> {
        match self.kv.entry(format!("a.{id}")).await.map_err(|e| storage("cannot read a webhook's attempts", e))? {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok((rmp_serde::from_slice(&e.value).map_err(codec)?, e.revision))
            }
            Some(e) => Ok((Vec::new(), e.revision)),
            None => Ok((Vec::new(), 0)),
        }
    }

    async fn record_async(&self, id: &str, attempt: &Attempt) -> Result<(), LogError> {
        for _ in 0..20 {
            let (mut all, revision) = self.attempts_entry(id).await?;
            all.insert(0, attempt.clone());
            all.truncate(KEPT);
            let bytes = rmp_serde::to_vec_named(&all).map_err(codec)?;
            let key = format!("a.{id}");
            let stored = if revision == 0 {
                self.kv.create(&key, bytes.into()).await.is_ok()
            } else {
                self.kv.update(&key, bytes.into(), revision).await.is_ok()
            };
            if stored {
                return Ok(());
            }
        }
        Err(LogError::Storage(format!("cannot record an attempt of webhook {id}: its record keeps changing")))
    }

    async fn attempts_async(&self, id: &str, limit: usize) -> Result<Vec<Attempt>, LogError> {
        let (mut all, _) = self.attempts_entry(id).await?;
        all.sort_by_key(|a| std::cmp::Reverse(a.at_ms));
        all.truncate(limit);
        Ok(all)
    }
}

impl WebhookStore for NatsWebhooks {
    fn put_secrets(&self, webhook_id: &str, secrets: &Secrets) -> Result<(), LogError> {
        crate::blocking("cannot store a webhook's secrets", self.put_secrets_async(webhook_id, secrets))?
    }

    fn secrets(&self, webhook_id: &str) -> Result<Option<Secrets>, LogError> {
        crate::blocking("cannot read a webhook's secrets", self.secrets_async(webhook_id))?
    }

    fn delete(&self, webhook_id: &str) -> Result<(), LogError> {
        crate::blocking("cannot delete a webhook's secrets", self.delete_async(webhook_id))?
    }

    fn record(&self, webhook_id: &str, attempt: &Attempt) -> Result<(), LogError> {
        crate::blocking("cannot record a webhook attempt", self.record_async(webhook_id, attempt))?
    }

    fn attempts(&self, webhook_id: &str, limit: usize) -> Result<Vec<Attempt>, LogError> {
        crate::blocking("cannot read webhook attempts", self.attempts_async(webhook_id, limit))?
    }
}
