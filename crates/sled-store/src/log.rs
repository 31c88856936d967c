//! The sled event log: opening (with `chain.rs`, the chain walk), the writer thread
//! (`writer.rs`, group commit), reads and subscriptions.

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

mod chain;
mod writer;

pub use chain::verify_dir;
use chain::{
    checkpoint, record_walk, recorded_break, recorded_prev, reindex_commands, truncate_after, walk_chain,
    walk_chain_from,
};
use writer::Writer;

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
/// The chain checkpoint: the last position a walk verified, and its hash.
const VERIFIED: &[u8] = b"V";
/// A break a walk found: its position and what was wrong.
const BROKEN: &[u8] = b"B";

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
    /// When the append was handed to the writer (its wait for a group is a stage).
    queued: std::time::Instant,
}

struct Inner {
    db: sled::Db,
    /// Group commits written, and the commits in them (for the group size).
    groups: Arc<GroupCounters>,
    /// The last durable directory commit (the head at open: not known before).
    directory_head: Arc<std::sync::atomic::AtomicU64>,
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

/// How the writer's groups turned out.
#[derive(Default)]
pub(crate) struct GroupCounters {
    pub(crate) groups: std::sync::atomic::AtomicU64,
    pub(crate) commits: std::sync::atomic::AtomicU64,
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

/// How much of its pages each kind of store keeps in memory (sled's `cache_capacity`,
/// which sled counts in its own page sizes: resident memory runs somewhat above it).
/// sled's default is 1 GiB for every database, six per data directory: the cache then
/// grows with the data for hours (a soak saw ~20 MiB a minute at 100 commits a second).
/// The log's recent records and indexes and the views' live rows are what commands and
/// reads touch; older pages are read again from the file system's cache.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cache {
    Log,
    Views,
    /// Queues, tokens, keys, webhooks.
    Small,
}

impl Cache {
    fn bytes(self) -> u64 {
        const MIB: u64 = 1024 * 1024;
        match self {
            Cache::Log => 128 * MIB,
            Cache::Views => 64 * MIB,
            Cache::Small => 16 * MIB,
        }
    }
}

/// Opens sled, waiting a little for the directory's lock: sled's own IO threads can
/// hold it for a moment after the last handle of a previous open was dropped.
pub(crate) fn open_db(path: &Path, cache: Cache) -> Result<sled::Db, LogError> {
    let mut pause = std::time::Duration::from_millis(2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new().path(path).cache_capacity(cache.bytes()).open() {
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

impl SledLog {
    /// Opens (or creates) the log in `path`, walking the hash chain from its last
    /// verified checkpoint first (the whole chain with `stop_at_last_good`). A log on
    /// which a walk found a break refuses to open until it is cut back.
    pub fn open(path: impl AsRef<Path>, options: OpenOptions) -> Result<(SledLog, OpenReport), LogError> {
        let path = path.as_ref().to_path_buf();
        let db = open_db(&path, Cache::Log)?;
        let tree: sled::Tree = (*db).clone();
        let walk = if options.stop_at_last_good {
            walk_chain(&tree)?
        } else {
            if let Some((position, what)) = recorded_break(&tree)? {
                return Err(LogError::Corrupt { position, what });
            }
            walk_chain_from(&tree, checkpoint(&tree)?, None, &mut |_, _| true)?
        };
        let (mut head, mut head_hash) = (walk.good, walk.good_hash);
        let mut report = OpenReport { head, truncated: None };
        if let Some((position, what)) = walk.bad.clone() {
            if !options.stop_at_last_good {
                return Err(LogError::Corrupt { position, what });
            }
            tracing::warn!(position, %what, "broken log: stopping at the last good commit {}", position - 1);
            head = position - 1;
            head_hash = truncate_after(&db, &tree, head)?;
            report = OpenReport { head, truncated: Some((position, what)) };
        }
        reindex_commands(&db, &tree)?;
        if report.truncated.is_none() {
            record_walk(&db, &tree, &walk)?;
        }
        let (head_tx, head_rx) = watch::channel(head);
        let (tx, rx) = mpsc::channel();
        let groups = Arc::new(GroupCounters::default());
        let directory_head = Arc::new(std::sync::atomic::AtomicU64::new(head));
        let writer = Writer {
            tree: tree.clone(),
            db: db.clone(),
            head,
            head_hash,
            versions: HashMap::new(),
            head_tx,
            groups: Arc::clone(&groups),
            last_directory: head,
            directory_head: Arc::clone(&directory_head),
        };
        let handle = std::thread::Builder::new()
            .name("behalf-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::Storage(format!("cannot start the writer thread: {e}")))?;
        let inner = Inner { db, groups, directory_head, tx: Some(tx), head: head_rx, writer: Some(handle), path };
        Ok((SledLog { inner: Arc::new(inner) }, report))
    }

    /// Walks the whole chain of this (running) log up to the head it has when the walk
    /// begins, calling `progress(position, head)` as it goes (answering `false` ends
    /// the walk there). A good walk, whole or ended early, moves the chain checkpoint
    /// forward (the next open starts there); a break is recorded, and the log will not
    /// open again until it is cut back (`stop_at_last_good`).
    pub async fn verify_with(
        &self,
        mut progress: impl FnMut(u64, u64) -> bool + Send + 'static,
    ) -> Result<VerifyReport, LogError> {
        let (db, tree, at) = (self.inner.db.clone(), self.tree().clone(), self.durable_head());
        let walk = tokio::task::spawn_blocking(move || {
            // The durable head (not the head entry, which may name a group still being
            // flushed), with the hash that vouches for its record: the head entry's, or
            // the one its successor recorded.
            let (entry, entry_hash) = read_head(&tree)?;
            let hash = match at {
                0 => GENESIS,
                _ if entry == at => entry_hash,
                _ => recorded_prev(&tree, at + 1)?.unwrap_or(GENESIS),
            };
            let head = (at, hash);
            let walk = walk_chain_from(&tree, (0, GENESIS), Some(head), &mut progress)?;
            record_walk(&db, &tree, &walk)?;
            Ok::<_, LogError>(walk)
        })
        .await
        .map_err(|e| LogError::Storage(format!("verify task: {e}")))??;
        Ok(VerifyReport { verified: walk.good, first_bad: walk.bad })
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

impl EventLog for SledLog {
    type Subscription = SledSubscription;

    async fn append(&self, req: AppendRequest) -> Result<Result<Appended, AppendRefused>, LogError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(LogError::Closed)?;
        tx.send(Job { req, reply, queued: std::time::Instant::now() }).map_err(|_| LogError::Closed)?;
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
        self.verify_with(|_, _| true).await
    }

    fn directory_head(&self) -> Option<u64> {
        Some(self.inner.directory_head.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let verified = checkpoint(self.tree()).map_or(0, |(at, _)| at);
        vec![
            (
                "behalf_log_chain_verified_position",
                "The last log position a walk of the hash chain verified (from position 1).",
                verified,
            ),
            (
                behalf_log::GROUPS_METRIC,
                "Group commits written (one flush each).",
                self.inner.groups.groups.load(Relaxed),
            ),
            (
                behalf_log::GROUPED_COMMITS_METRIC,
                "Commits written in group commits.",
                self.inner.groups.commits.load(Relaxed),
            ),
        ]
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
