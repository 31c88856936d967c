//! Opening the stores, for every role and both engines: the embedded engine's data
//! directory (its layout is [`DataDir`]'s) and the JetStream engine's log and buckets.
//! Every role opens what it keeps through here, so each store has one error message.

use std::path::Path;

use anyhow::Context as _;
use behalf_nats::{Endpoint, NatsLog, NatsOptions, NatsTokens};
use behalf_service::tokens::Tokens;
use behalf_sled_store::{DataDir, OpenOptions, SledLog, SledQueues, SledViews};

/// Opens the log and the token store of a data directory. With `stop_at_last_good`,
/// a broken log is cut back to its last good commit (the rest is kept in a quarantine
/// tree) instead of refusing to start.
pub fn open_stores(dir: &DataDir, stop_at_last_good: bool) -> anyhow::Result<(SledLog, Tokens)> {
    ensure_dir(dir.root())?;
    let (log, report) = match dir.open_log(OpenOptions { stop_at_last_good }) {
        Ok(opened) => opened,
        Err(behalf_log::LogError::Corrupt { position, what }) => return Err(broken(dir.root(), position, &what)),
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot open the event log in {}; {}", dir.root().display(), in_use(dir.root()))
            })
        }
    };
    if let Some((position, what)) = &report.truncated {
        println!("the event log was broken at position {position} ({what}); stopped at the last good commit {}; the rest is kept in quarantine", report.head);
        tracing::warn!(position, %what, head = report.head, "stopped at the last good commit");
    }
    tracing::info!(head = report.head, "event log open");
    Ok((log, open_tokens(dir)?))
}

/// Opens an existing log of a data directory for a one-shot command (an audit, a
/// rebuild of the views) while no server holds it.
pub fn open_existing_log(dir: &DataDir) -> anyhow::Result<SledLog> {
    if !dir.log().exists() {
        anyhow::bail!("no event log in {}", dir.root().display());
    }
    Ok(dir
        .open_log(OpenOptions::default())
        .with_context(|| {
            format!(
                "cannot open the log in {} ({} a broken chain? try `behalf audit verify`)",
                dir.root().display(),
                in_use(dir.root())
            )
        })?
        .0)
}

/// What a broken chain (found on open, or by the walk after start) is told as.
pub fn broken(data_dir: &Path, position: u64, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the event log in {} is broken at position {position}: {what}. `behalf audit verify` shows the same; \
         `behalf serve --stop-at-last-good` starts from commit {} and keeps the rest in quarantine",
        data_dir.display(),
        position.saturating_sub(1)
    )
}

/// Creates the data directory if it is not there, and makes it owner-only (0700) — it
/// holds tickets, contacts and token hashes. A directory found open to others is
/// closed, with a warning.
pub fn ensure_dir(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    }
    let mode = std::fs::metadata(data_dir)
        .with_context(|| format!("cannot read the data directory {}", data_dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %data_dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory was open to other users; making it owner-only (0700)"
        );
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} owner-only", data_dir.display()))?;
    }
    Ok(())
}

/// The token store shared through the NATS cluster (the data directory receives the
/// admin token file when this process makes it).
pub async fn open_nats_tokens(to: &Endpoint, replicas: usize, dir: &DataDir) -> anyhow::Result<Tokens> {
    ensure_dir(dir.root())?;
    let store = NatsTokens::open(to, replicas)
        .await
        .with_context(|| format!("cannot open the token store on NATS at {}", to.url))?;
    Ok(Tokens::new(store))
}

fn in_use(data_dir: &Path) -> String {
    format!("is another behalf process using {}?", data_dir.display())
}

/// Opens the token store of a data directory.
pub fn open_tokens(dir: &DataDir) -> anyhow::Result<Tokens> {
    ensure_dir(dir.root())?;
    let tokens = dir.open_tokens().with_context(|| format!("cannot open the token store; {}", in_use(dir.root())))?;
    Ok(Tokens::new(tokens))
}

/// Connects to the JetStream engine (creating its stream and bucket if needed).
/// `index`: whether this process runs the command indexer (the all-in-one server and
/// the notifier do; command services and projectors leave it to them).
pub async fn open_nats(
    to: &Endpoint,
    replicas: usize,
    duplicate_window: std::time::Duration,
    index: bool,
) -> anyhow::Result<NatsLog> {
    let options = NatsOptions::new(to).replicas(replicas).duplicate_window(duplicate_window);
    let log = NatsLog::open(NatsOptions { run_indexer: index, ..options })
        .await
        .with_context(|| format!("cannot open the event log on NATS at {}", to.url))?;
    tracing::info!(head = behalf_log::EventLog::head(&log).await?, "event log open on NATS JetStream");
    Ok(log)
}

/// The GDAP projection of a role, starting from (and saving) the snapshot in its data
/// directory.
pub fn gdap_projection<L: behalf_log::EventLog>(
    log: &L,
    dir: &DataDir,
) -> std::sync::Arc<behalf_service::gdap::GdapProjection> {
    behalf_service::gdap::GdapProjection::spawn_with_snapshot(log, dir.gdap_snapshot())
}

/// Opens the views of a data directory.
pub fn open_views(dir: &DataDir) -> anyhow::Result<SledViews> {
    open_views_at(&dir.views())
}

/// Opens views kept elsewhere (a rebuild `--into` a directory, an audit's scratch).
pub fn open_views_at(path: &Path) -> anyhow::Result<SledViews> {
    SledViews::open(path).with_context(|| format!("cannot open the views in {}", path.display()))
}

/// Opens the queues of a data directory.
pub fn open_queues(dir: &DataDir) -> anyhow::Result<SledQueues> {
    dir.open_queues().with_context(|| format!("cannot open the queues in {}", dir.queues().display()))
}

/// Where the sealing keys are: the data directory's `keys/`, or the cluster's bucket.
pub async fn open_key_store(
    to: Option<&Endpoint>,
    replicas: usize,
    dir: &DataDir,
) -> anyhow::Result<(std::sync::Arc<dyn behalf_log::keys::KeyStore>, String)> {
    Ok(match to {
        Some(to) => (
            std::sync::Arc::new(
                behalf_nats::NatsKeys::open(to, replicas)
                    .await
                    .with_context(|| format!("cannot open the key store on NATS at {}", to.url))?,
            ),
            format!("the bucket {} on NATS at {}", behalf_nats::KEYS_BUCKET, to.url),
        ),
        None => {
            ensure_dir(dir.root())?;
            let keys = dir.open_keys().with_context(|| format!("cannot open the key store; {}", in_use(dir.root())))?;
            (std::sync::Arc::new(keys), dir.keys().display().to_string())
        }
    })
}

/// The keyring that seals and opens personal data (issue 26), over `store`. A key
/// store made now beside a log that already holds sealed records has been lost: that
/// is said here, at start-up, not discovered later as fields that read as erased.
pub async fn open_keyring<L: behalf_log::EventLog>(
    store: std::sync::Arc<dyn behalf_log::keys::KeyStore>,
    at: &str,
    log: &L,
) -> anyhow::Result<std::sync::Arc<behalf_service::seal::Keyring>> {
    let (keyring, fresh) =
        behalf_service::seal::Keyring::open(store).with_context(|| format!("cannot open the sealing keys in {at}"))?;
    if fresh {
        let sealed = sealed_records(log).await?;
        if sealed > 0 {
            anyhow::bail!(
                "the key store in {at} is new, but the log holds {sealed} records with sealed personal data: \
                 the keys were lost. Restore the key store from the backup taken with the log (docs/OPERATIONS.md, \
                 \"Backups\"); starting without it would show every sealed field as erased"
            );
        }
    }
    Ok(std::sync::Arc::new(keyring))
}

/// How many records hold sealed personal fields (read once, on a new key store).
async fn sealed_records<L: behalf_log::EventLog>(log: &L) -> anyhow::Result<u64> {
    let (mut after, mut sealed) = (0, 0u64);
    loop {
        let page = log.read_all(after, 1000).await?;
        let Some(last) = page.last() else { return Ok(sealed) };
        after = last.position;
        for c in &page {
            if c.events.iter().any(|e| behalf_service::seal::sealed_fields(e) > 0) {
                sealed += 1;
            }
        }
    }
}
