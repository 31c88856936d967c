//! The GDAP projection: the directory folded from the log, kept current by a
//! subscription. A decision first waits until the projection has applied everything
//! the log held when the command arrived (no decision on a stale grant), then reads it
//! under a read lock together with the position it stands at (the R29 evidence).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use behalf_domain::Directory;
use behalf_log::{EventLog, Subscription};
use tokio::sync::watch;

use crate::runner::{spawn_worker, Backoff, Failure, Stop};
use crate::ServiceError;

pub struct GdapProjection {
    directory: RwLock<Directory>,
    /// Every commit up to here is applied.
    position: AtomicU64,
    notify: watch::Sender<u64>,
    failed: AtomicBool,
    /// The follower worker's stop signal ([`GdapProjection::stop`]); the worker itself
    /// is detached (it may hold the last reference, so nothing here awaits it).
    stop: std::sync::Mutex<Option<watch::Sender<bool>>>,
}

/// A consistent view: the directory and the position it was folded up to.
pub struct View<'a> {
    pub directory: RwLockReadGuard<'a, Directory>,
    pub position: u64,
}

impl GdapProjection {
    /// Starts following `log` from the beginning on a task of the current runtime.
    pub fn spawn<L: EventLog>(log: &L) -> Arc<GdapProjection> {
        let (notify, _) = watch::channel(0);
        let p = Arc::new(GdapProjection {
            directory: RwLock::new(Directory::default()),
            position: AtomicU64::new(0),
            notify,
            failed: AtomicBool::new(false),
            stop: std::sync::Mutex::new(None),
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
                let Some(at) = weak.upgrade().map(|me| me.position()) else { return Ok(()) };
                let mut sub = log.subscribe_where(at, behalf_domain::command::DIRECTORY_CATEGORIES);
                loop {
                    let next = sub.next().await;
                    let Some(me) = weak.upgrade() else { return Ok(()) };
                    match next {
                        Ok(commit) => {
                            me.apply(&commit);
                            me.failed.store(false, Ordering::SeqCst);
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
        }
        self.position.store(commit.position, Ordering::SeqCst);
        self.notify.send_replace(commit.position);
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

impl Drop for GdapProjection {
    fn drop(&mut self) {
        self.stop();
    }
}
