//! Views in a sled directory of their own. The checkpoint lives in the same tree as
//! the views, so one `apply_batch` commits a batch of view writes and its checkpoint.

use std::path::Path;

use behalf_log::views::{Rows, ViewStore, Write};
use behalf_log::LogError;

const CHECKPOINT: &[u8] = b"\x00checkpoint";

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

#[derive(Clone)]
pub struct SledViews {
    db: sled::Db,
}

impl SledViews {
    pub fn open(path: impl AsRef<Path>) -> Result<SledViews, LogError> {
        Ok(SledViews { db: crate::log::open_db(path.as_ref(), crate::log::Cache::Views)? })
    }
}

fn upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl ViewStore for SledViews {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.db.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Rows, LogError> {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        let end = upper_bound(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.db
            .range::<Vec<u8>, _>((start, end))
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
            .collect()
    }

    fn scan_rev(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize) -> Result<Rows, LogError> {
        use std::ops::Bound;
        let end = match before {
            Some(b) => Bound::Excluded(b.to_vec()),
            None => upper_bound(prefix).map_or(Bound::Unbounded, Bound::Excluded),
        };
        self.db
            .range::<Vec<u8>, _>((Bound::Included(prefix.to_vec()), end))
            .rev()
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
            .collect()
    }

    fn commit(&self, writes: Vec<Write>, checkpoint: u64) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        batch.insert(CHECKPOINT, &checkpoint.to_be_bytes());
        // One atomic batch; sled makes it durable within its flush interval, and a batch
        // lost to a crash takes its checkpoint with it.
        self.db.apply_batch(batch).map_err(storage)
    }

    fn sync(&self) -> Result<(), LogError> {
        self.db.flush().map(|_| ()).map_err(storage)
    }

    fn checkpoint(&self) -> Result<u64, LogError> {
        Ok(match self.db.get(CHECKPOINT).map_err(storage)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            Some(_) | None => 0,
        })
    }

    fn clear(&self) -> Result<(), LogError> {
        self.db.clear().map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    fn dump(&self) -> Result<Rows, LogError> {
        self.db.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage)).collect()
    }
}
