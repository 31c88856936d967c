//! How work over the log runs, said once:
//!
//! - [`catch_up`] — the one catch-up loop: pages of the log from a position up to
//!   another, read ahead by a reader task while the current page is handled (views
//!   catch-up and rebuild, the notifier's `--once`, the audit's replays and export).
//! - [`follow`] — the one follower loop: from a checkpoint, catch up then follow live,
//!   in batches (projections, the notifier).
//! - [`Workers`] — the one worker runner: each worker (the projection runner, the
//!   notifier, the SLA sweep, the GDAP projection) runs until it is told to stop by a
//!   [`Stop`] value; a run that fails on something passing (a NATS node gone) starts
//!   again after a backoff, and a corrupt log stops it for good. Workers keep their
//!   state in their stores with its checkpoint, so a run may be cut at any await.

use std::future::Future;
use std::time::Duration;

use behalf_log::{Commit, EventLog, LogError, Subscription};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Pages read ahead by [`catch_up`]'s reader task.
const READ_AHEAD: usize = 4;
/// Commits per page of [`catch_up`].
pub const PAGE: usize = 2048;

/// Hands the commits after `after` up to `upto` (inclusive) to `f`, page by page in
/// order, while a reader task reads the next pages. Returns the last position handed
/// (`after` if there was nothing).
pub async fn catch_up<L: EventLog, E: From<LogError>>(
    log: &L,
    after: u64,
    upto: u64,
    mut f: impl FnMut(&[Commit]) -> Result<(), E>,
) -> Result<u64, E> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Commit>, LogError>>(READ_AHEAD);
    let reader = log.clone();
    let task = tokio::spawn(async move {
        let mut at = after;
        while at < upto {
            let page = reader.read_all(at, PAGE.min((upto - at) as usize)).await;
            let next = match &page {
                Ok(p) => p.last().map(|c| c.position),
                Err(_) => None,
            };
            if tx.send(page).await.is_err() {
                return;
            }
            match next {
                Some(p) => at = p,
                None => return,
            }
        }
    });
    let mut reached = after;
    let result = loop {
        let Some(page) = rx.recv().await else { break Ok(reached) };
        let page = match page {
            Ok(p) => p,
            Err(e) => break Err(E::from(e)),
        };
        let page: &[Commit] = &page[..page.partition_point(|c| c.position <= upto)];
        let Some(last) = page.last() else { continue };
        if let Err(e) = f(page) {
            break Err(e);
        }
        reached = last.position;
    };
    task.abort();
    result
}

/// Runs until the log closes or `apply` fails. Batches hold up to `batch` commits:
/// the first waits for the log; the rest are only those already durable.
pub async fn follow<L: EventLog>(
    log: &L,
    checkpoint: u64,
    batch: usize,
    mut apply: impl FnMut(&[Commit]) -> Result<u64, LogError>,
    mut progress: impl FnMut(u64),
) -> Result<(), LogError> {
    let mut sub = log.subscribe(checkpoint);
    loop {
        let first = sub.next().await?;
        let first_position = first.position;
        let mut commits = vec![first];
        // How far the log is, to batch what is already there; if the log cannot say
        // right now (a cluster moving a leader), this batch is just the first commit.
        let head = match log.head().await {
            Ok(head) => head,
            Err(e) => {
                tracing::debug!(error = %e, "the log's head is unknown for now");
                first_position
            }
        };
        while commits.len() < batch && commits.last().is_some_and(|c| c.position < head) {
            commits.push(sub.next().await?);
        }
        progress(apply(&commits)?);
    }
}

/// Why a worker's run ended early.
#[derive(Debug)]
pub enum Failure {
    /// Something passing (a lost connection, a leader moving): run again.
    Retry(String),
    /// Nothing a new run would change (a corrupt log): stop this worker.
    Fatal(String),
    /// The log was closed (the process is stopping): end quietly.
    Closed,
}

impl From<LogError> for Failure {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Corrupt { .. } | LogError::Codec(_) => Failure::Fatal(e.to_string()),
            LogError::Closed => Failure::Closed,
            e @ LogError::Storage(_) => Failure::Retry(e.to_string()),
        }
    }
}

impl From<crate::ServiceError> for Failure {
    fn from(e: crate::ServiceError) -> Self {
        match e {
            crate::ServiceError::Log(e) => e.into(),
            e @ crate::ServiceError::Unavailable(_) => Failure::Retry(e.to_string()),
        }
    }
}

/// The signal workers stop on: a value, handed to each.
#[derive(Clone, Debug)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A signal and its sender.
    pub fn new() -> (watch::Sender<bool>, Stop) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop(rx))
    }

    /// Resolves once stop is signalled (or its sender is gone).
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// A signal given when `event` completes (SIGTERM or Ctrl-C, a test's trigger).
    pub fn when(event: impl Future<Output = ()> + Send + 'static) -> Stop {
        let (tx, stop) = Stop::new();
        tokio::spawn(async move {
            event.await;
            let _ = tx.send(true);
        });
        stop
    }

    /// [`Stop::stopped`] as a future of its own (a server's shutdown).
    pub async fn into_stopped(mut self) {
        self.stopped().await;
    }
}

/// The wait before a failed worker runs again: doubling from `first` up to `max`, and
/// back to `first` after a run that lasted a minute.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// A follower of the log retries every second: its lag is part of the fail-over
    /// pause, and a retry costs one subscription.
    pub const FOLLOWER: Backoff = Backoff { first: Duration::from_secs(1), max: Duration::from_secs(1) };
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { first: Duration::from_secs(1), max: Duration::from_secs(30) }
    }
}

const RUN_RESETS_BACKOFF: Duration = Duration::from_secs(60);

/// Runs `work` as the worker `name` until `stop` is signalled: a run that ends with
/// [`Failure::Retry`] starts again after `backoff`; anything else ends it.
pub fn spawn_worker<F, Fut>(name: &'static str, mut stop: Stop, backoff: Backoff, mut work: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Failure>> + Send,
{
    let Backoff { first, max } = backoff;
    tokio::spawn(async move {
        let mut backoff = first;
        loop {
            let started = tokio::time::Instant::now();
            let ended = tokio::select! {
                ended = work() => ended,
                () = stop.stopped() => return,
            };
            match ended {
                Ok(()) => return,
                Err(Failure::Closed) => {
                    tracing::debug!(worker = name, "the log closed");
                    return;
                }
                Err(Failure::Fatal(e)) => {
                    tracing::error!(worker = name, error = %e, "stopped for good");
                    return;
                }
                Err(Failure::Retry(e)) => {
                    if started.elapsed() >= RUN_RESETS_BACKOFF {
                        backoff = first;
                    }
                    tracing::warn!(worker = name, error = %e, retry_in = ?backoff, "failed; running again");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.stopped() => return,
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    })
}

/// A role's workers, stopped together.
pub struct Workers {
    stop: watch::Sender<bool>,
    signal: Stop,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Workers {
    fn default() -> Self {
        let (stop, signal) = Stop::new();
        Workers { stop, signal, tasks: Vec::new() }
    }
}

impl Workers {
    /// Runs a worker (see [`spawn_worker`]) until [`Workers::stop`].
    pub fn spawn<F, Fut>(&mut self, name: &'static str, backoff: Backoff, work: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send,
    {
        self.tasks.push((name, spawn_worker(name, self.signal.clone(), backoff, work)));
    }

    /// Signals every worker to stop and waits for each, `deadline` at most in all.
    pub async fn stop(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let until = tokio::time::Instant::now() + deadline;
        for (name, task) in self.tasks {
            if tokio::time::timeout_at(until, task).await.is_err() {
                tracing::warn!(worker = name, "did not stop within the deadline");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_failing_worker_runs_again_until_stopped_and_a_fatal_one_stops() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut workers = Workers::default();
        let r = Arc::clone(&runs);
        workers.spawn("flaky", Backoff::default(), move || {
            let r = Arc::clone(&r);
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Err(Failure::Retry("gone".into()))
            }
        });
        let fatal = Arc::new(AtomicUsize::new(0));
        let f = Arc::clone(&fatal);
        workers.spawn("broken", Backoff::default(), move || {
            let f = Arc::clone(&f);
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                Err(Failure::Fatal("corrupt".into()))
            }
        });
        // 1 + 2 + 4 + 8 = 15 s of backoff: five runs by 16 s.
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        assert_eq!(fatal.load(Ordering::SeqCst), 1);
        workers.stop(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 5, "a stopped worker runs no more");
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_a_worker_waiting_inside_its_run() {
        let mut workers = Workers::default();
        workers.spawn("forever", Backoff::default(), || async {
            std::future::pending::<()>().await;
            Ok(())
        });
        // Returns at once (not at the deadline) because the run is cut at its await.
        let t = tokio::time::Instant::now();
        workers.stop(Duration::from_secs(10)).await;
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
