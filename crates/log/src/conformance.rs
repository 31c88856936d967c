//! The conformance suite every [`EventLog`] engine runs, unchanged. An engine provides
//! a [`Harness`] (open a log over one store; opening again resumes it) and expands
//! [`crate::conformance_tests!`] in its tests.
//!
//! Each case panics with a message naming what broke.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use behalf_domain::event::NoteAdded;
use behalf_domain::{CommandId, CommandKey, CustomerId, Event, PartnerId, Principal, StreamId, TicketId, Timestamp};

use crate::{AppendRefused, AppendRequest, Appended, EventLog, ExpectedVersion, Subscription, GENESIS};

/// Opens logs over one store for one conformance case.
pub trait Harness: Send + Sync + 'static {
    type Log: EventLog;
    /// Opens the store; called again after the previous log was dropped, it resumes.
    fn open(&self) -> impl Future<Output = Self::Log> + Send;
    /// Waits until the engine has forgotten recent command ids from any time-limited
    /// memory of its own (JetStream's de-duplication window), so that R26 is answered
    /// by what lasts. Nothing to wait for by default.
    fn past_recent_memory(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The R26 key of a command `id` sent by the vendor side (what [`request`] sends as).
pub fn vendor_key(id: &str) -> CommandKey {
    CommandKey::of(&Principal::Vendor, &CommandId::new(id))
}

/// A request of `n` note events on `stream`, keyed by `command`.
pub fn request(stream: &str, expected: ExpectedVersion, command: &str, n: usize) -> AppendRequest {
    request_with_body(stream, expected, command, n, command)
}

/// As [`request`], with the body digest taken from `body`.
pub fn request_with_body(
    stream: &str,
    expected: ExpectedVersion,
    command: &str,
    n: usize,
    body: &str,
) -> AppendRequest {
    let at = Timestamp::from_millis(1_780_000_000_000);
    AppendRequest {
        stream: StreamId(stream.to_owned()),
        expected,
        command_id: CommandId::new(command),
        request_hash: crate::codec::sha256(body.as_bytes()),
        at,
        actor: Principal::Vendor,
        correlation_id: None,
        causation_id: None,
        events: (0..n)
            .map(|i| {
                Event::NoteAdded(NoteAdded {
                    ticket_id: TicketId::new(stream),
                    author: Principal::Vendor,
                    text: format!("{command} #{i}"),
                    at,
                    evidence: None,
                })
            })
            .collect(),
        directory_at: None,
    }
}

async fn ok<L: EventLog>(log: &L, req: AppendRequest) -> Appended {
    let what = format!("{} on {}", req.command_id, req.stream);
    match log.append(req).await {
        Ok(Ok(a)) => a,
        Ok(Err(refused)) => panic!("append {what} refused: {refused:?}"),
        Err(e) => panic!("append {what} failed: {e}"),
    }
}

/// Appends, reads a stream back, reads everything in order.
pub async fn append_and_read<H: Harness>(h: H) {
    let log = h.open().await;
    assert_eq!(log.head().await.unwrap(), 0, "a new log is empty");
    let a = ok(&log, request("ticket-a", ExpectedVersion::Exact(0), "c1", 2)).await;
    assert_eq!((a.position, a.first_version, a.last_version, a.duplicate), (1, 1, 2, false));
    let b = ok(&log, request("ticket-b", ExpectedVersion::Any, "c2", 1)).await;
    assert_eq!((b.position, b.first_version), (2, 1));
    let c = ok(&log, request("ticket-a", ExpectedVersion::Exact(2), "c3", 1)).await;
    assert_eq!((c.position, c.first_version, c.last_version), (3, 3, 3));
    assert_eq!(log.stream_version(&StreamId("ticket-a".into())).await.unwrap(), 3);
    assert_eq!(log.stream_version(&StreamId("nope".into())).await.unwrap(), 0);

    let commits = log.read_stream(&StreamId("ticket-a".into()), 1).await.unwrap();
    let versions: Vec<u64> = commits.iter().flat_map(|c| c.envelopes()).map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let later = log.read_stream(&StreamId("ticket-a".into()), 3).await.unwrap();
    assert_eq!(later.iter().map(|c| c.position).collect::<Vec<_>>(), [3], "read from a version");

    let all = log.read_all(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|c| c.position).collect::<Vec<_>>(), [1, 2, 3]);
    let page = log.read_all(1, 1).await.unwrap();
    assert_eq!(page.iter().map(|c| c.position).collect::<Vec<_>>(), [2], "after and limit");
    let env: Vec<_> = all[0].envelopes().collect();
    assert_eq!(env[1].event_id, "vendor/c1:1", "event ids are the R26 key and the index");
    assert_eq!(env[1].event_type, "NoteAdded");
    assert_eq!(env[1].schema_version, 1);
    assert_eq!(env[0].correlation_id, "c1", "correlation defaults to the command id");
    assert_eq!(log.head().await.unwrap(), 3);
}

/// A version conflict is a value, and changes nothing.
pub async fn conflict_is_a_value<H: Harness>(h: H) {
    let log = h.open().await;
    ok(&log, request("ticket-a", ExpectedVersion::Exact(0), "c1", 2)).await;
    for expected in [0, 1, 5] {
        let got = log.append(request("ticket-a", ExpectedVersion::Exact(expected), &format!("x{expected}"), 1)).await;
        assert_eq!(
            got.unwrap(),
            Err(AppendRefused::Conflict { expected: ExpectedVersion::Exact(expected), actual: 2 }),
            "expected {expected}"
        );
    }
    assert_eq!(log.head().await.unwrap(), 1, "refused appends write nothing");
    assert_eq!(log.stream_version(&StreamId("ticket-a".into())).await.unwrap(), 2);
}

/// R26: the same command id answers its first outcome, across restarts; another
/// body under the same id is refused.
pub async fn idempotent_append<H: Harness>(h: H) {
    {
        let log = h.open().await;
        let first = ok(&log, request("ticket-a", ExpectedVersion::Exact(0), "c1", 2)).await;
        let again = ok(&log, request("ticket-a", ExpectedVersion::Exact(0), "c1", 2)).await;
        assert!(again.duplicate);
        assert_eq!((again.position, again.first_version, again.last_version), (first.position, 1, 2));
        let reused = log.append(request_with_body("ticket-a", ExpectedVersion::Any, "c1", 1, "another body")).await;
        assert_eq!(reused.unwrap(), Err(AppendRefused::KeyReused { position: 1 }));
        assert_eq!(log.head().await.unwrap(), 1);
        h.past_recent_memory().await;
        let later = ok(&log, request("ticket-a", ExpectedVersion::Exact(0), "c1", 2)).await;
        assert!(later.duplicate && later.position == 1, "R26 outlasts any de-duplication window");
        let retried_elsewhere = ok(&log, request("ticket-z", ExpectedVersion::Exact(0), "c1", 2)).await;
        assert!(retried_elsewhere.duplicate && retried_elsewhere.position == 1, "a retry on another stream");
        assert_eq!(log.head().await.unwrap(), 1);
    }
    let log = h.open().await;
    let after_restart = ok(&log, request("ticket-a", ExpectedVersion::Exact(0), "c1", 2)).await;
    assert!(after_restart.duplicate, "idempotency holds across restarts");
    assert_eq!(after_restart.position, 1);
    let found = log.find_command(&vendor_key("c1")).await.unwrap().expect("command is indexed");
    assert_eq!(found.position, 1);
    assert!(log.find_command(&vendor_key("zz")).await.unwrap().is_none());
    assert_eq!(log.head().await.unwrap(), 1);
}

/// R26 per tenant: the same command id sent by three tenants is three commands; each
/// retry answers its own tenant's first outcome, and a reuse with another body names
/// only its own tenant's position.
pub async fn command_ids_per_tenant<H: Harness>(h: H) {
    let partner = Principal::PartnerSync { partner_id: PartnerId::new("6a3f1b2c-0000-4000-8000-00000000000a") };
    let customer = Principal::Customer {
        customer_id: CustomerId::new("7b4e2d3f-0000-4000-8000-00000000000b"),
        user_id: behalf_domain::UserId::new("8c5f3e4a-0000-4000-8000-00000000000c"),
    };
    let as_ = |actor: &Principal, stream: &str, body: &str| AppendRequest {
        actor: actor.clone(),
        ..request_with_body(stream, ExpectedVersion::Exact(0), "shared-id", 1, body)
    };
    let log = h.open().await;
    let v = ok(&log, as_(&Principal::Vendor, "ticket-v", "v")).await;
    let p = ok(&log, as_(&partner, "ticket-p", "p")).await;
    let c = ok(&log, as_(&customer, "ticket-c", "c")).await;
    assert_eq!((v.position, p.position, c.position), (1, 2, 3), "another tenant's id does not block");
    assert!(!v.duplicate && !p.duplicate && !c.duplicate);
    h.past_recent_memory().await;
    for (actor, body, at) in [(&Principal::Vendor, "v", 1), (&partner, "p", 2), (&customer, "c", 3)] {
        let again = ok(&log, as_(actor, "ticket-other", body)).await;
        assert!(again.duplicate, "{actor:?}");
        assert_eq!(again.position, at, "a retry answers its own tenant's first outcome");
        let reused = log.append(as_(actor, "ticket-other", "another body")).await.unwrap();
        assert_eq!(reused, Err(AppendRefused::KeyReused { position: at }));
        let key = CommandKey::of(actor, &CommandId::new("shared-id"));
        assert_eq!(log.find_command(&key).await.unwrap().map(|c| c.position), Some(at));
    }
    let ids: Vec<String> =
        log.read_all(0, 10).await.unwrap().iter().flat_map(|c| c.envelopes()).map(|e| e.event_id).collect();
    assert_eq!(
        ids,
        [
            "vendor/shared-id:0",
            "partner:6a3f1b2c-0000-4000-8000-00000000000a/shared-id:0",
            "customer:7b4e2d3f-0000-4000-8000-00000000000b/shared-id:0"
        ]
    );
    assert_eq!(log.head().await.unwrap(), 3);
}

/// Concurrent appenders on distinct streams: every one lands once, positions are
/// dense and every stream's versions follow its commit order.
pub async fn concurrent_appends_are_dense<H: Harness>(h: H) {
    let log = Arc::new(h.open().await);
    let mut tasks = Vec::new();
    for w in 0..64 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            for i in 0..10u64 {
                let r = request(&format!("ticket-{w}"), ExpectedVersion::Exact(i), &format!("w{w}-{i}"), 1);
                ok(&*log, r).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("appender task");
    }
    let all = log.read_all(0, 10_000).await.unwrap();
    assert_eq!(all.len(), 640);
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for (i, c) in all.iter().enumerate() {
        assert_eq!(c.position, i as u64 + 1, "positions are dense");
        let v = versions.entry(c.stream.0.clone()).or_default();
        assert_eq!(c.first_version, *v + 1, "stream versions follow commit order");
        *v = c.last_version();
    }
    assert!(versions.values().all(|v| *v == 10));
}

/// Concurrent writers expecting the same version: exactly one wins.
pub async fn one_winner_per_version<H: Harness>(h: H) {
    let log = Arc::new(h.open().await);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            log.append(request("ticket-x", ExpectedVersion::Exact(0), &format!("w{w}"), 1)).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(AppendRefused::Conflict { actual, .. }) => assert_eq!(actual, 1),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(wins, 1, "no lost updates");
    assert_eq!(log.head().await.unwrap(), 1);
}

/// Catch-up then live, no gaps, no duplicates, while appends go on.
pub async fn subscribe_catch_up_then_live<H: Harness>(h: H) {
    let log = Arc::new(h.open().await);
    for i in 0..50 {
        ok(&*log, request(&format!("s-{}", i % 7), ExpectedVersion::Any, &format!("a{i}"), 1)).await;
    }
    let mut sub = log.subscribe(10);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 140 {
            seen.push(sub.next().await.expect("subscription").position);
        }
        seen
    });
    let writer = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            for i in 50..150 {
                ok(&*log, request(&format!("s-{}", i % 7), ExpectedVersion::Any, &format!("a{i}"), 1)).await;
            }
        })
    };
    writer.await.unwrap();
    let seen =
        tokio::time::timeout(std::time::Duration::from_secs(30), reader).await.expect("subscriber keeps up").unwrap();
    assert_eq!(seen, (11..=150).collect::<Vec<u64>>());
}

/// A filtered subscription decodes only the streams asked for, without gaps.
pub async fn filtered_subscription<H: Harness>(h: H) {
    let log = h.open().await;
    for i in 0..30 {
        let stream = if i % 3 == 0 { format!("gdap-{i}") } else { format!("ticket-{i}") };
        ok(&log, request(&stream, ExpectedVersion::Any, &format!("f{i}"), 2)).await;
    }
    let mut sub = log.subscribe_where(0, &["gdap"]);
    for i in 0..30u64 {
        let c = sub.next().await.expect("subscription");
        assert_eq!(c.position, i + 1, "no gaps");
        assert_eq!((c.event_count, c.last_version()), (2, 2));
        let decoded = c.stream.category() == "gdap";
        assert_eq!(c.events.len(), if decoded { 2 } else { 0 }, "{}", c.stream);
    }
}

/// Each commit holds the hash of the one before; `verify` walks the chain.
pub async fn hash_chain<H: Harness>(h: H) {
    let log = h.open().await;
    for i in 0..20 {
        ok(&log, request(&format!("s-{}", i % 3), ExpectedVersion::Any, &format!("h{i}"), 1 + i % 3)).await;
    }
    let all = log.read_all(0, 100).await.unwrap();
    assert_eq!(all[0].prev_hash, GENESIS, "the first commit links to the genesis hash");
    let links: std::collections::BTreeSet<_> = all.iter().map(|c| c.prev_hash).collect();
    assert_eq!(links.len(), all.len(), "every commit links to a different predecessor");
    let report = log.verify().await.unwrap();
    assert_eq!((report.verified, report.first_bad), (20, None));
}

/// Reopening resumes exactly: head, stream versions, the chain.
pub async fn reopen_resumes<H: Harness>(h: H) {
    {
        let log = h.open().await;
        ok(&log, request("ticket-a", ExpectedVersion::Exact(0), "c1", 3)).await;
        ok(&log, request("ticket-b", ExpectedVersion::Exact(0), "c2", 1)).await;
    }
    let log = h.open().await;
    assert_eq!(log.head().await.unwrap(), 2);
    assert_eq!(log.stream_version(&StreamId("ticket-a".into())).await.unwrap(), 3);
    let next = ok(&log, request("ticket-a", ExpectedVersion::Exact(3), "c3", 1)).await;
    assert_eq!((next.position, next.first_version), (3, 4));
    let c3 = log.read_all(2, 1).await.unwrap();
    assert_ne!(c3[0].prev_hash, GENESIS);
    let report = log.verify().await.unwrap();
    assert_eq!((report.verified, report.first_bad), (3, None), "the chain continues across a restart");
}

/// Expands one `#[tokio::test]` per conformance case. `$harness` is an expression
/// that makes a fresh harness (a new, empty store).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            append_and_read, conflict_is_a_value, idempotent_append, command_ids_per_tenant, concurrent_appends_are_dense,
            one_winner_per_version, subscribe_catch_up_then_live, filtered_subscription, hash_chain, reopen_resumes);
    };
    (@cases $harness:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::conformance::$case($harness).await;
            }
        )+
    };
}
