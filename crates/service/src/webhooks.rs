//! Webhooks: every message of a queue pushed to the URLs subscribed to it, signed as
//! the Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`), so a
//! receiver verifies with an off-the-shelf library.
//!
//! **How a message travels.** The notifier puts it in its queue as before. When the
//! queue has enabled subscriptions (the directory's `webhooks`, folded from the log),
//! the [`Sender`] leases it there, copies it into each subscription's delivery queue
//! (`webhook.<id>`, source event `<event id>#<webhook id>`: once per subscription, however
//! often the copy is made) and acks it: the message leaves its queue once every
//! subscription has its copy, and a queue with no subscription is untouched. Each
//! delivery queue is then leased a few messages at a time (bounded concurrency per
//! subscription) and each message POSTed: a 2xx acks it; `410 Gone` disables the
//! subscription (a `webhook.disable` command, as the vendor side); anything else holds
//! it until the next attempt of the retry schedule (`Retry-After` of a 429 or 503 is
//! honoured), and past the schedule for ever (`failed`, until a replay). The lease is
//! a compare-and-set on either engine, so one sender at a time holds each delivery:
//! exactly once per (subscription, message) on Behalf's side, at least once on the
//! wire (a sender killed after the POST and before the ack sends it again, with the
//! same `webhook-id`).
//!
//! **Where it may connect.** `https://` only, to public addresses: a host resolving to
//! a loopback, private, link-local or otherwise special address is refused when
//! subscribing and again on every connection (the resolver filters the addresses, so a
//! rebinding DNS answer cannot reach inside), and redirects are not followed. Settings
//! `allow_insecure` lifts both, for local use and tests. URLs can hold credentials: no
//! log line names more than the redacted form.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use behalf_domain::webhook::{delivery_queue, Disable, Webhook};
use behalf_domain::{Code, Command, CommandId, Principal, Rejection};
use behalf_log::queues::{Enqueue, QueueMessage, QueueStore};
use behalf_log::webhooks::{Attempt, Secrets, SigningKey, WebhookStore};
use behalf_log::EventLog;
use hmac::{Hmac, Mac};

use crate::clock::Clock;
use crate::commands::CommandService;
use crate::gdap::GdapProjection;
use crate::request::Request;

/// How webhooks are delivered (`[webhooks]` in the settings file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `http://` URLs and private, loopback or link-local addresses allowed (local use).
    pub allow_insecure: bool,
    /// Entry n is the delay before attempt n + 1 (the first is the delay of the first
    /// attempt, usually none); past the last, the delivery has failed.
    pub retry_schedule: Vec<Duration>,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// How long the previous secret still signs after a rotation.
    pub rotation_grace: Duration,
    /// Attempts in flight per subscription.
    pub concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let s = Duration::from_secs;
        Settings {
            allow_insecure: false,
            retry_schedule: vec![
                s(0),
                s(5),
                s(5 * 60),
                s(30 * 60),
                s(2 * 3600),
                s(5 * 3600),
                s(10 * 3600),
                s(14 * 3600),
                s(20 * 3600),
                s(24 * 3600),
            ],
            timeout: s(10),
            rotation_grace: s(24 * 3600),
            concurrency: 4,
        }
    }
}

/// A new signing secret: its `whsec_…` form (shown once) and the key it stands for.
pub fn new_secret() -> (String, Vec<u8>) {
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key).unwrap_or_else(|e| panic!("the system's random source failed: {e}"));
    (format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(&key)), key)
}

/// A new subscription id: 26 characters of Crockford base32, random.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut bytes = [0u8; 26];
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("the system's random source failed: {e}"));
    bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect()
}

/// The `webhook-signature` header: one `v1,<signature>` per live key, space-separated.
pub fn signature<'a>(keys: impl Iterator<Item = &'a SigningKey>, id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.map(|k| {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&k.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    })
    .collect::<Vec<_>>()
    .join(" ")
}

/// A URL as logs and the log may show it: scheme, host and port, nothing of its path,
/// query or credentials.
pub fn redact(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}

fn not_allowed(why: impl std::fmt::Display) -> Rejection {
    Rejection::without_rule(Code::WebhookUrlNotAllowed, format!("the webhook URL is not allowed: {why}"))
}

/// Whether a delivery may connect to `ip`: a public unicast address.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

/// Checks a URL to subscribe: `https://` (or `http://` when insecure ones are allowed),
/// no credentials in its authority, and a host that resolves only to public addresses.
pub async fn check_url(url: &str, allow_insecure: bool) -> Result<reqwest::Url, Rejection> {
    if url.len() > 2048 {
        return Err(Rejection::invalid("url", "must be at most 2048 characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| Rejection::invalid("url", format!("is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        "http" => return Err(not_allowed("it must be https://")),
        other => return Err(not_allowed(format!("{other}:// is not https://"))),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Rejection::invalid("url", "must not hold a user name or password"));
    }
    let host = parsed.host_str().ok_or_else(|| Rejection::invalid("url", "has no host"))?;
    if allow_insecure {
        return Ok(parsed);
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host, port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(_)) | Err(_) => return Err(not_allowed("its host does not resolve")),
        };
    if addrs.is_empty() || !addrs.iter().all(|a| public(a.ip())) {
        return Err(not_allowed("its host resolves to a loopback, private or link-local address"));
    }
    Ok(parsed)
}

/// The resolver deliveries connect through: only public addresses, unless allowed.
struct PublicOnly {
    allow_insecure: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_insecure;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| allow || public(a.ip())).collect();
            if kept.is_empty() {
                return Err("the host resolves to no public address".into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client deliveries are made with: no redirects, the resolver above.
pub fn client(settings: &Settings) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .user_agent(concat!("behalf/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(PublicOnly { allow_insecure: settings.allow_insecure }))
        .build()
        .unwrap_or_else(|e| panic!("the webhook HTTP client cannot be built: {e}"))
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Gone,
    /// Try again; at this time at the earliest when the receiver said (Retry-After).
    Retry {
        status: Option<u16>,
        error: Option<String>,
        not_before_ms: Option<i64>,
    },
}

/// The webhook sender: copies queues' messages to their subscriptions and delivers
/// them. Run by every process that serves the queues; the queues' leases keep them
/// from sending one delivery twice at once.
pub struct Sender<L: EventLog> {
    queues: Arc<dyn QueueStore>,
    gdap: Arc<GdapProjection>,
    store: Arc<dyn WebhookStore>,
    commands: Option<Arc<CommandService<L>>>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    client: reqwest::Client,
    in_flight: Mutex<std::collections::HashMap<String, usize>>,
    /// When the backlog gauge was last set (ms).
    backlog_at: Mutex<i64>,
}

impl<L: EventLog> Sender<L> {
    pub fn new(
        queues: Arc<dyn QueueStore>,
        gdap: Arc<GdapProjection>,
        store: Arc<dyn WebhookStore>,
        commands: Option<Arc<CommandService<L>>>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Arc<Self> {
        let client = client(&settings);
        Arc::new(Sender {
            queues,
            gdap,
            store,
            commands,
            clock,
            settings,
            client,
            in_flight: Mutex::default(),
            backlog_at: Mutex::new(0),
        })
    }

    /// Runs until the process ends: a pass every 200 ms.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = Arc::clone(&self).pass().await {
                tracing::warn!(error = %e, "the webhook sender failed a pass; trying again");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().millis()
    }

    /// One pass: copy what waits in subscribed queues, then start deliveries.
    pub async fn pass(self: Arc<Self>) -> Result<(), behalf_log::LogError> {
        let hooks: Vec<Webhook> =
            self.gdap.view().directory.webhooks.0.values().filter(|w| w.enabled).cloned().collect();
        let mut queues: Vec<&str> = hooks.iter().map(|w| w.queue.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        for queue in queues {
            self.copy_out(queue, &hooks)?;
        }
        for hook in hooks {
            let free = {
                let busy = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                self.settings.concurrency.saturating_sub(busy.get(&hook.webhook_id).copied().unwrap_or(0))
            };
            if free == 0 {
                continue;
            }
            let lease_ms =
                i64::try_from((self.settings.timeout + Duration::from_secs(2)).as_millis()).unwrap_or(i64::MAX);
            let leased = self.queues.lease(&delivery_queue(&hook.webhook_id), free, self.now_ms(), lease_ms)?;
            for message in leased {
                *self
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(hook.webhook_id.clone())
                    .or_default() += 1;
                let me = Arc::clone(&self);
                let hook = hook.clone();
                tokio::spawn(async move {
                    let id = hook.webhook_id.clone();
                    if let Err(e) = me.deliver(&hook, message).await {
                        tracing::warn!(webhook_id = %id, error = %e, "a webhook delivery could not be settled; its lease will run out");
                    }
                    if let Some(n) = me.in_flight.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id) {
                        *n = n.saturating_sub(1);
                    }
                });
            }
        }
        // Counting every delivery queue is a scan (a listing on NATS): every 5 s is enough.
        let now = self.now_ms();
        let due = {
            let mut last = self.backlog_at.lock().unwrap_or_else(|e| e.into_inner());
            let due = now - *last >= 5_000;
            if due {
                *last = now;
            }
            due
        };
        if due {
            behalf_log::metrics::gauge_webhook_backlog(self.backlog());
        }
        Ok(())
    }

    fn backlog(&self) -> usize {
        let dir = self.gdap.view();
        dir.directory
            .webhooks
            .0
            .keys()
            .map(|id| self.queues.peek(&delivery_queue(id), 10_000).map_or(0, |m| m.len()))
            .sum()
    }

    /// Copies every message waiting in `queue` into each subscription's delivery
    /// queue, then acks it.
    fn copy_out(&self, queue: &str, hooks: &[Webhook]) -> Result<(), behalf_log::LogError> {
        let subscribed: Vec<&Webhook> = hooks.iter().filter(|w| w.queue == queue).collect();
        loop {
            let leased = self.queues.lease(queue, 100, self.now_ms(), 60_000)?;
            if leased.is_empty() {
                return Ok(());
            }
            let mut copies = Vec::new();
            for m in &leased {
                let priority = priority_of(m);
                for w in &subscribed {
                    let mut body = m.body.clone();
                    body.queue = delivery_queue(&w.webhook_id);
                    copies.push(Enqueue {
                        source_event_id: format!("{}#{}", m.source_event_id, w.webhook_id),
                        position: m.position,
                        priority,
                        body,
                    });
                }
            }
            self.queues.copy(copies)?;
            for m in &leased {
                self.queues.ack(queue, &m.id)?;
            }
        }
    }

    async fn deliver(&self, hook: &Webhook, message: QueueMessage) -> Result<(), behalf_log::LogError> {
        let Some(secrets) = self.store.secrets(&hook.webhook_id)? else {
            // Deleted between the lease and now: nothing to sign with, nowhere to send.
            return Ok(());
        };
        let attempt = message.deliveries;
        let outcome = self.attempt(hook, &secrets, &message).await;
        let now = self.now_ms();
        let queue = delivery_queue(&hook.webhook_id);
        let mut record = Attempt {
            message_id: message.id.clone(),
            attempt,
            status: None,
            error: None,
            at_ms: now,
            state: String::new(),
            next_ms: None,
        };
        match outcome {
            Outcome::Delivered(status) => {
                self.queues.ack(&queue, &message.id)?;
                record.status = Some(status);
                record.state = "delivered".into();
                metrics::counter!(behalf_log::metrics::WEBHOOK_ATTEMPTS, "outcome" => "delivered").increment(1);
                self.store.record(&hook.webhook_id, &record)?;
            }
            Outcome::Gone => {
                record.status = Some(410);
                record.state = "disabled".into();
                // The attempt is on record before the message's state says so (a
                // reader who sees it disabled or failed sees why).
                self.store.record(&hook.webhook_id, &record)?;
                self.queues.hold(&queue, &message.id, i64::MAX)?;
                metrics::counter!(behalf_log::metrics::WEBHOOK_ATTEMPTS, "outcome" => "gone").increment(1);
                self.disable(hook).await;
            }
            Outcome::Retry { status, error, not_before_ms } => {
                record.status = status;
                record.error = error;
                let next = self.settings.retry_schedule.get(attempt as usize).map(|delay| {
                    let jittered = jitter(*delay);
                    let at = now.saturating_add(i64::try_from(jittered.as_millis()).unwrap_or(i64::MAX));
                    at.max(not_before_ms.unwrap_or(0))
                });
                match next {
                    Some(at) => {
                        record.state = "retrying".into();
                        record.next_ms = Some(at);
                        self.store.record(&hook.webhook_id, &record)?;
                        self.queues.hold(&queue, &message.id, at)?;
                        metrics::counter!(behalf_log::metrics::WEBHOOK_ATTEMPTS, "outcome" => "retrying").increment(1);
                    }
                    None => {
                        record.state = "failed".into();
                        self.store.record(&hook.webhook_id, &record)?;
                        self.queues.hold(&queue, &message.id, i64::MAX)?;
                        metrics::counter!(behalf_log::metrics::WEBHOOK_ATTEMPTS, "outcome" => "failed").increment(1);
                    }
                }
            }
        }
        Ok(())
    }

    async fn attempt(&self, hook: &Webhook, secrets: &Secrets, message: &QueueMessage) -> Outcome {
        let Ok(url) = reqwest::Url::parse(&secrets.url) else {
            return Outcome::Retry {
                status: None,
                error: Some("the stored URL does not parse".into()),
                not_before_ms: None,
            };
        };
        if let Some(ip) =
            url.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok())
        {
            // An address written in the URL is not resolved: check it here.
            if !self.settings.allow_insecure && !public(ip) {
                return Outcome::Retry {
                    status: None,
                    error: Some("the address is not allowed".into()),
                    not_before_ms: None,
                };
            }
        }
        let mut body = delivered_body(hook, message);
        // Sealed personal fields go out opened, as the queue's readers see them.
        if let Some(keyring) = self.commands.as_ref().and_then(|c| c.keyring()) {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) {
                if let Err(e) = keyring.open_json(&mut v) {
                    return Outcome::Retry {
                        status: None,
                        error: Some(format!("the sealing keys: {e}")),
                        not_before_ms: None,
                    };
                }
                body = serde_json::to_vec(&v).unwrap_or_default();
            }
        }
        let timestamp = self.now_ms() / 1000;
        let signature = signature(secrets.live(self.now_ms()), &message.id, timestamp, &body);
        let sent = self
            .client
            .post(url)
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Outcome::Delivered(r.status().as_u16()),
            Ok(r) if r.status() == reqwest::StatusCode::GONE => Outcome::Gone,
            Ok(r) => {
                let status = r.status();
                let after = (status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::SERVICE_UNAVAILABLE)
                    .then(|| {
                        r.headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<i64>().ok())
                    })
                    .flatten()
                    .map(|s| self.now_ms().saturating_add(s.clamp(0, 86_400).saturating_mul(1000)));
                Outcome::Retry { status: Some(status.as_u16()), error: None, not_before_ms: after }
            }
            Err(e) => {
                // reqwest's error names the URL: say only what kind of failure it was.
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "the request failed"
                };
                Outcome::Retry { status: None, error: Some(kind.into()), not_before_ms: None }
            }
        }
    }

    async fn disable(&self, hook: &Webhook) {
        let Some(commands) = &self.commands else { return };
        let command = Command::WebhookDisable(Disable {
            webhook_id: hook.webhook_id.clone(),
            reason: "the receiver answered 410 Gone".into(),
        });
        let req = Request {
            command_id: Some(CommandId::new(format!("webhook-disable-{}", hook.webhook_id))),
            expected_version: None,
            command,
        };
        if let Err(e) = commands.execute(Principal::Vendor, req).await {
            tracing::warn!(webhook_id = %hook.webhook_id, error = %e, "cannot disable a webhook subscription");
        }
    }
}

/// The order key of a message (its id is the key in hex).
fn priority_of(m: &QueueMessage) -> [u8; 14] {
    let mut p = [0u8; 14];
    for (i, b) in p.iter_mut().enumerate() {
        *b = m.id.get(i * 2..i * 2 + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
    }
    p
}

/// The body a delivery carries: the message as `GET /v1/queues/{queue}/messages` shows
/// it, in the subscription's queue.
pub fn delivered_body(hook: &Webhook, message: &QueueMessage) -> Vec<u8> {
    let mut m = message.clone();
    m.queue.clone_from(&hook.queue);
    m.body.queue.clone_from(&hook.queue);
    m.leased_until = 0;
    serde_json::to_vec(&m).unwrap_or_default()
}

/// ±20 %.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let r = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX); // 0..=1
    d.mul_f64(0.8 + 0.4 * r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
        ] {
            assert!(!public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_to_subscribe() {
        assert_eq!(check_url("http://example.com/x", false).await.unwrap_err().code, Code::WebhookUrlNotAllowed);
        assert_eq!(check_url("https://127.0.0.1/x", false).await.unwrap_err().code, Code::WebhookUrlNotAllowed);
        assert_eq!(check_url("https://localhost:8443/x", false).await.unwrap_err().code, Code::WebhookUrlNotAllowed);
        assert_eq!(check_url("https://[::1]/x", false).await.unwrap_err().code, Code::WebhookUrlNotAllowed);
        assert_eq!(check_url("ftp://example.com/x", false).await.unwrap_err().code, Code::WebhookUrlNotAllowed);
        assert_eq!(check_url("not a url", false).await.unwrap_err().code, Code::ValidationInvalid);
        assert_eq!(check_url("https://u:p@example.com/x", false).await.unwrap_err().code, Code::ValidationInvalid);
        assert!(check_url("http://127.0.0.1:9/x", true).await.is_ok(), "allowed when insecure ones are");
    }

    #[test]
    fn signs_as_the_specification_says() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let k = SigningKey { key, created_ms: 0, retire_ms: None };
        let sig =
            signature([&k].into_iter(), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let (whsec, key) = new_secret();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(whsec.strip_prefix("whsec_").unwrap()).unwrap(),
            key
        );
    }

    #[test]
    fn redacts_everything_past_the_host() {
        let u = reqwest::Url::parse("https://hooks.example.com:8443/services/T0/B0/secret?x=1").unwrap();
        assert_eq!(redact(&u), "https://hooks.example.com:8443/…");
    }
}
