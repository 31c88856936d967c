//! Reading the log: ordered consumers, made again when they fail, stall, or start
//! from the wrong place ([`NatsSubscription`]).

use behalf_log::Hash;

use super::{
    check_position, check_subject, consumer, sha256, storage, stream, Commit, Duration, LogError, NatsLog,
    Subscription, READY_WAIT, STALL_CHECK,
};
use futures::StreamExt as _;

pub(super) type Ordered = consumer::pull::Ordered;

/// An ordered consumer from `start`. Making one can time out while a cluster moves a
/// leader (a node lost or back); that is tried again for up to [`READY_WAIT`].
pub(super) async fn ordered_from(stream: &stream::Stream, start: u64) -> Result<Ordered, LogError> {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        let made = async {
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
                    ..Default::default()
                })
                .await
                .map_err(|e| storage("cannot create a reader", e))?;
            consumer.messages().await.map_err(|e| storage("cannot start a reader", e))
        };
        match made.await {
            Ok(m) => return Ok(m),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, start, "making a reader failed; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Catch-up then live, through an ordered consumer that is made again from the last
/// position seen if it fails (a node lost, a connection dropped).
pub struct NatsSubscription {
    pub(super) log: NatsLog,
    pub(super) at: u64,
    pub(super) categories: Option<&'static [&'static str]>,
    pub(super) messages: Option<Ordered>,
    pub(super) pending: u64,
    /// Messages in a row that were not the next position.
    pub(super) misplaced: u32,
}

impl NatsSubscription {
    pub(super) fn new(log: NatsLog, after: u64, categories: Option<&'static [&'static str]>) -> NatsSubscription {
        NatsSubscription { log, at: after, categories, messages: None, pending: u64::MAX, misplaced: 0 }
    }

    /// Whether the last commit handed out was the newest the server knew of.
    pub fn caught_up(&self) -> bool {
        self.pending == 0
    }

    /// The next message, making the consumer again when it fails or stalls: an
    /// ordered consumer whose node died only notices after missed heartbeats (30 s),
    /// so a reader that hears nothing for [`STALL_CHECK`] while the log has moved on
    /// makes a new one from where it is.
    pub(super) async fn try_next(&mut self) -> Result<Commit, LogError> {
        Ok(self.try_next_stored().await?.0)
    }

    /// The next commit and the bytes it is stored as.
    async fn try_next_stored(&mut self) -> Result<(Commit, bytes::Bytes), LogError> {
        let (seq, subject, payload) = self.next_raw().await?;
        let c = Commit::decode_where(&payload, self.categories)
            .and_then(|c| check_position(c, seq))
            .and_then(|c| check_subject(c, &subject))?;
        self.at = seq;
        Ok((c, payload))
    }

    /// As [`Subscription::next`], with the hash of the stored record (the next
    /// commit's `prev_hash` must be it).
    pub(super) async fn next_hashed(&mut self) -> Result<(Commit, Hash), LogError> {
        let (c, payload) = self.retrying(|s| Box::pin(s.try_next_stored())).await?;
        Ok((c, sha256(&payload)))
    }

    /// The next stored record and its position (not yet taken as read).
    pub(super) async fn next_raw(&mut self) -> Result<(u64, async_nats::Subject, bytes::Bytes), LogError> {
        loop {
            let messages = match &mut self.messages {
                Some(m) => m,
                None => self.messages.insert(ordered_from(self.log.stream(), self.at + 1).await?),
            };
            let m = match tokio::time::timeout(STALL_CHECK, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(storage("the subscription failed", e)),
                Ok(None) => return Err(LogError::Closed),
                Err(_) => {
                    if self.log.last_sequence().await? > self.at {
                        tracing::info!(
                            at = self.at,
                            "the reader heard nothing while the log moved on; making it again"
                        );
                        self.messages = None;
                    }
                    continue;
                }
            };
            let info = m.info().map_err(|e| LogError::Storage(format!("a message without metadata: {e}")))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq != self.at + 1 {
                // A consumer made again by the client after a failure can start from
                // the wrong place (seen: from 1, when it failed before its first
                // message). Make it again from where this reader is; only a next
                // commit that stays missing is a broken log.
                self.misplaced += 1;
                if self.misplaced > 3 {
                    return Err(LogError::Corrupt {
                        position: self.at + 1,
                        what: format!("the next stored commit is {seq}"),
                    });
                }
                tracing::info!(at = self.at, got = seq, "the reader started from the wrong place; making it again");
                self.messages = None;
                continue;
            }
            self.misplaced = 0;
            self.pending = pending;
            return Ok((seq, m.message.subject.clone(), m.message.payload.clone()));
        }
    }

    /// As [`Subscription::next`], the stored bytes (for walking the hash chain).
    pub(super) async fn next_bytes(&mut self) -> Result<(u64, async_nats::Subject, bytes::Bytes), LogError> {
        let got = self.retrying(|s| Box::pin(s.next_raw())).await?;
        self.at = got.0;
        Ok(got)
    }
}

impl NatsSubscription {
    /// Runs `step`, making the consumer again after a failure, for about a minute of
    /// failures in a row; a corrupt or undecodable record ends it at once.
    pub(super) async fn retrying<T>(
        &mut self,
        step: impl for<'a> Fn(
            &'a mut Self,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, LogError>> + Send + 'a>>,
    ) -> Result<T, LogError> {
        let mut failures = 0u32;
        loop {
            match step(self).await {
                Ok(v) => return Ok(v),
                Err(e @ (LogError::Corrupt { .. } | LogError::Codec(_))) => return Err(e),
                Err(e) => {
                    failures += 1;
                    if failures > 120 {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, at = self.at, "the subscription broke; following again");
                    self.messages = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Result<Commit, LogError> {
        self.retrying(|s| Box::pin(s.try_next())).await
    }
}
