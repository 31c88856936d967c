//! # behalf-nats
//!
//! The distributed engine: Behalf's event log on NATS JetStream, for partners that run
//! more than one machine. It is the only crate that names `async-nats`.
//!
//! - [`NatsLog`] implements [`behalf_log::EventLog`] and passes the same conformance
//!   suite as the embedded sled engine: stream `BEHALF_EVENTS`, one message per commit
//!   on `behalf.ev.<category>.<stream-id>`, global position = stream sequence.
//! - [`NatsTokens`] keeps the token store in the `BEHALF_TOKENS` bucket, so every
//!   server of a cluster accepts the same tokens.
//! - [`NatsQueues`] keeps the notifier's queues in the `BEHALF_QUEUE` bucket, one set
//!   per cluster, with the embedded engine's lease/ack contract.
//! - [`Endpoint`] and [`connect`]: every connection, with its credentials and TLS.
//! - [`rpc`] serves `behalf.cmd` and `behalf.query.<name>` request/reply in queue
//!   groups (the roles as processes), and a client for them.
//! - [`server`] starts pinned `nats-server` processes (one node or a 3-node cluster) on
//!   free loopback ports with their own store directories — for tests, benchmarks and
//!   the local try-out in `deploy/`.
//!
//! **Invariant:** an append is acknowledged only after JetStream acknowledged the
//! message, which it does once a quorum stored it (and, with `sync_interval: always`,
//! synced it to disk). Appends are serialised on the stream's last sequence so that
//! each commit carries the hash of the one before, whichever process wrote it.

pub mod baseline;
pub mod batch;
mod endpoint;
mod keys;
mod log;
mod queues;
pub mod rpc;
pub mod server;
mod subject;
mod tokens;
mod webhooks;

pub use endpoint::{connect, connect_kept, Credential, Endpoint, Kept};
pub use keys::{NatsKeys, KEYS_BUCKET};
pub use log::{NatsLog, NatsOptions, NatsSubscription, COMMANDS_BUCKET, DUPLICATE_WINDOW, EVENTS_STREAM};
pub use queues::{NatsQueues, NOTIFIER_BUCKET, QUEUE_BUCKET};
pub use subject::{command_key, event_subject};
pub use tokens::{NatsTokens, TOKENS_BUCKET};
pub use webhooks::{NatsWebhooks, WEBHOOKS_BUCKET};

/// A storage error saying what could not be done and why.
pub(crate) fn storage(what: &str, e: impl std::fmt::Display) -> behalf_log::LogError {
    behalf_log::LogError::Storage(format!("{what}: {e}"))
}

/// A key-value bucket: the one there, or a new one (file storage, one value per key).
pub(crate) async fn bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
    replicas: usize,
) -> Result<async_nats::jetstream::kv::Store, behalf_log::LogError> {
    use async_nats::jetstream::{kv, stream};
    match js.get_key_value(name).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: name.into(),
                history: 1,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| storage(&format!("cannot create the bucket {name}"), e)),
    }
}

/// What a key-value bucket's stored message does to its key, from its `KV-Operation`
/// header (none: a put), for reads that bypass the KV client.
pub(crate) fn kv_operation(headers: &async_nats::HeaderMap) -> async_nats::jetstream::kv::Operation {
    use async_nats::jetstream::kv;
    match headers.get("KV-Operation").map(|v| v.as_str()) {
        Some("DEL") => kv::Operation::Delete,
        Some("PURGE") => kv::Operation::Purge,
        _ => kv::Operation::Put,
    }
}

/// A key's value and revision, read from its bucket's leader (`STREAM.MSG.GET`), never
/// by a direct get that a replica behind the leader may answer; `None`: never written,
/// or deleted or purged since (its last message a `KV-Operation` marker).
pub(crate) async fn leader_entry(
    store: &async_nats::jetstream::kv::Store,
    key: &str,
    what: &str,
) -> Result<Option<(bytes::Bytes, u64)>, behalf_log::LogError> {
    let subject = format!("{}{key}", store.prefix);
    match store.stream.raw_message_builder().last_by_subject(subject).send().await {
        Ok(m) if kv_operation(&m.headers) != async_nats::jetstream::kv::Operation::Put => Ok(None),
        Ok(m) => Ok(Some((m.payload, m.sequence))),
        Err(e) if log::is_not_found(&e) => Ok(None),
        Err(e) => Err(storage(what, e)),
    }
}

/// Runs a JetStream call from a synchronous store method (the token and queue traits
/// are synchronous). Needs a multi-threaded Tokio runtime, which every role runs on.
pub(crate) fn blocking<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T, behalf_log::LogError> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| behalf_log::LogError::Storage(format!("{what}: needs a Tokio runtime")))?;
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        return Err(behalf_log::LogError::Storage(format!("{what}: needs a multi-threaded Tokio runtime")));
    }
    Ok(tokio::task::block_in_place(|| handle.block_on(f)))
}
