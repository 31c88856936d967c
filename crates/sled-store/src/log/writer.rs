//! The one writer thread: takes appends in groups (up to [`MAX_BATCH`]), checks each
//! against the expected version and the command index, writes the group in one
//! `sled::Batch`, flushes once, and only then answers every append of the group.

use behalf_log::metrics::Stage;

use super::chain::index_commit;
use super::{
    command_key, head_value, log_key, mpsc, read_head, record_for, sha256, storage, stream_version_in, u64_at, watch,
    AppendRefused, AppendRequest, Appended, Arc, CommandKey, Commit, ExpectedVersion, GroupCounters, Hash, HashMap,
    Job, LogError, StreamId, HEAD, MAX_BATCH,
};

pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    pub(super) head: u64,
    pub(super) head_hash: Hash,
    /// Stream versions the writer has seen; a cache over the `S` index.
    pub(super) versions: HashMap<StreamId, u64>,
    pub(super) head_tx: watch::Sender<u64>,
    pub(super) groups: Arc<GroupCounters>,
    /// The last directory commit written (durable or in the group being written).
    pub(super) last_directory: u64,
    /// The last durable directory commit, for [`EventLog::directory_head`].
    pub(super) directory_head: Arc<std::sync::atomic::AtomicU64>,
}

/// What the writer's admission check made of one append of a group: written into the
/// group's batch, or answered at once (not to be confused with the domain's `decide`).
pub(super) enum Admission {
    Answer(Result<Result<Appended, AppendRefused>, LogError>),
    /// Appended in this group: answered after the flush.
    Written(Appended),
}

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Job>) {
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
        let started = std::time::Instant::now();
        for job in &jobs {
            Stage::AppendQueue.record(started.saturating_duration_since(job.queued));
        }
        let (start_head, start_hash) = (self.head, self.head_hash);
        let mut batch = sled::Batch::default();
        let mut in_group: HashMap<CommandKey, (Hash, Appended)> = HashMap::new();
        let mut touched: HashMap<StreamId, u64> = HashMap::new();
        let mut admissions = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let d = self.admit(&job.req, &mut batch, &mut in_group, &mut touched);
            admissions.push(d);
        }
        let wrote = admissions.iter().any(|d| matches!(d, Admission::Written(_)));
        let durable = if wrote {
            batch.insert(HEAD, head_value(self.head, &self.head_hash));
            self.tree.apply_batch(batch).and_then(|()| self.db.flush().map(|_| ())).map_err(storage)
        } else {
            Ok(())
        };
        match durable {
            Ok(()) => {
                if wrote {
                    use std::sync::atomic::Ordering::Relaxed;
                    let commits =
                        admissions.iter().filter(|d| matches!(d, Admission::Written(a) if !a.duplicate)).count();
                    self.groups.groups.fetch_add(1, Relaxed);
                    self.groups.commits.fetch_add(commits as u64, Relaxed);
                    behalf_log::metrics::group_size(commits);
                    let took = started.elapsed();
                    for _ in 0..commits {
                        Stage::Commit.record(took);
                    }
                }
                for (s, v) in touched {
                    self.versions.insert(s, v);
                }
                self.directory_head.store(self.last_directory, std::sync::atomic::Ordering::SeqCst);
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
                self.last_directory = self.last_directory.min(self.head);
            }
        }
        for (job, d) in jobs.into_iter().zip(admissions) {
            let answer = match (d, &durable) {
                (Admission::Answer(a), _) => a,
                (Admission::Written(a), Ok(())) => Ok(Ok(a)),
                (Admission::Written(_), Err(e)) => Err(LogError::Storage(e.to_string())),
            };
            let _ = job.reply.send(answer);
        }
    }

    /// Admits one append into the group (R26, then R27, then the directory position),
    /// or answers it.
    fn admit(
        &mut self,
        req: &AppendRequest,
        batch: &mut sled::Batch,
        in_group: &mut HashMap<CommandKey, (Hash, Appended)>,
        touched: &mut HashMap<StreamId, u64>,
    ) -> Admission {
        if req.events.is_empty() {
            return Admission::Answer(Err(LogError::Codec("a commit needs at least one event".into())));
        }
        // R26 first: a retried command answers its first outcome whatever the version now is.
        let key = req.key();
        if let Some((hash, first)) = in_group.get(&key) {
            return if *hash == req.request_hash {
                Admission::Written(Appended { duplicate: true, ..first.clone() })
            } else {
                Admission::Answer(Ok(Err(AppendRefused::KeyReused { position: first.position })))
            };
        }
        match self.tree.get(command_key(&key)) {
            Ok(Some(v)) if v.len() == 40 => {
                let pos = u64_at(&v, 0);
                return Admission::Answer(self.stored(pos).map(|first| first.first_outcome(&req.request_hash)));
            }
            Ok(Some(_)) => {
                return Admission::Answer(Err(LogError::Corrupt {
                    position: 0,
                    what: "malformed command index entry".into(),
                }))
            }
            Ok(None) => {}
            Err(e) => return Admission::Answer(Err(storage(e))),
        }
        let current = match touched.get(&req.stream) {
            Some(v) => *v,
            None => match self.stream_version(&req.stream) {
                Ok(v) => v,
                Err(e) => return Admission::Answer(Err(e)),
            },
        };
        if let ExpectedVersion::Exact(v) = req.expected {
            if v != current {
                return Admission::Answer(Ok(Err(AppendRefused::Conflict { expected: req.expected, actual: current })));
            }
        }
        // The decision's directory must still be the directory now.
        if let Some(at) = req.directory_at {
            if self.last_directory > at {
                return Admission::Answer(Ok(Err(AppendRefused::DirectoryMoved { position: self.last_directory })));
            }
        }
        let pos = self.head + 1;
        let first = current + 1;
        let last = current + req.events.len() as u64;
        let bytes = match record_for(req, pos, first, &self.head_hash) {
            Ok(b) => b,
            Err(e) => return Admission::Answer(Err(e)),
        };
        let hash = sha256(&bytes);
        batch.insert(&log_key(pos), bytes);
        index_commit(batch, &req.stream, first, last, &key, pos, &req.request_hash);
        self.head = pos;
        self.head_hash = hash;
        if is_directory(req) {
            self.last_directory = pos;
        }
        touched.insert(req.stream.clone(), last);
        let appended = Appended {
            position: pos,
            stream: req.stream.clone(),
            first_version: first,
            last_version: last,
            duplicate: false,
        };
        in_group.insert(key, (req.request_hash, appended.clone()));
        Admission::Written(appended)
    }

    /// The commit the command index points at.
    fn stored(&self, pos: u64) -> Result<Commit, LogError> {
        let bytes = self
            .tree
            .get(log_key(pos))
            .map_err(storage)?
            .ok_or_else(|| LogError::Corrupt { position: pos, what: "indexed commit is missing".into() })?;
        Commit::decode(&bytes)
    }
}

/// Whether a commit changes the directory (what the GDAP projection folds).
fn is_directory(req: &AppendRequest) -> bool {
    behalf_domain::command::DIRECTORY_CATEGORIES.contains(&req.stream.category())
        || req.events.iter().any(behalf_domain::Event::is_directory)
}
