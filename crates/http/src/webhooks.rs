//! `/v1/webhooks`: subscribe a URL to a queue, list, read, delete, rotate the secret,
//! see recent deliveries, replay the failed ones. Subscribing, rotating and deleting
//! are commands in the log (`webhook.subscribe`, `webhook.rotate`, `webhook.delete`:
//! audited, R26); the URL and the secrets are kept in the webhook store, never in the
//! log (`behalf_service::webhooks`).

use super::{App, Arc, Bytes, Code, EventLog, HeaderMap, IntoResponse, Path, Rejection, Response, State, StatusCode};
use crate::respond::{early, json_response, not_served, refused, rejected, unavailable, Early};
use crate::{authenticate, limit_param, Params};
use behalf_domain::webhook::{delivery_queue, Subscribe, Webhook, WebhookRef};
use behalf_domain::Timestamp;
use behalf_domain::{Command, CommandId, Principal};
use behalf_log::webhooks::Attempt;
use behalf_log::webhooks::{Secrets, SigningKey, WebhookStore};
use behalf_service::commands::CommandService;
use behalf_service::request::Request;
use behalf_service::webhooks::{check_url, new_id, new_secret, redact};
use behalf_service::ServiceError;
use schemars::JsonSchema;
use serde::Serialize;

/// What the webhook routes need: the store, the command service, the queues.
struct Side<'a, L: EventLog> {
    store: &'a Arc<dyn WebhookStore>,
    commands: &'a Arc<CommandService<L>>,
}

fn side<L: EventLog>(app: &App<L>) -> Result<Side<'_, L>, Early> {
    match (&app.webhooks, &app.commands) {
        (Some((store, _)), Some(commands)) => Ok(Side { store, commands }),
        _ => Err(not_served("webhooks")),
    }
}

fn not_found(id: &str) -> Early {
    let r =
        Rejection::without_rule(Code::WebhookNotFound, format!("no webhook subscription {id}")).with("webhook_id", id);
    Box::new(rejected(&r, false))
}

/// The subscription `who` may see, or 404 (another tenant's is not there for it).
fn visible<L: EventLog>(app: &App<L>, who: &Principal, id: &str) -> Result<Webhook, Early> {
    let view = app.gdap.view();
    view.directory
        .webhooks
        .get(id)
        .filter(|w| behalf_domain::policy::may_consume_queue(who, &w.queue))
        .cloned()
        .ok_or_else(|| not_found(id))
}

/// A subscription as the routes show it: the URL from the store (the log keeps only
/// its redacted form), never a secret.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Shown {
    id: String,
    queue: String,
    url: String,
    description: String,
    enabled: bool,
    /// Why it was disabled (a receiver's `410 Gone`).
    disabled_reason: Option<String>,
    created_at: Timestamp,
    rotated_at: Option<Timestamp>,
}

fn shown(w: &Webhook, url: Option<&str>) -> Shown {
    Shown {
        id: w.webhook_id.clone(),
        queue: w.queue.clone(),
        url: url.unwrap_or(&w.url_redacted).to_owned(),
        description: w.description.clone(),
        enabled: w.enabled,
        disabled_reason: (!w.disabled_reason.is_empty()).then(|| w.disabled_reason.clone()),
        created_at: w.created_at,
        rotated_at: w.rotated_at,
    }
}

/// `POST /v1/webhooks`: the subscription and its signing secret, shown once.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Created {
    id: String,
    queue: String,
    url: String,
    description: String,
    /// `whsec_…` (Standard Webhooks), shown once.
    secret: String,
    enabled: bool,
    /// The log position of the `webhook.subscribe` commit.
    position: u64,
}

/// `GET /v1/webhooks`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct WebhookList {
    webhooks: Vec<Shown>,
}

/// `POST /v1/webhooks/{id}/rotate`: the new secret, shown once.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Rotated {
    id: String,
    secret: String,
}

/// `GET /v1/webhooks/{id}/deliveries`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Deliveries {
    id: String,
    /// Messages waiting in the delivery queue (up to 10,000 counted).
    waiting: usize,
    /// Of those, past the retry schedule (`replay` sends them again).
    failed: usize,
    deliveries: Vec<Attempt>,
}

/// `POST /v1/webhooks/{id}/replay`.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Replayed {
    id: String,
    replayed: usize,
}

/// Sends a webhook command as `who` with the server's command id.
async fn send<L: EventLog>(
    commands: &CommandService<L>,
    who: Principal,
    command_id: String,
    command: Command,
) -> Result<u64, Response> {
    let req = Request { command_id: Some(CommandId::new(command_id)), expected_version: None, command };
    match commands.execute(who, req).await {
        Ok(a) => Ok(a.position),
        Err(e) => Err(refused(&e, false)),
    }
}

fn store_failed(e: behalf_log::LogError) -> Response {
    unavailable(&ServiceError::Log(e))
}

/// `POST /v1/webhooks`' body (the OpenAPI document's schema is derived from it).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSubscription {
    /// `<cloud>.<workload>` or `partner.<partner id>`.
    queue: String,
    /// `https://` to a public address.
    #[schemars(url, length(max = 2048))]
    url: String,
    #[serde(default)]
    #[schemars(length(max = 500))]
    description: String,
}

pub(crate) async fn create<L: EventLog>(State(app): State<Arc<App<L>>>, headers: HeaderMap, body: Bytes) -> Response {
    let who = early!(authenticate(&app, &headers));
    let s = early!(side(&app));
    let new: NewSubscription = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return rejected(
                &Rejection::without_rule(Code::RequestMalformed, format!("not a subscription: {e}")),
                false,
            )
        }
    };
    // Who may consume the queue first: nothing is kept for a refused subscription.
    if !behalf_domain::policy::may_consume_queue(&who, &new.queue) {
        let why = format!("this principal may not consume {}", new.queue);
        return rejected(&Rejection::without_rule(Code::Forbidden, why), false);
    }
    let allow_insecure = app.webhooks.as_ref().is_some_and(|(_, settings)| settings.allow_insecure);
    let url = match check_url(&new.url, allow_insecure).await {
        Ok(u) => u,
        Err(r) => return rejected(&r, false),
    };
    let id = new_id();
    let (secret, key) = new_secret();
    let now = app.clock.now().millis();
    let secrets = Secrets { url: new.url.clone(), keys: vec![SigningKey { key, created_ms: now, retire_ms: None }] };
    if let Err(e) = s.store.put_secrets(&id, &secrets) {
        return store_failed(e);
    }
    let command = Command::WebhookSubscribe(Subscribe {
        webhook_id: id.clone(),
        queue: new.queue.clone(),
        url_redacted: redact(&url),
        description: new.description.clone(),
    });
    let position = match send(s.commands, who, format!("webhook-subscribe-{id}"), command).await {
        Ok(p) => p,
        Err(r) => {
            let _ = s.store.delete(&id);
            return r;
        }
    };
    // Answer once this process' directory holds it, so that the caller's next call
    // (read, rotate, delete) finds it; it is durable either way.
    let _ = app.gdap.wait_for(position, std::time::Duration::from_secs(2)).await;
    let created =
        Created { id, queue: new.queue, url: new.url, description: new.description, secret, enabled: true, position };
    json_response(StatusCode::CREATED, &created, false)
}

pub(crate) async fn list<L: EventLog>(State(app): State<Arc<App<L>>>, headers: HeaderMap) -> Response {
    let who = early!(authenticate(&app, &headers));
    let s = early!(side(&app));
    let hooks: Vec<Webhook> = app.gdap.view().directory.webhooks.visible_to(&who).cloned().collect();
    let mut out = Vec::new();
    for w in &hooks {
        let url = s.store.secrets(&w.webhook_id).ok().flatten().map(|x| x.url);
        out.push(shown(w, url.as_deref()));
    }
    json_response(StatusCode::OK, &WebhookList { webhooks: out }, false)
}

pub(crate) async fn read<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = early!(authenticate(&app, &headers));
    let s = early!(side(&app));
    let w = early!(visible(&app, &who, &id));
    let url = s.store.secrets(&id).ok().flatten().map(|x| x.url);
    json_response(StatusCode::OK, &shown(&w, url.as_deref()), false)
}

pub(crate) async fn remove<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = early!(authenticate(&app, &headers));
    let s = early!(side(&app));
    early!(visible(&app, &who, &id));
    let command = Command::WebhookDelete(WebhookRef { webhook_id: id.clone() });
    let position = match send(s.commands, who, format!("webhook-delete-{id}"), command).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = s.store.delete(&id) {
        return store_failed(e);
    }
    // As `create`: answer once this process' directory no longer holds it, so that the
    // caller's next read finds it gone (CI saw a read right after answer 200).
    let _ = app.gdap.wait_for(position, std::time::Duration::from_secs(2)).await;
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) async fn rotate<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = early!(authenticate(&app, &headers));
    let s = early!(side(&app));
    early!(visible(&app, &who, &id));
    let grace = app.webhooks.as_ref().map_or(0, |(_, settings)| settings.rotation_grace.as_millis());
    let now = app.clock.now().millis();
    let Ok(Some(mut secrets)) = s.store.secrets(&id) else { return *not_found(&id) };
    let (secret, key) = new_secret();
    let retire = now.saturating_add(i64::try_from(grace).unwrap_or(i64::MAX));
    for k in &mut secrets.keys {
        k.retire_ms = Some(k.retire_ms.map_or(retire, |r| r.min(retire)));
    }
    secrets.keys.retain(|k| k.retire_ms.is_none_or(|r| r > now));
    secrets.keys.push(SigningKey { key, created_ms: now, retire_ms: None });
    if let Err(e) = s.store.put_secrets(&id, &secrets) {
        return store_failed(e);
    }
    let command = Command::WebhookRotate(WebhookRef { webhook_id: id.clone() });
    let position = match send(s.commands, who, format!("webhook-rotate-{id}-{now}"), command).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // As `create`: the caller's next read shows the rotation.
    let _ = app.gdap.wait_for(position, std::time::Duration::from_secs(2)).await;
    json_response(StatusCode::OK, &Rotated { id, secret }, false)
}

pub(crate) async fn deliveries<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    p: Params,
) -> Response {
    let who = early!(authenticate(&app, &headers));
    let s = early!(side(&app));
    early!(visible(&app, &who, &id));
    let limit = early!(limit_param(&p, crate::reads::DELIVERY_PAGE.0, crate::reads::DELIVERY_PAGE.1));
    let attempts = match s.store.attempts(&id, limit) {
        Ok(a) => a,
        Err(e) => return store_failed(e),
    };
    let waiting = app.queues.as_ref().map_or(Ok(Vec::new()), |q| q.peek(&delivery_queue(&id), 10_000));
    let waiting = match waiting {
        Ok(w) => w,
        Err(e) => return store_failed(e),
    };
    let failed = waiting.iter().filter(|m| m.leased_until == i64::MAX).count();
    let answer = Deliveries { id, waiting: waiting.len(), failed, deliveries: attempts };
    json_response(StatusCode::OK, &answer, false)
}

pub(crate) async fn replay<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = early!(authenticate(&app, &headers));
    early!(side(&app));
    early!(visible(&app, &who, &id));
    let Some(queues) = &app.queues else { return *not_served("queues") };
    let queue = delivery_queue(&id);
    let waiting = match queues.peek(&queue, 10_000) {
        Ok(w) => w,
        Err(e) => return store_failed(e),
    };
    let mut replayed = 0;
    for m in waiting.iter().filter(|m| m.leased_until == i64::MAX) {
        match queues.hold(&queue, &m.id, 0) {
            Ok(true) => replayed += 1,
            Ok(false) => {}
            Err(e) => return store_failed(e),
        }
    }
    json_response(StatusCode::OK, &Replayed { id, replayed }, false)
}
