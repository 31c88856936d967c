//! Raw sled baselines, for benchmarks to print beside Behalf's own figures from the
//! same run: what sled itself does on this disk, without Behalf.

use std::time::Instant;

/// Items/s of raw sled: batches of `batch` items, each added by `item(batch, n)`, one
/// `apply_batch` and one `flush` per batch, for about `secs` seconds, in `dir`.
fn insert_flush_loop(
    dir: &std::path::Path,
    batch: usize,
    secs: f64,
    mut item: impl FnMut(&mut sled::Batch, u64),
) -> Result<f64, sled::Error> {
    let db = sled::open(dir)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut b = sled::Batch::default();
        for _ in 0..batch {
            n += 1;
            item(&mut b, n);
        }
        db.apply_batch(b)?;
        db.flush()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Inserts/s of raw sled: batches of `batch` inserts of `value`, one `apply_batch` and
/// one `flush` per batch, for about `secs` seconds, in a fresh directory under `dir`.
pub fn insert_flush_per_sec(dir: &std::path::Path, batch: usize, value: &[u8], secs: f64) -> Result<f64, sled::Error> {
    insert_flush_loop(dir, batch, secs, |b, n| b.insert(&n.to_be_bytes(), value))
}

/// As [`insert_flush_per_sec`], writing what one Behalf commit writes: the record by
/// position, a stream index entry (a `ticket-<26 chars>` stream, 16-byte value) and a
/// command index entry (a `partner:<guid>/<id>` key, 40-byte value) per item. Items/s.
pub fn insert_flush_three_keys_per_sec(
    dir: &std::path::Path,
    batch: usize,
    value: &[u8],
    secs: f64,
) -> Result<f64, sled::Error> {
    insert_flush_loop(dir, batch, secs, |b, n| {
        let mut record = vec![b'L'];
        record.extend_from_slice(&n.to_be_bytes());
        b.insert(record, value);
        // Streams and command ids spread over the key space as ULIDs and GUIDs do.
        let spread = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let stream = format!("Sticket-{spread:026}\0\0\0\0\0\0\0\0\x01");
        b.insert(stream.as_bytes(), &[0u8; 16][..]);
        let command = format!("Kpartner:c0a1b2c3-0000-4000-8000-000000000001/{spread:032x}");
        b.insert(command.as_bytes(), &[0u8; 40][..]);
    })
}

/// Events/s of a raw scan of the whole log plus MessagePack decoding of every record
/// and event, without Behalf's envelope, upcasting or folding. Returns (events, rate).
pub fn scan_decode_per_sec(log: &crate::SledLog) -> Result<(u64, f64), behalf_log::LogError> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut after = 0;
    loop {
        let page = log.read_raw(after, 4096)?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, bytes) in &page {
            let r = behalf_log::codec::decode_record(bytes)?;
            for e in &r.events {
                let ev: behalf_domain::Event =
                    rmp_serde::from_slice(&e.payload).map_err(|e| behalf_log::LogError::Codec(e.to_string()))?;
                std::hint::black_box(&ev);
                n += 1;
            }
        }
    }
    Ok((n, n as f64 / start.elapsed().as_secs_f64()))
}

/// A raw sled group commit, for the raw HTTP baseline: one writer thread takes every
/// write waiting, inserts each value under its own key in one `apply_batch`, flushes
/// once, and only then answers each writer — Behalf's group commit without Behalf.
pub struct GroupCommit {
    tx: std::sync::mpsc::Sender<(Vec<u8>, tokio::sync::oneshot::Sender<bool>)>,
}

impl GroupCommit {
    /// Opens a fresh sled database in `dir` and starts the writer.
    pub fn open(dir: &std::path::Path) -> Result<GroupCommit, sled::Error> {
        let db = sled::open(dir)?;
        let (tx, rx) = std::sync::mpsc::channel::<(Vec<u8>, tokio::sync::oneshot::Sender<bool>)>();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                while let Ok(more) = rx.try_recv() {
                    group.push(more);
                }
                let mut b = sled::Batch::default();
                for (value, _) in &group {
                    n += 1;
                    b.insert(&n.to_be_bytes(), value.as_slice());
                }
                let ok = db.apply_batch(b).and_then(|()| db.flush().map(|_| ())).is_ok();
                for (_, reply) in group {
                    let _ = reply.send(ok);
                }
            }
        });
        Ok(GroupCommit { tx })
    }

    /// Writes `value` under a key of its own; true once it is flushed.
    pub async fn write(&self, value: Vec<u8>) -> bool {
        let (reply, done) = tokio::sync::oneshot::channel();
        if self.tx.send((value, reply)).is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }
}
