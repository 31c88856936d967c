//! `behalf-client` against the real binary, on both transports: a typed command is
//! accepted, sending it again under the same id answers its first outcome (no second
//! append), and a refusal comes back typed with its code and rule.

use crate::support;

use behalf_client::{Client, Error, Retry};
use behalf_domain::Command;
use support::world::*;
use support::{send_world, spawn_until, Engine, Role, Server};

fn command(v: serde_json::Value) -> Command {
    serde_json::from_value(v).expect("a command of API.md")
}

async fn scenario(client: &Client, label: &str) {
    let open = command(open_o365());
    let first = client.send_as(&open, &format!("{label}-open-1"), None).await.expect("accepted");
    let ticket = first.ticket_id.clone().expect("a ticket id");
    assert!(!first.duplicate && first.events.len() == 1, "{label}: {first:?}");
    let again = client.send_as(&open, &format!("{label}-open-1"), None).await.expect("answered again");
    assert!(again.duplicate, "{label}: the same id answers its first outcome");
    assert_eq!((again.ticket_id.as_deref(), again.position), (Some(ticket.as_str()), first.position));
    let reopen = command(serde_json::json!({"type":"ticket.reopen","ticket_id":ticket,"reason":"x"}));
    match client.send(&reopen).await {
        Err(Error::Refused { status: 409, refusal }) => {
            assert_eq!((refusal.code.as_str(), refusal.rule.as_deref()), ("ticket.invalid_transition", Some("R17")))
        }
        other => panic!("{label}: {other:?}"),
    }
    let stale = command(serde_json::json!({"type":"ticket.note","ticket_id":ticket,"text":"late"}));
    match client.send_as(&stale, &format!("{label}-stale"), Some(0)).await {
        Err(Error::Refused { refusal, .. }) => assert_eq!(refusal.code, "concurrency.conflict", "{label}"),
        other => panic!("{label}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_over_http_and_nats() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = support::Client::of(&server);
    send_world(&c, &server.admin).await;
    let agent_token = c.token(&server.admin, &agent()).await;
    let http = Client::http(&server.base, &agent_token).unwrap().with_retry(Retry::NONE);
    scenario(&http, "http").await;

    let (server, kept) = Engine::Nats.serve();
    let c = support::Client::of(&server);
    send_world(&c, &server.admin).await;
    let agent_token = c.token(&server.admin, &agent()).await;
    let role_dir = tempfile::tempdir().unwrap();
    let _command = Role(
        spawn_until(
            &["command", "--nats", &kept.nats_urls(), "--data-dir", role_dir.path().to_str().unwrap()],
            "serving ",
        )
        .0,
    );
    let over_nats = Client::nats(kept.nats_urls(), &agent_token).await.unwrap();
    scenario(&over_nats, "nats").await;
    drop((server, kept));
}
