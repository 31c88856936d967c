//! The metrics every crate records, named once. The crates record through the `metrics`
//! facade; the process that serves `/metrics` installs the Prometheus recorder
//! (`behalf_http::metrics`) before the first command, and without one (a benchmark
//! with `--no-metrics`, a library test) recording costs next to nothing.
//!
//! - [`STAGE_SECONDS`] `{stage}`: the time a command spends in each [`Stage`], on
//!   every transport and engine.
//! - [`HTTP_SECONDS`] `{route, method, status}`: a request, from the router in to the
//!   answer out; `route` is the route's template, never the raw path.
//! - [`GROUP_SIZE`]: commits per group commit (sled) or atomic batch (NATS).
//! - [`FOLLOWER_LAG_SECONDS`] `{follower}`: how old the oldest commit a follower has
//!   not applied is (0 when it is caught up); beside it the lag in positions,
//!   `behalf_<follower>_lag`.
//! - [`HISTORY_DIVERGED`]: the first position at which the log no longer holds the
//!   history this process saw (0 while it does); a process that sets it appends nothing.
//! - [`WEBHOOK_ATTEMPTS`] `{outcome}`: webhook delivery attempts (`delivered`,
//!   `retrying`, `failed`, `gone`); [`WEBHOOK_BACKLOG`]: deliveries waiting in every
//!   subscription's queue (never a URL or a subscription id as a label).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::Histogram;

pub const STAGE_SECONDS: &str = "behalf_command_stage_duration_seconds";
pub const HTTP_SECONDS: &str = "behalf_http_request_duration_seconds";
pub const GROUP_SIZE: &str = "behalf_group_commit_size";
pub const FOLLOWER_LAG_SECONDS: &str = "behalf_follower_lag_seconds";
pub const HISTORY_DIVERGED: &str = "behalf_log_history_diverged";
pub const WEBHOOK_ATTEMPTS: &str = "behalf_webhook_attempts_total";
pub const WEBHOOK_BACKLOG: &str = "behalf_webhook_backlog";

/// Sets [`WEBHOOK_BACKLOG`].
pub fn gauge_webhook_backlog(waiting: usize) {
    metrics::gauge!(WEBHOOK_BACKLOG).set(waiting as f64);
}

/// The buckets of every duration histogram, in seconds: 100 µs to 10 s.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// The buckets of [`GROUP_SIZE`].
pub const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];

/// Where a command's time goes, in the order it passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The bearer token to a principal.
    Authenticate,
    /// Reading the body and parsing it into a command.
    Decode,
    /// Waiting for this process's turn on the ticket.
    TicketLock,
    /// Waiting for the GDAP projection to hold every durable directory commit.
    GdapWait,
    /// Reading the ticket's stream and folding it.
    Load,
    /// The domain's `decide`.
    Decide,
    /// Sealing the accepted events' personal fields (and an erasure's key deletion).
    Seal,
    /// Waiting for a group commit (sled) or an atomic batch (NATS) to take the append.
    AppendQueue,
    /// The group's write and flush (sled), or the batch's acknowledgement (NATS).
    Commit,
    /// Writing the answer.
    Respond,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Authenticate,
        Stage::Decode,
        Stage::TicketLock,
        Stage::GdapWait,
        Stage::Load,
        Stage::Decide,
        Stage::Seal,
        Stage::AppendQueue,
        Stage::Commit,
        Stage::Respond,
    ];

    /// The `stage` label.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Authenticate => "authenticate",
            Stage::Decode => "decode",
            Stage::TicketLock => "ticket_lock",
            Stage::GdapWait => "gdap_wait",
            Stage::Load => "load",
            Stage::Decide => "decide",
            Stage::Seal => "seal",
            Stage::AppendQueue => "append_queue",
            Stage::Commit => "commit",
            Stage::Respond => "respond",
        }
    }

    /// Records `took` for this stage.
    pub fn record(self, took: Duration) {
        static HISTOGRAMS: OnceLock<Vec<Histogram>> = OnceLock::new();
        let all = HISTOGRAMS.get_or_init(|| {
            Stage::ALL.iter().map(|s| metrics::histogram!(STAGE_SECONDS, "stage" => s.name())).collect()
        });
        all[self as usize].record(took.as_secs_f64());
    }

    /// Records the time since `start`, and answers now (the next stage's start).
    pub fn since(self, start: Instant) -> Instant {
        let now = Instant::now();
        self.record(now.saturating_duration_since(start));
        now
    }
}

/// Records the size of one group commit or atomic batch.
pub fn group_size(commits: usize) {
    static HISTOGRAM: OnceLock<Histogram> = OnceLock::new();
    HISTOGRAM.get_or_init(|| metrics::histogram!(GROUP_SIZE)).record(commits as f64);
}

/// Sets [`HISTORY_DIVERGED`]: the log differs from what this process saw from `position`.
pub fn history_diverged(position: u64) {
    metrics::gauge!(HISTORY_DIVERGED).set(position as f64);
}
