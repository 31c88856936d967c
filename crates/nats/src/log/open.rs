//! Opening the log: connecting, the server's version, and the stream and command
//! bucket (created when asked, waited for while a cluster elects its leaders).

use super::{
    batcher, check_server_version, connect, follow_keys, index_checkpoint, index_forever, is_not_found, kv,
    last_directory_commit, storage, stream, Arc, Duration, Inner, KnownKeys, LogError, NatsLog, NatsOptions,
    COMMANDS_BUCKET, EVENTS_STREAM, READY_WAIT, REQUEST_TIMEOUT,
};
use async_nats::jetstream;

impl NatsLog {
    /// Connects, and creates the stream and the bucket if they are not there yet.
    pub async fn open(options: NatsOptions) -> Result<NatsLog, LogError> {
        let client = connect(&options.endpoint).await?;
        check_server_version(&client.server_info().version)?;
        let js = jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client);
        // A reader that creates nothing gives up sooner: the log is likely not there.
        let wait = if options.create { READY_WAIT } else { READY_WAIT / 6 };
        let deadline = tokio::time::Instant::now() + wait;
        let (stream, commands) = loop {
            match Self::layout(&js, &options).await {
                Ok(parts) => break parts,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "JetStream is not ready yet; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let floor = loop {
            match index_checkpoint(&commands).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "cannot read the command index yet; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        // Read after the floor: every directory commit at or below the floor is then at or
        // below this (the follower covers the rest from the floor on).
        let last_directory = loop {
            match last_directory_commit(&stream).await {
                Ok(p) => break p,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "cannot read the last directory commit yet; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let known = Arc::new(KnownKeys::new(floor, last_directory));
        let mut inner = Inner::new(js, stream, commands, known);
        inner.tasks.push(crate::endpoint::watch(&inner.js.client(), &options.endpoint));
        // A reader that creates nothing appends nothing: no follower, no batcher.
        if options.create {
            let log = NatsLog { inner: Arc::new(inner.clone_parts()) };
            inner.tasks.push(tokio::spawn(follow_keys(log)).abort_handle());
            let (client, stream, endpoint) = (inner.js.client(), inner.stream.clone(), options.endpoint.clone());
            inner.tasks.push(tokio::spawn(leave_a_cut_off_server(client, stream, endpoint)).abort_handle());
            // The batcher appends through a handle of its own that shares the known
            // keys and the counters, and takes this handle's queue.
            let mut parts = inner.clone_parts();
            parts.stats = Arc::clone(&inner.stats);
            let rx = inner.jobs_rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(rx) = rx {
                inner.tasks.push(tokio::spawn(batcher(NatsLog { inner: Arc::new(parts) }, rx)).abort_handle());
            }
        }
        if options.run_indexer {
            // The indexer holds its own handle (no indexer of its own), so dropping
            // the last clone of this log stops it.
            let log = NatsLog { inner: Arc::new(inner.clone_parts()) };
            inner.tasks.push(tokio::spawn(index_forever(log)).abort_handle());
        }
        Ok(NatsLog { inner: Arc::new(inner) })
    }

    pub(super) async fn layout(
        js: &jetstream::Context,
        options: &NatsOptions,
    ) -> Result<(stream::Stream, kv::Store), LogError> {
        let replicas = options.replicas;
        if !options.create {
            let stream = js.get_stream(EVENTS_STREAM).await.map_err(|e| {
                storage(&format!("no event log here (stream {EVENTS_STREAM} on NATS at {})", options.endpoint.url), e)
            })?;
            let commands = js
                .get_key_value(COMMANDS_BUCKET)
                .await
                .map_err(|e| storage(&format!("no command index here (bucket {COMMANDS_BUCKET})"), e))?;
            return Ok((stream, commands));
        }
        let stream = js
            .get_or_create_stream(stream::Config {
                name: EVENTS_STREAM.into(),
                subjects: vec!["behalf.ev.>".into()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                num_replicas: replicas,
                duplicate_window: options.duplicate_window,
                // The log is append-only: nobody deletes or purges a commit.
                deny_delete: true,
                deny_purge: true,
                // Group commit: one atomic batch per group of appends.
                allow_atomic_publish: true,
                ..Default::default()
            })
            .await
            .map_err(|e| storage("cannot create the stream", e))?;
        if !stream.cached_info().config.allow_atomic_publish {
            // A stream made by an earlier version: allow atomic batches on it.
            let config = stream::Config { allow_atomic_publish: true, ..stream.cached_info().config.clone() };
            js.update_stream(config).await.map_err(|e| storage("cannot allow atomic batches on the stream", e))?;
        }
        let stream = js.get_stream(EVENTS_STREAM).await.map_err(|e| storage("cannot read the stream", e))?;
        let commands = crate::bucket(js, COMMANDS_BUCKET, replicas).await?;
        Ok((stream, commands))
    }
}

/// Moves this process's connection to another server when the one it is connected to
/// answers the connection but cannot serve the log: a server cut off from the rest of
/// the cluster (the old leader on the minority side of a partition) keeps its clients,
/// whose every request then times out until the partition heals (seen: 13.6 s of
/// refusals while the majority had long elected a new leader). Every second it reads
/// the log's last commit, which only the stream's leader answers (a cut-off server
/// answers its stream info from its own copy, and reads with "JetStream system
/// temporarily unavailable"); after three failures in a row on a live connection it
/// asks every server of the endpoint on a connection of its own ([`some_server_serves`])
/// and reconnects, which picks a server at random, only if another serves the log while
/// this connection still cannot. While no server can (a cluster restarting, electing
/// its leaders) it stays: leaving then gained nothing and, landing as the leader was
/// elected, cost the reconnection and every subscription made again (seen: a whole
/// cluster restarted, JetStream back at 5.1 s, Behalf at 8.2 s).
async fn leave_a_cut_off_server(client: async_nats::Client, stream: stream::Stream, endpoint: crate::Endpoint) {
    const EVERY: Duration = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(EVERY).await;
        if client.connection_state() != async_nats::connection::State::Connected {
            failures = 0;
            continue;
        }
        failures = if serves(&stream).await { 0 } else { failures + 1 };
        if failures < 3 {
            continue;
        }
        failures = 0;
        if !some_server_serves(&endpoint).await {
            tracing::info!("no NATS server serves the log yet (leaders being elected); staying on this one");
        } else if !serves(&stream).await {
            tracing::warn!("the NATS server this process is connected to cannot serve the log; connecting to another");
            let _ = client.force_reconnect().await;
        }
    }
}

/// Whether `stream`'s leader answers a read of the log's last commit within a second.
async fn serves<I>(stream: &stream::Stream<I>) -> bool {
    match tokio::time::timeout(Duration::from_secs(1), stream.get_last_raw_message_by_subject("behalf.ev.>")).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => is_not_found(&e),
        Err(_) => false,
    }
}

/// Whether any server of `endpoint` [`serves`] the log, each asked on a short-lived
/// connection of its own (connecting given a second too).
async fn some_server_serves(endpoint: &crate::Endpoint) -> bool {
    let asks = crate::endpoint::each_server(endpoint).await.into_iter().flatten().map(|client| async move {
        match tokio::time::timeout(Duration::from_secs(1), jetstream::new(client).get_stream_no_info(EVENTS_STREAM))
            .await
        {
            Ok(Ok(stream)) => serves(&stream).await,
            Ok(Err(_)) | Err(_) => false,
        }
    });
    futures::future::join_all(asks).await.into_iter().any(|served| served)
}
