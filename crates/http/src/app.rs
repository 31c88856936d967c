//! What a server holds: its stores and service ([`App`]), its limits and its counters.

use super::{watch, Arc, Clock, CommandService, EventLog, GdapProjection, QueueStore, Semaphore, Tokens, ViewStore};

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

/// The read side a server answers queries from: the views and how far they are.
pub struct ReadSide {
    pub views: Arc<dyn ViewStore>,
    /// The views' checkpoint, as the projection runner advances it.
    pub position: watch::Receiver<u64>,
}

/// Everything a handler needs. A role serves only its part: commands (with
/// [`App::with_commands`]), queries (with [`App::with_read`]), queues (with
/// [`App::with_queues`]); tokens, health and the event feed always. Only the log is a
/// type parameter (its trait is not object safe); the stores are trait objects.
pub struct App<L: EventLog> {
    pub log: L,
    /// The GDAP projection of `log`, shared with the command service: it scopes every
    /// answer (R24) and decides readiness.
    pub gdap: Arc<GdapProjection>,
    pub commands: Option<Arc<CommandService<L>>>,
    pub tokens: Arc<Tokens>,
    pub read: Option<ReadSide>,
    pub queues: Option<Arc<dyn QueueStore>>,
    /// The webhook store and settings, where this process serves `/v1/webhooks`.
    pub webhooks: Option<(Arc<dyn behalf_log::webhooks::WebhookStore>, behalf_service::webhooks::Settings)>,
    /// Opens sealed personal fields in every answer (issue 26; `crate::seal`).
    pub keyring: Option<Arc<behalf_service::seal::Keyring>>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub(crate) in_flight: Arc<Semaphore>,
}

impl<L: EventLog> App<L> {
    /// An app over `log` and its GDAP projection that serves tokens and health.
    pub fn new(log: L, gdap: Arc<GdapProjection>, tokens: Arc<Tokens>, clock: Arc<dyn Clock>, limits: Limits) -> Self {
        crate::metrics::install();
        App {
            log,
            gdap,
            commands: None,
            tokens,
            read: None,
            queues: None,
            webhooks: None,
            keyring: None,
            clock,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        }
    }

    /// Also takes commands, decided by `service` (over the same log and projection).
    pub fn with_commands(mut self, service: Arc<CommandService<L>>) -> Self {
        self.commands = Some(service);
        self
    }

    /// Also answers queries from these views.
    pub fn with_read(mut self, read: ReadSide) -> Self {
        self.read = Some(read);
        self
    }

    /// Also serves `/v1/webhooks` over this store (with the queues and the commands).
    pub fn with_webhooks(
        mut self,
        store: Arc<dyn behalf_log::webhooks::WebhookStore>,
        settings: behalf_service::webhooks::Settings,
    ) -> Self {
        self.webhooks = Some((store, settings));
        self
    }

    /// Opens sealed personal fields in every answer with `keyring`.
    pub fn with_keyring(mut self, keyring: Arc<behalf_service::seal::Keyring>) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Also leases and acks queue messages.
    pub fn with_queues(mut self, queues: Arc<dyn QueueStore>) -> Self {
        self.queues = Some(queues);
        self
    }
}
