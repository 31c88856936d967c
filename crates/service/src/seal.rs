//! Sealing personal data (issue 26, crypto-shredding): every personal field is
//! encrypted before it is written anywhere — log, views, queues — under a key per
//! data subject, and erasing deletes the key. The hash chain covers what is stored,
//! the ciphertext, so it verifies before and after any erasure.
//!
//! - A contact's names, address and phone are sealed under the **person's key**, found
//!   by a keyed hash (HMAC-SHA-256 under the store's own hash key) of the normalised
//!   address, never the address itself.
//! - A ticket's title, description and texts (notes, responses, resolutions, reasons)
//!   are sealed under the **ticket's key**.
//!
//! A sealed field is a string: `enc1.<key id>.<base64url(nonce ‖ ciphertext)>`, and
//! for an address `…@<domain>`: the domain stays in the clear, because R11 judges it
//! (on every later command, R18) and audits re-judge it (R29). It names the partner's
//! organisation (one of its verified domains), not a person. XChaCha20-Poly1305
//! (RustCrypto's `chacha20poly1305`: an audited, constant-time AEAD whose 192-bit
//! nonces may be random), the key id and the clear domain as associated data.
//!
//! Reads open sealed strings on the way out ([`Keyring::open_json`]); a deleted key
//! reads as [`ERASED`]. The key store (`behalf_log::keys`) holds:
//! `hash` → the hash key; `k.<key id>` → a ticket's key (empty once erased);
//! `p.<hash>.<generation>` → the person's key of that generation (key id
//! `p<hash>g<generation>`; empty once erased: the next ticket of that address starts
//! a new generation with a fresh key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use behalf_domain::event::Contact;
use behalf_domain::Event;
use behalf_log::keys::KeyStore;
use behalf_log::LogError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What an erased (or unreadable) field reads as.
pub const ERASED: &str = "[erased]";

/// The prefix of a sealed string.
pub const SEALED: &str = behalf_domain::erasure::SEALED_PREFIX;

/// How long a reader trusts a key it fetched before asking the store again: an
/// erasure made by another process is effective here within this (or sooner, when
/// this process follows the erasure's event).
pub const KEY_TTL: Duration = Duration::from_secs(1);

/// Keys made ahead and stored in one round trip, so opening a ticket does not wait
/// for a key write of its own.
const POOL: usize = 512;

/// Cached keys above this are dropped (they are fetched again when needed).
const CACHE_MAX: usize = 200_000;

type Key = [u8; 32];

fn random_key() -> Key {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).unwrap_or_else(|e| panic!("the system's random source failed: {e}"));
    k
}

fn random_id(prefix: char) -> String {
    let mut b = [0u8; 10];
    getrandom::fill(&mut b).unwrap_or_else(|e| panic!("the system's random source failed: {e}"));
    let mut s = String::with_capacity(21);
    s.push(prefix);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Runs a keyring call that may block on its store (a flush, a bucket's round trip)
/// without holding up the async threads: `block_in_place` on a multi-threaded Tokio
/// runtime (every role's), directly elsewhere.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) | Err(_) => f(),
    }
}

/// The store entry of key `id`: a person's generation (`p<subject>g<n>` →
/// `p.<subject>.<n>`), or a ticket key (`k.<id>`).
fn entry_of(id: &str) -> String {
    match id.strip_prefix('p').and_then(|rest| rest.split_once('g')) {
        Some((subject, generation)) => format!("p.{subject}.{generation}"),
        None => format!("k.{id}"),
    }
}

/// The person a person's key id names (`p<subject>g<n>` → `<subject>`).
fn subject_of_key(id: &str) -> Option<&str> {
    id.strip_prefix('p').and_then(|rest| rest.split_once('g')).map(|(subject, _)| subject)
}

/// One sealed string, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub key_id: &'a str,
    pub body: &'a str,
    /// An address's domain, kept in the clear.
    pub domain: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    pub fn parse(s: &'a str) -> Option<Envelope<'a>> {
        let rest = s.strip_prefix(SEALED)?;
        let (key_id, rest) = rest.split_once('.')?;
        let (body, domain) = match rest.split_once('@') {
            Some((b, d)) => (b, Some(d)),
            None => (rest, None),
        };
        (!key_id.is_empty() && !body.is_empty()).then_some(Envelope { key_id, body, domain })
    }
}

fn aad(key_id: &str, domain: Option<&str>) -> Vec<u8> {
    [key_id.as_bytes(), b"@", domain.unwrap_or("").as_bytes()].concat()
}

/// Seals `clear` under `key` named `key_id` (an address's `domain` kept in the clear).
pub fn seal_with(key: &Key, key_id: &str, clear: &str, domain: Option<&str>) -> String {
    seal_bytes(key, key_id, clear.as_bytes(), domain)
}

/// Seals `clear` bytes: a string's, or a bundle's ([`BUNDLES`]).
fn seal_bytes(key: &Key, key_id: &str, clear: &[u8], domain: Option<&str>) -> String {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).unwrap_or_else(|e| panic!("the system's random source failed: {e}"));
    seal_with_nonce(key, key_id, clear, domain, &nonce)
}

/// Seals `clear` the same way every time under the same key (the nonce is a MAC of
/// it under the key, as in SIV): a partner user's address, so an upsert of the same
/// user under the same key is the same fact (nothing appended), found without
/// opening it. Equal ciphertexts say only "the same address", which its key id
/// (the person's) says already.
pub fn seal_deterministic(key: &Key, key_id: &str, clear: &str, domain: Option<&str>) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"nonce\0");
    mac.update(clear.as_bytes());
    let tag = mac.finalize().into_bytes();
    let nonce: [u8; 24] = tag[..24].try_into().expect("a SHA-256 MAC is 32 bytes");
    seal_with_nonce(key, key_id, clear.as_bytes(), domain, &nonce)
}

fn seal_with_nonce(key: &Key, key_id: &str, clear: &[u8], domain: Option<&str>, nonce: &[u8; 24]) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
    let ad = aad(key_id, domain);
    let sealed = cipher
        .encrypt(XNonce::from_slice(nonce), Payload { msg: clear, aad: &ad })
        .unwrap_or_else(|e| panic!("XChaCha20-Poly1305 cannot fail to encrypt: {e}"));
    let mut out = String::with_capacity(SEALED.len() + key_id.len() + 48 + sealed.len() * 4 / 3);
    out.push_str(SEALED);
    out.push_str(key_id);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string([&nonce[..], &sealed].concat(), &mut out);
    if let Some(d) = domain {
        out.push('@');
        out.push_str(d);
    }
    out
}

/// Opens an envelope with its key: `None` if it was tampered with or is not whole.
pub fn open_with(key: &Key, e: &Envelope<'_>) -> Option<String> {
    String::from_utf8(open_bytes(key, e)?).ok()
}

fn open_bytes(key: &Key, e: &Envelope<'_>) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(e.body).ok()?;
    if bytes.len() < 24 {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(24);
    let ad = aad(e.key_id, e.domain);
    XChaCha20Poly1305::new(key.into()).decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &ad }).ok()
}

/// Fields sealed together, in one envelope (one nonce, one tag, one key id) held by
/// the first (the anchor); the others are stored empty. Its clear bytes are a
/// MessagePack array of the members' values (`null` for an absent phone) — never
/// valid UTF-8 (a MessagePack array starts with a continuation byte), so a bundle
/// and a single sealed string are told apart once opened. Readers open a bundle
/// where they find its anchor in a JSON object, and fill in the members the object
/// has; an erased bundle shows the anchor and its empty members as [`ERASED`].
pub const BUNDLES: [(&str, &[&str]); 2] =
    [("email", &["email", "first_name", "last_name", "phone"]), ("title", &["title", "description"])];

/// What a sealed string holds, once opened.
enum Opened {
    Text(String),
    Bundle(Vec<Option<String>>),
    Erased,
}

fn opened_bytes(bytes: Vec<u8>) -> Option<Opened> {
    match String::from_utf8(bytes) {
        Ok(s) => Some(Opened::Text(s)),
        Err(e) => rmp_serde::from_slice::<Vec<Option<String>>>(e.as_bytes()).ok().map(Opened::Bundle),
    }
}

/// A bundle's anchor shown erased, and the members stored empty beside it.
fn erase_members(o: &mut serde_json::Map<String, serde_json::Value>, members: &[&str]) {
    for (i, name) in members.iter().enumerate() {
        if let Some(serde_json::Value::String(s)) = o.get_mut(*name) {
            if i == 0 || s.is_empty() {
                *s = ERASED.to_owned();
            }
        }
    }
}

/// Shows every sealed field of a JSON value as erased, without opening any (an audit
/// without the key store).
pub fn erase_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if Envelope::parse(s).is_some() => *s = ERASED.to_owned(),
        serde_json::Value::Array(a) => a.iter_mut().for_each(erase_json),
        serde_json::Value::Object(o) => {
            for (anchor, members) in BUNDLES {
                if matches!(o.get(anchor), Some(serde_json::Value::String(s)) if Envelope::parse(s).is_some()) {
                    erase_members(o, members);
                }
            }
            o.values_mut().for_each(erase_json);
        }
        serde_json::Value::String(_)
        | serde_json::Value::Null
        | serde_json::Value::Bool(_)
        | serde_json::Value::Number(_) => {}
    }
}

/// A key as this process last saw it.
#[derive(Clone, Copy)]
enum Known {
    Live(Key, Instant),
    Erased,
}

/// What [`Keyring::erase_person`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Erasure {
    /// The keys deleted now.
    Erased(Vec<String>),
    /// Erased before (nothing live to delete).
    AlreadyErased,
    /// Never seen: no key was ever made for it.
    Unknown,
}

/// The keys of one deployment, over its key store; shared by the command service (it
/// seals), the readers (they open) and erasure.
pub struct Keyring {
    store: Arc<dyn KeyStore>,
    hash_key: Key,
    keys: Mutex<HashMap<String, Known>>,
    /// A person's keyed hash → (generation, key id) of the live key.
    persons: Mutex<HashMap<String, (u32, String)>>,
    pool: Arc<Pool>,
    /// New people's keys waiting to be created together ([`Keyring::create_together`]).
    creates: Mutex<Creates>,
    created: std::sync::Condvar,
}

/// Ticket keys made ahead.
#[derive(Default)]
struct Pool {
    keys: Mutex<Vec<(String, Key)>>,
    /// Held while the pool is written (one refill at a time).
    refilling: Mutex<()>,
    /// A refill ahead is under way.
    ahead: std::sync::atomic::AtomicBool,
}

impl Pool {
    /// Adds [`POOL`] fresh keys, once stored, if fewer than `below` are left (whoever
    /// finds a refill under way waits for it rather than writing keys of its own).
    fn refill(&self, store: &dyn KeyStore, below: usize) -> Result<(), LogError> {
        let _one = self.refilling.lock().unwrap_or_else(|p| p.into_inner());
        if self.keys.lock().unwrap_or_else(|p| p.into_inner()).len() >= below {
            return Ok(());
        }
        let fresh: Vec<(String, Key)> = (0..POOL).map(|_| (random_id('t'), random_key())).collect();
        let entries: Vec<(String, Vec<u8>)> = fresh.iter().map(|(id, k)| (format!("k.{id}"), k.to_vec())).collect();
        store.put_many(&entries)?;
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).extend(fresh);
        Ok(())
    }

    /// Refills the pool on a thread of its own (a blocking task of the runtime, if
    /// any), unless a refill ahead is under way.
    fn refill_ahead(pool: &Arc<Pool>, store: &Arc<dyn KeyStore>) {
        use std::sync::atomic::Ordering;
        if pool.ahead.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, store) = (Arc::clone(pool), Arc::clone(store));
        let work = move || {
            if let Err(e) = pool.refill(store.as_ref(), POOL / 2) {
                tracing::warn!(error = %e, "cannot make sealing keys ahead; a command will make them");
            }
            pool.ahead.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(work)),
            Err(_) => drop(std::thread::spawn(work)),
        }
    }
}

/// A group commit of new people's keys: whoever finds no creation under way leads —
/// creates everything queued in one `create_many` (one round trip, one sync), and
/// again while more queued meanwhile — and the rest wait for their answer.
#[derive(Default)]
struct Creates {
    next: u64,
    queue: Vec<(u64, String, Key)>,
    done: HashMap<u64, Result<bool, String>>,
    leading: bool,
}

impl Keyring {
    /// Opens the keyring over `store`, making the hash key at the first start (and
    /// saying so: a key store made now beside a log that holds sealed records is a
    /// lost key store).
    pub fn open(store: Arc<dyn KeyStore>) -> Result<(Keyring, bool), LogError> {
        // Read first: a role that only reads (a projector) never writes the store.
        let fresh = store.get("hash")?.is_none() && store.create("hash", &random_key())?;
        let hash_key = store
            .get("hash")?
            .and_then(|k| <Key>::try_from(k.as_slice()).ok())
            .ok_or_else(|| LogError::Storage("the key store's hash key is missing or damaged".into()))?;
        Ok((Keyring::over(store, hash_key), fresh))
    }

    /// Opens an existing keyring for reading (an audit): `None` where no key store was
    /// ever made (a log from before sealing). Creates nothing.
    pub fn open_existing(store: Arc<dyn KeyStore>) -> Result<Option<Keyring>, LogError> {
        let Some(hash) = store.get("hash")? else { return Ok(None) };
        let hash_key = <Key>::try_from(hash.as_slice())
            .map_err(|_| LogError::Storage("the key store's hash key is damaged".into()))?;
        Ok(Some(Keyring::over(store, hash_key)))
    }

    fn over(store: Arc<dyn KeyStore>, hash_key: Key) -> Keyring {
        Keyring {
            store,
            hash_key,
            keys: Mutex::default(),
            persons: Mutex::default(),
            pool: Arc::default(),
            creates: Mutex::default(),
            created: std::sync::Condvar::new(),
        }
    }

    /// Creates `name` (as [`KeyStore::create`]) together with whatever other new
    /// people's keys are being created at the same moment ([`Creates`]).
    fn create_together(&self, name: String, key: Key) -> Result<bool, LogError> {
        let lock = || self.creates.lock().unwrap_or_else(|p| p.into_inner());
        let mut g = lock();
        let me = g.next;
        g.next += 1;
        g.queue.push((me, name, key));
        loop {
            if let Some(r) = g.done.remove(&me) {
                return r.map_err(LogError::Storage);
            }
            if g.leading {
                g = self.created.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            g.leading = true;
            while !g.queue.is_empty() {
                let batch = std::mem::take(&mut g.queue);
                drop(g);
                // One entry per name: a second ask for the same new person finds it
                // made (as `create` would answer it).
                let mut first: HashMap<&str, usize> = HashMap::new();
                let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
                for (_, name, key) in &batch {
                    first.entry(name.as_str()).or_insert_with(|| {
                        entries.push((name.clone(), key.to_vec()));
                        entries.len() - 1
                    });
                }
                let answer = self.store.create_many(&entries).map_err(|e| e.to_string());
                g = lock();
                let mut seen = std::collections::HashSet::new();
                for (id, name, _) in &batch {
                    let r = match &answer {
                        Ok(created) if seen.insert(name.as_str()) => created
                            .get(first[name.as_str()])
                            .copied()
                            .ok_or_else(|| "the key store answered fewer creations than asked".to_owned()),
                        Ok(_) => Ok(false),
                        Err(e) => Err(e.clone()),
                    };
                    g.done.insert(*id, r);
                }
                self.created.notify_all();
            }
            g.leading = false;
        }
    }

    /// HMAC-SHA-256 of `bytes` under the store's hash key.
    pub fn mac(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key).expect("HMAC takes any key length");
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// The keyed hash of a normalised address (lower case, trimmed), in hex.
    pub fn subject(&self, email: &str) -> String {
        self.mac(email.trim().to_lowercase().as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn remember(&self, id: &str, k: Known) {
        let mut keys = self.keys.lock().expect("the key cache lock is never poisoned");
        if keys.len() >= CACHE_MAX {
            keys.clear();
        }
        keys.insert(id.to_owned(), k);
    }

    /// A fresh key from the pool (made [`POOL`] at a time, durable, in one write).
    /// Below half full, the pool is refilled ahead on a thread of its own, so a
    /// command seldom waits for it.
    fn pooled(&self) -> Result<(String, Key), LogError> {
        loop {
            let (taken, left) = {
                let mut keys = self.pool.keys.lock().unwrap_or_else(|p| p.into_inner());
                (keys.pop(), keys.len())
            };
            if let Some((id, key)) = taken {
                if left < POOL / 2 {
                    Pool::refill_ahead(&self.pool, &self.store);
                }
                self.remember(&id, Known::Live(key, Instant::now()));
                return Ok((id, key));
            }
            blocking(|| self.pool.refill(self.store.as_ref(), 1))?;
        }
    }

    /// The key `id`, from the cache (a live key for at most `ttl`) or the store:
    /// `None` when erased or never stored.
    fn key(&self, id: &str, ttl: Option<Duration>) -> Result<Option<Key>, LogError> {
        let cached = self.keys.lock().expect("the key cache lock is never poisoned").get(id).copied();
        match cached {
            Some(Known::Erased) => return Ok(None),
            Some(Known::Live(k, at)) if ttl.is_none_or(|ttl| at.elapsed() < ttl) => return Ok(Some(k)),
            Some(Known::Live(..)) | None => {}
        }
        let stored = self.store.get(&entry_of(id))?;
        self.remember_stored(id, stored)
    }

    /// Caches key `id` as the store holds it (`stored`): live, erased, or unknown.
    fn remember_stored(&self, id: &str, stored: Option<Vec<u8>>) -> Result<Option<Key>, LogError> {
        match stored {
            Some(k) if k.len() == 32 => {
                let k = <Key>::try_from(k.as_slice()).expect("checked length");
                self.remember(id, Known::Live(k, Instant::now()));
                Ok(Some(k))
            }
            Some(k) if k.is_empty() => {
                self.remember(id, Known::Erased);
                Ok(None)
            }
            Some(_) => Err(LogError::Storage(format!("sealing key {id} is damaged in the key store"))),
            None => Ok(None),
        }
    }

    /// The person's live generation, probing the store from `from`.
    fn person_generation(&self, subject: &str, from: u32) -> Result<(u32, Option<Vec<u8>>), LogError> {
        let mut generation = from;
        let mut last = None;
        loop {
            match self.store.get(&format!("p.{subject}.{generation}"))? {
                Some(v) => {
                    last = Some(v);
                    generation += 1;
                }
                None if generation == from && from > 0 => return Ok((generation, None)),
                None => return Ok((generation.saturating_sub(u32::from(last.is_some())), last)),
            }
        }
    }

    /// The person's live key, made (a new generation) when there is none. A new
    /// person costs one write (the key in its generation's entry, created once), so
    /// a new contact adds one round trip on NATS, not three.
    fn person_key(&self, email: &str) -> Result<(String, Key), LogError> {
        let subject = self.subject(email);
        let cached = self.persons.lock().expect("the person cache lock is never poisoned").get(&subject).cloned();
        if let Some((_, id)) = &cached {
            if let Some(k) = self.key(id, None)? {
                return Ok((id.clone(), k));
            }
        }
        let mut next = 0;
        for _ in 0..8 {
            let key = random_key();
            if blocking(|| self.create_together(format!("p.{subject}.{next}"), key))? {
                return Ok(self.person_is(&subject, next, key));
            }
            // Made before (by anyone): its newest generation, live or erased.
            let (generation, value) = self.person_generation(&subject, 0)?;
            match value.as_deref().map(<Key>::try_from) {
                Some(Ok(k)) => return Ok(self.person_is(&subject, generation, k)),
                Some(Err(_)) if value.as_ref().is_some_and(Vec::is_empty) => next = generation + 1,
                Some(Err(_)) => return Err(LogError::Storage("a person's key in the key store is damaged".into())),
                None => next = generation,
            }
        }
        Err(LogError::Storage("a person's key keeps changing under this process".into()))
    }

    fn person_is(&self, subject: &str, generation: u32, key: Key) -> (String, Key) {
        let id = format!("p{subject}g{generation}");
        self.remember(&id, Known::Live(key, Instant::now()));
        self.persons
            .lock()
            .expect("the person cache lock is never poisoned")
            .insert(subject.to_owned(), (generation, id.clone()));
        (id, key)
    }

    /// Seals a partner user's address under the person's key, the same way each time
    /// ([`seal_deterministic`]); an address sealed already stays as it is.
    pub fn seal_address(&self, email: &mut String) -> Result<(), LogError> {
        if email.is_empty() || Envelope::parse(email).is_some() {
            return Ok(());
        }
        let (id, key) = self.person_key(email)?;
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        *email = seal_deterministic(&key, &id, email.trim(), domain.as_deref());
        Ok(())
    }

    /// Whether `stored` (an address as the log holds it: sealed under a person's key,
    /// or in the clear from before sealing) is `email`'s — compared by keyed hash,
    /// without opening it.
    pub fn is_address_of(&self, stored: &str, email: &str) -> bool {
        match Envelope::parse(stored) {
            Some(e) => subject_of_key(e.key_id) == Some(self.subject(email).as_str()),
            None => stored.trim().eq_ignore_ascii_case(email.trim()),
        }
    }

    fn seal_contact(&self, c: &mut Contact) -> Result<(), LogError> {
        if Envelope::parse(&c.email).is_some() {
            return Ok(());
        }
        let (id, key) = self.person_key(&c.email)?;
        let domain = c.email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        // One envelope for the contact (`BUNDLES`), held by the address.
        let bundle = [
            Some(std::mem::take(&mut c.email)),
            Some(std::mem::take(&mut c.first_name)),
            Some(std::mem::take(&mut c.last_name)),
            c.phone.as_mut().map(std::mem::take),
        ];
        c.email = seal_bytes(&key, &id, &bundle_bytes(&bundle), domain.as_deref());
        Ok(())
    }

    /// The ticket's live text key: the newest its stream names, or a fresh one (a new
    /// ticket, a ticket from before sealing, or one redacted since).
    fn ticket_key(&self, named: Option<&str>) -> Result<(String, Key), LogError> {
        if let Some(id) = named {
            if let Some(k) = self.key(id, None)? {
                return Ok((id.to_owned(), k));
            }
        }
        self.pooled()
    }

    /// Seals the personal fields of a decision's events before they are appended;
    /// `text_key` is the key the ticket's stream names last ([`text_key_of`]).
    /// Idempotent: a field already sealed stays as it is.
    pub fn seal(&self, events: &mut [Event], text_key: Option<&str>) -> Result<(), LogError> {
        let mut key: Option<(String, Key)> = None;
        for e in events.iter_mut() {
            if let Event::TicketOpened(o) = e {
                // The title and the description in one envelope (`BUNDLES`).
                if Envelope::parse(&o.title).is_none() {
                    let (id, k) = key.insert(self.ticket_key(text_key)?);
                    let bundle = [Some(std::mem::take(&mut o.title)), Some(std::mem::take(&mut o.description))];
                    o.title = seal_bytes(k, id, &bundle_bytes(&bundle), None);
                }
            }
            let Personal { texts, contacts, addresses } = personal_fields(e);
            for a in addresses {
                self.seal_address(a)?;
            }
            for field in texts {
                if field.is_empty() || Envelope::parse(field).is_some() {
                    continue;
                }
                if key.is_none() {
                    key = Some(self.ticket_key(text_key)?);
                }
                let (id, k) = key.as_ref().expect("set above");
                seal_field(k, id, field);
            }
            for c in contacts {
                self.seal_contact(c)?;
            }
        }
        Ok(())
    }

    fn open_envelope(&self, e: &Envelope<'_>) -> Result<Opened, LogError> {
        let Some(k) = self.key(e.key_id, Some(KEY_TTL))? else { return Ok(Opened::Erased) };
        Ok(open_bytes(&k, e).and_then(opened_bytes).unwrap_or_else(|| {
            tracing::warn!(key_id = e.key_id, "a sealed field does not open (damaged or tampered); shown as erased");
            Opened::Erased
        }))
    }

    /// Opens one string: its clear value (a bundle's anchor's), [`ERASED`] if its key
    /// is gone or it does not open, or `None` if it is not sealed.
    pub fn open_str(&self, s: &str) -> Result<Option<String>, LogError> {
        let Some(e) = Envelope::parse(s) else { return Ok(None) };
        Ok(Some(match self.open_envelope(&e)? {
            Opened::Text(s) => s,
            Opened::Bundle(members) => members.into_iter().next().flatten().unwrap_or_default(),
            Opened::Erased => ERASED.to_owned(),
        }))
    }

    /// Opens every sealed string in a JSON answer, in place (a bundle where its
    /// anchor is, [`BUNDLES`]). The keys it names that are not cached (or were cached
    /// longer than [`KEY_TTL`]) are read first, all together.
    pub fn open_json(&self, v: &mut serde_json::Value) -> Result<(), LogError> {
        let mut ids = Vec::new();
        key_ids_in(v, &mut ids);
        ids.sort_unstable();
        ids.dedup();
        let stale: Vec<&str> = {
            let keys = self.keys.lock().expect("the key cache lock is never poisoned");
            ids.into_iter()
                .filter(|id| match keys.get(*id) {
                    Some(Known::Erased) => false,
                    Some(Known::Live(_, at)) => at.elapsed() >= KEY_TTL,
                    None => true,
                })
                .collect()
        };
        if stale.len() > 1 {
            let names: Vec<String> = stale.iter().map(|id| entry_of(id)).collect();
            for (id, value) in stale.iter().zip(self.store.get_many(&names)?) {
                self.remember_stored(id, value)?;
            }
        }
        self.open_value(v)
    }

    fn open_value(&self, v: &mut serde_json::Value) -> Result<(), LogError> {
        match v {
            serde_json::Value::String(s) => {
                if let Some(clear) = self.open_str(s)? {
                    *s = clear;
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    self.open_value(x)?;
                }
            }
            serde_json::Value::Object(o) => {
                for (anchor, members) in BUNDLES {
                    let Some(serde_json::Value::String(s)) = o.get(anchor) else { continue };
                    let Some(e) = Envelope::parse(s) else { continue };
                    match self.open_envelope(&e)? {
                        Opened::Text(clear) => drop(o.insert(anchor.to_owned(), clear.into())),
                        Opened::Bundle(values) => {
                            for (name, value) in members.iter().zip(values) {
                                if let (Some(value), Some(field)) = (value, o.get_mut(*name)) {
                                    *field = value.into();
                                }
                            }
                        }
                        Opened::Erased => erase_members(o, members),
                    }
                }
                for (_, x) in o.iter_mut() {
                    self.open_value(x)?;
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
        }
        Ok(())
    }

    /// `person.erase`: deletes the person's live key (its generation's entry made
    /// empty; the next ticket of the address starts the next generation).
    pub fn erase_person(&self, subject: &str) -> Result<Erasure, LogError> {
        let (generation, value) = self.person_generation(subject, 0)?;
        let Some(value) = value else { return Ok(Erasure::Unknown) };
        if value.is_empty() {
            return Ok(Erasure::AlreadyErased);
        }
        let id = format!("p{subject}g{generation}");
        self.store.put_many(&[(format!("p.{subject}.{generation}"), Vec::new())])?;
        self.forget(std::slice::from_ref(&id));
        self.persons.lock().expect("the person cache lock is never poisoned").remove(subject);
        Ok(Erasure::Erased(vec![id]))
    }

    /// `ticket.redact`: deletes every text key the ticket's events name.
    pub fn redact(&self, events: &[Event]) -> Result<Vec<String>, LogError> {
        let mut ids = text_keys_of(events);
        ids.sort();
        ids.dedup();
        let entries: Vec<(String, Vec<u8>)> = ids.iter().map(|id| (format!("k.{id}"), Vec::new())).collect();
        self.store.put_many(&entries)?;
        self.forget(&ids);
        Ok(ids)
    }

    /// Forgets keys erased elsewhere (a follower saw the erasure's event).
    pub fn forget(&self, ids: &[String]) {
        for id in ids {
            self.remember(id, Known::Erased);
        }
    }
}

/// The key ids of every sealed string in `v`.
fn key_ids_in<'v>(v: &'v serde_json::Value, out: &mut Vec<&'v str>) {
    match v {
        serde_json::Value::String(s) => out.extend(Envelope::parse(s).map(|e| e.key_id)),
        serde_json::Value::Array(a) => a.iter().for_each(|x| key_ids_in(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| key_ids_in(x, out)),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

fn bundle_bytes(members: &[Option<String>]) -> Vec<u8> {
    rmp_serde::to_vec(members).unwrap_or_else(|e| panic!("a list of strings always encodes: {e}"))
}

fn seal_field(key: &Key, id: &str, field: &mut String) {
    if !field.is_empty() && Envelope::parse(field).is_none() {
        *field = seal_with(key, id, field, None);
    }
}

/// An event's personal fields.
#[derive(Default)]
pub struct Personal<'a> {
    /// Ticket texts, sealed under the ticket's key.
    pub texts: Vec<&'a mut String>,
    /// Contacts, sealed under the person's key.
    pub contacts: Vec<&'a mut Contact>,
    /// Partner users' addresses, sealed under the person's key the same way each time.
    pub addresses: Vec<&'a mut String>,
}

/// The personal fields of an event: its ticket texts (sealed under the ticket's key),
/// its contacts and users' addresses (under the person's). The one list of what is
/// personal.
pub fn personal_fields(e: &mut Event) -> Personal<'_> {
    let texts = |texts| Personal { texts, ..Personal::default() };
    match e {
        Event::TicketOpened(o) => Personal {
            texts: vec![&mut o.title, &mut o.description],
            contacts: vec![&mut o.contact],
            addresses: vec![],
        },
        Event::NoteAdded(n) => texts(vec![&mut n.text]),
        Event::TicketUpdated(u) => {
            Personal { contacts: u.contact.as_mut().into_iter().collect(), ..Personal::default() }
        }
        Event::TicketEscalated(x) => texts(x.note.as_mut().into_iter().collect()),
        Event::VendorResponded(r) => texts(vec![&mut r.text]),
        Event::AttentionRequested(a) => texts(vec![&mut a.text]),
        Event::TicketClosed(c) => texts(vec![&mut c.resolution]),
        Event::TicketReopened(r) => texts(vec![&mut r.reason]),
        Event::PartnerUserUpserted(u) => Personal { addresses: vec![&mut u.email], ..Personal::default() },
        Event::PartnerRegistered(_)
        | Event::CustomerRegistered(_)
        | Event::GroupMemberAdded(_)
        | Event::GroupMemberRemoved(_)
        | Event::RelationshipUpserted(_)
        | Event::AssignmentUpserted(_)
        | Event::SubscriptionRegistered(_)
        | Event::RbacAssigned(_)
        | Event::RbacRemoved(_)
        | Event::MarketplaceProductRegistered(_)
        | Event::SupportPlanRegistered(_)
        | Event::ServiceHealthIssueUpserted(_)
        | Event::AttachmentAdded(_)
        | Event::AttentionCleared(_)
        | Event::SlaBreached(_)
        | Event::SupportRequestRouted(_)
        | Event::CommandRejected(_)
        | Event::WebhookSubscribed(_)
        | Event::WebhookSecretRotated(_)
        | Event::WebhookDisabled(_)
        | Event::WebhookDeleted(_)
        | Event::PersonErased(_)
        | Event::TicketRedacted(_) => Personal::default(),
    }
}

/// The keys an erasure or a redaction deleted (none for any other event): a follower
/// that sees one tells its keyring to forget them.
pub fn erased_keys(e: &Event) -> &[String] {
    if let Event::PersonErased(p) = e {
        return &p.key_ids;
    }
    if let Event::TicketRedacted(r) = e {
        return &r.key_ids;
    }
    &[]
}

/// The text key a stream's events name last (read from the newest event back, so a
/// long ticket is not walked whole); none once the ticket was redacted after it — so
/// a text written after a redaction gets a fresh key in every process, not the one
/// another process deleted (the redaction is on the ticket's stream: a command
/// decided before it loses the race and is decided again).
pub fn text_key_of<'a>(events: impl DoubleEndedIterator<Item = &'a Event>) -> Option<String> {
    for e in events.rev() {
        if let Event::TicketRedacted(_) = e {
            return None;
        }
        if let Some(id) = text_keys_of(std::iter::once(e)).pop() {
            return Some(id);
        }
    }
    None
}

/// The ticket text keys a stream's events name, oldest first.
pub fn text_keys_of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for e in events {
        let mut e = e.clone();
        for f in personal_fields(&mut e).texts {
            if let Some(env) = Envelope::parse(f) {
                if ids.last().map(String::as_str) != Some(env.key_id) {
                    ids.push(env.key_id.to_owned());
                }
            }
        }
    }
    ids
}

/// How many personal fields of an event are sealed.
pub fn sealed_fields(e: &Event) -> usize {
    let mut e = e.clone();
    let sealed = |s: &String| usize::from(Envelope::parse(s).is_some());
    let Personal { texts, contacts, addresses } = personal_fields(&mut e);
    texts.into_iter().chain(addresses).map(|s| sealed(s)).sum::<usize>()
        + contacts.into_iter().map(|c| sealed(&c.email)).sum::<usize>()
}

/// How many personal fields a record holds in the clear (`audit verify` reports it:
/// logs written before sealing keep their clear text).
pub fn clear_personal_fields(e: &Event) -> usize {
    let mut e = e.clone();
    let clear = |s: &String| usize::from(!s.is_empty() && Envelope::parse(s).is_none());
    let Personal { texts, contacts, addresses } = personal_fields(&mut e);
    texts.into_iter().chain(addresses).map(|s| clear(s)).sum::<usize>()
        + contacts
            .into_iter()
            .map(|c| clear(&c.email) + clear(&c.first_name) + clear(&c.last_name) + c.phone.as_ref().map_or(0, clear))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An in-memory key store: the logic's double (the engines' stores run the
    /// contract in their own tests).
    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, Vec<u8>>>);

    impl KeyStore for Memory {
        fn get(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
            Ok(self.0.lock().unwrap().get(name).cloned())
        }
        fn create(&self, name: &str, value: &[u8]) -> Result<bool, LogError> {
            let mut m = self.0.lock().unwrap();
            if m.contains_key(name) {
                return Ok(false);
            }
            m.insert(name.into(), value.to_vec());
            Ok(true)
        }
        fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), LogError> {
            self.0.lock().unwrap().extend(entries.iter().cloned());
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn an_envelope_opens_to_what_was_sealed(
            key in any::<[u8; 32]>(),
            id in "[pt][0-9a-f]{20}",
            clear in ".{0,300}",
            domain in proptest::option::of("[a-z]{1,10}\\.[a-z]{2,4}"),
        ) {
            let sealed = seal_with(&key, &id, &clear, domain.as_deref());
            let e = Envelope::parse(&sealed).expect("a sealed string parses");
            prop_assert_eq!(e.key_id, id.as_str());
            prop_assert_eq!(e.domain, domain.as_deref());
            prop_assert_eq!(open_with(&key, &e), Some(clear.clone()));
            prop_assert!(clear.is_empty() || !sealed.contains(&clear) || clear.len() < 4);
        }

        #[test]
        fn a_tampered_envelope_or_another_key_opens_to_nothing(
            key in any::<[u8; 32]>(),
            other in any::<[u8; 32]>(),
            clear in ".{1,100}",
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let sealed = seal_with(&key, "t00", &clear, Some("contoso.com"));
            let e = Envelope::parse(&sealed).unwrap();
            let mut bytes = URL_SAFE_NO_PAD.decode(e.body).unwrap();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            let body = URL_SAFE_NO_PAD.encode(&bytes);
            prop_assert_eq!(open_with(&key, &Envelope { body: &body, ..e }), None);
            // The clear domain and the key id are bound too.
            prop_assert_eq!(open_with(&key, &Envelope { domain: Some("fabrikam.com"), ..e }), None);
            prop_assert_eq!(open_with(&key, &Envelope { key_id: "t01", ..e }), None);
            if other != key {
                prop_assert_eq!(open_with(&other, &e), None);
            }
        }
    }

    fn opened(k: &Keyring, s: &str) -> String {
        k.open_str(s).unwrap().unwrap_or_else(|| s.to_owned())
    }

    /// A contact as a reader shows it (its JSON, opened).
    fn shown(k: &Keyring, c: &Contact) -> serde_json::Value {
        let mut v = serde_json::to_value(c).unwrap();
        k.open_json(&mut v).unwrap();
        v
    }

    #[test]
    fn erasing_a_person_erases_their_fields_and_a_new_ticket_gets_a_fresh_key() {
        let store: Arc<dyn KeyStore> = Arc::new(Memory::default());
        let (k, fresh) = Keyring::open(Arc::clone(&store)).unwrap();
        assert!(fresh);
        let mut c = Contact {
            first_name: "Ayu".into(),
            last_name: "Lestari".into(),
            email: "Ayu@Contoso-Partner.com".into(),
            phone: Some("+62 21 555".into()),
            preferred_contact: behalf_domain::PreferredContact::Email,
        };
        let clear = c.clone();
        k.seal_contact(&mut c).unwrap();
        assert!(c.email.ends_with("@contoso-partner.com") && c.email.starts_with(SEALED), "{}", c.email);
        assert_eq!((c.first_name.as_str(), c.phone.as_deref()), ("", Some("")), "one envelope, held by the address");
        assert_eq!(shown(&k, &c), serde_json::to_value(&clear).unwrap());
        assert_eq!(opened(&k, &c.email), clear.email, "a bundle's string opens to its anchor");
        assert_eq!(behalf_domain::directory::contact_domain(&c.email).as_deref(), Some("contoso-partner.com"));
        // Another process over the same store opens it too, and sees the erasure.
        let (other, fresh) = Keyring::open(Arc::clone(&store)).unwrap();
        assert!(!fresh);
        assert_eq!(shown(&other, &c)["last_name"], "Lestari");
        let subject = k.subject(" ayu@contoso-partner.COM");
        assert_eq!(subject, k.subject("Ayu@Contoso-Partner.com"), "the address is normalised");
        assert!(matches!(k.erase_person(&subject).unwrap(), Erasure::Erased(ids) if ids.len() == 1));
        assert_eq!(k.erase_person(&subject).unwrap(), Erasure::AlreadyErased);
        assert_eq!(k.erase_person(&k.subject("nobody@example.com")).unwrap(), Erasure::Unknown);
        for f in ["first_name", "last_name", "email", "phone"] {
            assert_eq!(shown(&k, &c)[f], ERASED, "{f}");
        }
        let mut without = serde_json::to_value(&c).unwrap();
        erase_json(&mut without);
        assert_eq!(without, shown(&k, &c), "an audit without keys shows the same");
        std::thread::sleep(KEY_TTL);
        assert_eq!(shown(&other, &c)["first_name"], ERASED, "erased everywhere within the key TTL");
        // The same address again: a fresh key, readable, the old fields still erased.
        let mut again = clear.clone();
        other.seal_contact(&mut again).unwrap();
        assert_eq!(shown(&k, &again)["first_name"], "Ayu");
        assert_eq!(shown(&k, &c)["first_name"], ERASED);
    }

    #[test]
    fn redacting_a_ticket_erases_its_texts_and_later_texts_get_a_fresh_key() {
        let (k, _) = Keyring::open(Arc::new(Memory::default())).unwrap();
        let mut events = behalf_log::samples::every_event_type();
        let before = events.clone();
        k.seal(&mut events, None).unwrap();
        for (e, was) in events.iter().zip(&before) {
            assert_eq!(clear_personal_fields(e), 0, "{} sealed", e.type_name());
            assert_eq!(sealed_fields(e) > 0, clear_personal_fields(was) > 0, "{}", e.type_name());
        }
        let sealed = events.clone();
        k.seal(&mut events, None).unwrap();
        assert_eq!(events, sealed, "sealing twice changes nothing");
        let opened_event = |e: &Event| {
            let mut v = serde_json::to_value(e).unwrap();
            k.open_json(&mut v).unwrap();
            v
        };
        let at = events.iter().position(|e| matches!(e, Event::TicketOpened(_))).unwrap();
        assert_eq!(opened_event(&events[at]), serde_json::to_value(&before[at]).unwrap(), "every field opens");
        let Event::TicketOpened(o) = &events[at] else { unreachable!() };
        assert_eq!(o.description, "", "the title holds the texts' one envelope");
        let ids = k.redact(&events).unwrap();
        assert_eq!(ids.len(), 1, "one text key per ticket: {ids:?}");
        let Event::NoteAdded(n) = &events.iter().find(|e| matches!(e, Event::NoteAdded(_))).unwrap() else {
            unreachable!()
        };
        assert_eq!(opened(&k, &n.text), ERASED);
        let shown = opened_event(&events[at]);
        assert_eq!((shown["title"].as_str(), shown["description"].as_str()), (Some(ERASED), Some(ERASED)));
        let mut later = vec![behalf_log::samples::note_added("t", "later")];
        k.seal(&mut later, text_keys_of(&events).last().map(String::as_str)).unwrap();
        let Event::NoteAdded(n) = &later[0] else { unreachable!() };
        assert_eq!(opened(&k, &n.text), "later", "a redacted ticket's next note gets a fresh key");
    }

    #[test]
    fn a_users_address_seals_the_same_way_each_time_and_is_found_by_its_hash() {
        let store: Arc<dyn KeyStore> = Arc::new(Memory::default());
        let (k, _) = Keyring::open(Arc::clone(&store)).unwrap();
        let seal = |k: &Keyring, a: &str| {
            let mut a = a.to_owned();
            k.seal_address(&mut a).unwrap();
            a
        };
        let a = seal(&k, "Budi@Contoso-Partner.com");
        assert!(a.starts_with(SEALED) && a.ends_with("@contoso-partner.com"), "{a}");
        assert_eq!(seal(&k, "Budi@Contoso-Partner.com"), a, "the same user is the same fact");
        assert_eq!(seal(&k, &a), a, "sealed once");
        assert_eq!(opened(&k, &a), "Budi@Contoso-Partner.com");
        assert!(k.is_address_of(&a, " budi@contoso-partner.COM"));
        assert!(!k.is_address_of(&a, "sari@contoso-partner.com"));
        assert!(k.is_address_of("Budi@contoso-partner.com", "budi@contoso-partner.com"), "a clear one from before");
        let mut c = Contact {
            first_name: "Budi".into(),
            last_name: "S".into(),
            email: "budi@contoso-partner.com".into(),
            phone: None,
            preferred_contact: behalf_domain::PreferredContact::Email,
        };
        k.seal_contact(&mut c).unwrap();
        // One person, one key: erasing them erases the user's address and the contact.
        let (other, _) = Keyring::open(Arc::clone(&store)).unwrap();
        let cached = seal(&other, "budi@contoso-partner.com");
        let Erasure::Erased(ids) = k.erase_person(&k.subject("budi@contoso-partner.com")).unwrap() else { panic!() };
        assert_eq!((opened(&k, &a), shown(&k, &c)["first_name"].as_str()), (ERASED.to_owned(), Some(ERASED)));
        // Another process told of the erasure (its projection passed it) seals the
        // address anew under a fresh key, not under the erased one it had cached.
        other.forget(&ids);
        let again = seal(&other, "budi@contoso-partner.com");
        assert_ne!(again, cached);
        assert_eq!(opened(&k, &again), "budi@contoso-partner.com");
        assert!(k.is_address_of(&again, "budi@contoso-partner.com"));
    }

    #[test]
    fn a_ticket_redacted_after_its_last_text_names_no_text_key() {
        let (k, _) = Keyring::open(Arc::new(Memory::default())).unwrap();
        let mut events = vec![behalf_log::samples::note_added("t", "first")];
        k.seal(&mut events, None).unwrap();
        let id = text_key_of(events.iter()).expect("the note's key");
        let redacted = behalf_log::samples::every_event_type()
            .into_iter()
            .find(|e| matches!(e, Event::TicketRedacted(_)))
            .expect("a sample of every event");
        events.push(redacted);
        assert_eq!(text_key_of(events.iter()), None, "a text after the redaction gets a fresh key");
        let mut later = vec![behalf_log::samples::note_added("t", "later")];
        k.seal(&mut later, None).unwrap();
        events.extend(later);
        assert_ne!(text_key_of(events.iter()), Some(id));
    }

    #[test]
    fn ticket_keys_are_made_ahead_before_the_pool_runs_dry() {
        let store = Arc::new(Memory::default());
        let (k, _) = Keyring::open(Arc::clone(&store) as Arc<dyn KeyStore>).unwrap();
        let made = || store.0.lock().unwrap().keys().filter(|n| n.starts_with("k.")).count();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..=POOL / 2 {
            ids.insert(k.pooled().unwrap().0);
        }
        assert_eq!(ids.len(), POOL / 2 + 1, "every key taken once");
        let deadline = Instant::now() + Duration::from_secs(10);
        while made() < 2 * POOL {
            assert!(Instant::now() < deadline, "a refill ahead: {} keys made", made());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(ids.iter().all(|id| store.0.lock().unwrap().contains_key(&format!("k.{id}"))), "each stored");
    }
}
