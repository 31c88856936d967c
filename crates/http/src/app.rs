//! What a server holds: its stores and service ([`App`]), its limits and its counters.

use super::*;

/// Request limits (API.md: 256 KiB bodies by default).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Commands decided at once; beyond this the answer is `429 overloaded`.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 256 * 1024, max_in_flight: 4096 }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) unavailable: AtomicU64,
}

/// The read side a server answers queries from: the views and how far they are.
pub struct ReadSide<S: ViewStore> {
    pub views: Arc<S>,
    /// The views' checkpoint, as the projection runner advances it.
    pub position: watch::Receiver<u64>,
}

/// Everything a handler needs. A role serves only its part: commands (unless
/// [`App::without_commands`]), queries (with [`App::with_read`]), queues (with
/// [`App::with_queues`]); tokens and health always.
pub struct App<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore> {
    pub service: Arc<CommandService<L>>,
    pub tokens: Arc<Tokens<T>>,
    pub read: Option<ReadSide<S>>,
    pub queues: Option<Arc<Q>>,
    pub commands: bool,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) metrics: Metrics,
}

impl<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore> App<L, T, S, Q> {
    /// An app that takes commands and serves tokens and health.
    pub fn new(service: Arc<CommandService<L>>, tokens: Arc<Tokens<T>>, clock: Arc<dyn Clock>, limits: Limits) -> Self {
        App {
            service,
            tokens,
            read: None,
            queues: None,
            commands: true,
            clock,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            metrics: Metrics::default(),
        }
    }

    /// Also answers queries from these views.
    pub fn with_read(mut self, read: ReadSide<S>) -> Self {
        self.read = Some(read);
        self
    }

    /// Also leases and acks queue messages.
    pub fn with_queues(mut self, queues: Arc<Q>) -> Self {
        self.queues = Some(queues);
        self
    }

    /// Takes no commands (a projector).
    pub fn without_commands(mut self) -> Self {
        self.commands = false;
        self
    }
}
