//! # behalf-log
//!
//! The event log's contract, shared by every engine: the commit envelope and its codec
//! ([`codec`]), the [`EventLog`] trait, and a [`conformance`] suite that every engine
//! runs unchanged (the embedded sled engine and the JetStream one).
//!
//! **Invariant:** one commit per command, holding all its events; per-stream versions
//! dense from 1; global positions dense from 1, one per commit; each commit holds the
//! hash of the one before. An append is acknowledged only once it is durable.
//! **API boundary:** this crate names no storage engine.

pub mod codec;
pub mod conformance;
pub mod keys;
pub mod metrics;
pub mod queues;
pub mod samples;
pub mod tokens;
pub mod views;
pub mod webhooks;

use std::future::Future;

use serde::{Deserialize, Serialize};

use behalf_domain::{CommandId, CommandKey, Event, Evidence, Principal, StreamId, Timestamp};

pub use codec::{Hash, GENESIS};

/// Internal failures of a log engine. Expected outcomes (a version conflict, a reused
/// key) are values in [`AppendRefused`], not errors.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage: {0}")]
    Storage(String),
    #[error("codec: {0}")]
    Codec(String),
    #[error("corrupt log at position {position}: {what}")]
    Corrupt { position: u64, what: String },
    #[error("the log is closed")]
    Closed,
}

/// What the appender expects the stream's version to be (R27).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream is at exactly this version (0: it does not exist yet).
    Exact(u64),
}

/// One command's events, to be appended as one commit.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    /// The idempotency key (R26).
    pub command_id: CommandId,
    /// Digest of the request body: the same key with another body is refused.
    pub request_hash: Hash,
    pub at: Timestamp,
    pub actor: Principal,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// At least one event.
    pub events: Vec<Event>,
    /// The directory position the events were decided against. An engine whose
    /// [`EventLog::directory_head`] is `Some` refuses the append
    /// ([`AppendRefused::DirectoryMoved`]) if a directory commit was stored after it;
    /// the others ignore it (their callers decide against the projection at the head).
    pub directory_at: Option<u64>,
}

impl AppendRequest {
    /// The R26 key: the command id within the actor's tenant.
    pub fn key(&self) -> CommandKey {
        CommandKey::of(&self.actor, &self.command_id)
    }
}

/// The group commit's counters in [`EventLog::counters`], named alike on every engine
/// (the benchmarks read the group size from them): groups written, and the commits in
/// them.
pub const GROUPS_METRIC: &str = "behalf_log_batches_total";
pub const GROUPED_COMMITS_METRIC: &str = "behalf_log_batched_commits_total";

/// A commit that is in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub position: u64,
    pub stream: StreamId,
    pub first_version: u64,
    /// The stream's version after this commit.
    pub last_version: u64,
    /// The command had been appended before: this is its first outcome (R26).
    pub duplicate: bool,
}

/// An append the log refused; nothing was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendRefused {
    /// R27: the stream has moved on.
    Conflict { expected: ExpectedVersion, actual: u64 },
    /// R26: the command id was used before with another body.
    KeyReused { position: u64 },
    /// The directory changed after the position the command was decided against (the
    /// last directory commit is at `position`): decide again.
    DirectoryMoved { position: u64 },
}

/// One event with its full envelope (serialized as the feeds show it: `type` for the
/// event's type name).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct EventEnvelope {
    pub stream: StreamId,
    pub version: u64,
    /// The commit's global position.
    pub position: u64,
    /// Index of the event within its commit.
    pub index: u32,
    /// `<tenant>/<command id>:<index>` (the R26 key and the index): stable across
    /// engines and replays, and unique in the log because the key is.
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub schema_version: u16,
    pub at: Timestamp,
    pub actor: Principal,
    pub command_id: CommandId,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub event: Event,
}

impl EventEnvelope {
    /// The R29 evidence, where the event has one.
    pub fn evidence(&self) -> Option<&Evidence> {
        self.event.evidence()
    }
}

/// A decoded commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    pub position: u64,
    pub stream: StreamId,
    pub first_version: u64,
    pub command_id: CommandId,
    pub request_hash: Hash,
    pub at: Timestamp,
    pub actor: Principal,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// SHA-256 of the stored bytes of the commit before (the hash chain). A commit's
    /// own hash is [`codec::sha256`] of its bytes; only chain walks compute it.
    pub prev_hash: Hash,
    /// The events; empty when a filtered read skipped this commit's stream.
    pub events: Vec<Event>,
    /// The schema version each event was stored with (before upcasting).
    pub schemas: Vec<u16>,
    /// How many events the commit holds (decoded or not).
    pub event_count: u64,
}

impl Commit {
    pub fn last_version(&self) -> u64 {
        self.first_version + self.event_count - 1
    }

    /// The R26 key, read from the record's actor and command id — so records written
    /// before keys were per tenant read the same way.
    pub fn key(&self) -> CommandKey {
        CommandKey::of(&self.actor, &self.command_id)
    }

    /// Decodes a stored record, upcasting its events.
    pub fn decode(bytes: &[u8]) -> Result<Commit, LogError> {
        Commit::decode_where(bytes, None)
    }

    /// Decodes a stored record; when `categories` is given and the commit's stream is
    /// in none of them, its events are not decoded and `events` is left empty (the
    /// commit still says its position, stream and versions).
    pub fn decode_where(bytes: &[u8], categories: Option<&[&str]>) -> Result<Commit, LogError> {
        let r = codec::decode_record(bytes)?;
        if r.events.is_empty() {
            return Err(LogError::Codec(format!("commit {} holds no events", r.position)));
        }
        let wanted = categories.is_none_or(|cs| cs.contains(&r.stream.category()));
        let (events, schemas) = if wanted {
            (
                r.events.iter().map(codec::decode_event).collect::<Result<Vec<_>, _>>()?,
                r.events.iter().map(|s| s.schema).collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Commit {
            event_count: r.events.len() as u64,
            position: r.position,
            stream: r.stream,
            first_version: r.first_version,
            command_id: r.command_id,
            request_hash: to_hash(&r.request_hash)?,
            at: r.at,
            actor: r.actor,
            correlation_id: r.correlation_id,
            causation_id: r.causation_id,
            prev_hash: to_hash(&r.prev_hash)?,
            events,
            schemas,
        })
    }

    /// The id of the commit's `index`-th event: `<tenant>/<command id>:<index>`.
    pub fn event_id(&self, index: usize) -> String {
        event_id(&self.key().to_string(), index)
    }

    /// The events with their full envelopes.
    pub fn envelopes(&self) -> impl Iterator<Item = EventEnvelope> + '_ {
        let key = self.key().to_string();
        self.events.iter().zip(&self.schemas).enumerate().map(move |(i, (e, schema))| EventEnvelope {
            stream: self.stream.clone(),
            version: self.first_version + i as u64,
            position: self.position,
            index: i as u32,
            event_id: event_id(&key, i),
            event_type: e.type_name(),
            schema_version: *schema,
            at: self.at,
            actor: self.actor.clone(),
            command_id: self.command_id.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            event: e.clone(),
        })
    }

    /// R26's answer to an append under this commit's command key: this commit again
    /// (the same request), or `KeyReused` (another body under the same id). Every
    /// engine and the command service answer a known key with it.
    pub fn first_outcome(&self, request_hash: &Hash) -> Result<Appended, AppendRefused> {
        if &self.request_hash == request_hash {
            Ok(self.appended(true))
        } else {
            Err(AppendRefused::KeyReused { position: self.position })
        }
    }

    pub fn appended(&self, duplicate: bool) -> Appended {
        Appended {
            position: self.position,
            stream: self.stream.clone(),
            first_version: self.first_version,
            last_version: self.last_version(),
            duplicate,
        }
    }
}

/// An event's id from its commit's key and its index in the commit.
fn event_id(key: &str, index: usize) -> String {
    format!("{key}:{index}")
}

fn to_hash(v: &[u8]) -> Result<Hash, LogError> {
    v.try_into().map_err(|_| LogError::Codec("a hash is not 32 bytes".into()))
}

/// Builds the stored record of a request at a position (used by every engine, so
/// the bytes — and the hash chain — are the same whichever engine wrote them).
pub fn record_for(req: &AppendRequest, position: u64, first_version: u64, prev: &Hash) -> Result<Vec<u8>, LogError> {
    let events = req.events.iter().map(codec::encode_event).collect::<Result<Vec<_>, _>>()?;
    codec::encode_record(&codec::CommitRecord {
        format: codec::RECORD_FORMAT,
        position,
        stream: req.stream.clone(),
        first_version,
        command_id: req.command_id.clone(),
        request_hash: req.request_hash.to_vec(),
        at: req.at,
        actor: req.actor.clone(),
        correlation_id: req.correlation_id.clone().unwrap_or_else(|| req.command_id.to_string()),
        causation_id: req.causation_id.clone(),
        prev_hash: prev.to_vec(),
        events,
    })
}

/// The result of walking the hash chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Commits that verified, from position 1.
    pub verified: u64,
    /// The first bad position and what is wrong with it.
    pub first_bad: Option<(u64, String)>,
}

/// The log. Every engine implements it and passes [`conformance`]. Handles are cheap
/// clones of one log.
pub trait EventLog: Clone + Send + Sync + 'static {
    type Subscription: Subscription;

    /// Appends one commit. Answers only after the commit is durable. The same
    /// command id with the same body answers its first outcome and appends nothing.
    fn append(
        &self,
        req: AppendRequest,
    ) -> impl Future<Output = Result<Result<Appended, AppendRefused>, LogError>> + Send;

    /// A stream's commits whose events reach `from_version` or later, in order.
    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> impl Future<Output = Result<Vec<Commit>, LogError>> + Send;

    /// A stream's current version (0: no such stream).
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<u64, LogError>> + Send;

    /// Up to `limit` commits after position `after`, in global order.
    fn read_all(&self, after: u64, limit: usize) -> impl Future<Output = Result<Vec<Commit>, LogError>> + Send;

    /// The last durable position (0: empty).
    fn head(&self) -> impl Future<Output = Result<u64, LogError>> + Send;

    /// The commit a (tenant, command id) produced, if any (R26).
    fn find_command(&self, key: &CommandKey) -> impl Future<Output = Result<Option<Commit>, LogError>> + Send;

    /// Every commit after `after`: first those already in the log, then new ones as
    /// they become durable. No gaps, no duplicates.
    fn subscribe(&self, after: u64) -> Self::Subscription;

    /// As [`EventLog::subscribe`], but only commits of streams in `categories` have
    /// their events decoded; the others arrive with `events` empty, so positions still
    /// advance without gaps. For followers that need a few streams (the GDAP projection).
    fn subscribe_where(&self, after: u64, categories: &'static [&'static str]) -> Self::Subscription;

    /// Walks the whole hash chain and decodes every event.
    fn verify(&self) -> impl Future<Output = Result<VerifyReport, LogError>> + Send;

    /// The position of the last durable directory commit, for an engine that checks
    /// [`AppendRequest::directory_at`] when it appends; `None` for one that does not.
    /// A decision needs the GDAP projection caught up to here only (not to the head):
    /// the append refuses it if the directory moved in between.
    fn directory_head(&self) -> Option<u64> {
        None
    }

    /// The engine's own counters for `/metrics`: name, help, value.
    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }
}

/// A catch-up-then-live subscription.
pub trait Subscription: Send + 'static {
    /// The next commit, waiting for one if the subscriber is caught up.
    fn next(&mut self) -> impl Future<Output = Result<Commit, LogError>> + Send;
}
