//! The domain's rule table (`behalf_test_support::cases`) sent through the real
//! `behalf serve` over HTTP: every case a live server can stage — those that start
//! from the standard world, alone or with a ticket — answered as `decide` answers it,
//! with the HTTP status of its code from the code table. (Cases that move the clock
//! or change the directory first run against `decide` only: a live server has one
//! clock and one directory.)

#![allow(clippy::wildcard_enum_match_arm)] // reason: tests panic on the unexpected

use crate::support;

use behalf_domain::Code;
use behalf_test_support::cases::{cases, resolve, Given, Then};
use behalf_test_support::world::{agent, open_o365};
use support::{send_world, Client, Server, Tokens};

#[tokio::test(flavor = "multi_thread")]
async fn the_rule_table_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let mut tokens = Tokens::new(c.clone(), &server.admin);
    let (mut sent, mut failures) = (0, Vec::new());
    for case in cases() {
        let ticket = match &case.given {
            Given::World(_) => continue,
            Given::Nothing => None,
            Given::Ticket | Given::ClosedTicket | Given::AttentionTicket => {
                let opened = tokens.must(&agent(), &open_o365()).await;
                let id = opened["ticket_id"].as_str().expect("a ticket id").to_owned();
                for (who, cmd) in case.given.after_open(&id) {
                    tokens.must(&who, &cmd).await;
                }
                Some(id)
            }
        };
        let (mut cmd, expected) = resolve(ticket.as_deref(), (case.when)());
        if let Some(v) = expected {
            cmd["expected_version"] = v.into();
        }
        let token = tokens.of(&(case.who)()).await;
        let (status, answer) = c.post(&token, &cmd).await;
        sent += 1;
        let held = match case.then {
            Then::Accepts(types) => {
                let got: Vec<&str> = answer["events"]
                    .as_array()
                    .map(|es| es.iter().filter_map(|e| e["type"].as_str()).collect())
                    .unwrap_or_default();
                answer["outcome"] == "accepted" && (status == 200 || status == 201) && got == types
            }
            Then::Refuses(code, rule) => {
                let want = behalf_http::status_of(Code::parse(code).expect(code)).as_u16();
                status == want
                    && answer["code"].as_str() == Some(code)
                    && answer["rule"].as_str() == Some(format!("R{rule}").as_str())
            }
        };
        if !held {
            failures.push(format!("{}: answered {status} {answer}", case.label));
        }
    }
    assert!(sent >= 70, "only {sent} cases were sent over HTTP");
    assert!(
        failures.is_empty(),
        "{} of {sent} cases answered otherwise over HTTP:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
