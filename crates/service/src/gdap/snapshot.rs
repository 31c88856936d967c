//! The GDAP projection's snapshot: the directory and the position it was folded up
//! to, with the identity of the commit at that position, so a start-up folds only what
//! came after. Written atomically (a new file, synced, renamed over the old one) and
//! checked when read: its checksum, and that the log still holds the same commit at
//! that position. A snapshot that does not check is set aside and the fold starts
//! from the beginning.

use std::io::Write as _;
use std::path::Path;

use behalf_domain::Directory;
use behalf_log::codec::sha256;
use behalf_log::{Commit, EventLog, Hash};
use serde::{Deserialize, Serialize};

/// Version 2: customers, relationships and assignments packed (texts once, rows of
/// numbers). A snapshot of another version is set aside and the fold starts over.
const MAGIC: &[u8] = b"behalf-gdap-snapshot 2\n";

/// The commit the snapshot stands on: what must still be at its position in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub position: u64,
    pub prev_hash: Hash,
    pub key: String,
    pub request_hash: Hash,
}

impl Anchor {
    pub fn of(commit: &Commit) -> Anchor {
        Anchor {
            position: commit.position,
            prev_hash: commit.prev_hash,
            key: commit.key().to_string(),
            request_hash: commit.request_hash,
        }
    }

    /// The anchor of the commit at `position` in `log` now (`None` past its head).
    pub async fn in_log<L: EventLog>(log: &L, position: u64) -> Result<Option<Anchor>, String> {
        if position == 0 {
            return Ok(Some(Anchor { position: 0, prev_hash: [0; 32], key: String::new(), request_hash: [0; 32] }));
        }
        let page = log.read_all(position - 1, 1).await.map_err(|e| e.to_string())?;
        Ok(page.first().filter(|c| c.position == position).map(Anchor::of))
    }
}

/// The file's bytes: magic, the checksum of the rest, the anchor, the directory.
pub fn encode(anchor: &Anchor, directory: &Directory) -> Result<Vec<u8>, String> {
    let mut body = rmp_serde::to_vec(anchor).map_err(|e| e.to_string())?;
    rmp_serde::encode::write_named(&mut body, directory).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(MAGIC.len() + 32 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&sha256(&body));
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<(Anchor, Directory), String> {
    let rest = bytes.strip_prefix(MAGIC).ok_or("not a GDAP snapshot (or of another version)")?;
    if rest.len() < 32 {
        return Err("the snapshot is cut short".into());
    }
    let (sum, body) = rest.split_at(32);
    if sha256(body) != sum {
        return Err("the snapshot's checksum does not match its contents".into());
    }
    // Read in place: texts are borrowed from the buffer while decoded, not copied one by one.
    let mut rd = rmp_serde::Deserializer::from_read_ref(body);
    let anchor = Anchor::deserialize(&mut rd).map_err(|e| format!("the anchor does not decode: {e}"))?;
    let directory = Directory::deserialize(&mut rd).map_err(|e| format!("the directory does not decode: {e}"))?;
    Ok((anchor, directory))
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one whole.
/// The temporary file is this process's own, so two processes sharing a data directory
/// do not write into each other's.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
