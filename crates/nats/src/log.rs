//! [`NatsLog`]: the event log on a JetStream stream.
//!
//! - **Append.** Read the stream's last message by subject (its version; skipped for a
//!   new stream) and check the expected version (R27). Then, one publish at a time per
//!   process, take the next position on the tail (read from the server, or this
//!   process's own last acknowledged commit), build the record with the hash of the
//!   record before, and send it with `Nats-Expected-Last-Sequence` (the predecessor it
//!   chains to) and `Nats-Expected-Last-Subject-Sequence` (the stream's version). If
//!   anything moved, JetStream refuses the publish, the tail is read again and the
//!   append retried; an unanswered publish (a leader lost) is retried the same way for
//!   up to 30 s. So positions are dense, the chain is unbroken and no update is lost,
//!   however many processes write.
//! - **Idempotency (R26)**, by construction: a (tenant, command id) is published only
//!   on top of a tail checked not to hold it (see [`NatsLog::append_now`]): below the
//!   index's floor through the `BEHALF_COMMANDS` bucket, above it through the keys a
//!   follower of the log has seen. The appender writes the key right after answering;
//!   the indexer (run by `serve` and `notify`) follows the log from a checkpoint and
//!   fills in any key a process died before writing. `Nats-Msg-Id` (the key, on a
//!   first try) only lets JetStream answer some retries sooner, within its window.
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
use futures::StreamExt as _;

use crate::storage;
use crate::subject::{command_key, event_subject};

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
/// How long a JetStream request (a publish's acknowledgement, a read) may take before
/// it is tried again. Short, so that a lost leader costs the election and little more.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the client pings its server (two unanswered pings: it reconnects).
const PING_INTERVAL: Duration = Duration::from_secs(1);
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
    /// One or more server URLs, comma-separated (`nats://127.0.0.1:4222,nats://…`).
    pub url: String,
    /// Copies of the stream and the bucket (1 on a single node, 3 on a cluster).
    pub replicas: usize,
    /// Whether this process keeps the command index complete (see the module doc).
    pub run_indexer: bool,
    /// JetStream's de-duplication window, set when the stream is created. R26 holds
    /// whatever it is; a short one only costs a look-up in the command index.
    pub duplicate_window: Duration,
}

impl NatsOptions {
    pub fn new(url: impl Into<String>) -> NatsOptions {
        NatsOptions { url: url.into(), replicas: 1, run_indexer: true, duplicate_window: DUPLICATE_WINDOW }
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

/// The R26 keys this process knows, so that no key is published twice (see
/// [`NatsLog::append_now`]). Every commit above `floor` up to `seen` has its key in
/// `keys`; every commit at or below `floor` has its key in [`COMMANDS_BUCKET`].
#[derive(Default)]
struct Keys {
    floor: u64,
    seen: u64,
    keys: std::collections::HashMap<String, u64>,
    /// Keys this process has published and not yet heard back about.
    in_flight: std::collections::HashSet<String>,
}

/// [`Keys`], shared by the appenders and the follower that fills them in.
struct KnownKeys {
    state: std::sync::Mutex<Keys>,
    seen: tokio::sync::watch::Sender<u64>,
}

impl KnownKeys {
    fn new(floor: u64) -> KnownKeys {
        KnownKeys {
            state: std::sync::Mutex::new(Keys { floor, seen: floor, ..Keys::default() }),
            seen: tokio::sync::watch::channel(floor).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn floor(&self) -> u64 {
        self.lock().floor
    }

    fn position_of(&self, key: &str) -> Option<u64> {
        self.lock().keys.get(key).copied()
    }

    /// A commit at `position` holds `key` (seen by the follower, or acknowledged here).
    fn stored(&self, key: String, position: u64) {
        let mut k = self.lock();
        k.in_flight.remove(&key);
        if position > k.floor {
            k.keys.insert(key, position);
        }
    }

    /// Waits until the follower has seen every commit up to `position`.
    async fn wait_seen(&self, position: u64) -> Result<(), LogError> {
        let mut rx = self.seen.subscribe();
        let reached = tokio::time::timeout(FOLLOWER_WAIT, rx.wait_for(|s| *s >= position)).await.map(|r| r.is_ok());
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(LogError::Closed),
            Err(_) => Err(LogError::Storage(format!(
                "the command-id follower did not reach position {position} within {FOLLOWER_WAIT:?}"
            ))),
        }
    }
}

struct Inner {
    js: jetstream::Context,
    stream: stream::Stream,
    commands: kv::Store,
    /// The tail this process predicts (its own publishes in flight included); `None`
    /// when it must be read again.
    tail: tokio::sync::Mutex<Option<Tail>>,
    /// The R26 keys of the log's recent commits and of this process's publishes.
    known: Arc<KnownKeys>,
    /// Taken for the whole of one publish, acknowledgement included.
    serial: tokio::sync::Mutex<()>,
    /// Requests for the head, answered in batches by [`read_heads`].
    heads: tokio::sync::mpsc::UnboundedSender<HeadWaiter>,
    tasks: Vec<tokio::task::AbortHandle>,
}

/// What the locked part of an append did.
enum Sent {
    Published(u64, jetstream::context::PublishAckFuture),
    /// The key is stored at this position.
    Found(u64),
    /// Look again: the index's floor moved, or this key is in flight here.
    Again,
    Failed(LogError),
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

/// Connects to one or more comma-separated server URLs.
pub(crate) async fn connect(url: &str) -> Result<async_nats::Client, LogError> {
    let addrs = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LogError::Storage(format!("NATS URL {url:?} is not valid: {e}")))?;
    async_nats::ConnectOptions::new()
        .name("behalf")
        .connection_timeout(Duration::from_secs(5))
        // A server that stops answering (paused, cut off) is given up after two
        // missed pings, and the client moves to another node of the cluster.
        .ping_interval(PING_INTERVAL)
        .connect(addrs)
        .await
        .map_err(|e| LogError::Storage(format!("cannot connect to NATS at {url}: {e}")))
}

impl NatsLog {
    /// Connects, and creates the stream and the bucket if they are not there yet.
    pub async fn open(options: NatsOptions) -> Result<NatsLog, LogError> {
        let client = connect(&options.url).await?;
        let js = jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client);
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        let (stream, commands) = loop {
            match Self::layout(&js, &options).await {
                Ok(parts) => break parts,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "JetStream is not ready yet; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let floor = loop {
            match index_checkpoint(&commands).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "cannot read the command index yet; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let known = Arc::new(KnownKeys::new(floor));
        let mut inner = Inner::new(js, stream, commands, known);
        {
            let log = NatsLog { inner: Arc::new(inner.clone_parts()) };
            inner.tasks.push(tokio::spawn(follow_keys(log)).abort_handle());
        }
        if options.run_indexer {
            // The indexer holds its own handle (no indexer of its own), so dropping
            // the last clone of this log stops it.
            let log = NatsLog { inner: Arc::new(inner.clone_parts()) };
            inner.tasks.push(tokio::spawn(index_forever(log)).abort_handle());
        }
        Ok(NatsLog { inner: Arc::new(inner) })
    }

    async fn layout(js: &jetstream::Context, options: &NatsOptions) -> Result<(stream::Stream, kv::Store), LogError> {
        let replicas = options.replicas;
        let stream = js
            .get_or_create_stream(stream::Config {
                name: EVENTS_STREAM.into(),
                subjects: vec!["behalf.ev.>".into()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                num_replicas: replicas,
                duplicate_window: options.duplicate_window,
                // The log is append-only: nobody deletes or purges a commit.
                deny_delete: true,
                deny_purge: true,
                ..Default::default()
            })
            .await
            .map_err(|e| storage("cannot create the stream", e))?;
        let commands = crate::bucket(js, COMMANDS_BUCKET, replicas).await?;
        Ok((stream, commands))
    }

    fn stream(&self) -> &stream::Stream {
        &self.inner.stream
    }

    /// The commit at a position, from the stream leader.
    async fn commit_at(&self, position: u64) -> Result<Option<(Commit, bytes::Bytes)>, LogError> {
        match self.stream().raw_message_builder().sequence(position).send().await {
            Ok(m) => Ok(Some((decode_at(&m.payload, position)?, m.payload))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage("cannot read a commit", e)),
        }
    }

    /// The last commit of a stream (its version) and its sequence; `None`: no stream.
    async fn last_of(&self, subject: &str) -> Result<Option<(Commit, u64)>, LogError> {
        match self.stream().raw_message_builder().last_by_subject(subject).send().await {
            Ok(m) => Ok(Some((decode_at(&m.payload, m.sequence)?, m.sequence))),
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

    async fn read_tail(&self) -> Result<Tail, LogError> {
        let head = self.last_sequence().await?;
        if head == 0 {
            return Ok(Tail { head: 0, base: 0, hash: GENESIS });
        }
        match self.stream().raw_message_builder().sequence(head).send().await {
            Ok(m) => {
                decode_at(&m.payload, head)?;
                Ok(Tail { head, base: head, hash: sha256(&m.payload) })
            }
            Err(e) if is_not_found(&e) => {
                Err(LogError::Corrupt { position: head, what: "the last commit is missing".into() })
            }
            Err(e) => Err(storage("cannot read the last commit", e)),
        }
    }

    async fn index(&self, key: &CommandKey, position: u64) -> Result<(), LogError> {
        self.inner
            .commands
            .put(command_key(key), position.to_string().into())
            .await
            .map(|_| ())
            .map_err(|e| storage("cannot index a command", e))
    }

    /// The first outcome of a command that is already in the log.
    fn first_outcome(first: &Commit, req: &AppendRequest) -> Result<Appended, AppendRefused> {
        if first.request_hash == req.request_hash {
            Ok(first.appended(true))
        } else {
            Err(AppendRefused::KeyReused { position: first.position })
        }
    }

    /// The commit a known key points at: its first outcome for `req`.
    async fn outcome_at(
        &self,
        position: u64,
        key: &CommandKey,
        req: &AppendRequest,
    ) -> Result<Result<Appended, AppendRefused>, LogError> {
        match self.commit_at(position).await? {
            Some((c, _)) if &c.key() == key => Ok(Self::first_outcome(&c, req)),
            Some(_) | None => Err(LogError::Corrupt {
                position,
                what: format!("command {key} is known at {position}, which holds another command"),
            }),
        }
    }

    /// Where a key is stored, from this process's memory or the command index (read
    /// from its leader, never from a replica that may lag).
    async fn lookup(&self, key: &CommandKey, ks: &str) -> Result<Option<u64>, LogError> {
        if let Some(p) = self.inner.known.position_of(ks) {
            return Ok(Some(p));
        }
        let commands = &self.inner.commands;
        let subject = format!("{}{}", commands.prefix, command_key(key));
        match commands.stream.raw_message_builder().last_by_subject(subject).send().await {
            // A deleted or purged key (an operator's hand) is no entry.
            Ok(m) if m.headers.get("KV-Operation").is_some() => Ok(None),
            Ok(m) => std::str::from_utf8(&m.payload)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| LogError::Codec(format!("the index entry of command {key} is not a position"))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage("cannot read the command index", e)),
        }
    }

    /// Appends a command whose key is in no commit this process knows of.
    ///
    /// **R26 by construction.** Every publish carries `Nats-Expected-Last-Sequence`, so
    /// it is stored only directly on top of the very tail it was built on. Before it
    /// leaves, this process has checked that no commit of that tail holds the key:
    /// positions up to the index's floor through the command index (read from its
    /// leader, and read again if the floor moved since), positions above it through
    /// the keys the follower has seen (it must have reached the tail as last read from
    /// the server), and the rest of the predicted tail is this process's own publishes
    /// in flight, whose keys are held in `in_flight` until they are answered. So a key
    /// is stored at most once whatever fails — a lost acknowledgement, a retry under
    /// another message id, a process killed before it indexed, a leader change — and
    /// with any number of appending processes; JetStream's de-duplication window
    /// (`Nats-Msg-Id`) only answers some retries sooner.
    async fn append_now(
        &self,
        req: &AppendRequest,
        key: &CommandKey,
        ks: &str,
    ) -> Result<Result<Appended, AppendRefused>, LogError> {
        let subject = event_subject(&req.stream);
        let deadline = tokio::time::Instant::now() + APPEND_DEADLINE;
        let mut checked_floor = None;
        let mut transient = 0u32;
        for attempt in 0..MAX_TAIL_RACES {
            // The index holds every key at or below its floor: look there once per floor.
            let floor = self.inner.known.floor();
            if checked_floor != Some(floor) {
                if let Some(p) = self.lookup(key, ks).await? {
                    return self.outcome_at(p, key, req).await;
                }
                checked_floor = Some(floor);
            }
            // The stream's state, read outside the lock: if it moves before the publish
            // lands, the expected subject sequence makes JetStream refuse it.
            // A new stream (expected version 0) needs no read: "no message on the
            // subject yet" is what the publish expects; if one is there, JetStream
            // refuses it and the next try reads the stream.
            let fresh = attempt == 0 && req.expected == ExpectedVersion::Exact(0);
            let last = if fresh { None } else { self.last_of(&subject).await? };
            let (version, subject_seq) = match last {
                Some((c, _)) if &c.key() == key => return Ok(Self::first_outcome(&c, req)),
                Some((c, seq)) => (c.last_version(), seq),
                None => (0, 0),
            };
            if let ExpectedVersion::Exact(v) = req.expected {
                if v != version {
                    return Ok(Err(AppendRefused::Conflict { expected: req.expected, actual: version }));
                }
            }
            // Under the lock: take the next position on top of the predicted tail (which
            // includes this process's publishes still in flight), check the key against
            // everything below it, and send, so publishes leave in position order; the
            // acknowledgement is awaited after.
            // One publish in flight per process: the next is built on an acknowledged
            // tail (see `publish`). Held until this try's acknowledgement is handled.
            let _serial = self.inner.serial.lock().await;
            let sent = {
                let mut guard = self.inner.tail.lock().await;
                let tail = match guard.take() {
                    Some(t) => t,
                    None => self.read_tail().await?,
                };
                self.inner.known.wait_seen(tail.base).await?;
                let clash = {
                    let mut known = self.inner.known.lock();
                    if known.floor != floor {
                        Some(None) // the index moved under us: look it up again
                    } else if let Some(p) = known.keys.get(ks) {
                        Some(Some(*p))
                    } else if known.in_flight.contains(ks) {
                        Some(None) // another try of this command is in flight here
                    } else {
                        known.in_flight.insert(ks.to_owned());
                        None
                    }
                };
                match clash {
                    Some(Some(p)) => {
                        *guard = Some(tail);
                        Sent::Found(p)
                    }
                    Some(None) => {
                        *guard = Some(tail);
                        Sent::Again
                    }
                    None => {
                        let position = tail.head + 1;
                        // The first try carries the key as `Nats-Msg-Id`, so a retry from
                        // elsewhere within the window is answered by JetStream itself.
                        // A clustered stream keeps the id of a publish it refused staged
                        // as "in process"; later tries name their position (after a
                        // space, which no key holds).
                        let msg_id = if attempt == 0 { ks.to_owned() } else { format!("{ks} {position}") };
                        match self.publish(req, &subject, &tail, position, version, subject_seq, &msg_id).await {
                            Ok((pending, hash)) => {
                                *guard = Some(Tail { head: position, base: tail.base, hash });
                                Sent::Published(position, pending)
                            }
                            Err(e) => {
                                self.inner.known.lock().in_flight.remove(ks);
                                Sent::Failed(e)
                            }
                        }
                    }
                }
            };
            let (position, pending) = match sent {
                Sent::Published(position, pending) => (position, pending),
                Sent::Found(p) => return self.outcome_at(p, key, req).await,
                Sent::Again => {
                    checked_floor = None;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Sent::Failed(e) if tokio::time::Instant::now() < deadline => {
                    transient += 1;
                    tracing::info!(error = %e, "a publish could not be sent; trying again");
                    tokio::time::sleep(Duration::from_millis((50 * u64::from(transient)).min(500))).await;
                    continue;
                }
                Sent::Failed(e) => return Err(e),
            };
            let acked = pending.await;
            match acked {
                Ok(ack) if ack.duplicate => {
                    self.inner.known.lock().in_flight.remove(ks);
                    self.forget_tail_from(position).await;
                    let answer = self.outcome_at(ack.sequence, key, req).await?;
                    self.inner.known.stored(ks.to_owned(), ack.sequence);
                    self.index(key, ack.sequence).await?;
                    return Ok(answer);
                }
                Ok(ack) if ack.sequence == position => {
                    self.inner.known.stored(ks.to_owned(), position);
                    // The index entry is written behind the answer: until it is there,
                    // this process's memory and the followers of every other process
                    // answer a retry, and the indexer fills in any entry that never
                    // arrives.
                    let (log, key) = (self.clone(), key.clone());
                    tokio::spawn(async move {
                        if let Err(e) = log.index(&key, position).await {
                            tracing::warn!(error = %e, position, "indexing a command failed; the indexer will");
                        }
                    });
                    return Ok(Ok(Appended {
                        position,
                        stream: req.stream.clone(),
                        first_version: version + 1,
                        last_version: version + req.events.len() as u64,
                        duplicate: false,
                    }));
                }
                Ok(ack) => {
                    self.inner.known.lock().in_flight.remove(ks);
                    self.forget_tail_from(position).await;
                    return Err(LogError::Corrupt {
                        position: ack.sequence,
                        what: format!("JetStream stored the commit for {position} at {}", ack.sequence),
                    });
                }
                Err(e) => {
                    // Refused (another process appended first) or unanswered (a leader lost, a
                    // connection dropped: it may be stored, which the follower will
                    // show). Either way, try again on a tail read afresh: the checks
                    // above make that safe.
                    self.inner.known.lock().in_flight.remove(ks);
                    self.forget_tail_from(position).await;
                    if is_race(&e) {
                        if is_in_process(&e) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    } else if tokio::time::Instant::now() < deadline {
                        transient += 1;
                        tracing::info!(error = %e, position, "a publish was not answered; trying again");
                        tokio::time::sleep(Duration::from_millis((50 * u64::from(transient)).min(500))).await;
                    } else {
                        return Err(storage("JetStream did not store a commit", e));
                    }
                }
            }
        }
        Err(LogError::Storage(format!("lost the race for the next position {MAX_TAIL_RACES} times")))
    }

    /// Sends one commit at `position` on top of `tail`, with the expectations that make
    /// JetStream refuse it anywhere else. Returns the pending acknowledgement and the
    /// hash of the record.
    #[allow(clippy::too_many_arguments)] // reason: one publish's parts, named where they are computed
    async fn publish(
        &self,
        req: &AppendRequest,
        subject: &str,
        tail: &Tail,
        position: u64,
        version: u64,
        subject_seq: u64,
        msg_id: &str,
    ) -> Result<(jetstream::context::PublishAckFuture, Hash), LogError> {
        let bytes = record_for(req, position, version + 1, &tail.hash)?;
        let hash = sha256(&bytes);
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        // The predecessor is the very record this one chains to: `tail` was read from
        // the server or is this process's own acknowledged publish, and a stored message
        // never changes. (`Nats-Expected-Last-Msg-Id`, which allowed several publishes
        // in flight, makes nats-server 2.12+ stop the stream with a "critical write
        // error" when two writers race; atomic batches are the way to more in flight.)
        headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, tail.head.to_string().as_str());
        headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, subject_seq.to_string().as_str());
        // Sending can wait for room on a connection to a server that stopped reading
        // (a paused node): bounded like every other request.
        let send = self.inner.js.publish_with_headers(subject.to_owned(), headers, bytes.into());
        let pending = tokio::time::timeout(REQUEST_TIMEOUT, send)
            .await
            .map_err(|_| LogError::Storage(format!("cannot publish a commit: not sent within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| storage("cannot publish a commit", e))?;
        Ok((pending, hash))
    }

    /// After a publish at `position` failed, the predicted tail from there on is wrong:
    /// forget it (unless it was already read again below that position).
    async fn forget_tail_from(&self, position: u64) {
        let mut guard = self.inner.tail.lock().await;
        if guard.as_ref().is_some_and(|t| t.head >= position) {
            *guard = None;
        }
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
        Inner {
            js,
            stream,
            commands,
            tail: tokio::sync::Mutex::new(None),
            known,
            serial: tokio::sync::Mutex::new(()),
            heads,
            tasks: vec![reader],
        }
    }

    /// Another handle on the same connection and known keys, with tasks of its own.
    fn clone_parts(&self) -> Inner {
        Inner::new(self.js.clone(), self.stream.clone(), self.commands.clone(), Arc::clone(&self.known))
    }
}

type Ordered = consumer::pull::Ordered;

/// An ordered consumer from `start`. Making one can time out while a cluster moves a
/// leader (a node lost or back); that is tried again for up to [`READY_WAIT`].
async fn ordered_from(stream: &stream::Stream, start: u64) -> Result<Ordered, LogError> {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        let made = async {
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
                    ..Default::default()
                })
                .await
                .map_err(|e| storage("cannot create a reader", e))?;
            consumer.messages().await.map_err(|e| storage("cannot start a reader", e))
        };
        match made.await {
            Ok(m) => return Ok(m),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, start, "making a reader failed; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn decode_at(payload: &[u8], seq: u64) -> Result<Commit, LogError> {
    Commit::decode(payload).and_then(|c| check_position(c, seq))
}

fn check_position(c: Commit, seq: u64) -> Result<Commit, LogError> {
    if c.position == seq {
        Ok(c)
    } else {
        Err(LogError::Corrupt { position: seq, what: format!("the record says it is commit {}", c.position) })
    }
}

/// A publish refused because the stream was not where this one expected it: a wrong
/// last sequence, last message id or subject sequence, or an id still "in process".
fn is_race(e: &jetstream::context::PublishError) -> bool {
    use jetstream::context::PublishErrorKind;
    matches!(e.kind(), PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId) || is_in_process(e)
}

/// JetStream's "duplicate message id is in process" (10158).
fn is_in_process(e: &jetstream::context::PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|j| j.error_code() == jetstream::ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT)
}

fn is_not_found(e: &stream::RawMessageError) -> bool {
    matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound)
}

/// The indexer's checkpoint, read from the bucket's leader (0: none yet).
async fn index_checkpoint(commands: &kv::Store) -> Result<u64, LogError> {
    let subject = format!("{}{CHECKPOINT_KEY}", commands.prefix);
    match commands.stream.raw_message_builder().last_by_subject(subject).send().await {
        Ok(m) => Ok(std::str::from_utf8(&m.payload).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)),
        Err(e) if is_not_found(&e) => Ok(0),
        Err(e) => Err(storage("cannot read the indexer's checkpoint", e)),
    }
}

/// Keeps [`KnownKeys`] filled: the key of every commit from the index's floor on, as
/// it is stored; and, now and then, drops the keys the index has caught up with.
/// Runs until the log is dropped.
async fn follow_keys(log: NatsLog) {
    loop {
        let from = log.inner.known.lock().seen;
        if let Err(e) = follow_keys_from(&log, from).await {
            tracing::warn!(error = %e, "the command-id follower stopped; starting again");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn follow_keys_from(log: &NatsLog, from: u64) -> Result<(), LogError> {
    const PRUNE_EVERY: Duration = Duration::from_secs(5);
    let known = &log.inner.known;
    let mut sub = log.subscribe_where(from, &[]);
    let mut pruned_at = tokio::time::Instant::now();
    loop {
        let c = tokio::select! {
            c = sub.next() => Some(c?),
            () = tokio::time::sleep(PRUNE_EVERY) => None,
        };
        if let Some(c) = c {
            known.stored(c.key().to_string(), c.position);
            known.lock().seen = c.position;
            known.seen.send_replace(c.position);
        }
        if pruned_at.elapsed() >= PRUNE_EVERY {
            pruned_at = tokio::time::Instant::now();
            let checkpoint = index_checkpoint(&log.inner.commands).await?;
            let mut k = known.lock();
            if checkpoint > k.floor {
                // Every key at or below the checkpoint is in the index.
                k.floor = checkpoint.min(k.seen);
                let floor = k.floor;
                k.keys.retain(|_, p| *p > floor);
            }
        }
    }
}

/// Keeps [`COMMANDS_BUCKET`] complete: from the checkpoint on, every commit's key has
/// its entry, written before the checkpoint passes it. Runs until the log is dropped.
async fn index_forever(log: NatsLog) {
    loop {
        if let Err(e) = index_from_checkpoint(&log).await {
            tracing::warn!(error = %e, "the command indexer stopped; starting again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn index_from_checkpoint(log: &NatsLog) -> Result<(), LogError> {
    let commands = &log.inner.commands;
    let checkpoint = index_checkpoint(commands).await?;
    let mut sub = log.subscribe_where(checkpoint, &[]);
    let mut since_saved = 0u32;
    loop {
        let c = sub.next().await?;
        let key = c.key();
        let present = commands.get(command_key(&key)).await.map_err(|e| storage("cannot read the command index", e))?;
        if present.is_none() {
            log.index(&key, c.position).await?;
        }
        since_saved += 1;
        if since_saved >= 256 || sub.caught_up() {
            commands
                .put(CHECKPOINT_KEY, c.position.to_string().into())
                .await
                .map_err(|e| storage("cannot save the indexer's checkpoint", e))?;
            since_saved = 0;
        }
    }
}

impl EventLog for NatsLog {
    type Subscription = NatsSubscription;

    async fn append(&self, req: AppendRequest) -> Result<Result<Appended, AppendRefused>, LogError> {
        if req.events.is_empty() {
            return Err(LogError::Codec("a commit holds at least one event".into()));
        }
        let key = req.key();
        let ks = key.to_string();
        self.append_now(&req, &key, &ks).await
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
            let c = decode_at(&m.payload, m.sequence)?;
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

    fn subscribe_where(&self, after: u64, categories: &'static [&'static str]) -> NatsSubscription {
        NatsSubscription::new(self.clone(), after, Some(categories))
    }

    async fn verify(&self) -> Result<VerifyReport, LogError> {
        let head = self.last_sequence().await?;
        let mut sub = NatsSubscription::new(self.clone(), 0, None);
        let (mut good, mut prev) = (0u64, GENESIS);
        while good < head {
            let expected = good + 1;
            let bad = |what: String| Ok(VerifyReport { verified: good, first_bad: Some((expected, what)) });
            let (seq, payload) = match sub.next_bytes().await {
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
            if c.prev_hash != prev {
                return bad("hash chain broken: the previous hash does not match".into());
            }
            prev = sha256(&payload);
            good = seq;
        }
        Ok(VerifyReport { verified: good, first_bad: None })
    }
}

/// Catch-up then live, through an ordered consumer that is made again from the last
/// position seen if it fails (a node lost, a connection dropped).
pub struct NatsSubscription {
    log: NatsLog,
    at: u64,
    categories: Option<&'static [&'static str]>,
    messages: Option<Ordered>,
    pending: u64,
}

impl NatsSubscription {
    fn new(log: NatsLog, after: u64, categories: Option<&'static [&'static str]>) -> NatsSubscription {
        NatsSubscription { log, at: after, categories, messages: None, pending: u64::MAX }
    }

    /// Whether the last commit handed out was the newest the server knew of.
    pub fn caught_up(&self) -> bool {
        self.pending == 0
    }

    /// The next message, making the consumer again when it fails or stalls: an
    /// ordered consumer whose node died only notices after missed heartbeats (30 s),
    /// so a reader that hears nothing for [`STALL_CHECK`] while the log has moved on
    /// makes a new one from where it is.
    async fn try_next(&mut self) -> Result<Commit, LogError> {
        let (seq, payload) = self.next_raw().await?;
        let c = Commit::decode_where(&payload, self.categories).and_then(|c| check_position(c, seq))?;
        self.at = seq;
        Ok(c)
    }

    /// The next stored record and its position (not yet taken as read).
    async fn next_raw(&mut self) -> Result<(u64, bytes::Bytes), LogError> {
        loop {
            let messages = match &mut self.messages {
                Some(m) => m,
                None => self.messages.insert(ordered_from(self.log.stream(), self.at + 1).await?),
            };
            let m = match tokio::time::timeout(STALL_CHECK, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(storage("the subscription failed", e)),
                Ok(None) => return Err(LogError::Closed),
                Err(_) => {
                    if self.log.last_sequence().await? > self.at {
                        tracing::info!(
                            at = self.at,
                            "the reader heard nothing while the log moved on; making it again"
                        );
                        self.messages = None;
                    }
                    continue;
                }
            };
            let info = m.info().map_err(|e| LogError::Storage(format!("a message without metadata: {e}")))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq != self.at + 1 {
                return Err(LogError::Corrupt {
                    position: self.at + 1,
                    what: format!("the next stored commit is {seq}"),
                });
            }
            self.pending = pending;
            return Ok((seq, m.message.payload.clone()));
        }
    }

    /// As [`Subscription::next`], the stored bytes (for walking the hash chain).
    async fn next_bytes(&mut self) -> Result<(u64, bytes::Bytes), LogError> {
        let got = self.retrying(|s| Box::pin(s.next_raw())).await?;
        self.at = got.0;
        Ok(got)
    }
}

impl NatsSubscription {
    /// Runs `step`, making the consumer again after a failure, for about a minute of
    /// failures in a row; a corrupt or undecodable record ends it at once.
    async fn retrying<T>(
        &mut self,
        step: impl for<'a> Fn(
            &'a mut Self,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, LogError>> + Send + 'a>>,
    ) -> Result<T, LogError> {
        let mut failures = 0u32;
        loop {
            match step(self).await {
                Ok(v) => return Ok(v),
                Err(e @ (LogError::Corrupt { .. } | LogError::Codec(_))) => return Err(e),
                Err(e) => {
                    failures += 1;
                    if failures > 120 {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, at = self.at, "the subscription broke; following again");
                    self.messages = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Result<Commit, LogError> {
        self.retrying(|s| Box::pin(s.try_next())).await
    }
}
