//! The view store contract: a sorted key-value store for read models, whose writes
//! for a batch of events commit atomically together with the checkpoint (the position
//! of the last event applied), so a crash never applies an event twice or skips one.

use crate::LogError;

/// One write: a value, or a removal.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// Keys and values, in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

pub trait ViewStore: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError>;
    /// Keys with `prefix`, ascending, strictly after `after` if given.
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Rows, LogError>;
    /// Keys with `prefix`, descending, strictly before `before` if given.
    fn scan_rev(&self, prefix: &[u8], before: Option<&[u8]>, limit: usize) -> Result<Rows, LogError>;
    /// Applies `writes` and sets the checkpoint, atomically: after a crash the store
    /// holds both or neither. Not necessarily durable at once — views are derived, and
    /// a lost batch is applied again from the older checkpoint.
    fn commit(&self, writes: Vec<Write>, checkpoint: u64) -> Result<(), LogError>;
    /// Makes everything committed so far durable.
    fn sync(&self) -> Result<(), LogError>;
    /// The position of the last event applied (0: none).
    fn checkpoint(&self) -> Result<u64, LogError>;
    /// Drops every view and the checkpoint (for a rebuild).
    fn clear(&self) -> Result<(), LogError>;
    /// Every key and value, in order (for comparing two stores).
    fn dump(&self) -> Result<Rows, LogError>;
}
