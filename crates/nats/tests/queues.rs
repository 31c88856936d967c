//! The notifier's JetStream work queues on a real nats-server: each notice once, even
//! when a batch is forwarded again (a notifier restarted from an older checkpoint).

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use behalf_domain::notify::{priority_key, Notice, Outgoing};
use behalf_domain::{CustomerId, Severity, TicketId};
use behalf_log::queues::{Enqueue, QueueSink};
use behalf_nats::server::Cluster;
use behalf_nats::{queue_stream, queue_subject, NatsQueues};
use futures::StreamExt as _;

fn notice(queue: &str, event: &str, position: u64, severity: Severity, csp: bool) -> Enqueue {
    Enqueue {
        source_event_id: event.into(),
        position,
        priority: priority_key(Some(severity), csp, position, 0),
        body: Outgoing {
            queue: queue.into(),
            notice: Notice::Escalation,
            ticket_id: Some(TicketId::new(format!("t{position}"))),
            customer_id: CustomerId::new("c1"),
            partner_id: None,
            workload: None,
            severity: Some(severity),
            csp_priority: csp,
            reason: Some("down".into()),
            incident_id: None,
            text: None,
        },
    }
}

/// Every message waiting on a queue, acked, as (source event id, priority header).
async fn drain(js: &jetstream::Context, queue: &str) -> Vec<(String, String)> {
    let stream = js.get_stream(queue_stream(queue)).await.unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: queue_subject(queue),
            durable_name: Some("test-worker".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut batch = consumer.fetch().max_messages(100).expires(Duration::from_millis(500)).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let priority = m.headers.as_ref().and_then(|h| h.get("Behalf-Priority")).unwrap().to_string();
        assert_eq!(v["priority"].as_str(), Some(priority.as_str()), "the header and the body agree");
        out.push((v["source_event_id"].as_str().unwrap().to_owned(), priority));
        m.ack().await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_notice_once_across_a_repeated_batch() {
    let nats = Cluster::single().unwrap();
    let queues = NatsQueues::open(&nats.urls(), 1).await.unwrap();
    assert_eq!(queues.checkpoint().unwrap(), 0);
    let batch = vec![
        notice("commercial.azure", "cmd-1:0", 3, Severity::Moderate, false),
        notice("commercial.azure", "cmd-2:0", 4, Severity::Critical, true),
        notice("partner.p1", "cmd-2:1", 4, Severity::Critical, true),
    ];
    assert_eq!(queues.enqueue(batch.clone(), 4).unwrap(), 3);
    assert_eq!(queues.checkpoint().unwrap(), 4);

    // A restart from an older checkpoint forwards the batch again, plus a new notice.
    let again = NatsQueues::open(&nats.urls(), 1).await.unwrap();
    let mut more = batch.clone();
    more.push(notice("commercial.azure", "cmd-3:0", 5, Severity::Minimal, false));
    assert_eq!(again.enqueue(more, 5).unwrap(), 1, "only the new notice is new");
    assert_eq!(again.checkpoint().unwrap(), 5);

    let waiting = again.peek("commercial.azure", 10).await.unwrap();
    let ids: Vec<&str> = waiting.iter().map(|m| m["source_event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["cmd-1:0", "cmd-2:0", "cmd-3:0"], "peek shows what waits, without taking it");

    let js = jetstream::new(async_nats::connect(nats.urls()).await.unwrap());
    let azure = drain(&js, "commercial.azure").await;
    let ids: Vec<&str> = azure.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["cmd-1:0", "cmd-2:0", "cmd-3:0"], "each once, in log order");
    let mut by_priority = azure.clone();
    by_priority.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(by_priority[0].0, "cmd-2:0", "the priority header puts critical first");
    assert_eq!(drain(&js, "partner.p1").await.len(), 1);
    assert!(drain(&js, "commercial.azure").await.is_empty(), "acked messages are gone (work queue)");
}
