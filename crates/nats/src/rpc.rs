//! Request/reply over NATS for the roles: `behalf.cmd` (command services) and
//! `behalf.query.<name>` (projectors), each served in a queue group so that any number
//! of processes share the load and a request goes to one of them.
//!
//! A request's headers are passed to the handler as they are (`Authorization`,
//! `Idempotency-Key`, `Content-Type`, `Accept`); the reply carries the answer's body,
//! its `Content-Type` and its HTTP status as the header `Behalf-Status`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use behalf_log::LogError;
use bytes::Bytes;
use futures::StreamExt as _;

use crate::endpoint::{connect, Endpoint};

/// The subject of commands.
pub const COMMAND_SUBJECT: &str = "behalf.cmd";
/// The prefix of query subjects: `behalf.query.<name>`.
pub const QUERY_PREFIX: &str = "behalf.query";
/// The reply header that carries the HTTP status of the answer.
pub const STATUS_HEADER: &str = "Behalf-Status";

/// One request, as a handler sees it.
#[derive(Clone, Debug)]
pub struct RpcRequest {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

/// One answer.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl RpcReply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn headers_of(h: Option<&HeaderMap>) -> Vec<(String, String)> {
    let Some(h) = h else { return Vec::new() };
    h.iter().flat_map(|(name, values)| values.iter().map(move |v| (name.to_string(), v.to_string()))).collect()
}

/// A subscription in a queue group, ready to answer (requests sent from now on are
/// queued for it).
pub struct Listener {
    client: async_nats::Client,
    requests: async_nats::Subscriber,
    _kept: crate::endpoint::Kept,
}

/// Subscribes to `subject` in `queue_group`.
pub async fn listen(to: impl Into<Endpoint>, subject: &str, queue_group: &str) -> Result<Listener, LogError> {
    let (client, kept) = crate::endpoint::connect_kept(&to.into()).await?;
    let requests = client
        .queue_subscribe(subject.to_owned(), queue_group.to_owned())
        .await
        .map_err(|e| LogError::Storage(format!("cannot subscribe to {subject}: {e}")))?;
    // The server has the subscription once a round trip has come back.
    client.flush().await.map_err(|e| LogError::Storage(format!("cannot subscribe to {subject}: {e}")))?;
    tracing::info!(subject, queue_group, "serving NATS requests");
    Ok(Listener { client, requests, _kept: kept })
}

impl Listener {
    /// Answers until `shutdown` resolves; every request on its own task.
    pub async fn run<F, Fut>(mut self, handler: F, shutdown: impl Future<Output = ()>) -> Result<(), LogError>
    where
        F: Fn(RpcRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RpcReply> + Send + 'static,
    {
        let handler = Arc::new(handler);
        tokio::pin!(shutdown);
        loop {
            let message = tokio::select! {
                () = &mut shutdown => break,
                m = self.requests.next() => match m {
                    Some(m) => m,
                    None => return Err(LogError::Closed),
                },
            };
            let Some(reply_to) = message.reply.clone() else { continue };
            let request = RpcRequest {
                subject: message.subject.to_string(),
                headers: headers_of(message.headers.as_ref()),
                payload: message.payload.clone(),
            };
            let (handler, client) = (Arc::clone(&handler), self.client.clone());
            tokio::spawn(async move {
                let reply = handler(request).await;
                let mut headers = HeaderMap::new();
                headers.insert(STATUS_HEADER, reply.status.to_string().as_str());
                if let Some(ct) = &reply.content_type {
                    headers.insert("Content-Type", ct.as_str());
                }
                if let Err(e) = client.publish_with_headers(reply_to, headers, reply.body).await {
                    tracing::warn!(error = %e, "cannot send a reply");
                }
            });
        }
        let _ = self.requests.unsubscribe().await;
        let _ = self.client.flush().await;
        Ok(())
    }
}

/// A client of the roles: sends a request, waits for the reply.
#[derive(Clone)]
pub struct RpcClient {
    client: async_nats::Client,
    timeout: Duration,
}

impl RpcClient {
    pub async fn connect(to: impl Into<Endpoint>) -> Result<RpcClient, LogError> {
        Ok(RpcClient { client: connect(&to.into()).await?, timeout: Duration::from_secs(30) })
    }

    /// Sends `payload` to `subject` with `headers`.
    pub async fn call(&self, subject: &str, headers: &[(&str, &str)], payload: Bytes) -> Result<RpcReply, LogError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, *v);
        }
        let request = async_nats::Request::new().payload(payload).headers(h).timeout(Some(self.timeout));
        let m = self
            .client
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| LogError::Storage(format!("request to {subject} failed: {e}")))?;
        let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string());
        let status = header(STATUS_HEADER)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LogError::Storage(format!("the reply from {subject} has no {STATUS_HEADER}")))?;
        Ok(RpcReply { status, content_type: header("Content-Type"), body: m.payload })
    }
}
