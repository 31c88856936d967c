//! `behalf token issue|revoke|list` on a data directory. The secret is printed once.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use behalf_service::clock::SystemClock;
use behalf_service::tokens::{TokenSpec, Tokens};
use behalf_sled_store::DataDir;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token bound to one principal; prints the token once.
    Issue {
        /// partner_agent, partner_sync, customer, vendor, auditor or admin
        #[arg(long)]
        kind: String,
        #[arg(long)]
        partner: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        label: Option<String>,
        #[arg(long, default_value = crate::settings::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Revoke a token by its id.
    Revoke {
        token_id: String,
        #[arg(long, default_value = crate::settings::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, default_value = crate::settings::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

fn open(data_dir: &std::path::Path) -> anyhow::Result<Tokens> {
    if !data_dir.exists() {
        bail!("no data directory at {} (run `behalf serve` once to create it)", data_dir.display());
    }
    let store = DataDir::new(data_dir).open_tokens().with_context(|| {
        format!(
            "cannot open the token store in {}: if `behalf serve` is running on it, issue tokens over HTTP with the admin token (POST /v1/tokens)",
            data_dir.display()
        )
    })?;
    Ok(Tokens::new(store))
}

pub fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Issue { kind, partner, user, customer, label, data_dir } => {
            let spec = TokenSpec { kind, partner_id: partner, user_id: user, customer_id: customer, label };
            let principal = spec.principal().map_err(|r| anyhow::anyhow!("{}", r.message))?;
            let issued = open(&data_dir)?.issue(principal, spec.label.as_deref().unwrap_or(""), &SystemClock)?;
            println!("token_id {}", issued.token_id);
            println!("token    {}", issued.token);
            eprintln!("(the token is shown once; only its hash is stored)");
        }
        TokenCmd::Revoke { token_id, data_dir } => {
            if !open(&data_dir)?.revoke(&token_id)? {
                bail!("no token {token_id}");
            }
            println!("revoked {token_id}");
        }
        TokenCmd::List { data_dir } => {
            for t in open(&data_dir)?.list()? {
                let state = if t.revoked { "revoked" } else { "active" };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.token_id,
                    state,
                    serde_json::to_string(&t.principal)?,
                    t.created_at,
                    t.label
                );
            }
        }
    }
    Ok(())
}
