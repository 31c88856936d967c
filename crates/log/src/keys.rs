//! The key store contract: the keys that seal personal data (issue 26, crypto-shredding),
//! kept beside the log and never in it. A small key-value store of opaque entries; what
//! the entries mean (the per-person and per-ticket keys, the keyed hash of e-mails) is
//! the service's `seal` module. An erased key is overwritten by an empty entry (a
//! tombstone), so "erased" and "never known" stay distinguishable.

use crate::LogError;

/// Where sealing keys live: a sled directory of its own on the embedded engine, the
/// replicated `BEHALF_KEYS` bucket on NATS. Synchronous, like the token store.
pub trait KeyStore: Send + Sync + 'static {
    /// The entry under `name`, if any (an empty entry is a tombstone).
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, LogError>;
    /// Stores `value` under `name` unless an entry is there; whether it was stored.
    /// Durable before it answers.
    fn create(&self, name: &str, value: &[u8]) -> Result<bool, LogError>;
    /// Stores every entry, replacing what is there; durable before it answers.
    fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), LogError>;
    /// [`KeyStore::create`] for each entry (names distinct), in as few round trips
    /// and syncs as the store allows; whether each was stored, in order.
    fn create_many(&self, entries: &[(String, Vec<u8>)]) -> Result<Vec<bool>, LogError> {
        entries.iter().map(|(name, value)| self.create(name, value)).collect()
    }
    /// [`KeyStore::get`] for each name, in order, in as few round trips as the store
    /// allows (an answer that names many tickets opens them all at once).
    fn get_many(&self, names: &[String]) -> Result<Vec<Option<Vec<u8>>>, LogError> {
        names.iter().map(|name| self.get(name)).collect()
    }
}

/// The contract every key store keeps, run by each engine's tests.
pub fn conformance(store: &dyn KeyStore) {
    assert_eq!(store.get("k.absent").unwrap(), None, "an absent entry reads as none");
    assert!(store.create("k.one", b"first").unwrap(), "a new entry is created");
    assert!(!store.create("k.one", b"second").unwrap(), "an entry is created once");
    assert_eq!(store.get("k.one").unwrap().as_deref(), Some(&b"first"[..]));
    store.put_many(&[("k.one".into(), Vec::new()), ("k.two".into(), b"two".to_vec())]).unwrap();
    assert_eq!(store.get("k.one").unwrap().as_deref(), Some(&b""[..]), "a tombstone reads as empty");
    assert!(!store.create("k.one", b"again").unwrap(), "a tombstone is not replaced by create");
    assert_eq!(store.get("k.two").unwrap().as_deref(), Some(&b"two"[..]));
    store.put_many(&[]).unwrap();
    let many: Vec<(String, Vec<u8>)> =
        ["k.two", "k.three", "k.four"].iter().map(|n| (n.to_string(), n.as_bytes().to_vec())).collect();
    assert_eq!(store.create_many(&many).unwrap(), [false, true, true], "each created unless there");
    assert_eq!(store.get("k.two").unwrap().as_deref(), Some(&b"two"[..]), "an entry there stays");
    assert_eq!(store.get("k.four").unwrap().as_deref(), Some(&b"k.four"[..]));
    let fresh: Vec<(String, Vec<u8>)> = (0..40).map(|i| (format!("k.n{i}"), vec![i])).collect();
    assert!(store.create_many(&fresh).unwrap().iter().all(|&c| c), "a batch of new entries");
    assert_eq!(store.get("k.n39").unwrap().as_deref(), Some(&[39u8][..]));
    assert_eq!(store.create_many(&[]).unwrap(), Vec::<bool>::new());
    let names = ["k.two", "k.absent", "k.one", "k.two"].map(String::from);
    assert_eq!(
        store.get_many(&names).unwrap(),
        [Some(b"two".to_vec()), None, Some(Vec::new()), Some(b"two".to_vec())],
        "each entry read, in order"
    );
    assert_eq!(store.get_many(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
}
