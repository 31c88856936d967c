//! The notifier over a controlled clock, on the real embedded stores: an on-time
//! response, a breach, the clock paused while attention is needed, and no second
//! breach record after a restart. No test sleeps: the clock is moved by hand.

use std::sync::Arc;

use behalf_domain::{Principal, Timestamp};
use behalf_log::queues::{QueueSink as _, QueueStore};
use behalf_log::EventLog;
use behalf_service::clock::{Clock, ManualClock};
use behalf_service::commands::CommandService;
use behalf_service::{notifier, request, views};
use behalf_sled_store::{DataDir, SledLog, SledQueues, SledViews};
use behalf_test_support::world::*;
use serde_json::{json, Value};

struct Stores {
    log: SledLog,
    service: Arc<CommandService<SledLog>>,
    views: SledViews,
    queues: SledQueues,
}

fn open(dir: &std::path::Path, clock: &ManualClock) -> Stores {
    let (log, _) = DataDir::new(dir).open_log(Default::default()).unwrap();
    let service = Arc::new(CommandService::new(log.clone(), Arc::new(clock.clone()) as Arc<dyn Clock>));
    Stores {
        log,
        service,
        views: DataDir::new(dir).open_views().unwrap(),
        queues: DataDir::new(dir).open_queues().unwrap(),
    }
}

async fn send(s: &Stores, who: &Principal, cmd: Value) -> behalf_service::commands::Accepted {
    let shown = cmd.to_string();
    match s.service.execute(who.clone(), request::from_value(cmd, None).unwrap()).await {
        Ok(a) => a,
        Err(r) => panic!("{shown}: {r}"),
    }
}

/// Brings views and queues up to the log, as the runners would.
async fn catch_up(s: &Stores) {
    let head = s.log.head().await.unwrap();
    let mut at = behalf_log::views::ViewStore::checkpoint(&s.views).unwrap();
    while at < head {
        let page = s.log.read_all(at, 512).await.unwrap();
        at = views::apply_batch(&s.views, &page).unwrap();
    }
    let mut at = s.queues.checkpoint().unwrap();
    while at < head {
        let page = s.log.read_all(at, 512).await.unwrap();
        at = notifier::forward_batch(&s.queues, &page).unwrap();
    }
}

fn t(s: &str) -> Timestamp {
    at(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn sla_breach_pause_on_time_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-06-01T00:00:00Z"));
    let s = open(dir.path(), &clock);
    for (who, cmd) in standard_world(&FIXED_TIMES) {
        send(&s, &who, cmd).await;
    }
    // A moderate ticket (4 h), paused 2 h while the vendor waits for the partner.
    let late = send(&s, &agent(), open_o365()).await.ticket_id.unwrap();
    // A minimal one (8 h) the vendor answers in time.
    let on_time = send(&s, &agent(), merge(open_o365(), json!({"severity":"minimal"}))).await.ticket_id.unwrap();
    clock.set(t("2026-06-01T01:00:00Z"));
    send(&s, &Principal::Vendor, json!({"type":"ticket.request_attention","ticket_id":late,"text":"logs?"})).await;
    clock.set(t("2026-06-01T03:00:00Z"));
    send(&s, &agent(), json!({"type":"ticket.note","ticket_id":late,"text":"here"})).await;
    clock.set(t("2026-06-01T07:00:00Z"));
    send(&s, &Principal::Vendor, json!({"type":"ticket.respond","ticket_id":on_time,"text":"on it"})).await;

    catch_up(&s).await;
    clock.set(t("2026-06-01T05:59:00Z"));
    assert_eq!(
        behalf_service::sla_sweep::sla_sweep(&s.views, &s.service, clock.now()).await.unwrap(),
        0,
        "paused 2 h: due at 06:00"
    );
    clock.set(t("2026-06-01T06:01:00Z"));
    assert_eq!(
        behalf_service::sla_sweep::sla_sweep(&s.views, &s.service, clock.now()).await.unwrap(),
        1,
        "the moderate ticket is breached"
    );
    catch_up(&s).await;
    let queued = s.queues.peek("commercial.office365", 100).unwrap();
    let reasons: Vec<_> =
        queued.iter().filter(|m| m.body.ticket_id.as_ref() == Some(&late)).map(|m| m.body.reason.clone()).collect();
    assert_eq!(reasons, [Some("sla_breach".to_owned())], "the breach escalates to the workload queue");
    let attention = s.queues.peek(&format!("partner.{PARTNER}"), 10).unwrap();
    assert_eq!(attention.len(), 1, "the partner's queue heard the vendor needs something");

    // A restart: computed from the log and the clock, no second record.
    drop(s);
    let s = open(dir.path(), &clock);
    catch_up(&s).await;
    clock.set(t("2026-06-02T00:00:00Z"));
    assert_eq!(
        behalf_service::sla_sweep::sla_sweep(&s.views, &s.service, clock.now()).await.unwrap(),
        0,
        "recorded once; answered in time"
    );
    let breaches = s
        .log
        .read_all(0, 10_000)
        .await
        .unwrap()
        .iter()
        .flat_map(|c| c.events.clone())
        .filter(|e| e.type_name() == "SlaBreached")
        .count();
    assert_eq!(breaches, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_lease_redeliver_ack_in_priority_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-06-01T00:00:00Z"));
    let s = open(dir.path(), &clock);
    for (who, cmd) in standard_world(&FIXED_TIMES) {
        send(&s, &who, cmd).await;
    }
    let moderate = send(&s, &agent(), open_o365()).await.ticket_id.unwrap();
    send(&s, &agent(), json!({"type":"ticket.escalate","ticket_id":moderate,"reason":"please"})).await;
    let critical = send(&s, &agent(), merge(open_o365(), json!({"severity":"critical"}))).await.ticket_id.unwrap();
    catch_up(&s).await;
    catch_up(&s).await; // forwarding twice adds nothing
    let now = clock.now().millis();
    let first = s.queues.lease("commercial.office365", 10, now, 30_000).unwrap();
    let order: Vec<_> = first.iter().map(|m| m.body.ticket_id.clone().unwrap()).collect();
    assert_eq!(order, [critical.clone(), moderate.clone()], "critical before moderate, though it came later");
    assert!(
        s.queues.lease("commercial.office365", 10, now + 1_000, 30_000).unwrap().is_empty(),
        "leased messages wait"
    );
    assert!(s.queues.ack("commercial.office365", &first[0].id).unwrap());
    let again = s.queues.lease("commercial.office365", 10, now + 31_000, 30_000).unwrap();
    assert_eq!(again.len(), 1, "an unacked message is delivered again after its lease");
    assert_eq!((again[0].body.ticket_id.clone(), again[0].deliveries), (Some(moderate), 2));
    assert!(
        s.queues.seen(&first[0].source_event_id).unwrap(),
        "acked messages stay known, so they are never forwarded again"
    );
}
