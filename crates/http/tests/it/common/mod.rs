//! The router of a server with every part (commands, queries, queues, webhooks) over embedded
//! stores in a temporary directory, with an admin and a vendor token: the in-process
//! fixture of the http crate's tests.

use std::sync::Arc;

use behalf_domain::{Principal, Timestamp};
use behalf_http::{router, App, Limits, ReadSide};
use behalf_service::clock::{Clock, ManualClock};
use behalf_service::commands::CommandService;
use behalf_service::tokens::Tokens;
use behalf_sled_store::DataDir;

pub struct Server {
    pub _dir: tempfile::TempDir,
    pub router: axum::Router,
    pub admin: String,
    pub vendor: String,
}

/// Builds it on the current runtime.
pub fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at(Timestamp::from_millis(1_780_000_000_000)));
    let (log, _) = DataDir::new(dir.path()).open_log(Default::default()).unwrap();
    let tokens = Tokens::new(DataDir::new(dir.path()).open_tokens().unwrap());
    let admin = tokens.issue(Principal::Admin, "test", clock.as_ref()).unwrap().token;
    let vendor = tokens.issue(Principal::Vendor, "test", clock.as_ref()).unwrap().token;
    let gdap = behalf_service::gdap::GdapProjection::spawn(&log);
    let service = Arc::new(CommandService::with_gdap(log.clone(), Arc::clone(&gdap), Arc::clone(&clock)));
    let views = Arc::new(DataDir::new(dir.path()).open_views().unwrap());
    let queues = Arc::new(DataDir::new(dir.path()).open_queues().unwrap());
    let (_tx, position) = tokio::sync::watch::channel(0);
    let app = App::new(log, gdap, Arc::new(tokens), clock, Limits::default())
        .with_commands(service)
        .with_read(ReadSide { views, position })
        .with_queues(queues)
        .with_webhooks(
            Arc::new(DataDir::new(dir.path()).open_webhooks().unwrap()),
            behalf_service::webhooks::Settings::default(),
        );
    Server { _dir: dir, router: router(Arc::new(app)), admin, vendor }
}
