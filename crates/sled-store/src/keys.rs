//! Sealing keys in a sled directory of their own (`keys/`): name → opaque entry
//! (`behalf_log::keys`). Backed up like the tokens; an erased key is a tombstone.

use std::path::Path;

use behalf_log::keys::KeyStore;
use behalf_log::LogError;

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

/// The embedded key store.
#[derive(Clone)]
pub struct SledKeys {
    db: sled::Db,
}

impl SledKeys {
    pub fn open(path: impl AsRef<Path>) -> Result<SledKeys, LogError> {
        Ok(SledKeys { db: crate::log::open_db(path.as_ref(), crate::log::Cache::Small)? })
    }
}

impl KeyStore for SledKeys {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.db.get(name.as_bytes()).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn create(&self, name: &str, value: &[u8]) -> Result<bool, LogError> {
        let created = self.db.compare_and_swap(name.as_bytes(), None::<&[u8]>, Some(value)).map_err(storage)?.is_ok();
        if created {
            self.db.flush().map_err(storage)?;
        }
        Ok(created)
    }

    /// Each created (compare-and-swap), then one flush for the lot.
    fn create_many(&self, entries: &[(String, Vec<u8>)]) -> Result<Vec<bool>, LogError> {
        let mut created = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            let r = self.db.compare_and_swap(name.as_bytes(), None::<&[u8]>, Some(value.as_slice()));
            created.push(r.map_err(storage)?.is_ok());
        }
        if created.iter().any(|&c| c) {
            self.db.flush().map_err(storage)?;
        }
        Ok(created)
    }

    fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (name, value) in entries {
            batch.insert(name.as_bytes(), value.as_slice());
        }
        self.db.apply_batch(batch).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }
}
