//! The sled event log: the writer thread (group commit), reads, subscriptions, the
//! chain walk on open.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use behalf_domain::{CommandKey, StreamId};
use behalf_log::codec::sha256;
use behalf_log::{
    record_for, AppendRefused, AppendRequest, Appended, Commit, EventLog, ExpectedVersion, Hash, LogError,
    Subscription, VerifyReport, GENESIS,
};
use tokio::sync::{oneshot, watch};

/// The most appends one group commit takes.
pub const MAX_BATCH: usize = 4096;

const LOG: u8 = b'L';
const STREAM: u8 = b'S';
/// The command index before ids were per tenant (keyed by the bare command id); a log
/// that still has it is indexed again on open (see [`reindex_commands`]).
const OLD_COMMAND: u8 = b'C';
/// The command index: `K<tenant>/<command id>` → position and request digest (R26).
const COMMAND: u8 = b'K';
const HEAD: &[u8] = b"H";

/// How to open a store.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// On a broken chain, drop every commit after the last good one (kept aside in
    /// the `quarantine` tree) instead of refusing to start.
    pub stop_at_last_good: bool,
}

/// What opening found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    pub head: u64,
    /// With `stop_at_last_good`: the first bad position and what was wrong; every
    /// commit from there on was moved to quarantine.
    pub truncated: Option<(u64, String)>,
}

type Reply = oneshot::Sender<Result<Result<Appended, AppendRefused>, LogError>>;

struct Job {
    req: AppendRequest,
    reply: Reply,
}

struct Inner {
    db: sled::Db,
    tx: Option<mpsc::Sender<Job>>,
    head: watch::Receiver<u64>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has answered everything queued.
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The embedded event log. Cheap to clone.
#[derive(Clone)]
pub struct SledLog {
    inner: Arc<Inner>,
}

fn storage(e: sled::Error) -> LogError {
    LogError::Storage(e.to_string())
}

fn log_key(pos: u64) -> [u8; 9] {
    let mut k = [LOG; 9];
    k[1..].copy_from_slice(&pos.to_be_bytes());
    k
}

fn stream_prefix(stream: &StreamId) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.0.len() + 2);
    k.push(STREAM);
    k.extend_from_slice(stream.0.as_bytes());
    k.push(0);
    k
}

fn command_key(key: &CommandKey) -> Vec<u8> {
    let mut k = vec![COMMAND];
    k.extend_from_slice(key.to_string().as_bytes());
    k
}

fn u64_at(v: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&v[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Opens sled, waiting a little for the directory's lock: sled's own IO threads can
/// hold it for a moment after the last handle of a previous open was dropped.
pub(crate) fn open_db(path: &Path) -> Result<sled::Db, LogError> {
    let mut pause = std::time::Duration::from_millis(2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(storage(e)),
        }
    }
}

/// The head entry: position and hash of the last commit.
fn read_head(tree: &sled::Tree) -> Result<(u64, Hash), LogError> {
    match tree.get(HEAD).map_err(storage)? {
        None => Ok((0, GENESIS)),
        Some(v) if v.len() == 40 => {
            let mut h = GENESIS;
            h.copy_from_slice(&v[8..]);
            Ok((u64_at(&v, 0), h))
        }
        Some(_) => Err(LogError::Corrupt { position: 0, what: "the head record is malformed".into() }),
    }
}

fn head_value(pos: u64, hash: &Hash) -> Vec<u8> {
    let mut v = pos.to_be_bytes().to_vec();
    v.extend_from_slice(hash);
    v
}

/// The stream's last version, from its index (no durable-head filter: the writer's view).
fn stream_version_in(tree: &sled::Tree, stream: &StreamId) -> Result<u64, LogError> {
    Ok(match tree.scan_prefix(stream_prefix(stream)).next_back() {
        Some(kv) => {
            let (_, v) = kv.map_err(storage)?;
            u64_at(&v, 8)
        }
        None => 0,
    })
}

/// The outcome of walking the chain: the last good commit and, if the walk stopped
/// early, the first bad position and what is wrong with it.
struct ChainWalk {
    good: u64,
    good_hash: Hash,
    bad: Option<(u64, String)>,
}

/// The `prev_hash` a commit records, or `None` if it does not decode.
fn recorded_prev(tree: &sled::Tree, pos: u64) -> Result<Option<Hash>, LogError> {
    Ok(tree.get(log_key(pos)).map_err(storage)?.and_then(|v| Commit::decode(&v).ok()).map(|c| c.prev_hash))
}

/// Walks the chain from position 1: every record decodes, sits at its own key, links
/// to the one before, and the head entry names the last one. A broken link between
/// N and N+1 is blamed on N when N+1 itself is vouched for by its successor (N's bytes
/// changed), and on N+1 otherwise.
fn walk_chain(tree: &sled::Tree) -> Result<ChainWalk, LogError> {
    walk_chain_with(tree, &mut |_, _| {})
}

fn walk_chain_with(tree: &sled::Tree, progress: &mut dyn FnMut(u64, u64)) -> Result<ChainWalk, LogError> {
    let (head, head_hash) = read_head(tree)?;
    // Good commits so far, and the hash and the hash before the last one.
    let (mut good, mut prev, mut before_prev) = (0u64, GENESIS, GENESIS);
    let stop =
        |good: u64, hash: Hash, pos: u64, what: String| Ok(ChainWalk { good, good_hash: hash, bad: Some((pos, what)) });
    for kv in tree.range(log_key(1)..=log_key(u64::MAX)) {
        let (k, v) = kv.map_err(storage)?;
        let pos = u64_at(&k, 1);
        let expected = good + 1;
        if pos != expected {
            return stop(good, prev, expected, format!("commit {expected} is missing (the next stored is {pos})"));
        }
        let commit = match Commit::decode(&v) {
            Ok(c) => c,
            Err(e) => return stop(good, prev, pos, format!("record does not decode: {e}")),
        };
        if commit.position != pos {
            return stop(good, prev, pos, format!("record at {pos} says it is commit {}", commit.position));
        }
        if commit.prev_hash != prev {
            let successor = if pos == head { Some(head_hash) } else { recorded_prev(tree, pos + 1)? };
            if good > 0 && successor == Some(sha256(&v)) {
                let what = format!("commit {good}'s contents do not match the hash commit {pos} recorded");
                return stop(good - 1, before_prev, good, what);
            }
            return stop(good, prev, pos, "hash chain broken: the previous hash does not match".into());
        }
        before_prev = prev;
        prev = sha256(&v);
        good = pos;
        if pos.is_multiple_of(4096) {
            progress(pos, head);
        }
    }
    if good < head {
        return stop(good, prev, good + 1, format!("the log ends at {good} but the head says {head}"));
    }
    if good > head {
        return stop(head, GENESIS, head + 1, format!("commits after the head ({head}) are present"));
    }
    if prev != head_hash {
        return stop(
            good.saturating_sub(1),
            before_prev,
            good,
            "the last commit does not match the head's hash".into(),
        );
    }
    Ok(ChainWalk { good, good_hash: prev, bad: None })
}

/// Moves every commit after `good` to quarantine and rebuilds the indexes.
fn truncate_after(db: &sled::Db, tree: &sled::Tree, good: u64) -> Result<Hash, LogError> {
    let quarantine = db.open_tree("quarantine").map_err(storage)?;
    let mut batch = sled::Batch::default();
    let mut q = sled::Batch::default();
    for kv in tree.range(log_key(good + 1)..=log_key(u64::MAX)) {
        let (k, v) = kv.map_err(storage)?;
        q.insert(k.clone(), v);
        batch.remove(k);
    }
    for prefix in [STREAM, COMMAND, OLD_COMMAND] {
        for kv in tree.scan_prefix([prefix]) {
            batch.remove(kv.map_err(storage)?.0);
        }
    }
    let mut last_hash = GENESIS;
    for kv in tree.range(log_key(1)..=log_key(good)) {
        let (_, v) = kv.map_err(storage)?;
        let c = Commit::decode(&v)?;
        index_commit(&mut batch, &c.stream, c.first_version, c.last_version(), &c.key(), c.position, &c.request_hash);
        last_hash = sha256(&v);
    }
    batch.insert(HEAD, head_value(good, &last_hash));
    quarantine.apply_batch(q).map_err(storage)?;
    tree.apply_batch(batch).map_err(storage)?;
    db.flush().map_err(storage)?;
    Ok(last_hash)
}

fn index_commit(
    batch: &mut sled::Batch,
    stream: &StreamId,
    first: u64,
    last: u64,
    command: &CommandKey,
    pos: u64,
    request_hash: &Hash,
) {
    let mut sk = stream_prefix(stream);
    sk.extend_from_slice(&first.to_be_bytes());
    let mut sv = pos.to_be_bytes().to_vec();
    sv.extend_from_slice(&last.to_be_bytes());
    batch.insert(sk, sv);
    let mut cv = pos.to_be_bytes().to_vec();
    cv.extend_from_slice(request_hash);
    batch.insert(command_key(command), cv);
}

/// A log written before command ids were per tenant has its index keyed by the bare
/// id: index every commit again under its key (tenant from the record's actor, so the
/// old commits mean what they meant), in one batch with the old entries' removal.
fn reindex_commands(db: &sled::Db, tree: &sled::Tree) -> Result<(), LogError> {
    if tree.scan_prefix([OLD_COMMAND]).next().is_none() {
        return Ok(());
    }
    tracing::info!("indexing command ids per tenant (a log written by an earlier version)");
    let mut batch = sled::Batch::default();
    for kv in tree.scan_prefix([OLD_COMMAND]) {
        batch.remove(kv.map_err(storage)?.0);
    }
    for kv in tree.range(log_key(1)..=log_key(u64::MAX)) {
        let c = Commit::decode(&kv.map_err(storage)?.1)?;
        let mut cv = c.position.to_be_bytes().to_vec();
        cv.extend_from_slice(&c.request_hash);
        batch.insert(command_key(&c.key()), cv);
    }
    tree.apply_batch(batch).map_err(storage)?;
    db.flush().map_err(storage)?;
    Ok(())
}

/// Walks the hash chain of the log in `path` without opening it for writing: every
/// record decodes (through upcasters), sits at its key, and links to the one before.
/// `progress(position, head)` as it goes.
pub fn verify_dir(path: impl AsRef<Path>, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport, LogError> {
    let db = open_db(path.as_ref())?;
    let walk = walk_chain_with(&db, &mut progress)?;
    Ok(VerifyReport { verified: walk.good, first_bad: walk.bad })
}

impl SledLog {
    /// Opens (or creates) the log in `path`, walking the hash chain first.
    pub fn open(path: impl AsRef<Path>, options: OpenOptions) -> Result<(SledLog, OpenReport), LogError> {
        let path = path.as_ref().to_path_buf();
        let db = open_db(&path)?;
        let tree: sled::Tree = (*db).clone();
        let walk = walk_chain(&tree)?;
        let (mut head, mut head_hash) = (walk.good, walk.good_hash);
        let mut report = OpenReport { head, truncated: None };
        if let Some((position, what)) = walk.bad {
            if !options.stop_at_last_good {
                return Err(LogError::Corrupt { position, what });
            }
            tracing::warn!(position, %what, "broken log: stopping at the last good commit {}", position - 1);
            head = position - 1;
            head_hash = truncate_after(&db, &tree, head)?;
            report = OpenReport { head, truncated: Some((position, what)) };
        }
        reindex_commands(&db, &tree)?;
        let (head_tx, head_rx) = watch::channel(head);
        let (tx, rx) = mpsc::channel();
        let writer = Writer { tree: tree.clone(), db: db.clone(), head, head_hash, versions: HashMap::new(), head_tx };
        let handle = std::thread::Builder::new()
            .name("behalf-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::Storage(format!("cannot start the writer thread: {e}")))?;
        let inner = Inner { db, tx: Some(tx), head: head_rx, writer: Some(handle), path };
        Ok((SledLog { inner: Arc::new(inner) }, report))
    }

    /// The directory this log lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn durable_head(&self) -> u64 {
        *self.inner.head.borrow()
    }

    fn tree(&self) -> &sled::Tree {
        &self.inner.db
    }

    fn commit_at(&self, pos: u64) -> Result<Commit, LogError> {
        let bytes = self
            .tree()
            .get(log_key(pos))
            .map_err(storage)?
            .ok_or_else(|| LogError::Corrupt { position: pos, what: "indexed commit is missing".into() })?;
        Commit::decode(&bytes).map_err(|e| LogError::Corrupt { position: pos, what: e.to_string() })
    }

    /// Up to `limit` raw records after `after`, below the durable head.
    pub fn read_raw(&self, after: u64, limit: usize) -> Result<Vec<(u64, sled::IVec)>, LogError> {
        let head = self.durable_head();
        if after >= head {
            return Ok(Vec::new());
        }
        self.tree()
            .range(log_key(after + 1)..=log_key(head))
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (u64_at(&k, 1), v)).map_err(storage))
            .collect()
    }

    fn read_all_blocking(
        &self,
        after: u64,
        limit: usize,
        categories: Option<&[&str]>,
    ) -> Result<Vec<Commit>, LogError> {
        self.read_raw(after, limit)?
            .into_iter()
            .map(|(pos, v)| {
                Commit::decode_where(&v, categories)
                    .map_err(|e| LogError::Corrupt { position: pos, what: e.to_string() })
            })
            .collect()
    }

    async fn read_all_where(
        &self,
        after: u64,
        limit: usize,
        categories: Option<&'static [&'static str]>,
    ) -> Result<Vec<Commit>, LogError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_all_blocking(after, limit, categories))
            .await
            .map_err(|e| LogError::Storage(format!("reader task: {e}")))?
    }
}

struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    head: u64,
    head_hash: Hash,
    /// Stream versions the writer has seen; a cache over the `S` index.
    versions: HashMap<StreamId, u64>,
    head_tx: watch::Sender<u64>,
}

/// What the writer decided for one job of a group.
enum Decision {
    Answer(Result<Result<Appended, AppendRefused>, LogError>),
    /// Appended in this group: answered after the flush.
    Written(Appended),
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            self.commit_group(jobs);
        }
    }

    fn stream_version(&mut self, stream: &StreamId) -> Result<u64, LogError> {
        if let Some(v) = self.versions.get(stream) {
            return Ok(*v);
        }
        let v = stream_version_in(&self.tree, stream)?;
        if self.versions.len() >= 1 << 18 {
            self.versions.clear();
        }
        self.versions.insert(stream.clone(), v);
        Ok(v)
    }

    fn commit_group(&mut self, jobs: Vec<Job>) {
        let (start_head, start_hash) = (self.head, self.head_hash);
        let mut batch = sled::Batch::default();
        let mut in_group: HashMap<CommandKey, (Hash, Appended)> = HashMap::new();
        let mut touched: HashMap<StreamId, u64> = HashMap::new();
        let mut decisions = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let d = self.decide(&job.req, &mut batch, &mut in_group, &mut touched);
            decisions.push(d);
        }
        let wrote = decisions.iter().any(|d| matches!(d, Decision::Written(_)));
        let durable = if wrote {
            batch.insert(HEAD, head_value(self.head, &self.head_hash));
            self.tree.apply_batch(batch).and_then(|()| self.db.flush().map(|_| ())).map_err(storage)
        } else {
            Ok(())
        };
        match durable {
            Ok(()) => {
                for (s, v) in touched {
                    self.versions.insert(s, v);
                }
                self.head_tx.send_replace(self.head);
            }
            Err(ref e) => {
                tracing::error!(error = %e, "group commit failed; its appends are answered with the error");
                // What was applied may or may not be on disk: reload the writer's view.
                self.versions.clear();
                match read_head(&self.tree) {
                    Ok((h, hash)) if h >= start_head => (self.head, self.head_hash) = (h, hash),
                    Ok(_) | Err(_) => (self.head, self.head_hash) = (start_head, start_hash),
                }
            }
        }
        for (job, d) in jobs.into_iter().zip(decisions) {
            let answer = match (d, &durable) {
                (Decision::Answer(a), _) => a,
                (Decision::Written(a), Ok(())) => Ok(Ok(a)),
                (Decision::Written(_), Err(e)) => Err(LogError::Storage(e.to_string())),
            };
            let _ = job.reply.send(answer);
        }
    }

    fn decide(
        &mut self,
        req: &AppendRequest,
        batch: &mut sled::Batch,
        in_group: &mut HashMap<CommandKey, (Hash, Appended)>,
        touched: &mut HashMap<StreamId, u64>,
    ) -> Decision {
        if req.events.is_empty() {
            return Decision::Answer(Err(LogError::Codec("a commit needs at least one event".into())));
        }
        // R26 first: a retried command answers its first outcome whatever the version now is.
        let key = req.key();
        if let Some((hash, first)) = in_group.get(&key) {
            return if *hash == req.request_hash {
                Decision::Written(Appended { duplicate: true, ..first.clone() })
            } else {
                Decision::Answer(Ok(Err(AppendRefused::KeyReused { position: first.position })))
            };
        }
        match self.tree.get(command_key(&key)) {
            Ok(Some(v)) if v.len() == 40 => {
                let pos = u64_at(&v, 0);
                if v[8..] != req.request_hash {
                    return Decision::Answer(Ok(Err(AppendRefused::KeyReused { position: pos })));
                }
                return Decision::Answer(self.first_outcome(pos));
            }
            Ok(Some(_)) => {
                return Decision::Answer(Err(LogError::Corrupt {
                    position: 0,
                    what: "malformed command index entry".into(),
                }))
            }
            Ok(None) => {}
            Err(e) => return Decision::Answer(Err(storage(e))),
        }
        let current = match touched.get(&req.stream) {
            Some(v) => *v,
            None => match self.stream_version(&req.stream) {
                Ok(v) => v,
                Err(e) => return Decision::Answer(Err(e)),
            },
        };
        if let ExpectedVersion::Exact(v) = req.expected {
            if v != current {
                return Decision::Answer(Ok(Err(AppendRefused::Conflict { expected: req.expected, actual: current })));
            }
        }
        let pos = self.head + 1;
        let first = current + 1;
        let last = current + req.events.len() as u64;
        let bytes = match record_for(req, pos, first, &self.head_hash) {
            Ok(b) => b,
            Err(e) => return Decision::Answer(Err(e)),
        };
        let hash = sha256(&bytes);
        batch.insert(&log_key(pos), bytes);
        index_commit(batch, &req.stream, first, last, &key, pos, &req.request_hash);
        self.head = pos;
        self.head_hash = hash;
        touched.insert(req.stream.clone(), last);
        let appended = Appended {
            position: pos,
            stream: req.stream.clone(),
            first_version: first,
            last_version: last,
            duplicate: false,
        };
        in_group.insert(key, (req.request_hash, appended.clone()));
        Decision::Written(appended)
    }

    fn first_outcome(&self, pos: u64) -> Result<Result<Appended, AppendRefused>, LogError> {
        let bytes = self
            .tree
            .get(log_key(pos))
            .map_err(storage)?
            .ok_or_else(|| LogError::Corrupt { position: pos, what: "indexed commit is missing".into() })?;
        let c = Commit::decode(&bytes)?;
        Ok(Ok(c.appended(true)))
    }
}

impl EventLog for SledLog {
    type Subscription = SledSubscription;

    async fn append(&self, req: AppendRequest) -> Result<Result<Appended, AppendRefused>, LogError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(LogError::Closed)?;
        tx.send(Job { req, reply }).map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<Commit>, LogError> {
        let head = self.durable_head();
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(stream_prefix(stream)) {
            let (_, v) = kv.map_err(storage)?;
            let (pos, last) = (u64_at(&v, 0), u64_at(&v, 8));
            if pos <= head && last >= from_version {
                out.push(self.commit_at(pos)?);
            }
        }
        Ok(out)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, LogError> {
        let head = self.durable_head();
        for kv in self.tree().scan_prefix(stream_prefix(stream)).rev() {
            let (_, v) = kv.map_err(storage)?;
            if u64_at(&v, 0) <= head {
                return Ok(u64_at(&v, 8));
            }
        }
        Ok(0)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<Commit>, LogError> {
        self.read_all_where(after, limit, None).await
    }

    async fn head(&self) -> Result<u64, LogError> {
        Ok(self.durable_head())
    }

    async fn find_command(&self, key: &CommandKey) -> Result<Option<Commit>, LogError> {
        match self.tree().get(command_key(key)).map_err(storage)? {
            Some(v) if v.len() == 40 && u64_at(&v, 0) <= self.durable_head() => {
                Ok(Some(self.commit_at(u64_at(&v, 0))?))
            }
            Some(_) | None => Ok(None),
        }
    }

    fn subscribe(&self, after: u64) -> SledSubscription {
        SledSubscription {
            log: self.clone(),
            head: self.inner.head.clone(),
            next: after + 1,
            buf: VecDeque::new(),
            categories: None,
        }
    }

    fn subscribe_where(&self, after: u64, categories: &'static [&'static str]) -> SledSubscription {
        SledSubscription { categories: Some(categories), ..self.subscribe(after) }
    }

    async fn verify(&self) -> Result<VerifyReport, LogError> {
        let tree = self.tree().clone();
        let walk = tokio::task::spawn_blocking(move || walk_chain(&tree))
            .await
            .map_err(|e| LogError::Storage(format!("verify task: {e}")))??;
        Ok(VerifyReport { verified: walk.good, first_bad: walk.bad })
    }
}

/// A subscription on the embedded log.
pub struct SledSubscription {
    log: SledLog,
    head: watch::Receiver<u64>,
    next: u64,
    buf: VecDeque<Commit>,
    categories: Option<&'static [&'static str]>,
}

impl Subscription for SledSubscription {
    async fn next(&mut self) -> Result<Commit, LogError> {
        loop {
            if let Some(c) = self.buf.pop_front() {
                return Ok(c);
            }
            let head = *self.head.borrow_and_update();
            if self.next <= head {
                let batch = self.log.read_all_where(self.next - 1, 1024, self.categories).await?;
                if let Some(last) = batch.last() {
                    self.next = last.position + 1;
                }
                self.buf.extend(batch);
                continue;
            }
            self.head.changed().await.map_err(|_| LogError::Closed)?;
        }
    }
}
