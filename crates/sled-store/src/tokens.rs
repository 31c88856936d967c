//! Tokens in a sled directory of their own: `token id` → MessagePack `TokenRecord`.

use std::path::Path;

use behalf_log::tokens::{TokenRecord, TokenStore};
use behalf_log::LogError;

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

/// The embedded token store.
#[derive(Clone)]
pub struct SledTokens {
    db: sled::Db,
}

impl SledTokens {
    pub fn open(path: impl AsRef<Path>) -> Result<SledTokens, LogError> {
        Ok(SledTokens { db: crate::log::open_db(path.as_ref(), crate::log::Cache::Small)? })
    }
}

impl TokenStore for SledTokens {
    fn put(&self, record: &TokenRecord) -> Result<(), LogError> {
        let bytes = rmp_serde::to_vec_named(record).map_err(storage)?;
        self.db.insert(record.token_id.as_bytes(), bytes).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    fn get(&self, token_id: &str) -> Result<Option<TokenRecord>, LogError> {
        match self.db.get(token_id.as_bytes()).map_err(storage)? {
            Some(v) => rmp_serde::from_slice(&v).map(Some).map_err(storage),
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Vec<TokenRecord>, LogError> {
        self.db
            .iter()
            .map(|kv| kv.map_err(storage).and_then(|(_, v)| rmp_serde::from_slice(&v).map_err(storage)))
            .collect()
    }
}
