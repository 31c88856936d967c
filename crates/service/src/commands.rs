//! The command service: for one request, answer its first outcome if it was seen
//! before (R26); otherwise wait for the GDAP projection to hold every durable directory
//! commit (the engine's directory head, or the log's head where the engine has none),
//! load the ticket, `decide`, and append with the ticket's expected version and the
//! directory position decided against (an engine that checks it refuses the append if
//! the directory moved since: decide again), answering only once the append is durable. A version conflict is retried against fresh state a
//! bounded number of times. Refusals are recorded in the audit stream (R30).

use std::sync::Arc;
use std::time::{Duration, Instant};

use behalf_domain::erasure::SUBJECT_PREFIX;
use behalf_domain::event::Isv;
use behalf_domain::{
    decide, rejection_event, Code, Command, CommandId, CommandKey, Context, Event, PartnerId, Principal, Rejection,
    Route, Rule, State, StreamId, Target, Ticket, TicketId, Timestamp,
};
use behalf_log::metrics::Stage;
use behalf_log::{AppendRefused, AppendRequest, Commit, EventLog, ExpectedVersion, Hash};
use serde::Serialize;
use tracing::Instrument;

use crate::clock::Clock;
use crate::gdap::GdapProjection;
use crate::ids::IdGen;
use crate::request::{digest, Request};
use crate::seal::{Erasure, Keyring};
use crate::Refused;

/// How often a command is decided again after losing a race on its ticket.
pub const MAX_ATTEMPTS: usize = 8;

/// How often a command is decided again because a directory commit was stored after
/// the one its decision was made against (each time against the newer directory). Not
/// a race on its own stream, so not counted in [`MAX_ATTEMPTS`]: with GDAP syncs
/// landing every ~100 ms and commits slowed by a busy cluster, eight in a row happened
/// (a soak on 3 nodes refused 4 commands of 106,000 as conflicts for it).
pub const MAX_DIRECTORY_MOVES: usize = 64;

/// After the n-th lost race a command waits a random time below `BACKOFF_UNIT × 2ⁿ`,
/// so two processes hammering one ticket stop colliding in lockstep.
const BACKOFF_UNIT: Duration = Duration::from_micros(500);

/// How long a decision waits for the GDAP projection to catch up.
pub const PROJECTION_WAIT: Duration = Duration::from_secs(5);

/// An accepted command's answer.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Accepted {
    #[schemars(extend("const" = "accepted"))]
    pub outcome: &'static str,
    pub command_id: CommandId,
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The global position of the commit (or of the log, when nothing was appended).
    pub position: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<TicketId>,
    /// For `support.request`: the recorded decision (R23).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<PartnerId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isv: Option<Isv>,
    pub events: Vec<Event>,
    /// The answer is the first outcome of an earlier identical request (R26).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl Accepted {
    /// Whether the command created a ticket (HTTP 201).
    pub fn created(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::TicketOpened(_)))
    }

    fn new(
        command_id: CommandId,
        stream: StreamId,
        version: u64,
        position: u64,
        events: Vec<Event>,
        duplicate: bool,
    ) -> Self {
        let ticket_id = events.iter().find_map(|e| e.ticket_id().cloned());
        let routed = events.iter().find_map(|e| if let Event::SupportRequestRouted(r) = e { Some(r) } else { None });
        Accepted {
            outcome: "accepted",
            command_id,
            stream,
            version,
            position,
            ticket_id,
            route: routed.map(|r| r.route),
            partner_id: routed.and_then(|r| r.partner_id.clone()),
            isv: routed.and_then(|r| r.isv.clone()),
            events,
            duplicate,
        }
    }
}

/// The command service over one log.
pub struct CommandService<L: EventLog> {
    log: L,
    gdap: Arc<GdapProjection>,
    clock: Arc<dyn Clock>,
    ids: IdGen,
    /// Commands on one ticket take turns within this process (striped by ticket), so
    /// they do not race each other into retries; races with other processes are still
    /// caught by the expected version and retried.
    stripes: Vec<tokio::sync::Mutex<()>>,
    stripe_hasher: std::collections::hash_map::RandomState,
    /// Seals personal fields before they are appended, and erases (issue 26). Without
    /// one (tests of logic, benchmarks' baseline) fields are stored as sent.
    keyring: Option<Arc<Keyring>>,
}

/// Stripes of per-ticket turn-taking.
const STRIPES: usize = 1024;

/// A random wait below `BACKOFF_UNIT × 2^attempt` (full jitter).
fn backoff(attempt: usize) -> Duration {
    use std::hash::BuildHasher;
    let ceiling = BACKOFF_UNIT.as_micros() as u64 * (1u64 << attempt.min(10));
    let noise = std::collections::hash_map::RandomState::new().hash_one(attempt);
    Duration::from_micros(noise % ceiling.max(1))
}

fn rejection_answer_of(commit: &Commit) -> Option<Rejection> {
    commit.events.iter().find_map(|e| if let Event::CommandRejected(r) = e { Some(r.rejection()) } else { None })
}

impl<L: EventLog> CommandService<L> {
    /// Starts the service over `log`, with a GDAP projection of its own.
    pub fn new(log: L, clock: Arc<dyn Clock>) -> Self {
        let gdap = GdapProjection::spawn(&log);
        Self::with_gdap(log, gdap, clock)
    }

    /// Starts the service over `log`, deciding against `gdap` (a projection of the same
    /// log that the wiring shares with the read side).
    pub fn with_gdap(log: L, gdap: Arc<GdapProjection>, clock: Arc<dyn Clock>) -> Self {
        let stripes = (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        CommandService {
            log,
            gdap,
            clock,
            ids: IdGen::default(),
            stripes,
            stripe_hasher: Default::default(),
            keyring: None,
        }
    }

    /// Seals personal fields with `keyring` and lets `person.erase` and
    /// `ticket.redact` delete its keys.
    pub fn with_keyring(mut self, keyring: Arc<Keyring>) -> Self {
        let ring = Arc::downgrade(&keyring);
        self.gdap.on_erased(move |ids| {
            if let Some(ring) = ring.upgrade() {
                ring.forget(ids);
            }
        });
        self.keyring = Some(keyring);
        self
    }

    pub fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.keyring.as_ref()
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    pub fn gdap(&self) -> &Arc<GdapProjection> {
        &self.gdap
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Executes one request for an authenticated principal.
    pub async fn execute(&self, principal: Principal, mut req: Request) -> Result<Accepted, Refused> {
        let command_id = match &req.command_id {
            Some(id) => id.clone(),
            None => CommandId::new(format!("auto-{}", self.ids.next(self.clock.now()))),
        };
        let span = tracing::info_span!("command", command_id = %command_id, kind = req.command.type_name());
        let before = self.hash_person(&principal, &mut req);
        self.execute_as(principal, req, command_id, before).instrument(span).await
    }

    /// `person.erase`: the address is replaced by its keyed hash before anything else
    /// sees the command (R26's hash, the log, a refusal's record); a partner's
    /// directory sync may erase only its own users (checked here, where the address
    /// is still known). What it refuses, if anything.
    fn hash_person(&self, principal: &Principal, req: &mut Request) -> Option<Rejection> {
        let Command::PersonErase(c) = &mut req.command else { return None };
        let email = std::mem::take(&mut c.email);
        let Some(keyring) = &self.keyring else {
            c.email = SUBJECT_PREFIX.to_owned();
            return Some(Rejection::new(
                Code::Unavailable,
                Rule::R16,
                "this server keeps no sealing keys: personal data is not sealed here",
            ));
        };
        if behalf_domain::directory::email_domain(&email).is_none() {
            c.email = SUBJECT_PREFIX.to_owned();
            return Some(Rejection::invalid("email", "not an e-mail address"));
        }
        c.email = format!("{SUBJECT_PREFIX}{}", keyring.subject(&email));
        if let Principal::PartnerSync { partner_id } = principal {
            let wanted = email.trim().to_lowercase();
            let view = self.gdap.view();
            let own = view
                .directory
                .users
                .values()
                .any(|u| &u.partner_id == partner_id && keyring.is_address_of(&u.email, &wanted));
            if !own {
                return Some(Rejection::new(
                    Code::Forbidden,
                    Rule::R2,
                    "a partner's directory sync erases only that partner's own users",
                ));
            }
        }
        None
    }

    /// One command's way: its first outcome if it was seen before (R26); else, taking
    /// its ticket's turn, **load** (the directory up to date, the ticket folded from
    /// its stream) → **decide** (the domain's pure `decide`) → **commit** (the append,
    /// durable before it answers), again from load when it lost a race.
    async fn execute_as(
        &self,
        principal: Principal,
        req: Request,
        command_id: CommandId,
        before: Option<Rejection>,
    ) -> Result<Accepted, Refused> {
        let hash = digest(&principal, &req, self.keyring.as_deref());
        // R26: a command seen before answers its first outcome. The key is the id within
        // the sender's tenant, so another tenant's use of it is neither found nor shown.
        // An id generated here is new by construction; the log still refuses to store a
        // key twice.
        let key = CommandKey::of(&principal, &command_id);
        if req.command_id.is_some() {
            if let Some(first) = self.log.find_command(&key).await? {
                // A command recorded before sealing was on kept its plain digest.
                let plain = || digest(&principal, &req, None);
                let hash = if first.request_hash != hash && first.request_hash == plain() { plain() } else { hash };
                return first_outcome(&first, &hash, command_id);
            }
        }
        if let Some(rejection) = before {
            return self.refuse(&principal, &req, command_id, hash, rejection).await;
        }
        let mut req = req;
        if let (Command::PartnerUserUpsert(u), Some(keyring)) = (&mut req.command, &self.keyring) {
            // Sealed before the decision (the same way each time), so the directory
            // compares it with the user it holds, and holds it only sealed.
            if behalf_domain::directory::email_domain(&u.email).is_some() {
                crate::seal::blocking(|| keyring.seal_address(&mut u.email))?;
            }
        }
        let waited = Instant::now();
        let _turn = self.ticket_turn(&req.command).instrument(tracing::debug_span!("ticket_lock")).await;
        Stage::TicketLock.since(waited);
        let mut new_id = None;
        let mut lost_race = false;
        let (mut races, mut moves) = (0, 0);
        while races < MAX_ATTEMPTS && moves <= MAX_DIRECTORY_MOVES {
            if lost_race {
                tokio::time::sleep(backoff(races)).await;
            }
            let now = self.clock.now();
            let loaded = self
                .load(&req.command, || self.ids.next(now), &mut new_id)
                .instrument(tracing::debug_span!("load"))
                .await?;
            let ctx = Context {
                now,
                principal: principal.clone(),
                new_id: new_id.clone().unwrap_or_default(),
                directory_position: 0,
                expected_version: req.expected_version,
            };
            let deciding = Instant::now();
            let (decision, directory_at) =
                tracing::debug_span!("decide").in_scope(|| self.decide(&req.command, loaded.ticket.as_ref(), ctx));
            Stage::Decide.since(deciding);
            let mut events = match decision {
                Ok(events) => events,
                Err(rejection) => return self.refuse(&principal, &req, command_id, hash, rejection).await,
            };
            let sealing = Instant::now();
            let sealed = self.seal_or_erase(&mut events, &loaded).instrument(tracing::debug_span!("seal")).await?;
            Stage::Seal.since(sealing);
            if let Err(rejection) = sealed {
                return self.refuse(&principal, &req, command_id, hash, rejection).await;
            }
            if events.is_empty() {
                // An upsert of the same state: accepted, nothing appended.
                let version = self.log.stream_version(&loaded.stream).await?;
                let head = self.log.head().await?;
                return Ok(Accepted::new(command_id, loaded.stream, version, directory_at.max(head), events, false));
            }
            // **Commit**.
            let mut append = commit(loaded.stream, loaded.expected, &command_id, hash, now, &principal, events.clone());
            append.directory_at = Some(directory_at);
            match self.log.append(append).instrument(tracing::debug_span!("commit")).await? {
                Ok(a) if a.duplicate => {
                    // Lost a race with the same command: answer what the log holds.
                    return match self.log.find_command(&key).await? {
                        Some(c) => first_outcome(&c, &hash, command_id),
                        None => Ok(Accepted::new(command_id, a.stream, a.last_version, a.position, events, true)),
                    };
                }
                Ok(a) => {
                    tracing::debug!(position = a.position, "accepted");
                    return Ok(Accepted::new(command_id, a.stream, a.last_version, a.position, events, false));
                }
                Err(AppendRefused::Conflict { .. }) => {
                    lost_race = true;
                    races += 1;
                }
                // The directory moved after the decision: decide again, once the
                // projection has it.
                Err(AppendRefused::DirectoryMoved { .. }) => {
                    lost_race = false;
                    moves += 1;
                }
                Err(AppendRefused::KeyReused { position }) => {
                    return Err(key_reused(position).into());
                }
            }
        }
        let r = Rejection::new(
            Code::ConcurrencyConflict,
            Rule::R27,
            format!("the stream kept moving; gave up after {races} lost races and {moves} directory changes"),
        );
        self.refuse(&principal, &req, command_id, hash, r).await
    }

    /// Outside the pure decision (issue 26): seals the personal fields of accepted
    /// events, and for an erasure deletes the keys first (so a crash between the two
    /// leaves them deleted and the retry records it), naming them in its event.
    async fn seal_or_erase(&self, events: &mut [Event], loaded: &Loaded) -> Result<Result<(), Rejection>, Refused> {
        let Some(keyring) = &self.keyring else { return Ok(Ok(())) };
        for e in events.iter_mut() {
            if let Event::PersonErased(p) = e {
                match crate::seal::blocking(|| keyring.erase_person(&p.subject))? {
                    Erasure::Erased(ids) => p.key_ids = ids,
                    Erasure::AlreadyErased => {}
                    Erasure::Unknown => {
                        return Ok(Err(Rejection::new(
                            Code::PersonNotFound,
                            Rule::R16,
                            "no personal data of this person is kept here",
                        )))
                    }
                }
            } else if let Event::TicketRedacted(r) = e {
                let commits = self.log.read_stream(&loaded.stream, 1).await?;
                let all: Vec<Event> = commits.into_iter().flat_map(|c| c.events).collect();
                r.key_ids = crate::seal::blocking(|| keyring.redact(&all))?;
            }
        }
        // (Not `blocking` as a whole: a key write is rare — once per new person,
        // grouped with others', and ticket keys made ahead — and the keyring moves only
        // those off the async threads.)
        keyring.seal(events, loaded.text_key.as_deref())?;
        Ok(Ok(()))
    }

    /// Commands on one ticket take turns within this process (a stripe of its id).
    async fn ticket_turn(&self, command: &Command) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match command.target() {
            Target::Ticket(id) => {
                use std::hash::BuildHasher;
                Some(self.stripes[(self.stripe_hasher.hash_one(&id) as usize) % STRIPES].lock().await)
            }
            Target::NewTicket | Target::NewSupportRequest | Target::Fact(_) => None,
        }
    }

    /// **Load**: what a decision needs besides the directory — the stream the command
    /// writes to, the ticket folded from it, the version the append expects — once the
    /// GDAP projection holds every directory commit durable now (no decision on a
    /// stale grant). A new ticket's or support request's id is made once (`new_id`) and
    /// kept across attempts.
    async fn load(
        &self,
        command: &Command,
        make_id: impl FnOnce() -> String,
        new_id: &mut Option<String>,
    ) -> Result<Loaded, Refused> {
        // An engine that checks the directory position on append says where the last
        // directory commit is (the rest of the log need not be read first); otherwise
        // the projection catches up with the head.
        let start = Instant::now();
        let floor = match self.log.directory_head() {
            Some(directory) => directory,
            None => self.log.head().await?,
        };
        self.gdap.wait_for(floor, PROJECTION_WAIT).await?;
        let start = Stage::GdapWait.since(start);
        let loaded = match command.target() {
            target @ (Target::NewTicket | Target::NewSupportRequest) => {
                let id = new_id.get_or_insert_with(make_id);
                let category = if matches!(target, Target::NewTicket) { "ticket" } else { "support" };
                Loaded {
                    stream: StreamId::of(category, id),
                    ticket: None,
                    expected: ExpectedVersion::Exact(0),
                    text_key: None,
                }
            }
            Target::Ticket(id) => {
                let stream = StreamId::ticket(&id);
                let commits = self.log.read_stream(&stream, 1).await?;
                let text_key = match self.keyring {
                    Some(_) => crate::seal::text_key_of(commits.iter().flat_map(|c| &c.events)),
                    None => None,
                };
                let ticket = commits.into_iter().flat_map(|c| c.events).fold(None, Ticket::evolve_owned);
                let version = ticket.as_ref().map_or(0, |t| t.case.version);
                Loaded { stream, ticket, expected: ExpectedVersion::Exact(version), text_key }
            }
            Target::Fact(stream) => Loaded { stream, ticket: None, expected: ExpectedVersion::Any, text_key: None },
        };
        Stage::Load.since(start);
        Ok(loaded)
    }

    /// **Decide**: the domain's decision against the directory as the projection holds
    /// it now, and the directory position it was made at (the append carries it, so an
    /// engine refuses it if the directory moved since).
    fn decide(&self, command: &Command, ticket: Option<&Ticket>, ctx: Context) -> (Result<Vec<Event>, Rejection>, u64) {
        let view = self.gdap.view();
        let ctx = Context { directory_position: view.position, ..ctx };
        let state = State { directory: &view.directory, ticket };
        (decide(&state, command, &ctx), view.position)
    }

    /// R30: records the refusal in the audit stream, keyed by the command id, so a
    /// retry answers it again (R26); then answers it.
    async fn refuse(
        &self,
        principal: &Principal,
        req: &Request,
        command_id: CommandId,
        hash: Hash,
        rejection: Rejection,
    ) -> Result<Accepted, Refused> {
        let ticket_id = match req.command.target() {
            Target::Ticket(id) => Some(id),
            Target::NewTicket | Target::NewSupportRequest | Target::Fact(_) => None,
        };
        let now = self.clock.now();
        let ctx = Context {
            now,
            principal: principal.clone(),
            new_id: String::new(),
            directory_position: 0,
            expected_version: None,
        };
        let record = rejection_event(req.command.type_name(), &rejection, &ctx, ticket_id);
        let append =
            commit(StreamId::rejections(), ExpectedVersion::Any, &command_id, hash, now, principal, vec![record]);
        tracing::debug!(code = %rejection.code, "rejected");
        match self.log.append(append).await? {
            Ok(a) if a.duplicate => match self.log.find_command(&CommandKey::of(principal, &command_id)).await? {
                Some(c) => first_outcome(&c, &hash, command_id),
                None => Err(rejection.into()),
            },
            Ok(_) | Err(AppendRefused::Conflict { .. } | AppendRefused::DirectoryMoved { .. }) => Err(rejection.into()),
            Err(AppendRefused::KeyReused { position }) => Err(key_reused(position).into()),
        }
    }
}

/// The append of one command's events.
fn commit(
    stream: StreamId,
    expected: ExpectedVersion,
    command_id: &CommandId,
    request_hash: Hash,
    at: Timestamp,
    actor: &Principal,
    events: Vec<Event>,
) -> AppendRequest {
    AppendRequest {
        stream,
        expected,
        command_id: command_id.clone(),
        request_hash,
        at,
        actor: actor.clone(),
        correlation_id: None,
        causation_id: None,
        events,
        directory_at: None,
    }
}

/// What a load found for a decision.
struct Loaded {
    stream: StreamId,
    ticket: Option<Ticket>,
    expected: ExpectedVersion,
    /// The text key the ticket's stream names last (issue 26).
    text_key: Option<String>,
}

/// The answer to a command seen before (R26): its first outcome — the accepted
/// events, or the refusal recorded for it — or `KeyReused` for another body.
fn first_outcome(first: &Commit, hash: &Hash, command_id: CommandId) -> Result<Accepted, Refused> {
    let appended = first.first_outcome(hash).map_err(|_| Refused::from(key_reused(first.position)))?;
    match rejection_answer_of(first) {
        Some(r) if first.stream == StreamId::rejections() => Err(r.into()),
        Some(_) | None => Ok(Accepted::new(
            command_id,
            appended.stream,
            appended.last_version,
            appended.position,
            first.events.clone(),
            true,
        )),
    }
}

fn key_reused(position: u64) -> Rejection {
    Rejection::new(Code::IdempotencyKeyReused, Rule::R26, "this command id was used before with another body")
        .with("first_position", position)
}
