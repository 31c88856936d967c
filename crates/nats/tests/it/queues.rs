//! The queue contract (`behalf_log::queues::conformance`) on a real nats-server, the
//! same cases the embedded store passes; two handles are two servers (or notifiers)
//! sharing the cluster's queues. And two servers leasing at once never take the same
//! message.

use behalf_log::queues::{conformance, QueueSink as _};
use behalf_nats::server::Cluster;
use behalf_nats::NatsQueues;

async fn fresh() -> (Cluster, NatsQueues, NatsQueues) {
    let nats = Cluster::single().unwrap();
    let a = NatsQueues::open(&nats.urls(), 1).await.unwrap();
    let b = NatsQueues::open(&nats.urls(), 1).await.unwrap();
    (nats, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_ack_redeliver() {
    let (_nats, q, _) = fresh().await;
    conformance::lease_ack_redeliver(&q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_and_copy() {
    let (_nats, q, _) = fresh().await;
    conformance::hold_and_copy(&q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_source_event_once() {
    let (_nats, a, b) = fresh().await;
    conformance::each_source_event_once(&[&a, &b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_across_the_whole_queue() {
    let (_nats, q, _) = fresh().await;
    conformance::order_across_the_whole_queue(&q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_leasing_at_once_take_each_message_once() {
    let (_nats, a, b) = fresh().await;
    let batch: Vec<_> = (1..=60)
        .map(|p| {
            conformance::notice(
                "commercial.azure",
                &format!("vendor/x{p}:0"),
                p,
                behalf_domain::Severity::Moderate,
                false,
            )
        })
        .collect();
    a.enqueue(batch, 60).unwrap();
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut tasks = Vec::new();
    for (i, q) in [a.clone(), b.clone(), a, b].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let leased = q.lease_async("commercial.azure", 3, 1_780_000_000_000 + i as i64, 600_000).await.unwrap();
                if leased.is_empty() {
                    break got;
                }
                got.extend(leased.into_iter().map(|m| m.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (60, 60), "every message leased once, by one server");
}

/// A lease reads its own queue's live messages, not every key the bucket ever held
/// (an acked message's delete marker stays for ever): after a day's messages on one
/// queue were acked, a lease on another looks at that queue's two messages only, and a
/// second server's lease sees what the first acknowledged a moment before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_reads_its_queues_live_messages_not_the_history() {
    let (_nats, a, b) = fresh().await;
    let now = 1_780_000_000_000;
    let day: Vec<_> = (1..=300)
        .map(|p| conformance::notice("worked", &format!("vendor/w{p}:0"), p, behalf_domain::Severity::Moderate, false))
        .collect();
    a.enqueue(day, 300).unwrap();
    let mut acked = 0;
    loop {
        let leased = a.lease_async("worked", 50, now, 600_000).await.unwrap();
        if leased.is_empty() {
            break;
        }
        for m in leased {
            assert!(a.ack_async("worked", &m.id).await.unwrap());
            acked += 1;
        }
    }
    assert_eq!(acked, 300);
    let other: Vec<_> = (301..=302)
        .map(|p| conformance::notice("other", &format!("vendor/o{p}:0"), p, behalf_domain::Severity::Moderate, false))
        .collect();
    a.enqueue(other, 302).unwrap();
    let before = b.examined();
    let leased = b.lease_async("other", 10, now, 600_000).await.unwrap();
    assert_eq!(leased.len(), 2, "the other server sees both, enqueued a moment before");
    assert!(b.lease_async("worked", 10, now, 600_000).await.unwrap().is_empty(), "every worked message was acked");
    assert_eq!(b.examined() - before, 2, "the leases looked at the two live messages only");
    // Held and acked elsewhere: seen at once.
    assert!(a.hold_async("other", &leased[0].id, 0).await.unwrap());
    assert!(a.ack_async("other", &leased[1].id).await.unwrap());
    let again = b.lease_async("other", 10, now + 1, 600_000).await.unwrap();
    assert_eq!(again.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), [leased[0].id.as_str()]);
    assert_eq!(again[0].deliveries, 2);
}

/// The SLA sweep's turn: one server at a time; the holder renews it; another takes it
/// once it has run out. Called as the servers call it, from a blocking task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sla_sweep_turn_is_one_servers_at_a_time() {
    let (_nats, a, b) = fresh().await;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let turn = |q: &std::sync::Arc<NatsQueues>, holder: &'static str, now: i64| {
        let q = std::sync::Arc::clone(q);
        async move { tokio::task::spawn_blocking(move || q.take_sweep_turn(holder, now, 30_000)).await.unwrap().unwrap() }
    };
    assert!(turn(&a, "server-a", 1_000).await, "the first to ask takes it");
    assert!(!turn(&b, "server-b", 2_000).await, "another waits while it is held");
    assert!(turn(&a, "server-a", 11_000).await, "the holder renews it");
    assert!(!turn(&b, "server-b", 40_000).await, "renewed until 41,000");
    assert!(turn(&b, "server-b", 41_001).await, "taken over once it ran out");
    assert!(!turn(&a, "server-a", 42_000).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_secrets_and_attempts() {
    let nats = Cluster::single().unwrap();
    let s = behalf_nats::NatsWebhooks::open(&nats.urls(), 1).await.unwrap();
    behalf_log::webhooks::conformance::secrets_and_attempts(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealing_keys() {
    let nats = Cluster::single().unwrap();
    let s = behalf_nats::NatsKeys::open(&nats.urls(), 1).await.unwrap();
    behalf_log::keys::conformance(&s);
}

/// An ack right after a lease, on three nodes, with a replica behind: it was paused
/// while the messages were forwarded and leased, and is let go just before the acks.
/// Every ack finds its message (a read a lagging replica answered found none: 404, and
/// the message was delivered again once its lease ran out).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ack_finds_its_message_while_a_replica_catches_up() {
    let nats = Cluster::start(3).unwrap();
    drop(NatsQueues::open(&nats.urls(), 3).await.unwrap()); // makes the buckets
    let mut leaders = Vec::new();
    for stream in ["KV_BEHALF_QUEUE", "KV_BEHALF_NOTIFIER"] {
        leaders.push(loop {
            if let Some(l) = nats.leader_of(stream).await {
                break l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        });
    }
    // A node that leads neither bucket falls behind; the handle talks to a leader.
    let behind = (0..3).find(|n| !leaders.contains(n)).unwrap();
    let q = NatsQueues::open(&nats.nodes[leaders[0]].url(), 3).await.unwrap();
    // The watch a lease reads is made now, with every node up (making a consumer asks
    // the meta leader, which may be the node that falls behind).
    assert!(q.lease_async("commercial.azure", 1, 1_000, 60_000).await.unwrap().is_empty());
    for round in 0..10u64 {
        assert!(nats.nodes[behind].signal("STOP"));
        let batch: Vec<_> = (1..=200)
            .map(|p| {
                let p = round * 1000 + p;
                conformance::notice(
                    "commercial.azure",
                    &format!("vendor/r{p}:0"),
                    p,
                    behalf_domain::Severity::Moderate,
                    false,
                )
            })
            .collect();
        q.forward(batch, round * 1000 + 200).await.unwrap();
        // A lease can answer "not caught up" (503) while the node is paused: seen when
        // the watch's consumer was made again and the paused node led the meta group.
        let mut leased = Vec::new();
        for attempt in 0..6 {
            match q.lease_async("commercial.azure", 200, 1_000, 60_000).await {
                Ok(l) => {
                    leased = l;
                    break;
                }
                Err(e) => eprintln!("round {round}, lease attempt {attempt}: {e}"),
            }
        }
        assert_eq!(leased.len(), 200, "round {round}: every message leased");
        assert!(nats.nodes[behind].signal("CONT"));
        let mut missed = Vec::new();
        for m in &leased {
            // An error (a request timed out while the cluster settles) is tried again;
            // an answer that the message is not there is what this test is about.
            let mut found = None;
            for attempt in 0..6 {
                match q.ack_async("commercial.azure", &m.id).await {
                    Ok(f) => {
                        found = Some(f);
                        break;
                    }
                    Err(e) => eprintln!("round {round}, ack attempt {attempt}: {e}"),
                }
            }
            if found != Some(true) {
                missed.push(m.id.clone());
            }
        }
        assert!(missed.is_empty(), "round {round}: {} acks found no message, e.g. {:?}", missed.len(), missed.first());
    }
}

/// The node this process's queue watch reads from (its consumer's node).
async fn watch_node(nats: &Cluster, js: &async_nats::jetstream::Context) -> Option<usize> {
    use futures::TryStreamExt as _;
    let stream = js.get_stream("KV_BEHALF_QUEUE").await.ok()?;
    let infos: Vec<_> = stream.consumers().try_collect().await.ok()?;
    // The newest: a dropped handle's watch stays until the server finds it inactive.
    let info = infos
        .iter()
        .filter(|i| i.config.description.as_deref() == Some("kv watch consumer"))
        .max_by_key(|i| i.created)?;
    let name = info.cluster.as_ref()?.leader.clone()?;
    nats.nodes.iter().position(|n| n.name == name)
}

/// Leases while the node the queue watch reads from is paused: the watch applies
/// nothing, and a lease that waited for it answered 503 after 5 s until the client
/// missed two heartbeats (10 s). Now a lease reads what the watch has not applied
/// from the bucket's leader, and the queue stays right: leased messages are not
/// leased again, acked ones are gone, and the watch resuming changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_answers_while_the_watch_s_node_is_paused() {
    let nats = Cluster::start(3).unwrap();
    drop(NatsQueues::open(&nats.urls(), 3).await.unwrap()); // makes the buckets
    let leader = loop {
        if let Some(l) = nats.leader_of("KV_BEHALF_QUEUE").await {
            break l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let js = async_nats::jetstream::new(async_nats::connect(nats.nodes[leader].url()).await.unwrap());
    let notice = |p: u64| {
        conformance::notice("commercial.azure", &format!("vendor/w{p}:0"), p, behalf_domain::Severity::Moderate, false)
    };
    for round in 0..3u64 {
        let base = round * 1000;
        // A handle whose watch reads from a node that does not lead the bucket (the
        // consumer's node is picked at random: a new handle until one is).
        let mut found = None;
        for _ in 0..40 {
            let q = NatsQueues::open(&nats.nodes[leader].url(), 3).await.unwrap();
            assert!(q.peek_async("commercial.azure", 1).await.unwrap().is_empty(), "round {round}: starts empty");
            match watch_node(&nats, &js).await {
                Some(n) if n != leader => {
                    found = Some((q, n));
                    break;
                }
                _ => drop(q),
            }
        }
        let (q, paused) = found.expect("a watch on a node that does not lead the bucket");
        q.forward((1..=20).map(|p| notice(base + p)).collect(), base + 20).await.unwrap();
        assert_eq!(q.peek_async("commercial.azure", 50).await.unwrap().len(), 20);

        assert!(nats.nodes[paused].signal("STOP"));
        let first = q.lease_async("commercial.azure", 10, 1_000, 60_000).await.unwrap();
        // The watch has not seen the first lease's writes.
        let started = std::time::Instant::now();
        let second = q.lease_async("commercial.azure", 10, 1_000, 60_000).await;
        let took = started.elapsed();
        let second = second.unwrap_or_else(|e| panic!("round {round}: a lease with the watch's node paused: {e}"));
        eprintln!("round {round}: node {paused} paused, the second lease answered in {took:?}");
        let ids = |l: &[behalf_log::queues::QueueMessage]| l.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        let (a, b) = (ids(&first), ids(&second));
        assert_eq!((a.len(), b.len()), (10, 10), "round {round}");
        assert!(a.iter().all(|id| !b.contains(id)), "round {round}: a leased message was leased again");
        assert!(q.read_past_watch_count() > 0, "round {round}: the lease read past the watch");
        for id in a.iter().chain(&b) {
            assert!(q.ack_async("commercial.azure", id).await.unwrap(), "round {round}: ack {id}");
        }
        assert!(q.peek_async("commercial.azure", 50).await.unwrap().is_empty(), "round {round}: acked, gone");

        assert!(nats.nodes[paused].signal("CONT"));
        // The watch delivers what it missed; none of it is applied twice.
        q.forward((21..=25).map(|p| notice(base + p)).collect(), base + 25).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let after = q.lease_async("commercial.azure", 50, 1_000, 60_000).await.unwrap();
        assert_eq!(after.len(), 5, "round {round}: only the new messages, once");
        for m in &after {
            assert!(q.ack_async("commercial.azure", &m.id).await.unwrap());
        }
    }
}
