//! The GDAP projection: the directory folded from the log, kept current by a
//! subscription. A decision first waits until the projection has applied everything
//! the log held when the command arrived (no decision on a stale grant), then reads it
//! under a read lock together with the position it stands at (the R29 evidence).
//!
//! With a snapshot file ([`GdapProjection::spawn_with_snapshot`]) it starts from the
//! last snapshot that checks (see `snapshot.rs`) instead of position 1, saves one now
//! and then as it follows (at most every [`SNAPSHOT_EVERY`], when the directory
//! changed or the log moved [`SNAPSHOT_AFTER`] commits), and on [`GdapProjection::save`].

pub mod snapshot;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use behalf_domain::Directory;
use behalf_log::{EventLog, Subscription};
use tokio::sync::watch;

use crate::runner::{spawn_worker, Backoff, Failure, Stop};
use crate::ServiceError;
use snapshot::{decode, encode, write_atomically, Anchor};

pub struct GdapProjection {
    directory: RwLock<Directory>,
    /// Every commit up to here is applied.
    position: AtomicU64,
    notify: watch::Sender<u64>,
    failed: AtomicBool,
    /// The follower worker's stop signal ([`GdapProjection::stop`]); the worker itself
    /// is detached (it may hold the last reference, so nothing here awaits it).
    stop: std::sync::Mutex<Option<watch::Sender<bool>>>,
    snapshot: Option<Snapshots>,
    /// Told the keys of every person erased, before the erasure's position counts as
    /// applied ([`GdapProjection::on_erased`]).
    erased: std::sync::OnceLock<ErasedHook>,
}

type ErasedHook = Box<dyn Fn(&[String]) + Send + Sync>;

/// At most this often a snapshot is saved while following.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// Commits after which a snapshot is saved even if the directory did not change (so a
/// start-up does not re-read them).
pub const SNAPSHOT_AFTER: u64 = 200_000;

/// Where the snapshots go and what was saved last.
struct Snapshots {
    path: PathBuf,
    /// The directory changed since the last save.
    changed: AtomicBool,
    /// The position and time of the last save (or of the start).
    saved: Mutex<(u64, Instant)>,
    /// The position of `saved`, readable without its lock.
    saved_at: AtomicU64,
    saving: AtomicBool,
    /// The position of the snapshot this projection started from (0: none).
    started_from: AtomicU64,
    /// Saves in a row that found the log reading shorter than the projection.
    shorter: AtomicU64,
}

impl Snapshots {
    fn record_save(&self, position: u64) {
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = (position, Instant::now());
        self.saved_at.store(position, Ordering::Relaxed);
    }
}

/// A consistent view: the directory and the position it was folded up to.
pub struct View<'a> {
    pub directory: RwLockReadGuard<'a, Directory>,
    pub position: u64,
}

impl GdapProjection {
    /// Starts following `log` from the beginning on a task of the current runtime.
    pub fn spawn<L: EventLog>(log: &L) -> Arc<GdapProjection> {
        Self::spawn_with(log, None)
    }

    /// As [`GdapProjection::spawn`], starting from the snapshot in `path` if it checks,
    /// and saving snapshots there.
    pub fn spawn_with_snapshot<L: EventLog>(log: &L, path: PathBuf) -> Arc<GdapProjection> {
        Self::spawn_with(log, Some(path))
    }

    fn spawn_with<L: EventLog>(log: &L, path: Option<PathBuf>) -> Arc<GdapProjection> {
        let (notify, _) = watch::channel(0);
        let snapshot = path.map(|path| Snapshots {
            path,
            changed: AtomicBool::new(false),
            saved: Mutex::new((0, Instant::now())),
            saved_at: AtomicU64::new(0),
            saving: AtomicBool::new(false),
            started_from: AtomicU64::new(0),
            shorter: AtomicU64::new(0),
        });
        let p = Arc::new(GdapProjection {
            directory: RwLock::new(Directory::default()),
            position: AtomicU64::new(0),
            notify,
            failed: AtomicBool::new(false),
            stop: std::sync::Mutex::new(None),
            snapshot,
            erased: std::sync::OnceLock::new(),
        });
        // Only directory streams are decoded; the rest just move the position. The
        // worker holds the projection weakly: it lives while someone holds it, and
        // stops when the last holder lets go (Drop signals the stop).
        let log = log.clone();
        let weak = Arc::downgrade(&p);
        let (stop, signal) = Stop::new();
        spawn_worker("gdap projection", signal, Backoff::FOLLOWER, move || {
            let (log, weak) = (log.clone(), weak.clone());
            async move {
                let Some(me) = weak.upgrade() else { return Ok(()) };
                if me.position() == 0 {
                    me.load(&log).await;
                }
                let at = me.position();
                drop(me);
                let mut sub = log.subscribe_where(at, behalf_domain::command::DIRECTORY_CATEGORIES);
                loop {
                    let next = sub.next().await;
                    let Some(me) = weak.upgrade() else { return Ok(()) };
                    match next {
                        Ok(commit) => {
                            me.apply(&commit);
                            me.failed.store(false, Ordering::SeqCst);
                            if me.snapshot_due() {
                                let (me, log) = (Arc::clone(&me), log.clone());
                                tokio::spawn(async move { me.save(&log).await });
                            }
                        }
                        Err(e) => {
                            // Not ready (commands answer 503) until it follows again,
                            // from where it was; a corrupt log stops it for good.
                            me.failed.store(true, Ordering::SeqCst);
                            let failure = Failure::from(e);
                            if let Failure::Fatal(_) = failure {
                                me.notify.send_replace(u64::MAX);
                            }
                            return Err(failure);
                        }
                    }
                }
            }
        });
        *p.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop);
        p
    }

    /// Ready to scope and decide: it follows the log and has caught up with its head.
    pub async fn ready<L: EventLog>(&self, log: &L) -> bool {
        match log.head().await {
            Ok(head) => self.healthy() && self.position() >= head,
            Err(_) => false,
        }
    }

    /// Stops following the log (and lets go of the log's handle); dropping the last
    /// holder does the same.
    pub fn stop(&self) {
        if let Some(s) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = s.send(true);
        }
        // The worker ends at its next await.
    }

    fn apply(&self, commit: &behalf_log::Commit) {
        if commit.events.iter().any(|e| e.is_directory()) {
            let mut dir = self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            for e in &commit.events {
                dir.apply(e);
            }
            if let Some(s) = &self.snapshot {
                s.changed.store(true, Ordering::Relaxed);
            }
        }
        if let Some(hook) = self.erased.get() {
            for e in &commit.events {
                if let behalf_domain::Event::PersonErased(p) = e {
                    hook(&p.key_ids);
                }
            }
        }
        self.position.store(commit.position, Ordering::SeqCst);
        self.notify.send_replace(commit.position);
    }

    /// Calls `hook` with the keys of every person erased from now on (the erasure's
    /// `person` stream is a directory category), before its position counts as
    /// applied: a decision waits for the directory's last commit, so no process seals
    /// with a person's key after it saw that key erased (the first hook set stays).
    pub fn on_erased(&self, hook: impl Fn(&[String]) + Send + Sync + 'static) {
        let _ = self.erased.set(Box::new(hook));
    }

    /// The position applied so far.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::SeqCst)
    }

    /// Whether it is following the log.
    pub fn healthy(&self) -> bool {
        !self.failed.load(Ordering::SeqCst)
    }

    /// Waits until `position` is applied, at most `wait`.
    pub async fn wait_for(&self, position: u64, wait: Duration) -> Result<(), ServiceError> {
        let mut rx = self.notify.subscribe();
        let reached = tokio::time::timeout(wait, rx.wait_for(|p| *p >= position)).await;
        if !self.healthy() {
            return Err(ServiceError::Unavailable("the GDAP projection stopped following the log".into()));
        }
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(ServiceError::Unavailable(format!(
                "the GDAP projection is at {} and has not reached {position} yet",
                self.position()
            ))),
        }
    }

    /// Reads the directory and the position it stands at.
    pub fn view(&self) -> View<'_> {
        let directory = self.directory.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Read under the lock: directory events apply under the write lock before the
        // position moves, so the directory holds at least everything up to here.
        let position = self.position();
        View { directory, position }
    }
}

/// Saving and loading snapshots.
impl GdapProjection {
    /// The position of the snapshot this projection started from, if it did.
    pub fn started_from(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.started_from.load(Ordering::SeqCst)).filter(|p| *p > 0)
    }

    fn snapshot_due(&self) -> bool {
        let Some(s) = &self.snapshot else { return false };
        let changed = s.changed.load(Ordering::Relaxed);
        // Called for every commit the projection applies: answer the common case (no
        // directory change, few commits since the last save) without the lock.
        if s.saving.load(Ordering::Relaxed)
            || (!changed && self.position() < s.saved_at.load(Ordering::Relaxed) + SNAPSHOT_AFTER)
        {
            return false;
        }
        let (at, when) = *s.saved.lock().unwrap_or_else(|p| p.into_inner());
        when.elapsed() >= SNAPSHOT_EVERY && (changed || self.position() >= at + SNAPSHOT_AFTER)
    }

    /// Saves a snapshot of what is applied now (when this projection has a snapshot
    /// file and has moved since the last save). Returns the position saved.
    pub async fn save<L: EventLog>(self: &Arc<Self>, log: &L) -> Option<u64> {
        let s = self.snapshot.as_ref()?;
        if s.saving.swap(true, Ordering::SeqCst) {
            return None;
        }
        let saved = self.save_now(log, s).await;
        s.saving.store(false, Ordering::SeqCst);
        match saved {
            Ok(at) => at,
            Err(e) => {
                tracing::warn!(error = %e, path = %s.path.display(), "could not save the GDAP projection's snapshot");
                None
            }
        }
    }

    async fn save_now<L: EventLog>(self: &Arc<Self>, log: &L, s: &Snapshots) -> Result<Option<u64>, String> {
        let (last, _) = *s.saved.lock().unwrap_or_else(|p| p.into_inner());
        let changed = s.changed.swap(false, Ordering::SeqCst);
        let at = self.position();
        if at == last && !changed {
            return Ok(None);
        }
        let restore = |e: String| {
            if changed {
                s.changed.store(true, Ordering::SeqCst);
            }
            e
        };
        let Some(anchor) = Anchor::in_log(log, at).await.map_err(restore)? else {
            // The projection applied `at`, so the log holds it: a log that reads shorter
            // is a cluster whose leader has not yet applied what a replica delivered
            // (seen on three nodes, a few times an hour). The next save tries again; only
            // a log that keeps reading shorter is worth a warning.
            let shorter = s.shorter.fetch_add(1, Ordering::Relaxed) + 1;
            let e = restore(format!("position {at} is not in the log ({shorter} saves in a row)"));
            if shorter >= 3 {
                return Err(e);
            }
            tracing::debug!(position = at, "the log reads shorter than the GDAP projection; saving later");
            return Ok(None);
        };
        s.shorter.store(0, Ordering::Relaxed);
        let me = Arc::clone(self);
        let path = s.path.clone();
        let started = Instant::now();
        let bytes = tokio::task::spawn_blocking(move || {
            // Under the read lock the directory holds exactly what is applied up to the
            // position read under it (see `view`); that must be the anchor's.
            let view = me.view();
            if view.position != anchor.position {
                return Err(format!("the projection moved from {} to {}", anchor.position, view.position));
            }
            let bytes = encode(&anchor, &view.directory)?;
            drop(view);
            write_atomically(&path, &bytes).map_err(|e| e.to_string())?;
            Ok(bytes.len())
        })
        .await
        .map_err(|e| e.to_string())?;
        let bytes = match bytes {
            Ok(b) => b,
            // It moved on while the anchor was read: the next save catches up.
            Err(e) if e.starts_with("the projection moved") => {
                s.changed.store(changed, Ordering::SeqCst);
                return Ok(None);
            }
            Err(e) => return Err(restore(e)),
        };
        s.record_save(at);
        tracing::debug!(position = at, bytes, ms = started.elapsed().as_millis() as u64, "saved the GDAP snapshot");
        Ok(Some(at))
    }

    /// Starts from the snapshot if there is one and it checks: its bytes, and the
    /// commit it stands on is still the log's at that position.
    async fn load<L: EventLog>(&self, log: &L) {
        let Some(s) = &self.snapshot else { return };
        let started = Instant::now();
        let path = s.path.clone();
        let decoded = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read it: {e}")),
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|d| d);
        let decoded = match decoded {
            Ok(None) => return,
            Ok(Some(d)) => Ok(d),
            Err(e) => Err(e),
        };
        let checked = match decoded {
            Ok((anchor, directory)) => match Anchor::in_log(log, anchor.position).await {
                Ok(Some(found)) if found == anchor => Ok((anchor.position, directory)),
                Ok(_) => Err(format!("the log does not hold the commit it stands on (position {})", anchor.position)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match checked {
            Ok((position, directory)) => {
                *self.directory.write().unwrap_or_else(|p| p.into_inner()) = directory;
                self.position.store(position, Ordering::SeqCst);
                self.notify.send_replace(position);
                s.record_save(position);
                s.started_from.store(position, Ordering::SeqCst);
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(position, ms, "the GDAP projection starts from its snapshot");
            }
            Err(why) => {
                tracing::warn!(path = %s.path.display(), %why, "the GDAP snapshot is not used; folding from the start")
            }
        }
    }
}

impl Drop for GdapProjection {
    fn drop(&mut self) {
        self.stop();
    }
}
