//! Raw sled baselines, for benchmarks to print beside Behalf's own figures from the
//! same run: what sled itself does on this disk, without Behalf.

use std::time::Instant;

/// Inserts/s of raw sled: batches of `batch` inserts of `value`, one `apply_batch` and
/// one `flush` per batch, for about `secs` seconds, in a fresh directory under `dir`.
pub fn insert_flush_per_sec(dir: &std::path::Path, batch: usize, value: &[u8], secs: f64) -> Result<f64, sled::Error> {
    let db = sled::open(dir)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut b = sled::Batch::default();
        for _ in 0..batch {
            n += 1;
            b.insert(&n.to_be_bytes(), value);
        }
        db.apply_batch(b)?;
        db.flush()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
