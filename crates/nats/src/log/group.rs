//! The group commit: one batcher per process publishes the appends waiting as one
//! atomic batch on top of the acknowledged tail (see `NatsLog::append_now`).

use behalf_log::metrics::Stage;

use super::{
    is_directory, is_race, publish_atomic, record_for, sha256, AppendRequest, Arc, BatchMsg, HeaderMap, LogError,
    NatsLog, Tail, REQUEST_TIMEOUT,
};

/// One append waiting for the group commit: the request, its key, where it goes and
/// what it expects there.
pub(super) struct Job {
    pub(super) req: Arc<AppendRequest>,
    pub(super) key: String,
    pub(super) subject: String,
    pub(super) version: u64,
    pub(super) subject_seq: u64,
    /// The index's floor when the key was looked up there.
    pub(super) floor: u64,
    pub(super) reply: tokio::sync::oneshot::Sender<Batched>,
    /// When the append was handed to the batcher (its wait for a batch is a stage).
    pub(super) queued: std::time::Instant,
}

/// What the group commit did with one append.
pub(super) enum Batched {
    Stored(u64),
    /// The key is stored at this position.
    Found(u64),
    /// Look again: the index's floor moved, the key or the subject is in this batch.
    Again,
    /// JetStream refused the batch: the log or a stream moved.
    Refused,
    /// Not built: the log read shorter than what this process saw (answered at once,
    /// not tried again: see `KnownKeys::check_tail`).
    Behind(String),
    /// A directory commit at this position came after the one the decision was made
    /// against: decide again.
    DirectoryMoved(u64),
    Failed(LogError),
}

/// Counters of the group commit.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) batches: std::sync::atomic::AtomicU64,
    pub(super) commits: std::sync::atomic::AtomicU64,
}

/// The group commit: takes every append waiting (up to [`batch::MAX_BATCH`]) and
/// publishes them as one atomic batch, one batch in flight at a time, each built on
/// the acknowledged tail of the one before. Runs until the log is dropped.
pub(super) async fn batcher(log: NatsLog, mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>) {
    let mut tail = None;
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < crate::batch::MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        log.commit_batch(&mut tail, jobs).await;
    }
}

impl NatsLog {
    /// Publishes one group of appends as one atomic batch on top of `tail` and answers
    /// each. `tail` is left as the new tail, or `None` when it must be read again.
    pub(super) async fn commit_batch(&self, tail: &mut Option<Tail>, jobs: Vec<Job>) {
        let known = &self.inner.known;
        let fail_all = |jobs: Vec<Job>, e: &LogError| {
            for job in jobs {
                let e = match e {
                    LogError::Corrupt { position, what } => {
                        LogError::Corrupt { position: *position, what: what.clone() }
                    }
                    other @ (LogError::Storage(_) | LogError::Codec(_) | LogError::Closed) => {
                        LogError::Storage(other.to_string())
                    }
                };
                let _ = job.reply.send(Batched::Failed(e));
            }
        };
        let t = match tail.take() {
            Some(t) => t,
            None => {
                // What the follower saw before the read: the log read must still hold it.
                let (seen, seen_hash) = {
                    let k = known.lock();
                    (k.seen, k.seen_hash)
                };
                match self.read_tail().await.and_then(|t| known.check_tail(&t, seen, seen_hash).map(|c| (t, c))) {
                    Ok((t, Ok(()))) => t,
                    Ok((_, Err(behind))) => {
                        for job in jobs {
                            let _ = job.reply.send(Batched::Behind(behind.clone()));
                        }
                        return;
                    }
                    Err(e) => return fail_all(jobs, &e),
                }
            }
        };
        if let Err(e) = known.wait_seen(t.base).await {
            return fail_all(jobs, &e);
        }
        // Which jobs go: not known, not twice in this batch, one per subject (a second
        // on the same subject reads its stream again and goes in a later batch).
        let mut chosen = Vec::with_capacity(jobs.len());
        {
            let mut k = known.lock();
            let mut subjects = std::collections::HashSet::new();
            for job in jobs {
                let answer = if k.floor != job.floor {
                    Some(Batched::Again) // the index moved under it: look it up again
                } else if let Some(p) = k.keys.get(&job.key) {
                    Some(Batched::Found(*p))
                } else if k.in_flight.contains(&job.key) || !subjects.insert(job.subject.clone()) {
                    Some(Batched::Again)
                } else {
                    k.in_flight.insert(job.key.clone());
                    None
                };
                match answer {
                    Some(a) => {
                        let _ = job.reply.send(a);
                    }
                    None => chosen.push(job),
                }
            }
        }
        // The directory as of the tail (the follower has seen it: `wait_seen` above), and
        // as this batch moves it.
        let mut last_directory = known.lock().last_directory;
        // The records, each chaining to the one before, the first to the tail.
        let (mut head, mut hash) = (t.head, t.hash);
        let mut msgs = Vec::with_capacity(chosen.len());
        let mut going = Vec::with_capacity(chosen.len());
        for mut job in chosen {
            // Decided against an older directory than the tail's: refused, as the
            // embedded writer refuses it (the service decides again).
            if job.req.directory_at.is_some_and(|at| at < last_directory) {
                known.lock().in_flight.remove(&job.key);
                let _ = job.reply.send(Batched::DirectoryMoved(last_directory));
                continue;
            }
            let bytes = match record_for(&job.req, head + 1, job.version + 1, &hash) {
                Ok(b) => b,
                Err(e) => {
                    known.lock().in_flight.remove(&job.key);
                    let _ = job.reply.send(Batched::Failed(e));
                    continue;
                }
            };
            let mut headers = HeaderMap::new();
            if msgs.is_empty() {
                // The predecessor is the very record this batch chains to: `t` was read
                // from the server or is this process's own acknowledged batch, and a
                // stored message never changes.
                headers.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, t.head.to_string().as_str());
            }
            headers
                .insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, job.subject_seq.to_string().as_str());
            head += 1;
            hash = sha256(&bytes);
            if is_directory(&job.req.stream) {
                last_directory = head;
            }
            let subject = std::mem::take(&mut job.subject); // the job no longer needs it
            msgs.push(BatchMsg { subject, headers, payload: bytes.into() });
            going.push((head, job));
        }
        if going.is_empty() {
            *tail = Some(t);
            return;
        }
        let sending = std::time::Instant::now();
        for (_, job) in &going {
            Stage::AppendQueue.record(sending.saturating_duration_since(job.queued));
        }
        behalf_log::metrics::group_size(going.len());
        self.inner.stats.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.stats.commits.fetch_add(going.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Sending can wait for room on a connection to a server that stopped reading
        // (a paused node): bounded like every other request.
        let sent = match tokio::time::timeout(REQUEST_TIMEOUT, publish_atomic(&self.inner.js, msgs)).await {
            Ok(Ok(pending)) => Ok(pending),
            Ok(Err(e)) => Err(format!("cannot publish a batch: {e}")),
            Err(_) => Err(format!("cannot publish a batch: not sent within {REQUEST_TIMEOUT:?}")),
        };
        // `Err(None)`: refused because the log moved (a race); `Err(Some(why))`: not
        // stored, or not known to be.
        let outcome = match sent {
            Ok(pending) => match pending.await {
                Ok(ack) => Ok(ack),
                Err(e) if is_race(&e) => Err(None),
                Err(e) => Err(Some(e.to_string())),
            },
            Err(e) => Err(Some(e)),
        };
        let mut k = known.lock();
        for (_, job) in &going {
            k.in_flight.remove(&job.key);
        }
        match outcome {
            Ok(ack) if ack.sequence == head => {
                k.last_directory = k.last_directory.max(last_directory);
                let took = sending.elapsed();
                for (position, job) in going {
                    Stage::Commit.record(took);
                    if position > k.floor {
                        k.keys.insert(job.key.clone(), position);
                    }
                    let _ = job.reply.send(Batched::Stored(position));
                }
                *tail = Some(Tail { head, base: t.base, hash });
            }
            Ok(ack) => {
                for (_, job) in going {
                    let _ = job.reply.send(Batched::Failed(LogError::Corrupt {
                        position: ack.sequence,
                        what: format!("JetStream stored the batch ending at {head} at {}", ack.sequence),
                    }));
                }
            }
            Err(None) => {
                for (_, job) in going {
                    let _ = job.reply.send(Batched::Refused);
                }
            }
            Err(Some(what)) => {
                for (_, job) in going {
                    let why = format!("JetStream did not store a batch: {what}");
                    let _ = job.reply.send(Batched::Failed(LogError::Storage(why)));
                }
            }
        }
    }
}
