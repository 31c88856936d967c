//! [`NatsLog`]: the event log on a JetStream stream.
//!
//! - **Append.** Under one lock per process: read the stream's last message by subject
//!   (its version), check the expected version (R27), build the record at `head + 1`
//!   with the hash of the record at `head`, and publish it with
//!   `Nats-Expected-Last-Sequence: head`, `Nats-Expected-Last-Subject-Sequence` and
//!   `Nats-Msg-Id: <command id>`. If another process appended first, JetStream refuses
//!   the publish (wrong last sequence): the tail is read again and the append retried.
//!   So positions are dense, the chain is unbroken and no update is lost, however
//!   many processes write.
//! - **Idempotency (R26).** `Nats-Msg-Id` catches retries within the de-duplication
//!   window; beyond it, the `BEHALF_COMMANDS` key-value bucket maps each command id to
//!   its position. The appender writes the key after the publish is acknowledged; an
//!   indexer in every process follows the log and fills in any key a crash left out,
//!   well within the window.
//! - **Reads** go to the stream leader (`STREAM.MSG.GET`), so a process reads what it
//!   wrote; catch-up and live subscriptions use ordered pull consumers.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::HeaderMap;
use behalf_domain::{CommandId, StreamId};
use behalf_log::codec::sha256;
use behalf_log::{
    record_for, AppendRefused, AppendRequest, Appended, Commit, EventLog, ExpectedVersion, Hash, LogError,
    Subscription, VerifyReport, GENESIS,
};
use futures::StreamExt as _;

use crate::subject::{command_key, event_subject};

/// The stream that holds every commit.
pub const EVENTS_STREAM: &str = "BEHALF_EVENTS";
/// The key-value bucket: command id → position (R26 beyond the de-duplication window).
pub const COMMANDS_BUCKET: &str = "BEHALF_COMMANDS";
/// Where the indexer has got to, in [`COMMANDS_BUCKET`].
const CHECKPOINT_KEY: &str = "checkpoint";

/// How long JetStream remembers message ids (its own de-duplication of retries).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long `open` waits for JetStream (a cluster elects its leaders at start).
const READY_WAIT: Duration = Duration::from_secs(60);
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
}

impl NatsOptions {
    pub fn new(url: impl Into<String>) -> NatsOptions {
        NatsOptions { url: url.into(), replicas: 1, run_indexer: true }
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

struct Inner {
    js: jetstream::Context,
    stream: stream::Stream,
    commands: kv::Store,
    /// The last position this process knows of and its record's hash; `None` when it
    /// must be read again.
    tail: tokio::sync::Mutex<Option<(u64, Hash)>>,
    indexer: Option<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = &self.indexer {
            task.abort();
        }
    }
}

fn storage(what: &str) -> impl FnOnce(async_nats::Error) -> LogError + '_ {
    move |e| LogError::Storage(format!("{what}: {e}"))
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> async_nats::Error {
    Box::new(e)
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
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(|e| LogError::Storage(format!("cannot connect to NATS at {url}: {e}")))
}

impl NatsLog {
    /// Connects, and creates the stream and the bucket if they are not there yet.
    pub async fn open(options: NatsOptions) -> Result<NatsLog, LogError> {
        let client = connect(&options.url).await?;
        let js = jetstream::new(client);
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        let (stream, commands) = loop {
            match Self::layout(&js, options.replicas).await {
                Ok(parts) => break parts,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "JetStream is not ready yet; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let mut inner = Inner { js, stream, commands, tail: tokio::sync::Mutex::new(None), indexer: None };
        if options.run_indexer {
            // The indexer holds its own handle (no indexer of its own), so dropping
            // the last clone of this log stops it.
            let log = NatsLog { inner: Arc::new(inner.clone_parts()) };
            inner.indexer = Some(tokio::spawn(index_forever(log)).abort_handle());
        }
        Ok(NatsLog { inner: Arc::new(inner) })
    }

    async fn layout(js: &jetstream::Context, replicas: usize) -> Result<(stream::Stream, kv::Store), LogError> {
        let stream = js
            .get_or_create_stream(stream::Config {
                name: EVENTS_STREAM.into(),
                subjects: vec!["behalf.ev.>".into()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                num_replicas: replicas,
                duplicate_window: DUPLICATE_WINDOW,
                // The log is append-only: nobody deletes or purges a commit.
                deny_delete: true,
                deny_purge: true,
                ..Default::default()
            })
            .await
            .map_err(|e| storage("cannot create the stream")(boxed(e)))?;
        let commands = match js.get_key_value(COMMANDS_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: COMMANDS_BUCKET.into(),
                    history: 1,
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| storage("cannot create the command index")(boxed(e)))?,
        };
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
            Err(e) => Err(storage("cannot read a commit")(boxed(e))),
        }
    }

    /// The last commit of a stream (its version) and its sequence; `None`: no stream.
    async fn last_of(&self, subject: &str) -> Result<Option<(Commit, u64)>, LogError> {
        match self.stream().raw_message_builder().last_by_subject(subject).send().await {
            Ok(m) => Ok(Some((decode_at(&m.payload, m.sequence)?, m.sequence))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(storage("cannot read a stream's last commit")(boxed(e))),
        }
    }

    /// The stream's last sequence, as the leader says now.
    async fn last_sequence(&self) -> Result<u64, LogError> {
        let info = self
            .inner
            .js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| storage("cannot read the stream's state")(boxed(e)))?;
        Ok(info.cached_info().state.last_sequence)
    }

    async fn read_tail(&self) -> Result<(u64, Hash), LogError> {
        let head = self.last_sequence().await?;
        if head == 0 {
            return Ok((0, GENESIS));
        }
        match self.commit_at(head).await? {
            Some((_, bytes)) => Ok((head, sha256(&bytes))),
            None => Err(LogError::Corrupt { position: head, what: "the last commit is missing".into() }),
        }
    }

    async fn index(&self, id: &CommandId, position: u64) -> Result<(), LogError> {
        self.inner
            .commands
            .put(command_key(id), position.to_string().into())
            .await
            .map(|_| ())
            .map_err(|e| storage("cannot index a command")(boxed(e)))
    }

    /// The first outcome of a command that is already in the log.
    fn first_outcome(first: &Commit, req: &AppendRequest) -> Result<Appended, AppendRefused> {
        if first.request_hash == req.request_hash {
            Ok(first.appended(true))
        } else {
            Err(AppendRefused::KeyReused { position: first.position })
        }
    }

    async fn append_now(&self, req: &AppendRequest) -> Result<Result<Appended, AppendRefused>, LogError> {
        let subject = event_subject(&req.stream);
        let mut tail = self.inner.tail.lock().await;
        // The first try carries the command id as `Nats-Msg-Id`, so a retry from
        // elsewhere within the window is answered as a duplicate by JetStream itself.
        // A clustered stream keeps the id of a publish it refused for a wrong last
        // sequence staged as "in process"; later tries therefore name their position.
        let mut msg_id = req.command_id.to_string();
        for attempt in 0..MAX_TAIL_RACES {
            let (head, prev) = match *tail {
                Some(t) => t,
                None => *tail.insert(self.read_tail().await?),
            };
            let (version, subject_seq) = match self.last_of(&subject).await? {
                // A retry whose first try was stored but not acknowledged (a node lost
                // mid-publish) and not yet indexed: it is the stream's last commit.
                Some((c, _)) if c.command_id == req.command_id => {
                    drop(tail);
                    self.index(&c.command_id, c.position).await?;
                    return Ok(Self::first_outcome(&c, req));
                }
                Some((c, seq)) => (c.last_version(), seq),
                None => (0, 0),
            };
            if let ExpectedVersion::Exact(v) = req.expected {
                if v != version {
                    return Ok(Err(AppendRefused::Conflict { expected: req.expected, actual: version }));
                }
            }
            let position = head + 1;
            if attempt > 0 {
                msg_id = format!("{}#{position}", req.command_id);
            }
            let bytes = record_for(req, position, version + 1, &prev)?;
            let hash = sha256(&bytes);
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
            headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, head.to_string().as_str());
            headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, subject_seq.to_string().as_str());
            let published = match self.inner.js.publish_with_headers(subject.clone(), headers, bytes.into()).await {
                Ok(ack) => ack.await,
                Err(e) => {
                    *tail = None;
                    return Err(storage("cannot publish a commit")(boxed(e)));
                }
            };
            match published {
                Ok(ack) if ack.duplicate => {
                    drop(tail);
                    let Some((first, _)) = self.commit_at(ack.sequence).await? else {
                        return Err(LogError::Corrupt {
                            position: ack.sequence,
                            what: "a duplicate's commit is missing".into(),
                        });
                    };
                    self.index(&first.command_id, first.position).await?;
                    return Ok(Self::first_outcome(&first, req));
                }
                Ok(ack) if ack.sequence == position => {
                    *tail = Some((position, hash));
                    drop(tail);
                    self.index(&req.command_id, position).await?;
                    return Ok(Ok(Appended {
                        position,
                        stream: req.stream.clone(),
                        first_version: version + 1,
                        last_version: version + req.events.len() as u64,
                        duplicate: false,
                    }));
                }
                Ok(ack) => {
                    *tail = None;
                    return Err(LogError::Corrupt {
                        position: ack.sequence,
                        what: format!("JetStream stored the commit for {position} at {}", ack.sequence),
                    });
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    // Another process appended first: read the tail again.
                    *tail = None;
                }
                Err(e) if is_in_process(&e) => {
                    // An earlier try under this id was refused (or is still being
                    // decided): read the tail again; a stored first try shows up as
                    // the stream's last commit above.
                    *tail = None;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    *tail = None;
                    return Err(storage("JetStream did not store a commit")(boxed(e)));
                }
            }
        }
        Err(LogError::Storage(format!("lost the race for the next position {MAX_TAIL_RACES} times")))
    }

    async fn read_range(&self, after: u64, count: usize, categories: Option<&[&str]>) -> Result<Vec<Commit>, LogError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut messages = ordered_from(self.stream(), after + 1).await?;
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let next = tokio::time::timeout(Duration::from_secs(30), messages.next())
                .await
                .map_err(|_| LogError::Storage(format!("reading from {} timed out", after + 1 + out.len() as u64)))?;
            let (seq, payload) = message_parts(next)?;
            out.push(Commit::decode_where(&payload, categories).and_then(|c| check_position(c, seq))?);
        }
        Ok(out)
    }
}

impl Inner {
    fn clone_parts(&self) -> Inner {
        Inner {
            js: self.js.clone(),
            stream: self.stream.clone(),
            commands: self.commands.clone(),
            tail: tokio::sync::Mutex::new(None),
            indexer: None,
        }
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
                .map_err(|e| storage("cannot create a reader")(boxed(e)))?;
            consumer.messages().await.map_err(|e| storage("cannot start a reader")(boxed(e)))
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

type OrderedItem = Option<Result<jetstream::Message, consumer::pull::OrderedError>>;

fn message_parts(next: OrderedItem) -> Result<(u64, bytes::Bytes), LogError> {
    let m = match next {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Err(storage("reading the log failed")(boxed(e))),
        None => return Err(LogError::Closed),
    };
    let seq = m.info().map_err(|e| LogError::Storage(format!("a message without metadata: {e}")))?.stream_sequence;
    Ok((seq, m.message.payload.clone()))
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

/// JetStream's "duplicate message id is in process" (10158).
fn is_in_process(e: &jetstream::context::PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|j| j.error_code() == jetstream::ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT)
}

fn is_not_found(e: &stream::RawMessageError) -> bool {
    matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound)
}

/// Keeps [`COMMANDS_BUCKET`] complete: from the checkpoint on, every commit's command
/// id has its key. Runs until the log is dropped.
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
    let checkpoint = commands
        .get(CHECKPOINT_KEY)
        .await
        .map_err(|e| storage("cannot read the indexer's checkpoint")(boxed(e)))?
        .and_then(|b| std::str::from_utf8(&b).ok().and_then(|s| s.parse::<u64>().ok()))
        .unwrap_or(0);
    let mut sub = log.subscribe_where(checkpoint, &[]);
    let mut since_saved = 0u32;
    loop {
        let c = sub.next().await?;
        let key = command_key(&c.command_id);
        let present = commands.get(&key).await.map_err(|e| storage("cannot read the command index")(boxed(e)))?;
        if present.is_none() {
            tracing::info!(position = c.position, "indexing a command the appender left out");
            log.index(&c.command_id, c.position).await?;
        }
        since_saved += 1;
        if since_saved >= 256 || sub.caught_up() {
            commands
                .put(CHECKPOINT_KEY, c.position.to_string().into())
                .await
                .map_err(|e| storage("cannot save the indexer's checkpoint")(boxed(e)))?;
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
        if let Some(first) = self.find_command(&req.command_id).await? {
            return Ok(Self::first_outcome(&first, &req));
        }
        self.append_now(&req).await
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
                Err(e) => return Err(storage("cannot read a stream")(boxed(e))),
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

    async fn find_command(&self, id: &CommandId) -> Result<Option<Commit>, LogError> {
        let key = command_key(id);
        let Some(value) =
            self.inner.commands.get(key).await.map_err(|e| storage("cannot read the command index")(boxed(e)))?
        else {
            return Ok(None);
        };
        let position = std::str::from_utf8(&value)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| LogError::Codec(format!("the index entry of command {id} is not a position")))?;
        match self.commit_at(position).await? {
            Some((c, _)) if &c.command_id == id => Ok(Some(c)),
            Some(_) | None => Err(LogError::Corrupt {
                position,
                what: format!("the command index points command {id} at a commit of another command"),
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
        let mut messages = ordered_from(self.stream(), 1).await?;
        let (mut good, mut prev) = (0u64, GENESIS);
        while good < head {
            let expected = good + 1;
            let bad = |what: String| Ok(VerifyReport { verified: good, first_bad: Some((expected, what)) });
            let (seq, payload) = message_parts(messages.next().await)?;
            if seq != expected {
                return bad(format!("commit {expected} is missing (the next stored is {seq})"));
            }
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

    async fn try_next(&mut self) -> Result<Commit, LogError> {
        let messages = match &mut self.messages {
            Some(m) => m,
            None => self.messages.insert(ordered_from(self.log.stream(), self.at + 1).await?),
        };
        let m = match messages.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(storage("the subscription failed")(boxed(e))),
            None => return Err(LogError::Closed),
        };
        let info = m.info().map_err(|e| LogError::Storage(format!("a message without metadata: {e}")))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq != self.at + 1 {
            return Err(LogError::Corrupt { position: self.at + 1, what: format!("the next stored commit is {seq}") });
        }
        let c = Commit::decode_where(&m.message.payload, self.categories).and_then(|c| check_position(c, seq))?;
        self.at = seq;
        self.pending = pending;
        Ok(c)
    }
}

impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Result<Commit, LogError> {
        let mut failures = 0u32;
        loop {
            match self.try_next().await {
                Ok(c) => return Ok(c),
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
