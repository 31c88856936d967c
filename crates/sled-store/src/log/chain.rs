//! The hash chain: walked and checked commit by commit — on open from the last
//! verified checkpoint, in full by `verify` (a running log) and `verify_dir`
//! (`behalf audit verify`) — cut back to the last good commit when asked, and the
//! command index rebuilt from an old layout.

use super::{
    command_key, head_value, log_key, open_db, read_head, sha256, storage, stream_prefix, u64_at, CommandKey, Commit,
    Hash, LogError, Path, StreamId, VerifyReport, BROKEN, COMMAND, GENESIS, HEAD, OLD_COMMAND, STREAM, VERIFIED,
};

/// The outcome of walking the chain: the last good commit and, if the walk stopped
/// early, the first bad position and what is wrong with it.
pub(super) struct ChainWalk {
    pub(super) good: u64,
    pub(super) good_hash: Hash,
    pub(super) bad: Option<(u64, String)>,
}

/// The `prev_hash` a commit records, or `None` if it does not decode.
pub(super) fn recorded_prev(tree: &sled::Tree, pos: u64) -> Result<Option<Hash>, LogError> {
    Ok(tree.get(log_key(pos)).map_err(storage)?.and_then(|v| Commit::decode(&v).ok()).map(|c| c.prev_hash))
}

/// Walks the chain from position 1: every record decodes, sits at its own key, links
/// to the one before, and the head entry names the last one. A broken link between
/// N and N+1 is blamed on N when N+1 itself is vouched for by its successor (N's bytes
/// changed), and on N+1 otherwise.
pub(super) fn walk_chain(tree: &sled::Tree) -> Result<ChainWalk, LogError> {
    walk_chain_from(tree, (0, GENESIS), None, &mut |_, _| true)
}

/// Walks the chain after `start` (a position and its hash, taken as verified).
/// `live`: the head entry read when the walk began, on a log that is being appended
/// to — the walk stops there; without it the log is at rest and nothing may follow
/// the head entry. `progress(position, head)` is called now and then; when it answers
/// `false` the walk ends there, good as far as it went.
pub(super) fn walk_chain_from(
    tree: &sled::Tree,
    start: (u64, Hash),
    live: Option<(u64, Hash)>,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ChainWalk, LogError> {
    let (head, head_hash) = match live {
        Some(h) => h,
        None => read_head(tree)?,
    };
    let last_key = if live.is_some() { log_key(head) } else { log_key(u64::MAX) };
    // Good commits so far, and the hash and the hash before the last one.
    let (mut good, mut prev, mut before_prev) = (start.0, start.1, GENESIS);
    let stop =
        |good: u64, hash: Hash, pos: u64, what: String| Ok(ChainWalk { good, good_hash: hash, bad: Some((pos, what)) });
    if start.0 + 1 > head && live.is_some() {
        return Ok(ChainWalk { good, good_hash: prev, bad: None });
    }
    for kv in tree.range(log_key(start.0 + 1)..=last_key) {
        let (k, v) = kv.map_err(storage)?;
        let pos = u64_at(&k, 1);
        let expected = good + 1;
        if pos != expected {
            return stop(good, prev, expected, format!("commit {expected} is missing (the next stored is {pos})"));
        }
        let commit = match Commit::decode(&v) {
            Ok(c) => c,
            Err(e) => return stop(good, prev, pos, format!("record does not decode: {e}")),
        };
        if commit.position != pos {
            return stop(good, prev, pos, format!("record at {pos} says it is commit {}", commit.position));
        }
        if commit.prev_hash != prev {
            let successor = if pos == head { Some(head_hash) } else { recorded_prev(tree, pos + 1)? };
            if good > start.0 && successor == Some(sha256(&v)) {
                let what = format!("commit {good}'s contents do not match the hash commit {pos} recorded");
                return stop(good - 1, before_prev, good, what);
            }
            return stop(good, prev, pos, "hash chain broken: the previous hash does not match".into());
        }
        before_prev = prev;
        prev = sha256(&v);
        good = pos;
        if pos.is_multiple_of(4096) && !progress(pos, head) {
            return Ok(ChainWalk { good, good_hash: prev, bad: None });
        }
    }
    if good < head {
        return stop(good, prev, good + 1, format!("the log ends at {good} but the head says {head}"));
    }
    if good > head {
        return stop(head, GENESIS, head + 1, format!("commits after the head ({head}) are present"));
    }
    if prev != head_hash {
        return stop(
            good.saturating_sub(1),
            before_prev,
            good,
            "the last commit does not match the head's hash".into(),
        );
    }
    Ok(ChainWalk { good, good_hash: prev, bad: None })
}

/// The checkpoint of the chain: the last position a walk verified, with its hash,
/// written after every walk that ended well (`V`: position, hash). It is checked when
/// read — the record there must still hash to it — and a checkpoint that does not
/// check is ignored (the next walk starts from position 1).
pub(super) fn checkpoint(tree: &sled::Tree) -> Result<(u64, Hash), LogError> {
    let Some(v) = tree.get(VERIFIED).map_err(storage)? else { return Ok((0, GENESIS)) };
    if v.len() != 40 {
        return Ok((0, GENESIS));
    }
    let (pos, mut hash) = (u64_at(&v, 0), GENESIS);
    hash.copy_from_slice(&v[8..]);
    match tree.get(log_key(pos)).map_err(storage)? {
        Some(record) if sha256(&record) == hash => Ok((pos, hash)),
        _ => {
            tracing::warn!(position = pos, "the chain checkpoint does not match its record; walking from the start");
            Ok((0, GENESIS))
        }
    }
}

/// Records what a walk found: a good walk moves the checkpoint forward; a bad one
/// leaves the break on record (`B`), so the log refuses to open until it is cut back.
pub(super) fn record_walk(db: &sled::Db, tree: &sled::Tree, walk: &ChainWalk) -> Result<(), LogError> {
    match &walk.bad {
        None => {
            let (at, _) = checkpoint(tree)?;
            if walk.good > at {
                tree.insert(VERIFIED, head_value(walk.good, &walk.good_hash)).map_err(storage)?;
            }
        }
        Some((pos, what)) => {
            let mut v = pos.to_be_bytes().to_vec();
            v.extend_from_slice(what.as_bytes());
            tree.insert(BROKEN, v).map_err(storage)?;
        }
    }
    db.flush().map_err(storage)?;
    Ok(())
}

/// A break an earlier walk found and recorded.
pub(super) fn recorded_break(tree: &sled::Tree) -> Result<Option<(u64, String)>, LogError> {
    Ok(tree
        .get(BROKEN)
        .map_err(storage)?
        .filter(|v| v.len() >= 8)
        .map(|v| (u64_at(&v, 0), String::from_utf8_lossy(&v[8..]).into_owned())))
}

/// Moves every commit after `good` to quarantine and rebuilds the indexes.
pub(super) fn truncate_after(db: &sled::Db, tree: &sled::Tree, good: u64) -> Result<Hash, LogError> {
    let quarantine = db.open_tree("quarantine").map_err(storage)?;
    let mut batch = sled::Batch::default();
    let mut q = sled::Batch::default();
    for kv in tree.range(log_key(good + 1)..=log_key(u64::MAX)) {
        let (k, v) = kv.map_err(storage)?;
        q.insert(k.clone(), v);
        batch.remove(k);
    }
    for prefix in [STREAM, COMMAND, OLD_COMMAND] {
        for kv in tree.scan_prefix([prefix]) {
            batch.remove(kv.map_err(storage)?.0);
        }
    }
    let mut last_hash = GENESIS;
    for kv in tree.range(log_key(1)..=log_key(good)) {
        let (_, v) = kv.map_err(storage)?;
        let c = Commit::decode(&v)?;
        index_commit(&mut batch, &c.stream, c.first_version, c.last_version(), &c.key(), c.position, &c.request_hash);
        last_hash = sha256(&v);
    }
    batch.insert(HEAD, head_value(good, &last_hash));
    batch.insert(VERIFIED, head_value(good, &last_hash));
    batch.remove(BROKEN);
    quarantine.apply_batch(q).map_err(storage)?;
    tree.apply_batch(batch).map_err(storage)?;
    db.flush().map_err(storage)?;
    Ok(last_hash)
}

pub(super) fn index_commit(
    batch: &mut sled::Batch,
    stream: &StreamId,
    first: u64,
    last: u64,
    command: &CommandKey,
    pos: u64,
    request_hash: &Hash,
) {
    let mut sk = stream_prefix(stream);
    sk.extend_from_slice(&first.to_be_bytes());
    let mut sv = pos.to_be_bytes().to_vec();
    sv.extend_from_slice(&last.to_be_bytes());
    batch.insert(sk, sv);
    let mut cv = pos.to_be_bytes().to_vec();
    cv.extend_from_slice(request_hash);
    batch.insert(command_key(command), cv);
}

/// A log written before command ids were per tenant has its index keyed by the bare
/// id: index every commit again under its key (tenant from the record's actor, so the
/// old commits mean what they meant), in one batch with the old entries' removal.
pub(super) fn reindex_commands(db: &sled::Db, tree: &sled::Tree) -> Result<(), LogError> {
    if tree.scan_prefix([OLD_COMMAND]).next().is_none() {
        return Ok(());
    }
    tracing::info!("indexing command ids per tenant (a log written by an earlier version)");
    let mut batch = sled::Batch::default();
    for kv in tree.scan_prefix([OLD_COMMAND]) {
        batch.remove(kv.map_err(storage)?.0);
    }
    for kv in tree.range(log_key(1)..=log_key(u64::MAX)) {
        let c = Commit::decode(&kv.map_err(storage)?.1)?;
        let mut cv = c.position.to_be_bytes().to_vec();
        cv.extend_from_slice(&c.request_hash);
        batch.insert(command_key(&c.key()), cv);
    }
    tree.apply_batch(batch).map_err(storage)?;
    db.flush().map_err(storage)?;
    Ok(())
}

/// Walks the hash chain of the log in `path` without opening it for writing: every
/// record decodes (through upcasters), sits at its key, and links to the one before.
/// `progress(position, head)` as it goes.
pub fn verify_dir(path: impl AsRef<Path>, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport, LogError> {
    let db = open_db(path.as_ref(), super::Cache::Log)?;
    let walk = walk_chain_from(&db, (0, GENESIS), None, &mut |at, head| {
        progress(at, head);
        true
    })?;
    record_walk(&db, &db, &walk)?;
    Ok(VerifyReport { verified: walk.good, first_bad: walk.bad })
}
