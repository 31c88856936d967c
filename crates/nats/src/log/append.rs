//! The append path below the batcher: the tail a batch builds on, the command index
//! lookup, first outcomes of a known key, and one append against a fresh tail.

use super::{
    command_key, decode_at, event_subject, is_not_found, sha256, storage, AppendRefused, AppendRequest, Appended, Arc,
    Batched, CommandKey, Duration, ExpectedVersion, Job, LogError, NatsLog, Tail, ABSENT_CACHE, APPEND_DEADLINE,
    GENESIS, MAX_TAIL_RACES,
};

impl NatsLog {
    pub(super) async fn read_tail(&self) -> Result<Tail, LogError> {
        let head = self.last_sequence().await?;
        if head == 0 {
            return Ok(Tail { head: 0, base: 0, hash: GENESIS });
        }
        match self.stream().raw_message_builder().sequence(head).send().await {
            Ok(m) => {
                decode_at(&m.payload, head, &m.subject)?;
                Ok(Tail { head, base: head, hash: sha256(&m.payload) })
            }
            Err(e) if is_not_found(&e) => {
                Err(LogError::Corrupt { position: head, what: "the last commit is missing".into() })
            }
            Err(e) => Err(storage("cannot read the last commit", e)),
        }
    }

    /// The commit a known key points at: its first outcome for `req`.
    pub(super) async fn outcome_at(
        &self,
        position: u64,
        key: &CommandKey,
        req: &AppendRequest,
    ) -> Result<Result<Appended, AppendRefused>, LogError> {
        match self.commit_at(position).await? {
            Some((c, _)) if &c.key() == key => Ok(c.first_outcome(&req.request_hash)),
            Some(_) | None => Err(LogError::Corrupt {
                position,
                what: format!("command {key} is known at {position}, which holds another command"),
            }),
        }
    }

    /// Where a key is stored, from this process's memory or the command index (read
    /// from its leader, never from a replica that may lag).
    pub(super) async fn lookup(&self, key: &CommandKey, ks: &str) -> Result<Option<u64>, LogError> {
        // The floor first: every key at or below it is in the index, every key above
        // it that the follower has seen is in memory.
        let floor = {
            let k = self.inner.known.lock();
            if let Some(p) = k.keys.get(ks) {
                return Ok(Some(*p));
            }
            if k.floor == 0 || k.absent.contains(ks) {
                return Ok(None); // nothing below the floor, or looked up at this floor
            }
            k.floor
        };
        let commands = &self.inner.commands;
        // A deleted or purged key (an operator's hand) is no entry.
        let found = match crate::leader_entry(commands, &command_key(key), "cannot read the command index").await? {
            Some((value, _)) => Some(
                std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| LogError::Codec(format!("the index entry of command {key} is not a position")))?,
            ),
            None => None,
        };
        if found.is_none() {
            // Not at or below this floor, ever (the past does not change): the next
            // look-up at this floor (the append after the service's) needs no read.
            let mut k = self.inner.known.lock();
            if k.floor == floor {
                if k.absent.len() >= ABSENT_CACHE {
                    k.absent.clear();
                }
                k.absent.insert(ks.to_owned());
            }
        }
        Ok(found)
    }

    /// Appends a command whose key is in no commit this process knows of, through the
    /// group commit (see [`batcher`]).
    ///
    /// **R26 by construction.** Every batch carries `Nats-Expected-Last-Sequence` on its
    /// first message, so it is stored only directly on top of the very tail it was
    /// built on, all of it or none. Before it leaves, the batcher has checked that no
    /// commit of that tail holds any of its keys: positions up to the index's floor
    /// through the command index (read from its leader, and read again if the floor
    /// moved since), positions above it through the keys the follower has seen (it must
    /// have reached the tail as last read from the server), and the rest of the tail
    /// is this process's own acknowledged batches, whose keys it holds. So a key is
    /// stored at most once whatever fails — a lost acknowledgement, a retry, a process
    /// killed before it indexed, a leader change — and with any number of appending
    /// processes; JetStream's de-duplication window plays no part.
    pub(super) async fn append_now(
        &self,
        shared: Arc<AppendRequest>,
        key: &CommandKey,
        ks: &str,
    ) -> Result<Result<Appended, AppendRefused>, LogError> {
        self.inner.known.intact()?;
        let req: &AppendRequest = &shared;
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
            // The stream's state, read before the batch: if it moves before the batch
            // lands, the expected subject sequence makes JetStream refuse it.
            // A new stream (expected version 0) needs no read: "no message on the
            // subject yet" is what the publish expects; if one is there, JetStream
            // refuses it and the next try reads the stream.
            let fresh = attempt == 0 && req.expected == ExpectedVersion::Exact(0);
            let last = if fresh { None } else { self.last_of(&subject).await? };
            let (version, subject_seq) = match last {
                Some((c, _)) if &c.key() == key => return Ok(c.first_outcome(&req.request_hash)),
                Some((c, seq)) => (c.last_version(), seq),
                None => (0, 0),
            };
            if let ExpectedVersion::Exact(v) = req.expected {
                if v != version {
                    return Ok(Err(AppendRefused::Conflict { expected: req.expected, actual: version }));
                }
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = Job {
                req: Arc::clone(&shared),
                key: ks.to_owned(),
                subject: subject.clone(),
                version,
                subject_seq,
                floor,
                reply,
                queued: std::time::Instant::now(),
            };
            self.inner.jobs.send(job).map_err(|_| LogError::Closed)?;
            match answer.await.map_err(|_| LogError::Closed)? {
                Batched::Stored(position) => {
                    // The index entry is the indexer's to write (in pages, behind the
                    // log); until it is there, this process's memory and the followers
                    // of every other process answer a retry.
                    return Ok(Ok(Appended {
                        position,
                        stream: req.stream.clone(),
                        first_version: version + 1,
                        last_version: version + req.events.len() as u64,
                        duplicate: false,
                    }));
                }
                Batched::Found(p) => return self.outcome_at(p, key, req).await,
                Batched::Again => {
                    checked_floor = None;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Batched::DirectoryMoved(position) => return Ok(Err(AppendRefused::DirectoryMoved { position })),
                Batched::Behind(why) => return Err(LogError::Storage(why)),
                // Another process appended first, or a stream moved: read again.
                Batched::Refused => {}
                Batched::Failed(LogError::Storage(e)) if tokio::time::Instant::now() < deadline => {
                    // Unanswered (a leader lost, a connection dropped): it may be
                    // stored, which the follower will show; trying again is safe.
                    transient += 1;
                    tracing::info!(error = %e, "a batch was not answered; trying again");
                    tokio::time::sleep(Duration::from_millis((50 * u64::from(transient)).min(500))).await;
                }
                Batched::Failed(e) => return Err(e),
            }
        }
        Err(LogError::Storage(format!("lost the race for the next position {MAX_TAIL_RACES} times")))
    }
}
