//! [`NatsLog`]: the event log on a JetStream stream.
//!
//! - **Append.** Read the stream's last message by subject (its version; skipped for a
//!   new stream) and check the expected version (R27). Then hand the append to the
//!   process's **group commit** (`log/group.rs`): one batcher takes every append waiting
//!   and publishes them as one atomic batch on top of the acknowledged tail, each record
//!   chained to the one before it; the batch's first message expects the tail's last
//!   sequence (`Nats-Expected-Last-Sequence`), each message its stream's version
//!   (`Nats-Expected-Last-Subject-Sequence`). One batch is in flight at a time. If
//!   anything moved, JetStream refuses the batch, the tail is read again and its appends
//!   go round again; an unanswered batch (a leader lost) is retried the same way for up
//!   to 30 s. So positions are dense, the chain is unbroken and no update is lost,
//!   however many processes write.
//! - **Idempotency (R26)**, by construction: a (tenant, command id) is published only
//!   on top of a tail checked not to hold it (see [`NatsLog::append_now`]): below the
//!   index's floor through the `BEHALF_COMMANDS` bucket, above it through the keys a
//!   follower of the log has seen. The indexer (run by `serve` and `notify`) follows
//!   the log from a checkpoint and writes the keys in pages behind it. Appends carry
//!   no `Nats-Msg-Id`: JetStream's de-duplication window plays no part.
//! - **Reads** go to the stream leader (`STREAM.MSG.GET`), so a process reads what it
//!   wrote; catch-up and live reads use ordered pull consumers, made again when they
//!   fail or stall.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::HeaderMap;
use behalf_domain::{CommandKey, StreamId};
use behalf_log::codec::sha256;
use behalf_log::{
    record_for, AppendRefused, AppendRequest, Appended, Commit, EventLog, ExpectedVersion, Hash, LogError,
    Subscription, VerifyReport, GENESIS,
};

use crate::batch::{publish_atomic, BatchMsg};
use crate::endpoint::{connect, Endpoint, REQUEST_TIMEOUT};
use crate::storage;
use crate::subject::{command_key, event_subject};

mod append;
mod group;
mod keys;
mod open;
mod reader;

use group::{batcher, Batched, Job, Stats};
use keys::{follow_keys, index_checkpoint, index_forever, is_directory, last_directory_commit, KnownKeys};
pub use reader::NatsSubscription;

/// The stream that holds every commit.
pub const EVENTS_STREAM: &str = "BEHALF_EVENTS";
/// The key-value bucket: command id → position (R26 beyond the de-duplication window).
pub const COMMANDS_BUCKET: &str = "BEHALF_COMMANDS";
/// Where the indexer has got to, in [`COMMANDS_BUCKET`]: every commit at or below it
/// has its key. (Before command ids were per tenant the keys were `c.<id>` under
/// `checkpoint`; those are left alone and the log is indexed again under the new keys.)
const CHECKPOINT_KEY: &str = "tenant-checkpoint";

/// How long JetStream remembers message ids by default (its own de-duplication of
/// retries; R26 does not depend on it).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How many index misses [`NatsLog::lookup`] remembers per floor.
const ABSENT_CACHE: usize = 100_000;
/// How long an append keeps trying through a lost leader or connection before it
/// answers with the error.
const APPEND_DEADLINE: Duration = Duration::from_secs(30);
/// How long an append waits for this process's command-id follower to reach the tail.
const FOLLOWER_WAIT: Duration = Duration::from_secs(30);
/// How long `open` waits for JetStream (a cluster elects its leaders at start).
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long a reader waits for the next message before it checks whether the log
/// has moved on without it.
const STALL_CHECK: Duration = Duration::from_secs(2);
/// How many times an append re-reads the tail after losing the race for a position.
const MAX_TAIL_RACES: usize = 1000;

/// How to reach and lay out the engine.
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// The servers (one or more URLs), with their credentials and TLS.
    pub endpoint: Endpoint,
    /// Copies of the stream and the bucket (1 on a single node, 3 on a cluster).
    pub replicas: usize,
    /// Whether this process keeps the command index complete (see the module doc).
    pub run_indexer: bool,
    /// JetStream's de-duplication window, set when the stream is created. R26 holds
    /// whatever it is; a short one only costs a look-up in the command index.
    pub duplicate_window: Duration,
    /// Create the stream and the bucket if they are not there. Without it the log is
    /// a reader (an auditor's): it creates nothing, and its appends fail.
    pub create: bool,
}

impl NatsOptions {
    pub fn new(endpoint: impl Into<Endpoint>) -> NatsOptions {
        NatsOptions {
            endpoint: endpoint.into(),
            replicas: 1,
            run_indexer: true,
            duplicate_window: DUPLICATE_WINDOW,
            create: true,
        }
    }

    pub fn duplicate_window(mut self, window: Duration) -> NatsOptions {
        self.duplicate_window = window;
        self
    }

    pub fn replicas(mut self, n: usize) -> NatsOptions {
        self.replicas = n;
        self
    }
}

/// The event log on JetStream. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct NatsLog {
    inner: Arc<Inner>,
}

/// The last commit: its position and the hash of its record; and
/// `base`, the head as last read from the server (everything above it up to `head` is
/// this process's own publishes in flight).
#[derive(Clone)]
struct Tail {
    head: u64,
    base: u64,
    hash: Hash,
}

struct Inner {
    js: jetstream::Context,
    stream: stream::Stream,
    commands: kv::Store,
    /// The R26 keys of the log's recent commits and of this process's publishes.
    known: Arc<KnownKeys>,
    /// Appends waiting for the group commit ([`batcher`]).
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    /// Taken by the one batcher of this handle.
    jobs_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Job>>>,
    stats: Arc<Stats>,
    /// Requests for the head, answered in batches by [`read_heads`].
    heads: tokio::sync::mpsc::UnboundedSender<HeadWaiter>,
    tasks: Vec<tokio::task::AbortHandle>,
}

type HeadWaiter = tokio::sync::oneshot::Sender<Result<u64, String>>;

/// Answers every waiting request for the head with one `STREAM.INFO` sent after they
/// all arrived.
async fn read_heads(mut stream: stream::Stream, mut rx: tokio::sync::mpsc::UnboundedReceiver<HeadWaiter>) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let head = stream.info().await.map(|i| i.state.last_sequence).map_err(|e| e.to_string());
        for w in waiting {
            let _ = w.send(head.clone());
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The log needs atomic batch publish, which nats-server has since 2.12; an older
/// server would take the batch headers as plain headers and store a batch's messages
/// one by one.
fn check_server_version(version: &str) -> Result<(), LogError> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']).map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 12) {
        return Err(LogError::Storage(format!(
            "nats-server {version} is too old: the event log needs 2.12 or later (atomic batch publish)"
        )));
    }
    Ok(())
}

impl NatsLog {
    /// As [`EventLog::verify`], saying `progress(position, head)` as it goes.
    pub async fn verify_with(&self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport, LogError> {
        let head = self.last_sequence().await?;
        let mut sub = NatsSubscription::new(self.clone(), 0, None);
        let (mut good, mut prev) = (0u64, GENESIS);
        while good < head {
            let expected = good + 1;
            let bad = |what: String| Ok(VerifyReport { verified: good, first_bad: Some((expected, what)) });
            let (seq, subject, payload) = match sub.next_bytes().await {
                Ok(got) => got,
                Err(LogError::Corrupt { what, .. }) => return bad(what),
                Err(e) => return Err(e),
            };
            let c = match Commit::decode(&payload) {
                Ok(c) => c,
                Err(e) => return bad(format!("record does not decode: {e}")),
            };
            if c.position != seq {
                return bad(format!("record at {seq} says it is commit {}", c.position));
            }
            if let Err(LogError::Corrupt { what, .. }) = check_subject(c.clone(), &subject) {
                return bad(what);
            }
            if c.prev_hash != prev {
                return bad("hash chain broken: the previous hash does not match".into());
            }
            prev = sha256(&payload);
            good = seq;
            if good % 1024 == 0 || good == head {
                progress(good, head);
            }
        }
        Ok(VerifyReport { verified: good, first_bad: None })
    }

    fn stream(&self) -> &stream::Stream {
        &self.inner.stream
    }

    /// The commit at a position, from the stream leader.
    async fn commit_at(&self, position: u64) -> Result<Option<(Commit, bytes::Bytes)>, LogError> {
        match self.stream().raw_message_builder().sequence(position).send().await {
            Ok(m) => Ok(Some((decode_at(&m.payload, position, &m.subject)?, m.payload))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage("cannot read a commit", e)),
        }
    }

    /// The last commit of a stream (its version) and its sequence; `None`: no stream.
    async fn last_of(&self, subject: &str) -> Result<Option<(Commit, u64)>, LogError> {
        match self.stream().raw_message_builder().last_by_subject(subject).send().await {
            Ok(m) => Ok(Some((decode_at(&m.payload, m.sequence, &m.subject)?, m.sequence))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage("cannot read a stream's last commit", e)),
        }
    }

    /// The stream's last sequence, as the leader says now.
    /// The stream's last sequence, read after this call began. Concurrent callers
    /// share one `STREAM.INFO` request (each joins the next one sent), which keeps the
    /// server's API load flat however many commands wait on the head.
    async fn last_sequence(&self) -> Result<u64, LogError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.heads.send(tx).map_err(|_| LogError::Closed)?;
        rx.await
            .map_err(|_| LogError::Closed)?
            .map_err(|e| LogError::Storage(format!("cannot read the stream's state: {e}")))
    }

    async fn read_range(
        &self,
        after: u64,
        count: usize,
        categories: Option<&'static [&'static str]>,
    ) -> Result<Vec<Commit>, LogError> {
        let mut sub = NatsSubscription::new(self.clone(), after, categories);
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            out.push(sub.next().await?);
        }
        Ok(out)
    }
}

impl Inner {
    fn new(js: jetstream::Context, stream: stream::Stream, commands: kv::Store, known: Arc<KnownKeys>) -> Inner {
        let (heads, rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(read_heads(stream.clone(), rx)).abort_handle();
        let (jobs, jobs_rx) = tokio::sync::mpsc::unbounded_channel();
        Inner {
            js,
            stream,
            commands,
            known,
            jobs,
            jobs_rx: std::sync::Mutex::new(Some(jobs_rx)),
            stats: Arc::new(Stats::default()),
            heads,
            tasks: vec![reader],
        }
    }

    /// Another handle on the same connection and known keys, with tasks of its own.
    fn clone_parts(&self) -> Inner {
        Inner::new(self.js.clone(), self.stream.clone(), self.commands.clone(), Arc::clone(&self.known))
    }
}

fn decode_at(payload: &[u8], seq: u64, subject: &str) -> Result<Commit, LogError> {
    Commit::decode(payload).and_then(|c| check_position(c, seq)).and_then(|c| check_subject(c, subject))
}

/// A record must be stored under its stream's subject. The hash chain covers the
/// record, not the subject JetStream files it under: a bit flipped in a stored subject
/// (seen after a minority's block was damaged: a ticket's last commit no longer found
/// by its subject, so the stream looked one version shorter) would otherwise let an
/// append take a version that is already there.
pub(super) const MISFILED: &str = "is stored under another subject";

fn check_subject(c: Commit, subject: &str) -> Result<Commit, LogError> {
    let expected = event_subject(&c.stream);
    if subject == expected {
        Ok(c)
    } else {
        Err(LogError::Corrupt { position: c.position, what: format!("the record of stream {} {MISFILED}", c.stream) })
    }
}

fn check_position(c: Commit, seq: u64) -> Result<Commit, LogError> {
    if c.position == seq {
        Ok(c)
    } else {
        Err(LogError::Corrupt { position: seq, what: format!("the record says it is commit {}", c.position) })
    }
}

/// A batch refused because the log was not where it expected: a wrong last sequence
/// or subject sequence (appends carry no message ids, so no id-based refusal occurs).
fn is_race(e: &jetstream::context::PublishError) -> bool {
    matches!(e.kind(), jetstream::context::PublishErrorKind::WrongLastSequence)
}

pub(crate) fn is_not_found(e: &stream::RawMessageError) -> bool {
    matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound)
}

impl EventLog for NatsLog {
    type Subscription = NatsSubscription;

    async fn append(&self, req: AppendRequest) -> Result<Result<Appended, AppendRefused>, LogError> {
        if req.events.is_empty() {
            return Err(LogError::Codec("a commit holds at least one event".into()));
        }
        let key = req.key();
        let ks = key.to_string();
        // Shared with the batcher as it is: no copy of the events per append.
        self.append_now(Arc::new(req), &key, &ks).await
    }

    async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Commit>, LogError> {
        let subject = event_subject(stream);
        let mut out: Vec<Commit> = Vec::new();
        let mut seq = 1;
        loop {
            let got = self.stream().raw_message_builder().next_by_subject(subject.clone()).sequence(seq).send().await;
            let m = match got {
                Ok(m) => m,
                Err(e) if is_not_found(&e) => break,
                Err(e) => return Err(storage("cannot read a stream", e)),
            };
            let c = decode_at(&m.payload, m.sequence, &m.subject)?;
            seq = m.sequence + 1;
            if c.last_version() >= from_version {
                out.push(c);
            }
        }
        Ok(out)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, LogError> {
        Ok(self.last_of(&event_subject(stream)).await?.map_or(0, |(c, _)| c.last_version()))
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<Commit>, LogError> {
        let head = self.last_sequence().await?;
        let count = (head.saturating_sub(after)).min(limit as u64) as usize;
        self.read_range(after, count, None).await
    }

    async fn head(&self) -> Result<u64, LogError> {
        self.last_sequence().await
    }

    async fn find_command(&self, key: &CommandKey) -> Result<Option<Commit>, LogError> {
        let Some(position) = self.lookup(key, &key.to_string()).await? else {
            return Ok(None);
        };
        match self.commit_at(position).await? {
            Some((c, _)) if &c.key() == key => Ok(Some(c)),
            Some(_) | None => Err(LogError::Corrupt {
                position,
                what: format!("the command index points command {key} at a commit of another command"),
            }),
        }
    }

    fn subscribe(&self, after: u64) -> NatsSubscription {
        NatsSubscription::new(self.clone(), after, None)
    }

    /// The last directory commit this process knows of (see `Keys::last_directory`):
    /// a decision waits for the GDAP projection to reach it, not the head, and the
    /// batcher refuses an append decided against an older directory than its tail's.
    fn directory_head(&self) -> Option<u64> {
        Some(self.inner.known.lock().last_directory)
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        vec![
            (
                behalf_log::GROUPS_METRIC,
                "Atomic batches the group commit published.",
                self.inner.stats.batches.load(Relaxed),
            ),
            (
                behalf_log::GROUPED_COMMITS_METRIC,
                "Commits the group commit published in those batches.",
                self.inner.stats.commits.load(Relaxed),
            ),
        ]
    }

    fn subscribe_where(&self, after: u64, categories: &'static [&'static str]) -> NatsSubscription {
        NatsSubscription::new(self.clone(), after, Some(categories))
    }

    async fn verify(&self) -> Result<VerifyReport, LogError> {
        self.verify_with(|_, _| {}).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn servers_before_2_12_are_refused() {
        for ok in ["2.12.0", "2.15.1", "v2.12.3-beta", "3.0.0"] {
            assert!(super::check_server_version(ok).is_ok(), "{ok}");
        }
        for old in ["2.11.11", "2.9.25", "1.4.1", ""] {
            assert!(super::check_server_version(old).is_err(), "{old}");
        }
    }
}
