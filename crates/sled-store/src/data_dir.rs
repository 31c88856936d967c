//! The data directory's layout, named once. Every process that keeps something on
//! its own disk (the embedded server, a projector's views, the admin token a role
//! made) finds it here; nothing else joins these names.
//!
//! ```text
//! <data dir>/
//!   log/            the event log (embedded engine)   SledLog
//!   tokens/         token hashes (embedded engine)    SledTokens
//!   views/          the query views                   SledViews
//!   queues/         the durable queues (embedded)     SledQueues
//!   webhooks/       webhook URLs, secrets, attempts   SledWebhooks
//!   keys/           keys that seal personal data      SledKeys
//!   gdap.snapshot   the GDAP projection's snapshot
//!   admin.token     the bootstrap admin token (0600)
//! ```

use std::path::{Path, PathBuf};

use behalf_log::LogError;

use crate::{OpenOptions, OpenReport, SledKeys, SledLog, SledQueues, SledTokens, SledViews, SledWebhooks};

/// A data directory: where each store of a process lives in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The embedded event log's sled directory.
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }

    /// The embedded token store's sled directory.
    pub fn tokens(&self) -> PathBuf {
        self.root.join("tokens")
    }

    /// The views' sled directory.
    pub fn views(&self) -> PathBuf {
        self.root.join("views")
    }

    /// The embedded queues' sled directory.
    pub fn queues(&self) -> PathBuf {
        self.root.join("queues")
    }

    /// The GDAP projection's snapshot file.
    pub fn gdap_snapshot(&self) -> PathBuf {
        self.root.join("gdap.snapshot")
    }

    /// The bootstrap admin token's file.
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// Opens the event log (see [`SledLog::open`]).
    pub fn open_log(&self, options: OpenOptions) -> Result<(SledLog, OpenReport), LogError> {
        SledLog::open(self.log(), options)
    }

    /// Opens the views.
    pub fn open_views(&self) -> Result<SledViews, LogError> {
        SledViews::open(self.views())
    }

    /// Opens the queues.
    pub fn open_queues(&self) -> Result<SledQueues, LogError> {
        SledQueues::open(self.queues())
    }

    /// The webhook store's sled directory (URLs, signing secrets, attempts).
    pub fn webhooks(&self) -> PathBuf {
        self.root.join("webhooks")
    }

    /// Opens the webhook store.
    pub fn open_webhooks(&self) -> Result<SledWebhooks, LogError> {
        SledWebhooks::open(self.webhooks())
    }

    /// The key store's sled directory (the keys that seal personal data).
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// Opens the key store.
    pub fn open_keys(&self) -> Result<SledKeys, LogError> {
        SledKeys::open(self.keys())
    }

    /// Opens the token store.
    pub fn open_tokens(&self) -> Result<SledTokens, LogError> {
        SledTokens::open(self.tokens())
    }

    /// Opens every sled store of the directory that is there once more and closes it,
    /// each store's handles having been dropped: sled 0.34 writes the snapshot of its
    /// page table only when it opens, so a process that wrote a lot would otherwise
    /// leave its next start to replay everything it wrote (7–11 s after 10 M events).
    /// The replay is paid here instead; `serve` calls this as it stops. Returns how
    /// long it took.
    pub fn refresh_snapshots(&self) -> Result<std::time::Duration, LogError> {
        use crate::log::{open_db, Cache};
        let started = std::time::Instant::now();
        let stores = [
            (self.log(), Cache::Log),
            (self.views(), Cache::Views),
            (self.tokens(), Cache::Small),
            (self.queues(), Cache::Small),
            (self.webhooks(), Cache::Small),
            (self.keys(), Cache::Small),
        ];
        for (path, cache) in stores {
            if path.join("conf").exists() {
                drop(open_db(&path, cache)?);
            }
        }
        Ok(started.elapsed())
    }
}
