//! A connection kept busy on a server that stops answering moves to another server: the
//! client's own pings never fire on it (each message sent restarts their timer).

use std::time::{Duration, Instant};

use behalf_nats::server::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_connection_leaves_a_paused_server() {
    let nats = Cluster::start(3).unwrap();
    let (client, _kept) = behalf_nats::connect_kept(&nats.urls().into()).await.unwrap();
    let on = client.server_info().server_name;
    let paused = nats.nodes.iter().position(|n| n.name == on).expect("connected to a node of the cluster");
    // Busy: a request every 50 ms, which a live server answers at once ("no responders").
    let answered = |client: &async_nats::Client| {
        let client = client.clone();
        async move {
            let ask = client.request("behalf.test.nobody-home", "".into());
            matches!(tokio::time::timeout(Duration::from_millis(500), ask).await, Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders)
        }
    };
    assert!(answered(&client).await, "a live server answers");
    assert!(nats.nodes[paused].signal("STOP"));
    let from = Instant::now();
    let moved = loop {
        if answered(&client).await {
            break Some(from.elapsed());
        }
        if from.elapsed() > Duration::from_secs(9) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(nats.nodes[paused].signal("CONT"));
    let moved = moved.expect("the busy connection left the paused server before it woke");
    assert_ne!(client.server_info().server_name, on, "answered by another server");
    // Silent for a second, every server asked (a second), then a reconnection that may
    // first try the paused node (its handshake given 2 s).
    assert!(moved <= Duration::from_secs(7), "left the paused server after {moved:.1?}");
    eprintln!("left the paused server after {moved:.1?}");
}
