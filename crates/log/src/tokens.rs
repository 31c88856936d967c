//! The token store contract. A token is bound to exactly one principal; only a hash of
//! its secret is kept. The presented form is `bh_<token id>_<secret>`.

use serde::{Deserialize, Serialize};

use behalf_domain::{Principal, Timestamp};

use crate::codec::Hash;
use crate::LogError;

/// What is stored for a token: never the secret, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_id: String,
    #[serde(with = "serde_bytes")]
    pub secret_hash: Vec<u8>,
    pub principal: Principal,
    #[serde(default)]
    pub label: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub revoked: bool,
}

impl TokenRecord {
    pub fn hash_matches(&self, hash: &Hash) -> bool {
        // Constant-time comparison: the time taken does not say how much matched.
        self.secret_hash.len() == hash.len()
            && self.secret_hash.iter().zip(hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Where tokens live. Synchronous: lookups are small and local.
pub trait TokenStore: Send + Sync + 'static {
    fn put(&self, record: &TokenRecord) -> Result<(), LogError>;
    fn get(&self, token_id: &str) -> Result<Option<TokenRecord>, LogError>;
    fn list(&self) -> Result<Vec<TokenRecord>, LogError>;
}

/// Splits a presented token into its id and secret.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("bh_")?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}
