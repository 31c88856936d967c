//! `behalf` — the binary. Thin: parse the command line, set up tracing, run a role.

mod audit;
mod bench;
mod demo;
mod project;
mod queue;
mod roles;
mod serve;
mod settings;
mod stores;
mod token;
mod workers;

use std::path::PathBuf;

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
    Command(roles::CommandArgs),
    /// Narrate the seed's story on a fresh temporary store, through the real HTTP API.
    Demo,
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
    /// Load generators: ticket.open over HTTP, in-process or through `behalf command` on
    /// NATS, beside raw sled or raw JetStream from the same run; view catch-up.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Where the log and the tokens live [default: ./behalf-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HOST:PORT to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// A TOML settings file (keys as the flags, with underscores)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log lines as `human` or `json` [default: human]
    #[arg(long)]
    log_format: Option<String>,
    /// Largest accepted request body in bytes [default: 262144]
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Commands decided at once before answering 429 [default: 4096]
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// If the log's hash chain is broken, start from the last good commit and keep the
    /// rest in quarantine (without it, a broken log refuses to start)
    #[arg(long)]
    stop_at_last_good: bool,
    /// Keep the event log on NATS JetStream at these URLs (comma-separated, e.g.
    /// nats://127.0.0.1:4222) instead of the embedded engine. Tokens are shared through
    /// the cluster; views and queues stay in the data directory. Any number of servers
    /// may share one cluster
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Copies of the event stream when it is first created: 1 on one node, 3 on a
    /// cluster [default: 1]
    #[arg(long)]
    nats_replicas: Option<usize>,
    /// JetStream's de-duplication window when the event stream is first created, e.g.
    /// 10m or 1s. Idempotency (R26) holds beyond it through the command index
    /// [default: 10m]
    #[arg(long, value_name = "DURATION")]
    nats_duplicate_window: Option<String>,
}

fn init_tracing(format: settings::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BEHALF_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        settings::LogFormat::Human => builder.init(),
        settings::LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Cmd::Serve(a) => {
            let flags = settings::Layer {
                data_dir: a.data_dir,
                listen: a.listen,
                log_format: a.log_format,
                max_body_bytes: a.max_body_bytes,
                max_in_flight: a.max_in_flight,
                nats: a.nats,
                nats_replicas: a.nats_replicas,
                nats_duplicate_window: a.nats_duplicate_window,
            };
            let mut s =
                settings::load(settings::config_path(a.config).as_deref(), settings::Layer::from_env()?, flags)?;
            s.stop_at_last_good = a.stop_at_last_good;
            init_tracing(s.log_format);
            rt.block_on(serve::run(s, serve::shutdown_signal()))
        }
        Cmd::Command(c) => {
            init_tracing(settings::LogFormat::Human);
            rt.block_on(roles::command(c))
        }
        Cmd::Demo => {
            init_tracing(settings::LogFormat::Human);
            rt.block_on(demo::run())
        }
        Cmd::Token(t) => token::run(t),
        Cmd::Queue(q) => queue::run(q),
        Cmd::Audit(a) => {
            init_tracing(settings::LogFormat::Human);
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
            init_tracing(settings::LogFormat::Human);
            rt.block_on(queue::notify(n))
        }
        Cmd::Project(p) => {
            init_tracing(settings::LogFormat::Human);
            rt.block_on(project::run(p))
        }
        Cmd::Bench(b) => {
            init_tracing(settings::LogFormat::Human);
            rt.block_on(bench::run(b))
        }
    }
}
