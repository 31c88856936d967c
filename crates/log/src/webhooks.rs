//! The webhook store contract: what a webhook subscription needs besides its record
//! in the log — the URL (which can hold credentials, so it is never in the log) and
//! the signing secrets — and the recent delivery attempts. Kept beside the log, with
//! the same care as tokens (OPERATIONS says how).

use serde::{Deserialize, Serialize};

use crate::LogError;

/// One signing secret: the HMAC key (the decoded bytes of its `whsec_…` form).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub created_ms: i64,
    /// After a rotation the old key signs until then (a grace period), then not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_ms: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(hidden, created {}, retire {:?})", self.created_ms, self.retire_ms)
    }
}

/// A subscription's URL and keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub url: String,
    pub keys: Vec<SigningKey>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets(url hidden, {} keys)", self.keys.len())
    }
}

impl Secrets {
    /// The keys that sign at `now_ms`.
    pub fn live(&self, now_ms: i64) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter().filter(move |k| k.retire_ms.is_none_or(|r| r > now_ms))
    }
}

/// One delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    /// The message id (`webhook-id`, the same on every attempt).
    pub message_id: String,
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why there was no answer (timeout, refused connection, address not allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at_ms: i64,
    /// `delivered`, `retrying` (another attempt is due at `next_ms`), `failed` (past
    /// the schedule; `replay` sends it again) or `disabled` (the receiver answered 410).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_ms: Option<i64>,
}

/// Where webhook secrets and attempts live. Synchronous, as tokens are: small and local.
pub trait WebhookStore: Send + Sync + 'static {
    fn put_secrets(&self, webhook_id: &str, secrets: &Secrets) -> Result<(), LogError>;
    fn secrets(&self, webhook_id: &str) -> Result<Option<Secrets>, LogError>;
    /// Forgets the URL and keys (a deleted subscription) and its attempts.
    fn delete(&self, webhook_id: &str) -> Result<(), LogError>;
    fn record(&self, webhook_id: &str, attempt: &Attempt) -> Result<(), LogError>;
    /// The most recent attempts, newest first.
    fn attempts(&self, webhook_id: &str, limit: usize) -> Result<Vec<Attempt>, LogError>;
}

/// The contract every webhook store passes.
pub mod conformance {
    use super::{Attempt, Secrets, SigningKey, WebhookStore};

    pub fn secrets_and_attempts<S: WebhookStore>(s: &S) {
        assert!(s.secrets("w1").unwrap().is_none());
        let secrets = Secrets {
            url: "https://example.com/hook?token=abc".into(),
            keys: vec![SigningKey { key: vec![7; 32], created_ms: 1, retire_ms: Some(10) }],
        };
        s.put_secrets("w1", &secrets).unwrap();
        assert_eq!(s.secrets("w1").unwrap(), Some(secrets.clone()));
        assert_eq!(secrets.live(5).count(), 1);
        assert_eq!(secrets.live(10).count(), 0, "a retired key no longer signs");
        for i in 0..5u32 {
            let a = Attempt {
                message_id: format!("m{i}"),
                attempt: 1,
                status: Some(500),
                error: None,
                at_ms: 100 + i64::from(i),
                state: "retrying".into(),
                next_ms: Some(200),
            };
            s.record("w1", &a).unwrap();
        }
        s.record(
            "w2",
            &Attempt {
                message_id: "x".into(),
                attempt: 1,
                status: Some(200),
                error: None,
                at_ms: 1,
                state: "delivered".into(),
                next_ms: None,
            },
        )
        .unwrap();
        let recent = s.attempts("w1", 3).unwrap();
        assert_eq!(
            recent.iter().map(|a| a.message_id.as_str()).collect::<Vec<_>>(),
            ["m4", "m3", "m2"],
            "newest first"
        );
        s.delete("w1").unwrap();
        assert!(s.secrets("w1").unwrap().is_none());
        assert!(s.attempts("w1", 10).unwrap().is_empty());
        assert_eq!(s.attempts("w2", 10).unwrap().len(), 1, "another subscription's attempts stay");
    }
}
