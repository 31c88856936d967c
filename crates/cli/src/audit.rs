//! `behalf audit verify|replay|rejudge|ticket|as-of|export` over a data directory no
//! server holds. Long walks show a progress bar on standard error; the exit code says
//! the verdict (0: all holds, 1: something does not, 2: the audit could not run).

use std::io::Write as _;

use anyhow::{bail, Context as _};
use behalf_domain::{CustomerId, PartnerId, TicketId, Timestamp, UserId};
use behalf_log::views::ViewStore as _;
use behalf_log::EventLog;
use behalf_service::audit;
use behalf_sled_store::DataDir;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::settings::Source;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Walk the whole log: the hash chain and that every event decodes. Names the first bad position.
    Verify {
        #[command(flatten)]
        source: Source,
    },
    /// Rebuild every view into a scratch directory and compare with the live views.
    Replay {
        #[command(flatten)]
        source: Source,
    },
    /// Judge every accepted partner command again from its recorded evidence (R29).
    Rejudge {
        #[command(flatten)]
        source: Source,
        #[arg(long)]
        json: bool,
    },
    /// A ticket's whole story: every command, actor, evidence and refusal.
    Ticket {
        ticket_id: String,
        #[command(flatten)]
        source: Source,
        #[arg(long)]
        json: bool,
    },
    /// A ticket's state, or what a partner user could do for a customer, at a log
    /// position or an RFC 3339 time.
    AsOf {
        /// A log position or an RFC 3339 time
        at: String,
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long, requires_all = ["user", "customer"])]
        partner: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        source: Source,
    },
    /// The log as JSON Lines on standard output, one event a line with its envelope.
    Export {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[command(flatten)]
        source: Source,
    },
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    let style = format!("{{spinner}} {what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})");
    b.set_style(ProgressStyle::with_template(&style).unwrap_or_else(|_| ProgressStyle::default_bar()));
    b
}

impl AuditCmd {
    fn source(&self) -> &Source {
        match self {
            AuditCmd::Verify { source }
            | AuditCmd::Replay { source }
            | AuditCmd::Rejudge { source, .. }
            | AuditCmd::Ticket { source, .. }
            | AuditCmd::AsOf { source, .. }
            | AuditCmd::Export { source, .. } => source,
        }
    }
}

/// Opens the log on NATS for reading: it creates nothing and runs no indexer.
async fn open_nats_log(to: &behalf_nats::Endpoint) -> anyhow::Result<behalf_nats::NatsLog> {
    let options = behalf_nats::NatsOptions { run_indexer: false, create: false, ..behalf_nats::NatsOptions::new(to) };
    behalf_nats::NatsLog::open(options)
        .await
        .with_context(|| format!("cannot open the event log on NATS at {}", to.url))
}

/// Runs an audit; `Ok(false)` when the verdict is that something does not hold.
pub async fn run(cmd: AuditCmd) -> anyhow::Result<bool> {
    let source = cmd.source();
    let nats = source.nats_endpoint()?;
    match (nats, &cmd) {
        (Some(to), AuditCmd::Verify { .. }) => {
            let log = open_nats_log(&to).await?;
            let b = bar(0, "verifying");
            let report = log.verify_with(|p, head| {
                b.set_length(head);
                b.set_position(p);
            });
            let report = report.await?;
            b.finish_and_clear();
            let ok = verdict(&report)?;
            clear_records(&log).await?;
            Ok(ok)
        }
        (Some(to), _) => {
            let keys = match behalf_nats::NatsKeys::open(&to, 1).await {
                Ok(k) => behalf_service::seal::Keyring::open_existing(std::sync::Arc::new(k))?,
                Err(e) => {
                    tracing::warn!(error = %e, "no sealing keys on NATS: sealed fields print as erased");
                    None
                }
            };
            run_on(cmd, open_nats_log(&to).await?, keys).await
        }
        (None, AuditCmd::Verify { source }) => {
            let path = DataDir::new(&source.data_dir).log();
            if !path.exists() {
                bail!("no event log in {}", source.data_dir.display());
            }
            let b = bar(0, "verifying");
            let report = behalf_sled_store::verify_dir(&path, |p, head| {
                b.set_length(head);
                b.set_position(p);
            })?;
            b.finish_and_clear();
            let ok = verdict(&report)?;
            // How much personal data predates sealing (issue 26), if the log is free.
            if let Ok(log) = crate::stores::open_existing_log(&DataDir::new(&source.data_dir)) {
                clear_records(&log).await?;
            }
            Ok(ok)
        }
        (None, _) => {
            let dir = DataDir::new(&cmd.source().data_dir);
            let log = crate::stores::open_existing_log(&dir)?;
            let keys = match dir.keys().exists() {
                true => behalf_service::seal::Keyring::open_existing(std::sync::Arc::new(
                    dir.open_keys()
                        .with_context(|| format!("cannot open the key store in {}", dir.keys().display()))?,
                ))?,
                false => None,
            };
            run_on(cmd, log, keys).await
        }
    }
}

impl AuditCmd {
    /// `audit replay` of the views in `data_dir` against the log there or on NATS at
    /// `nats` (the soak's last check).
    pub fn replay(data_dir: &std::path::Path, nats: Option<String>) -> AuditCmd {
        AuditCmd::Replay { source: Source { data_dir: data_dir.to_path_buf(), nats, nats_access: Default::default() } }
    }
}

fn verdict(report: &behalf_log::VerifyReport) -> anyhow::Result<bool> {
    match &report.first_bad {
        None => {
            println!("ok: {} commits; the hash chain holds and every event decodes", report.verified);
            Ok(true)
        }
        Some((position, what)) => {
            println!("BROKEN at position {position}: {what} ({} commits before it verify)", report.verified);
            Ok(false)
        }
    }
}

/// Prints how many records hold personal fields in the clear (written before sealing;
/// the chain is never rewritten to seal them).
async fn clear_records<L: EventLog>(log: &L) -> anyhow::Result<()> {
    let head = log.head().await?;
    let (mut records, mut fields) = (0u64, 0usize);
    behalf_service::runner::catch_up(log, 0, head, |page| {
        for c in page {
            let n: usize = c.events.iter().map(behalf_service::seal::clear_personal_fields).sum();
            records += u64::from(n > 0);
            fields += n;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?;
    println!("personal data in the clear: {records} records ({fields} fields), written before sealing");
    Ok(())
}

/// Prints `value` as JSON with its sealed fields opened (`[erased]` once a key is gone,
/// or where no key store is at hand).
fn opened<T: serde::Serialize>(
    keys: Option<&behalf_service::seal::Keyring>,
    value: &T,
) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(value)?;
    match keys {
        Some(k) => k.open_json(&mut v)?,
        None => behalf_service::seal::erase_json(&mut v),
    }
    Ok(v)
}

/// Every audit but a data directory's `verify`, on any engine's log.
async fn run_on<L: EventLog>(
    cmd: AuditCmd,
    log: L,
    keys: Option<behalf_service::seal::Keyring>,
) -> anyhow::Result<bool> {
    let keys = keys.as_ref();
    match cmd {
        AuditCmd::Verify { .. } => {
            let ok = verdict(&log.verify().await?)?;
            clear_records(&log).await?;
            Ok(ok)
        }
        AuditCmd::Replay { source: Source { data_dir, .. } } => {
            let live = crate::stores::open_views(&DataDir::new(data_dir))?;
            // Bring the live views up to the log first: a lagging runner is not a difference.
            let head = behalf_service::views::catch_up(&log, &live, |_, _| {}).await?;
            let scratch_dir = tempfile::tempdir()?;
            let scratch = crate::stores::open_views_at(scratch_dir.path())?;
            let b = bar(head, "replaying");
            let diffs = audit::replay_and_compare(&log, &live, &scratch, |p, _| b.set_position(p)).await?;
            b.finish_and_clear();
            // The GDAP projection is not stored: every start folds it from the log.
            let mut dir = behalf_domain::Directory::default();
            audit::each_commit(&log, head, |c| c.events.iter().for_each(|e| dir.apply(e))).await?;
            let (customers, relationships, assignments) = dir.gdap_counts();
            println!(
                "GDAP projection folded from {head} commits: {} partners, {customers} customers, \
                 {relationships} relationships, {assignments} assignments",
                dir.partners.len(),
            );
            if diffs.is_empty() {
                println!("ok: the live views equal a rebuild from the log ({} keys)", live.dump()?.len());
                return Ok(true);
            }
            for d in &diffs {
                println!("DIFFERENT {} view, key {}: {}", d.view, d.key, d.what);
            }
            Ok(false)
        }
        AuditCmd::Rejudge { json, .. } => {
            let b = bar(0, "re-judging");
            let (findings, judged) = audit::rejudge_all(&log, |d, t| {
                b.set_length(t);
                b.set_position(d);
            })
            .await?;
            b.finish_and_clear();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"judged": judged, "findings": findings}))?
                );
            } else {
                for f in &findings {
                    println!(
                        "DOES NOT HOLD position {} {} ({}, ticket {}): judged on position {}: {}",
                        f.position,
                        f.event_id,
                        f.event_type,
                        f.ticket_id.as_ref().map_or("-", |t| t.as_str()),
                        f.evidence_position,
                        f.problem
                    );
                }
                println!("{judged} accepted partner actions judged again; {} do not hold", findings.len());
            }
            Ok(findings.is_empty())
        }
        AuditCmd::Ticket { ticket_id, json, .. } => {
            let story = audit::ticket_story(&log, &TicketId::new(ticket_id.as_str())).await?;
            if story.is_empty() {
                bail!("no ticket {ticket_id} in the log");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&opened(keys, &story)?)?);
            } else {
                for l in &story {
                    let actor = serde_json::to_string(&l.actor)?;
                    let detail = if let behalf_domain::Event::CommandRejected(r) = &l.event {
                        format!(
                            "{} refused {} ({}): {}",
                            r.command_type,
                            r.code,
                            r.rule.map_or("-".into(), |r| r.to_string()),
                            r.message
                        )
                    } else {
                        match l.event.evidence() {
                            Some(ev) => format!("{} under {}", l.event.type_name(), serde_json::to_string(ev)?),
                            None => l.event.type_name().to_owned(),
                        }
                    };
                    println!("{:>8} {} {} {actor} {detail}", l.position, l.at, l.kind);
                }
            }
            Ok(true)
        }
        AuditCmd::AsOf { at, ticket, partner, user, customer, .. } => {
            let (position, time) = match (at.parse::<u64>(), Timestamp::parse_rfc3339(&at)) {
                (Ok(p), _) => {
                    let page = log.read_all(p.saturating_sub(1), 1).await?;
                    (p, page.first().map_or(Timestamp::default(), |c| c.at))
                }
                (Err(_), Some(t)) => (audit::position_at(&log, t).await?, t),
                (Err(_), None) => bail!("{at:?} is neither a log position nor an RFC 3339 time"),
            };
            if let Some(id) = ticket {
                let t = audit::ticket_as_of(&log, &TicketId::new(id.as_str()), position).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&opened(
                        keys,
                        &serde_json::json!({"position": position, "at": time, "ticket": t})
                    )?)?
                );
            } else if let (Some(p), Some(u), Some(c)) = (partner, user, customer) {
                let rows =
                    audit::access_as_of(&log, position, time, &PartnerId::new(p), &UserId::new(u), &CustomerId::new(c))
                        .await?;
                let rows: Vec<behalf_service::answers::AccessRow> = rows.into_iter().map(Into::into).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"position": position, "at": time, "workloads": rows})
                    )?
                );
            } else {
                bail!("name --ticket ID, or --partner P --user U --customer C");
            }
            Ok(true)
        }
        AuditCmd::Export { after, .. } => {
            let head = log.head().await?;
            let b = bar(head, "exporting");
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            behalf_service::runner::catch_up(&log, after, head, |page| {
                for env in page.iter().flat_map(|c| c.envelopes()) {
                    serde_json::to_writer(&mut out, &opened(keys, &behalf_service::answers::EnvelopeView::from(env))?)?;
                    out.write_all(b"\n")?;
                }
                b.set_position(page.last().map_or(0, |c| c.position));
                Ok::<_, anyhow::Error>(())
            })
            .await?;
            out.flush()?;
            b.finish_and_clear();
            Ok(true)
        }
    }
}
