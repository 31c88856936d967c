//! # behalf-client
//!
//! A typed client for Behalf's producers — a partner's directory sync, its ticketing
//! tools, the vendor's systems — over HTTP(S) (`POST /v1/commands`) or NATS
//! (`behalf.cmd` request/reply), with the same answers either way.
//!
//! - Commands are [`behalf_domain::Command`]s, sent as the wire format of `API.md` (the
//!   JSON `type` tags), so the client follows the protocol, not the server's code.
//! - Every send carries a command id (the caller's, or one made here), so a retry is
//!   the same command (R26): the server answers its first outcome, never a second
//!   append.
//! - Retries with backoff on `429 overloaded`, `503 unavailable` and transport errors;
//!   never on a refusal ([`Error::Refused`] carries the code, rule and message).
//!   [`Retry::NONE`] sends once (benchmarks measure refusals and latency as they are).
//!
//! ```no_run
//! # async fn example() -> Result<(), behalf_client::Error> {
//! use behalf_client::{Client, Retry};
//! let client = Client::http("http://127.0.0.1:8080", "bh_…token…")?.with_retry(Retry::default());
//! let command: behalf_domain::Command = serde_json::from_value(serde_json::json!({
//!     "type": "ticket.note", "ticket_id": "t-01…", "text": "the customer sent logs"
//! }))
//! .expect("a command");
//! let accepted = client.send(&command).await?;
//! println!("stored at position {}", accepted.position);
//! # Ok(()) }
//! ```

use std::time::Duration;

use behalf_domain::{Command, Event};
use behalf_nats::rpc::{RpcClient, COMMAND_SUBJECT};
use behalf_nats::Endpoint;
use serde::Deserialize;
use serde_json::Value;

/// How a command is retried when the server could not take it (never on a refusal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Sends in all, the first included.
    pub attempts: u32,
    /// The wait after the first failure; it doubles up to `max`.
    pub first: Duration,
    pub max: Duration,
}

impl Retry {
    /// One send, no retry.
    pub const NONE: Retry = Retry { attempts: 1, first: Duration::ZERO, max: Duration::ZERO };
}

impl Default for Retry {
    /// Six sends over about six seconds: longer than a NATS leader election's usual
    /// pause is not the client's to wait out.
    fn default() -> Self {
        Retry { attempts: 6, first: Duration::from_millis(200), max: Duration::from_secs(2) }
    }
}

/// An accepted command, as the server answers it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Accepted {
    pub command_id: String,
    pub stream: String,
    /// The stream's version after the command.
    pub version: u64,
    /// The log position of the commit.
    pub position: u64,
    #[serde(default)]
    pub ticket_id: Option<String>,
    /// `support.request`: the recorded route (R23), as sent.
    #[serde(default)]
    pub route: Option<Value>,
    #[serde(default)]
    pub partner_id: Option<String>,
    #[serde(default)]
    pub events: Vec<Event>,
    /// The answer is the first outcome of an earlier send of the same command (R26).
    #[serde(default)]
    pub duplicate: bool,
}

/// A refusal, as the server answers it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Refusal {
    /// The stable code (`gdap.relationship_expired`, …).
    pub code: String,
    pub message: String,
    /// The rule that refused (`R5`), where one did.
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub details: serde_json::Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule or a check refused the command: retrying changes nothing.
    #[error("refused ({status}) {}: {} [{}]", .refusal.code, .refusal.message, .refusal.rule.as_deref().unwrap_or("no rule"))]
    Refused { status: u16, refusal: Refusal },
    /// The server could not take it, through every retry.
    #[error("unavailable after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: String },
    /// The answer was not one the protocol has.
    #[error("an answer the client cannot read ({status}): {why}")]
    Answer { status: u16, why: String },
    /// The client could not be set up (a URL, a NATS connection).
    #[error("{0}")]
    Setup(String),
}

enum Transport {
    Http { http: reqwest::Client, base: String },
    Nats(RpcClient),
}

/// A producer's connection, with its bearer token.
pub struct Client {
    transport: Transport,
    token: String,
    retry: Retry,
}

/// One send's result, before the retry policy looks at it.
enum Sent {
    Answered(u16, Vec<u8>),
    Failed(String),
}

impl Client {
    /// Over HTTP or HTTPS at `base` (`http://host:port`). Retries: [`Retry::default`].
    pub fn http(base: &str, token: &str) -> Result<Client, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(35))
            .build()
            .map_err(|e| Error::Setup(format!("cannot make an HTTP client: {e}")))?;
        Ok(Client::with_http(http, base, token))
    }

    /// Over HTTP with a client of the caller's (its TLS roots, its pool).
    pub fn with_http(http: reqwest::Client, base: &str, token: &str) -> Client {
        let base = base.trim_end_matches('/').to_owned();
        Client { transport: Transport::Http { http, base }, token: token.to_owned(), retry: Retry::default() }
    }

    /// Over NATS request/reply (`behalf.cmd`), with the endpoint's credentials and TLS.
    pub async fn nats(to: impl Into<Endpoint>, token: &str) -> Result<Client, Error> {
        let rpc = RpcClient::connect(to).await.map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Client { transport: Transport::Nats(rpc), token: token.to_owned(), retry: Retry::default() })
    }

    pub fn with_retry(mut self, retry: Retry) -> Client {
        self.retry = retry;
        self
    }

    /// Sends `command` under a command id made here (so that its retries are the same
    /// command).
    pub async fn send(&self, command: &Command) -> Result<Accepted, Error> {
        self.send_as(command, &new_command_id()?, None).await
    }

    /// Sends `command` as `command_id` (R26: sending it again answers its first
    /// outcome), optionally only at the ticket's `expected_version` (R27).
    pub async fn send_as(
        &self,
        command: &Command,
        command_id: &str,
        expected_version: Option<u64>,
    ) -> Result<Accepted, Error> {
        let mut body = serde_json::to_value(command).map_err(|e| Error::Setup(format!("cannot encode: {e}")))?;
        let obj = body.as_object_mut().ok_or_else(|| Error::Setup("a command encodes as an object".into()))?;
        obj.insert("command_id".into(), command_id.into());
        if let Some(v) = expected_version {
            obj.insert("expected_version".into(), v.into());
        }
        let body = serde_json::to_vec(&body).map_err(|e| Error::Setup(format!("cannot encode: {e}")))?;
        // One trace per command, its retries included: the server's spans join it.
        let trace = traceparent()?;
        let mut wait = self.retry.first;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            if attempt > 1 {
                tracing::debug!(attempt, ?wait, %last, "sending the command again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(self.retry.max);
            }
            match self.post(&body, &trace).await {
                Sent::Answered(status, answer) if status == 200 || status == 201 => {
                    return serde_json::from_slice(&answer).map_err(|e| Error::Answer { status, why: e.to_string() });
                }
                Sent::Answered(status, answer) if status == 429 || status == 503 => {
                    last = format!("{status} {}", String::from_utf8_lossy(&answer));
                }
                Sent::Answered(status, answer) => {
                    let refusal =
                        serde_json::from_slice(&answer).map_err(|e| Error::Answer { status, why: e.to_string() })?;
                    return Err(Error::Refused { status, refusal });
                }
                Sent::Failed(why) => last = why,
            }
        }
        Err(Error::Unavailable { attempts: self.retry.attempts.max(1), last })
    }

    async fn post(&self, body: &[u8], traceparent: &str) -> Sent {
        let bearer = format!("Bearer {}", self.token);
        match &self.transport {
            Transport::Http { http, base } => {
                let sent = http
                    .post(format!("{base}/v1/commands"))
                    .header("Authorization", &bearer)
                    .header("Content-Type", "application/json")
                    .header("traceparent", traceparent)
                    .body(body.to_vec())
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        match r.bytes().await {
                            Ok(b) => Sent::Answered(status, b.to_vec()),
                            Err(e) => Sent::Failed(format!("the answer was cut: {e}")),
                        }
                    }
                    Err(e) => Sent::Failed(format!("HTTP: {e}")),
                }
            }
            Transport::Nats(rpc) => {
                let headers = [
                    ("Authorization", bearer.as_str()),
                    ("Content-Type", "application/json"),
                    ("traceparent", traceparent),
                ];
                match rpc.call(COMMAND_SUBJECT, &headers, body.to_vec().into()).await {
                    Ok(reply) => Sent::Answered(reply.status, reply.body.to_vec()),
                    Err(e) => Sent::Failed(format!("NATS: {e}")),
                }
            }
        }
    }
}

/// A W3C `traceparent` for a new trace: version 00, a random trace id and span id,
/// sampled. The ids come from a per-thread generator seeded once from the operating
/// system (a trace id needs to be unique, not secret; no system call per command).
fn traceparent() -> Result<String, Error> {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<Option<u64>> = const { Cell::new(None) };
    }
    let mut state = match STATE.get() {
        Some(s) => s,
        None => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| Error::Setup(format!("no randomness for a trace id: {e}")))?;
            u64::from_le_bytes(b)
        }
    };
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (t1, t2, span) = (next(), next(), next());
    STATE.set(Some(state));
    Ok(format!("00-{t1:016x}{t2:016x}-{:016x}-01", span.max(1)))
}

/// A fresh command id: `c-`, 12 hex digits of the milliseconds since 1970 and 14 of
/// randomness. Ids that sort by time keep the log's command index growing at its end.
pub fn new_command_id() -> Result<String, Error> {
    let mut bytes = [0u8; 7];
    getrandom::fill(&mut bytes).map_err(|e| Error::Setup(format!("no randomness for a command id: {e}")))?;
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Ok(bytes.iter().fold(format!("c-{:012x}", ms & 0xFFFF_FFFF_FFFF), |mut s, b| {
        s.push_str(&format!("{b:02x}"));
        s
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server that answers each request with the next of `answers` and records the
    /// bodies it got.
    async fn scripted(answers: Vec<(u16, &'static str)>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for (status, answer) in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                            .and_then(|n| n.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            bodies.push(body.to_owned());
                            break;
                        }
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                s.write_all(reply.as_bytes()).await.unwrap();
            }
            bodies
        });
        (base, task)
    }

    fn note() -> Command {
        serde_json::from_value(serde_json::json!({"type":"ticket.note","ticket_id":"t-1","text":"x"})).unwrap()
    }

    const ACCEPTED: &str =
        r#"{"outcome":"accepted","command_id":"c","stream":"ticket-t-1","version":2,"position":9,"events":[]}"#;
    const UNAVAILABLE: &str = r#"{"outcome":"rejected","code":"unavailable","message":"retry"}"#;
    const REFUSED: &str = r#"{"outcome":"rejected","code":"ticket.closed","message":"closed","rule":"R17"}"#;

    #[tokio::test]
    async fn retries_keep_the_command_id_and_stop_at_an_answer() {
        let (base, server) = scripted(vec![(503, UNAVAILABLE), (429, UNAVAILABLE), (200, ACCEPTED)]).await;
        let retry = Retry { attempts: 5, first: Duration::from_millis(1), max: Duration::from_millis(5) };
        let client = Client::http(&base, "bh_x_y").unwrap().with_retry(retry);
        let accepted = client.send_as(&note(), "sync-42", None).await.unwrap();
        assert_eq!((accepted.position, accepted.version), (9, 2));
        let bodies = server.await.unwrap();
        assert_eq!(bodies.len(), 3);
        for b in &bodies {
            let v: Value = serde_json::from_str(b).unwrap();
            assert_eq!((v["command_id"].as_str(), v["type"].as_str()), (Some("sync-42"), Some("ticket.note")));
        }
    }

    #[tokio::test]
    async fn a_refusal_is_never_retried() {
        let (base, server) = scripted(vec![(409, REFUSED)]).await;
        let client = Client::http(&base, "bh_x_y").unwrap();
        match client.send(&note()).await {
            Err(Error::Refused { status: 409, refusal }) => {
                assert_eq!((refusal.code.as_str(), refusal.rule.as_deref()), ("ticket.closed", Some("R17")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn without_retries_one_send_and_unavailable() {
        let (base, server) = scripted(vec![(503, UNAVAILABLE)]).await;
        let client = Client::http(&base, "bh_x_y").unwrap().with_retry(Retry::NONE);
        assert!(matches!(client.send(&note()).await, Err(Error::Unavailable { attempts: 1, .. })));
        assert_eq!(server.await.unwrap().len(), 1);
    }

    #[test]
    fn command_ids_are_fresh() {
        let (a, b) = (new_command_id().unwrap(), new_command_id().unwrap());
        assert!(a.starts_with("c-") && a.len() == 28 && a != b);
    }
}
