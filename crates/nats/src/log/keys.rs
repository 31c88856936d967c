//! The R26 keys a process knows ([`KnownKeys`]): the follower that fills them from
//! the log, and the indexer that keeps `BEHALF_COMMANDS` complete behind it.

use behalf_log::Hash;

use super::{
    command_key, is_not_found, kv, storage, Duration, EventLog, LogError, NatsLog, Subscription, Tail, CHECKPOINT_KEY,
    FOLLOWER_WAIT,
};

/// The R26 keys this process knows, so that no key is published twice (see
/// [`NatsLog::append_now`]). Every commit above `floor` up to `seen` has its key in
/// `keys`; every commit at or below `floor` has its key in [`COMMANDS_BUCKET`].
#[derive(Default)]
pub(super) struct Keys {
    pub(super) floor: u64,
    pub(super) seen: u64,
    pub(super) keys: std::collections::HashMap<String, u64>,
    /// Keys this process has published and not yet heard back about.
    pub(super) in_flight: std::collections::HashSet<String>,
    /// Keys the index was read for at this floor and does not hold.
    pub(super) absent: std::collections::HashSet<String>,
    /// The position of the last directory commit known here: read from the stream at
    /// open (every directory commit then stored is at or below it), then raised by the
    /// follower for every directory commit it sees and by this process's own batches.
    /// So once the follower has seen a tail, every directory commit at or below that
    /// tail is at or below this.
    pub(super) last_directory: u64,
    /// The hash of the commit at `seen`, once the follower has read one: every next
    /// commit must chain to it.
    pub(super) seen_hash: Option<Hash>,
    /// Where and how the log stopped holding the history this process saw (commits
    /// lost or replaced under it): from then on it appends nothing.
    pub(super) diverged: Option<(u64, String)>,
}

/// [`Keys`], shared by the appenders and the follower that fills them in.
pub(super) struct KnownKeys {
    pub(super) state: std::sync::Mutex<Keys>,
    pub(super) seen: tokio::sync::watch::Sender<u64>,
}

impl KnownKeys {
    pub(super) fn new(floor: u64, last_directory: u64) -> KnownKeys {
        KnownKeys {
            state: std::sync::Mutex::new(Keys { floor, seen: floor, last_directory, ..Keys::default() }),
            seen: tokio::sync::watch::channel(floor).0,
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn floor(&self) -> u64 {
        self.lock().floor
    }

    /// A commit at `position` holds `key` (seen by the follower, or acknowledged here).
    pub(super) fn stored(&self, key: String, position: u64) {
        let mut k = self.lock();
        k.in_flight.remove(&key);
        if position > k.floor {
            k.keys.insert(key, position);
        }
    }

    /// Waits until the follower has seen every commit up to `position` (or the log
    /// diverged from what it saw).
    pub(super) async fn wait_seen(&self, position: u64) -> Result<(), LogError> {
        let mut rx = self.seen.subscribe();
        let wait = rx.wait_for(|s| *s >= position || self.lock().diverged.is_some());
        let reached = tokio::time::timeout(FOLLOWER_WAIT, wait).await.map(|r| r.is_ok());
        self.intact()?;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(LogError::Closed),
            Err(_) => Err(LogError::Storage(format!(
                "the command-id follower did not reach position {position} within {FOLLOWER_WAIT:?}"
            ))),
        }
    }
}

impl KnownKeys {
    /// `Err` once the log no longer holds the history this process saw.
    pub(super) fn intact(&self) -> Result<(), LogError> {
        match &self.lock().diverged {
            None => Ok(()),
            Some((position, what)) => Err(LogError::Corrupt { position: *position, what: what.clone() }),
        }
    }

    /// The log no longer holds the history this process saw, from `position`: said
    /// once (an error line, [`behalf_log::metrics::HISTORY_DIVERGED`]), and from then on
    /// every append is refused — building on it would acknowledge commits on top of a
    /// history that differs from the one acknowledged before.
    pub(super) fn diverge(&self, position: u64, what: String) {
        let mut k = self.lock();
        if k.diverged.is_none() {
            tracing::error!(
                position,
                what,
                "the log no longer holds the history this process saw; refusing every append \
                 (run `behalf audit verify --nats`, then restore the stream from a good copy)"
            );
            behalf_log::metrics::history_diverged(position);
            k.diverged = Some((position, what));
        }
        drop(k);
        self.seen.send_modify(|_| {}); // wakes whoever waits for the follower
    }

    /// Checks a tail read from the server against what this process saw before the
    /// read (`seen` and its hash): a log never shrinks, and its commit at `seen` never
    /// changes. A shorter log is not built on, but not taken as lost for good either:
    /// a node that leads again after a whole-cluster restart can answer with a state
    /// it has not finished applying (seen: 251 of 439 for a moment). If commits were
    /// lost, whatever is stored at their positions next does not chain to what this
    /// process saw, which the follower finds.
    /// `Ok(Err(why))`: the log reads shorter; `Err`: it diverged.
    pub(super) fn check_tail(
        &self,
        t: &Tail,
        seen: u64,
        seen_hash: Option<Hash>,
    ) -> Result<Result<(), String>, LogError> {
        if t.head < seen {
            let why = format!(
                "the log reads as ending at {} but this process saw commits up to {seen}: not built on",
                t.head
            );
            return Ok(Err(why));
        } else if t.head == seen && seen_hash.is_some_and(|h| h != t.hash) {
            self.diverge(seen, format!("the commit at {seen} is not the one this process saw there"));
        }
        self.intact().map(Ok)
    }
}

/// Whether a commit to `stream` changes the directory (what the GDAP projection folds:
/// the directory categories).
pub(super) fn is_directory(stream: &behalf_domain::StreamId) -> bool {
    behalf_domain::command::DIRECTORY_CATEGORIES.contains(&stream.category())
}

/// The position of the last directory commit in the stream (0: none), read from the
/// stream's leader: the last message on each directory category's subjects.
pub(super) async fn last_directory_commit(stream: &super::stream::Stream) -> Result<u64, LogError> {
    // Every category asked at once: one round trip, not one per category (this runs
    // again on every reconnection, while a cluster recovers).
    let subjects: Vec<String> = behalf_domain::command::DIRECTORY_CATEGORIES
        .iter()
        .map(|category| format!("behalf.ev.{}.>", crate::subject::escaped(category)))
        .collect();
    let asks = subjects.iter().map(|subject| stream.get_last_raw_message_by_subject(subject));
    let mut last = 0;
    for answer in futures::future::join_all(asks).await {
        match answer {
            Ok(m) => last = last.max(m.sequence),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(storage("cannot read the last directory commit", e)),
        }
    }
    Ok(last)
}

/// The indexer's checkpoint, read from the bucket's leader (0: none yet).
pub(super) async fn index_checkpoint(commands: &kv::Store) -> Result<u64, LogError> {
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
pub(super) async fn follow_keys(log: NatsLog) {
    while log.inner.known.intact().is_ok() {
        let from = log.inner.known.lock().seen;
        if let Err(e) = follow_keys_from(&log, from).await {
            tracing::warn!(error = %e, "the command-id follower stopped; starting again");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(super) async fn follow_keys_from(log: &NatsLog, from: u64) -> Result<(), LogError> {
    const PRUNE_EVERY: Duration = Duration::from_secs(5);
    let known = &log.inner.known;
    let mut sub = log.subscribe_where(from, &[]);
    let mut pruned_at = tokio::time::Instant::now();
    loop {
        let c = tokio::select! {
            c = sub.next_hashed() => Some(match c {
                // JetStream damaged what it holds: never build on it (a lookup by
                // subject would miss the misfiled commit).
                Err(LogError::Corrupt { position, what }) if what.contains(super::MISFILED) => {
                    known.diverge(position, what.clone());
                    return Err(LogError::Corrupt { position, what });
                }
                other => other?,
            }),
            () = tokio::time::sleep(PRUNE_EVERY) => None,
        };
        if let Some((c, hash)) = c {
            let chained = known.lock().seen_hash.is_none_or(|h| h == c.prev_hash);
            if !chained {
                let what = format!("the commit at {} does not chain to the one this process saw before it", c.position);
                known.diverge(c.position, what.clone());
                return Err(LogError::Corrupt { position: c.position, what });
            }
            known.stored(c.key().to_string(), c.position);
            let mut k = known.lock();
            k.seen = c.position;
            k.seen_hash = Some(hash);
            if is_directory(&c.stream) {
                k.last_directory = k.last_directory.max(c.position);
            }
            drop(k);
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
                k.absent.clear();
            }
        }
    }
}

/// Keeps [`COMMANDS_BUCKET`] complete: from the checkpoint on, every commit's key has
/// its entry, written before the checkpoint passes it. Runs until the log is dropped.
pub(super) async fn index_forever(log: NatsLog) {
    loop {
        if let Err(e) = index_from_checkpoint(&log).await {
            tracing::warn!(error = %e, "the command indexer stopped; starting again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(super) async fn index_from_checkpoint(log: &NatsLog) -> Result<(), LogError> {
    const PAGE: usize = 512;
    let commands = &log.inner.commands;
    let checkpoint = index_checkpoint(commands).await?;
    let mut sub = log.subscribe_where(checkpoint, &[]);
    loop {
        // A page of commits: every key put at once (a put of a key already there
        // writes the same position again), all acknowledged, then the checkpoint.
        let mut acks = Vec::with_capacity(PAGE);
        let mut last = 0;
        while acks.len() < PAGE {
            let c = sub.next().await?;
            let subject = format!("{}{}", commands.prefix, command_key(&c.key()));
            let ack = log
                .inner
                .js
                .publish(subject, c.position.to_string().into())
                .await
                .map_err(|e| storage("cannot index a command", e))?;
            acks.push(ack);
            last = c.position;
            if sub.caught_up() {
                break;
            }
        }
        for ack in acks {
            ack.await.map_err(|e| storage("cannot index a command", e))?;
        }
        commands
            .put(CHECKPOINT_KEY, last.to_string().into())
            .await
            .map_err(|e| storage("cannot save the indexer's checkpoint", e))?;
    }
}
