//! The command service on the real embedded log: two services (as two processes would
//! be) writing the same ticket at once — conflicts are detected by the expected
//! version and retried against fresh state, never lost; idempotency across a restart.

use std::sync::Arc;

use behalf_domain::Rejection;
use behalf_domain::{Event, Principal, StreamId};
use behalf_log::EventLog;
use behalf_service::clock::{Clock, ManualClock};
use behalf_service::commands::{Accepted, CommandService};
use behalf_service::request;
use behalf_service::Refused;
use behalf_sled_store::{OpenOptions, SledLog};
use behalf_test_support::world::*;
use serde_json::{json, Value};

/// A command's answer; an internal failure fails the test.
async fn run<L: EventLog>(s: &CommandService<L>, who: &Principal, cmd: Value) -> Result<Accepted, Rejection> {
    match s.execute(who.clone(), request::from_value(cmd, None).unwrap()).await {
        Ok(a) => Ok(a),
        Err(Refused::Rejected(r)) => Err(r),
        Err(Refused::Failed(e)) => panic!("{e}"),
    }
}

fn accepted(o: Result<Accepted, Rejection>) -> Accepted {
    o.unwrap_or_else(|r| panic!("{r}"))
}

type Service = Arc<CommandService<SledLog>>;

/// Two command services (as two processes would be) over one log in `dir`, with the
/// standard world sent through the first.
async fn two_services_on_the_world(dir: &std::path::Path) -> (SledLog, Service, Service) {
    let clock = ManualClock::at(at("2026-06-01T00:00:00Z"));
    let (log, _) = SledLog::open(dir, OpenOptions::default()).unwrap();
    let one = Arc::new(CommandService::new(log.clone(), Arc::new(clock.clone()) as Arc<dyn Clock>));
    let two = Arc::new(CommandService::new(log.clone(), Arc::new(clock.clone()) as Arc<dyn Clock>));
    for (who, cmd) in standard_world(&FIXED_TIMES) {
        accepted(run(&one, &who, cmd).await);
    }
    (log, one, two)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_services_on_one_ticket_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let (log, one, two) = two_services_on_the_world(dir.path()).await;
    let t = accepted(run(&one, &agent(), open_o365()).await).ticket_id.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = if i % 2 == 0 { Arc::clone(&one) } else { Arc::clone(&two) };
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            run(&s, &agent(), json!({"type":"ticket.note","ticket_id":t,"text":format!("n{i}")})).await
        }));
    }
    // A command may, under heavy contention, give up with `concurrency.conflict` — that
    // is a detected conflict, not a lost update. What must hold: every accepted note is
    // in the stream exactly once, at the version it was answered with, and nothing else.
    let mut accepted_at = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(a) => accepted_at.push((a.version, format!("n{i}"))),
            Err(r) => assert_eq!(r.code.as_str(), "concurrency.conflict", "{r}"),
        }
    }
    accepted_at.sort_unstable();
    assert!(accepted_at.len() >= 12, "most commands get through: {}", accepted_at.len());
    let mut in_log = Vec::new();
    for c in log.read_stream(&StreamId::ticket(&t), 1).await.unwrap() {
        for e in &c.events {
            if let Event::NoteAdded(n) = e {
                in_log.push((c.last_version(), n.text.clone()));
            }
        }
    }
    assert_eq!(in_log, accepted_at, "no lost update between the two services");
    let expected: Vec<u64> = (2..2 + accepted_at.len() as u64).collect();
    assert_eq!(accepted_at.iter().map(|(v, _)| *v).collect::<Vec<_>>(), expected, "versions are dense");

    // Idempotency survives a restart of both the service and the log.
    let keyed = json!({"type":"ticket.note","ticket_id":t,"text":"once","command_id":"keyed-1"});
    let first = accepted(run(&one, &agent(), keyed.clone()).await);
    drop((one, two, log));
    let (log, _) = SledLog::open(dir.path(), OpenOptions::default()).unwrap();
    let clock = ManualClock::at(at("2026-06-01T00:00:00Z"));
    let again = CommandService::new(log, Arc::new(clock) as Arc<dyn Clock>);
    let second = accepted(run(&again, &agent(), keyed).await);
    assert!(second.duplicate);
    assert_eq!((second.position, second.version), (first.position, first.version));
}

/// R30: a refused command changes no ticket, is recorded once in the audit stream
/// (who, what, code), and a retry with the same id answers the same refusal without a
/// second record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_changes_no_ticket_and_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(at("2026-06-01T00:00:00Z"));
    let (log, _) = SledLog::open(dir.path(), OpenOptions::default()).unwrap();
    let s = CommandService::new(log.clone(), Arc::new(clock) as Arc<dyn Clock>);
    for (who, cmd) in standard_world(&FIXED_TIMES) {
        accepted(run(&s, &who, cmd).await);
    }
    let t = accepted(run(&s, &agent(), open_o365()).await).ticket_id.unwrap();
    let stream = StreamId::ticket(&t);
    let before = log.stream_version(&stream).await.unwrap();
    let reopen = json!({"type":"ticket.reopen","ticket_id":t,"reason":"x","command_id":"refused-1"});
    for attempt in 0..2 {
        match run(&s, &agent(), reopen.clone()).await {
            Err(r) => assert_eq!(
                (r.code.as_str(), r.rule.map(|x| x.to_string())),
                ("ticket.invalid_transition", Some("R17".to_owned())),
                "try {attempt}"
            ),
            Ok(a) => panic!("a reopen of an open ticket was accepted: {a:?}"),
        }
    }
    assert_eq!(log.stream_version(&stream).await.unwrap(), before, "the ticket did not change");
    let records: Vec<_> = log
        .read_stream(&StreamId::rejections(), 1)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.command_id.as_str() == "refused-1")
        .collect();
    assert_eq!(records.len(), 1, "recorded once, though sent twice");
    let Event::CommandRejected(r) = &records[0].events[0] else { panic!("not a refusal record") };
    assert_eq!((r.command_type.as_str(), r.code.as_str()), ("ticket.reopen", "ticket.invalid_transition"));
    assert_eq!(records[0].actor, agent(), "who");
}

/// R29 under a moving directory: two services (two GDAP projections, as two processes
/// would have) open tickets while the grant behind them is deleted and restored again
/// and again. A decision waits only for the last directory commit, and the log refuses
/// an append decided against an older directory; so for every accepted ticket, no
/// directory commit lies between the position its evidence was judged at and the
/// commit itself — the evidence describes the directory the ticket was opened under.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_ticket_is_opened_on_a_directory_that_moved_after_its_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (log, one, two) = two_services_on_the_world(dir.path()).await;
    directory_moves_under_openers(log, one, two).await;
}

/// The same on JetStream, with two processes' worth of log (each its own batcher, known
/// keys and directory position) and a command service on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_ticket_is_opened_on_a_directory_that_moved_after_its_decision_on_nats() {
    use behalf_nats::{NatsLog, NatsOptions};
    let nats = behalf_nats::server::Cluster::single().expect("nats-server starts");
    let open = || async { NatsLog::open(NatsOptions::new(nats.urls())).await.expect("open the JetStream log") };
    let (a, b) = (open().await, open().await);
    let clock = ManualClock::at(at("2026-06-01T00:00:00Z"));
    let one = Arc::new(CommandService::new(a.clone(), Arc::new(clock.clone()) as Arc<dyn Clock>));
    let two = Arc::new(CommandService::new(b, Arc::new(clock) as Arc<dyn Clock>));
    for (who, cmd) in standard_world(&FIXED_TIMES) {
        accepted(run(&one, &who, cmd).await);
    }
    directory_moves_under_openers(a, one, two).await;
}

/// Opens tickets from two services while the grant behind them is toggled, then checks
/// every accepted ticket's evidence against the directory commits around it, and that
/// no open was given up on as a conflict.
async fn directory_moves_under_openers<L: EventLog>(log: L, one: Arc<CommandService<L>>, two: Arc<CommandService<L>>) {
    let toggler = {
        let one = Arc::clone(&one);
        tokio::spawn(async move {
            for i in 0..40 {
                let status = if i % 2 == 0 { "deleted" } else { "active" };
                let upsert = json!({"type":"gdap.assignment.upsert","assignment_id":"asg-1","relationship_id":"rel-1","group_id":GROUP,"roles":[HELPDESK],"status":status});
                accepted(run(&one, &sync(PARTNER), upsert).await);
                tokio::task::yield_now().await;
            }
        })
    };
    let mut openers = Vec::new();
    for w in 0..16 {
        let s = if w % 2 == 0 { Arc::clone(&one) } else { Arc::clone(&two) };
        openers.push(tokio::spawn(async move {
            let mut opened = 0;
            for _ in 0..20 {
                match run(&s, &agent(), open_o365()).await {
                    Ok(_) => opened += 1,
                    // Refused for the grant it found, never given up on because the
                    // directory kept moving (a new ticket has no race of its own).
                    Err(r) => assert_ne!(r.code.as_str(), "concurrency.conflict", "{r}"),
                }
            }
            opened
        }));
    }
    toggler.await.unwrap();
    let mut opened = 0;
    for o in openers {
        opened += o.await.unwrap();
    }
    let commits = log.read_all(0, usize::MAX).await.unwrap();
    let directory: Vec<u64> = commits
        .iter()
        .filter(|c| behalf_domain::command::DIRECTORY_CATEGORIES.contains(&c.stream.category()))
        .map(|c| c.position)
        .collect();
    let mut checked = 0;
    for c in &commits {
        for e in &c.events {
            if let Event::TicketOpened(t) = e {
                let judged = t.evidence.directory_position;
                let between: Vec<_> = directory.iter().filter(|&&d| d > judged && d < c.position).collect();
                assert!(
                    between.is_empty(),
                    "ticket at {} judged at {judged}; directory moved at {between:?}",
                    c.position
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, opened, "every accepted open is in the log");
    assert!(opened > 0, "some opens got through between the toggles");
}
