//! The queue store contract: durable queues of notices with lease, ack, redelivery after
//! the lease runs out, and order by priority. Messages are keyed by their source event
//! id, and enqueued together with the forwarder's checkpoint in one atomic write, so a
//! crash between forwarding and checkpointing never yields a duplicate.

use behalf_domain::notify::Outgoing;
use serde::{Deserialize, Serialize};

use crate::LogError;

/// A message to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueue {
    /// `<tenant>/<command id>:<index>` of the event that caused it.
    pub source_event_id: String,
    pub position: u64,
    /// The order within the queue (see `behalf_domain::notify::priority_key`).
    pub priority: [u8; 14],
    pub body: Outgoing,
}

/// A message in a queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueueMessage {
    /// Stable within its queue; used to ack.
    pub id: String,
    pub queue: String,
    pub source_event_id: String,
    pub position: u64,
    /// How many times it has been leased.
    pub deliveries: u32,
    /// Milliseconds since the epoch until which the current lease holds (0: none).
    pub leased_until: i64,
    pub body: Outgoing,
}

/// Where the notifier forwards to: the embedded queues, or the cluster's on JetStream.
pub trait QueueSink: Send + Sync + 'static {
    /// Enqueues every message whose source event is new, and sets the checkpoint.
    /// Returns how many were new. The embedded store does both in one atomic write.
    fn enqueue(&self, messages: Vec<Enqueue>, checkpoint: u64) -> Result<usize, LogError>;
    /// The position up to which everything was forwarded.
    fn checkpoint(&self) -> Result<u64, LogError>;
    /// Whether `holder` may run the SLA sweep now, for `hold_ms` from `now_ms`: with many
    /// servers on one set of queues, one sweeps at a time (each missed target is
    /// recorded once anyway, R26; this spares the others the scan). The embedded
    /// queues belong to one process: always.
    fn take_sweep_turn(&self, holder: &str, now_ms: i64, hold_ms: i64) -> Result<bool, LogError> {
        let _ = (holder, now_ms, hold_ms);
        Ok(true)
    }
}

/// Queues that are consumed through Behalf itself (lease and ack over HTTP).
pub trait QueueStore: QueueSink {
    /// Leases up to `limit` messages whose lease has run out, in priority order.
    fn lease(&self, queue: &str, limit: usize, now_ms: i64, lease_ms: i64) -> Result<Vec<QueueMessage>, LogError>;
    /// Removes a message; `false` if it is not there.
    fn ack(&self, queue: &str, id: &str) -> Result<bool, LogError>;
    /// Every message of a queue, in priority order, without leasing.
    fn peek(&self, queue: &str, limit: usize) -> Result<Vec<QueueMessage>, LogError>;
    fn sync(&self) -> Result<(), LogError>;
    /// Enqueues every message whose source event is new, as [`QueueSink::enqueue`] does,
    /// without touching the forwarder's checkpoint: the webhook dispatcher copies a
    /// queue's messages into its subscriptions' delivery queues with it.
    fn copy(&self, messages: Vec<Enqueue>) -> Result<usize, LogError>;
    /// Sets a message's lease to end at `until_ms` (a retry's time; `i64::MAX`: never
    /// again until held to an earlier time; 0: now). `false` if it is not there.
    fn hold(&self, queue: &str, id: &str, until_ms: i64) -> Result<bool, LogError>;
}

/// The queue contract every queue store passes, unchanged: the embedded one and the
/// JetStream one. Each case takes one or more handles on one fresh store (two handles:
/// two servers, or two notifiers, sharing it) and panics naming what broke. Times are
/// given, not read from a clock.
pub mod conformance {
    use behalf_domain::notify::{priority_key, Notice, Outgoing};
    use behalf_domain::{CustomerId, Severity, TicketId};

    use super::{Enqueue, QueueStore};

    const NOW: i64 = 1_780_000_000_000;

    /// An escalation of ticket `t<position>` into `queue`, caused by event `event`.
    pub fn notice(queue: &str, event: &str, position: u64, severity: Severity, csp: bool) -> Enqueue {
        Enqueue {
            source_event_id: event.into(),
            position,
            priority: priority_key(Some(severity), csp, position, 0),
            body: Outgoing {
                queue: queue.into(),
                notice: Notice::Escalation,
                ticket_id: Some(TicketId::new(format!("t{position}"))),
                customer_id: CustomerId::new("7b4e2d3f-0000-4000-8000-00000000000b"),
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

    fn tickets(ms: &[super::QueueMessage]) -> Vec<String> {
        ms.iter().map(|m| m.body.ticket_id.as_ref().map_or_else(String::new, |t| t.to_string())).collect()
    }

    /// Lease in priority order; a leased message waits; ack removes it; an unacked one
    /// comes back after its lease with `deliveries` counting; another queue is apart.
    pub fn lease_ack_redeliver<Q: QueueStore>(q: &Q) {
        let batch = vec![
            notice("commercial.azure", "vendor/c1:0", 3, Severity::Moderate, false),
            notice("commercial.azure", "vendor/c2:0", 4, Severity::Critical, true),
            notice("partner.p1", "vendor/c2:1", 4, Severity::Critical, true),
        ];
        assert_eq!(q.enqueue(batch, 4).unwrap(), 3);
        assert_eq!(q.checkpoint().unwrap(), 4);
        let first = q.lease("commercial.azure", 10, NOW, 30_000).unwrap();
        assert_eq!(tickets(&first), ["t4", "t3"], "critical before moderate, though it came later");
        assert!(first.iter().all(|m| m.deliveries == 1 && m.leased_until == NOW + 30_000));
        assert!(q.lease("commercial.azure", 10, NOW + 1_000, 30_000).unwrap().is_empty(), "leased messages wait");
        assert!(q.ack("commercial.azure", &first[0].id).unwrap());
        assert!(!q.ack("commercial.azure", &first[0].id).unwrap(), "an acked message is gone");
        assert!(!q.ack("commercial.azure", "not-an-id").unwrap());
        assert!(!q.ack("partner.p1", &first[1].id).unwrap(), "an id acks only in its queue");
        let again = q.lease("commercial.azure", 10, NOW + 31_000, 5_000).unwrap();
        assert_eq!(tickets(&again), ["t3"], "an unacked message is delivered again after its lease");
        assert_eq!((again[0].deliveries, again[0].leased_until), (2, NOW + 36_000), "the lease is the request's");
        let peeked = q.peek("partner.p1", 10).unwrap();
        assert_eq!((tickets(&peeked), peeked[0].deliveries), (vec!["t4".to_owned()], 0), "peek does not lease");
        assert!(q.ack("commercial.azure", &again[0].id).unwrap());
        assert!(q.lease("commercial.azure", 10, NOW + 100_000, 5_000).unwrap().is_empty());
    }

    /// A message held to a later time is leased only then (its `deliveries` counting
    /// on); held to 0 it is leased again at once; a copy leaves the checkpoint alone
    /// and is made once per source event.
    pub fn hold_and_copy<Q: QueueStore>(q: &Q) {
        assert_eq!(
            q.enqueue(vec![notice("webhook.w1", "vendor/c1:0#w1", 3, Severity::Moderate, false)], 7).unwrap(),
            1
        );
        let copies = vec![
            notice("webhook.w1", "vendor/c1:0#w1", 3, Severity::Moderate, false),
            notice("webhook.w2", "vendor/c1:0#w2", 3, Severity::Moderate, false),
        ];
        assert_eq!(q.copy(copies.clone()).unwrap(), 1, "only the new copy is new");
        assert_eq!(q.copy(copies).unwrap(), 0);
        assert_eq!(q.checkpoint().unwrap(), 7, "a copy leaves the checkpoint");
        let m = q.lease("webhook.w1", 10, NOW, 30_000).unwrap().remove(0);
        assert!(q.hold("webhook.w1", &m.id, NOW + 300_000).unwrap());
        assert!(q.lease("webhook.w1", 10, NOW + 200_000, 30_000).unwrap().is_empty(), "held past its lease");
        let again = q.lease("webhook.w1", 10, NOW + 300_001, 30_000).unwrap();
        assert_eq!(again[0].deliveries, 2);
        assert!(q.hold("webhook.w1", &m.id, i64::MAX).unwrap());
        assert!(q.lease("webhook.w1", 10, NOW + 1_000_000_000, 30_000).unwrap().is_empty(), "held for ever");
        assert_eq!(q.peek("webhook.w1", 10).unwrap()[0].leased_until, i64::MAX);
        assert!(q.hold("webhook.w1", &m.id, 0).unwrap());
        assert_eq!(q.lease("webhook.w1", 10, NOW, 30_000).unwrap().len(), 1, "released");
        assert!(!q.hold("webhook.w1", "00", 0).unwrap());
        assert!(!q.hold("webhook.w9", &m.id, 0).unwrap());
    }

    /// Each source event once, through any handle, forwarded again from an older
    /// checkpoint, before or after its ack.
    pub fn each_source_event_once<Q: QueueStore>(handles: &[&Q]) {
        let batch = vec![
            notice("commercial.azure", "vendor/c1:0", 3, Severity::Moderate, false),
            notice("commercial.azure", "vendor/c2:0", 4, Severity::Critical, true),
        ];
        assert_eq!(handles[0].enqueue(batch.clone(), 4).unwrap(), 2);
        for (i, h) in handles.iter().enumerate() {
            let mut more = batch.clone();
            more.push(notice("commercial.azure", &format!("vendor/n{i}:0"), 10 + i as u64, Severity::Minimal, false));
            assert_eq!(h.enqueue(more, 10 + i as u64).unwrap(), 1, "handle {i}: only the new notice is new");
        }
        let leased = handles[0].lease("commercial.azure", 100, NOW, 30_000).unwrap();
        assert_eq!(leased.len(), 2 + handles.len());
        for m in &leased {
            assert!(handles[handles.len() - 1].ack("commercial.azure", &m.id).unwrap());
        }
        for h in handles {
            assert_eq!(h.enqueue(batch.clone(), 20).unwrap(), 0, "an acked notice is never forwarded again");
        }
        assert!(handles[0].peek("commercial.azure", 100).unwrap().is_empty());
    }

    /// The order is the priority's across the whole queue, whatever the arrival order
    /// and however many are taken at a time.
    pub fn order_across_the_whole_queue<Q: QueueStore>(q: &Q) {
        let severities = [Severity::Minimal, Severity::Critical, Severity::Moderate];
        let mut all = Vec::new();
        for i in 0..120u64 {
            let position = (i * 37) % 120 + 1; // not in position order
            let n = notice(
                "usgov.office365",
                &format!("vendor/o{position}:0"),
                position,
                severities[(i % 3) as usize],
                i % 4 == 0,
            );
            all.push(n);
        }
        let mut expected: Vec<[u8; 14]> = all.iter().map(|n| n.priority).collect();
        expected.sort_unstable();
        for chunk in all.chunks(25) {
            q.enqueue(chunk.to_vec(), 0).unwrap();
        }
        let mut taken = Vec::new();
        loop {
            let got = q.lease("usgov.office365", 7, NOW, 60_000).unwrap();
            if got.is_empty() {
                break;
            }
            taken.extend(got);
        }
        let ids: Vec<String> = taken.iter().map(|m| m.id.clone()).collect();
        let want: Vec<String> = expected.iter().map(|p| p.iter().map(|b| format!("{b:02x}")).collect()).collect();
        assert_eq!(ids, want, "severity, then CSP priority, then age, across every lease");
    }
}
