//! `behalf` — the binary. Thin: parse the command line, set up tracing, run a role.

mod audit;
mod bench;
mod demo;
mod import;
mod listen;
mod project;
mod queue;
mod roles;
mod serve;
mod settings;
mod stores;
mod telemetry;
mod token;
mod workers;

use clap::{Parser, Subcommand};

/// The allocator: measurably better than glibc's for replay (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Behalf: support tickets that CSP partners file on behalf of their customers,
/// only when their GDAP grants allow it, kept in one tamper-evident event log.
#[derive(Parser, Debug)]
#[command(name = "behalf", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run everything in one process (HTTP API, command service, GDAP projection,
    /// views, notifier) on the embedded engine, or with `--nats` on NATS JetStream.
    /// A fresh data directory gets an admin token.
    Serve(ServeArgs),
    /// The command service on NATS JetStream: answer `behalf.cmd` (and, with --listen,
    /// POST /v1/commands) in a queue group with every other `behalf command`.
    Command(CommandArgs),
    /// Narrate the seed's story on a fresh temporary store, through the real HTTP API
    /// (with --serve, then keep it up and print console links)
    Demo(demo::DemoArgs),
    /// Issue, revoke or list tokens in a data directory (while no server runs on it;
    /// on a running server use POST /v1/tokens with the admin token).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Bring the views of a data directory up to the log (no server may hold it), or
    /// rebuild them from zero — in place or into another directory — with progress.
    /// With --nats: a projector worker answering `behalf.query.<name>`.
    Project(project::ProjectArgs),
    /// Peek at or acknowledge queue messages in a data directory.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// Run the notifier as its own process over a data directory: forward escalations
    /// and notices to their queues exactly once, and record missed response targets.
    /// With --nats: into the cluster's queues on NATS JetStream (bucket BEHALF_QUEUE).
    Notify(queue::NotifyArgs),
    /// Audit the log: verify the chain, replay the views, re-judge the evidence, a
    /// ticket's story, time travel, export. Exit code 1 when something does not hold.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Import GDAP facts from Microsoft Graph response pages through the HTTP API, as a
    /// partner's directory sync (idempotent: the same pages again append nothing).
    #[command(subcommand)]
    Import(import::ImportCmd),
    /// Load generators: ticket.open over HTTP, in-process or through `behalf command` on
    /// NATS, beside raw sled or raw JetStream from the same run; view catch-up.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    settings: settings::SettingsArgs,
    /// If the log's hash chain is broken, start from the last good commit and keep the
    /// rest in quarantine (without it, a broken log refuses to start)
    #[arg(long)]
    stop_at_last_good: bool,
}

/// `behalf command`: the role's settings.
#[derive(clap::Args, Debug)]
struct CommandArgs {
    #[command(flatten)]
    settings: settings::SettingsArgs,
}

/// A long-running role's settings, layered (the subcommand's matches say which values
/// the command line and the environment gave), with tracing set up as they say.
fn settings_of(
    args: &settings::SettingsArgs,
    matches: &clap::ArgMatches,
) -> anyhow::Result<(settings::Settings, telemetry::Telemetry)> {
    let (role, sub) = matches.subcommand().unwrap_or(("behalf", matches));
    let s = args.load(sub)?;
    let telemetry = telemetry::init(s.log.format, s.log.otlp_endpoint.as_deref(), role);
    Ok((s, telemetry))
}

/// Log lines for a one-shot command (no settings, no traces).
fn one_shot_tracing() -> telemetry::Telemetry {
    telemetry::init(settings::LogFormat::Human, None, "cli")
}

fn main() -> anyhow::Result<()> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    settings::unset_empty_variables();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Before the first command: the crates' metrics handles bind to the recorder in
    // place when they are first used.
    if !matches!(&cli.command, Cmd::Bench(b) if !b.records_metrics()) {
        behalf_http::metrics::install();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Cmd::Serve(a) => {
            let (s, _telemetry) = settings_of(&a.settings, &matches)?;
            rt.block_on(async { serve::run(s, a.stop_at_last_good, listen::shutdown_signal()).await })
        }
        Cmd::Command(a) => {
            let (s, _telemetry) = settings_of(&a.settings, &matches)?;
            rt.block_on(roles::command(&s))
        }
        Cmd::Demo(a) => {
            let _telemetry = one_shot_tracing();
            rt.block_on(demo::run(a))
        }
        Cmd::Token(t) => token::run(t),
        Cmd::Queue(q) => queue::run(q),
        Cmd::Audit(a) => {
            let _telemetry = one_shot_tracing();
            match rt.block_on(audit::run(a)) {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(e) => {
                    eprintln!("behalf audit: {e:#}");
                    std::process::exit(2)
                }
            }
        }
        Cmd::Notify(n) => {
            let (s, _telemetry) = settings_of(&n.settings, &matches)?;
            rt.block_on(queue::notify(n, &s))
        }
        Cmd::Project(p) => {
            let (s, _telemetry) = settings_of(&p.settings, &matches)?;
            rt.block_on(project::run(p, &s))
        }
        Cmd::Import(i) => {
            let _telemetry = one_shot_tracing();
            rt.block_on(import::run(i))
        }
        Cmd::Bench(b) => {
            let _telemetry = one_shot_tracing();
            rt.block_on(bench::run(b))
        }
    }
}
