//! # behalf-http
//!
//! The HTTP API of `API.md` over the command service: `POST /v1/commands` (JSON or
//! MessagePack), `/v1/tokens`, `/healthz`, `/readyz`, `/metrics`. The only crate that
//! names axum. User errors are answered (a rejection with its code, HTTP status and
//! rule), never logged as errors; internal errors are logged once, here, at the edge.
//!
//! `serve(listener, app, shutdown)` takes the shutdown signal as a value, so tests and
//! the binary pass their own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
pub use axum::Router;
use behalf_domain::{Code, Principal, Rejection};
use behalf_log::queues::QueueStore;
use behalf_log::tokens::TokenStore;
use behalf_log::views::ViewStore;
use behalf_log::EventLog;
use behalf_service::clock::Clock;
use behalf_service::commands::{CommandService, Outcome};
use behalf_service::queries::{self, ListFilter, Queries, QueryError};
use behalf_service::request::{self, Encoding};
use behalf_service::tokens::{TokenSpec, Tokens};
use behalf_service::ServiceError;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

/// Request limits (API.md: 256 KiB bodies by default).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Commands decided at once; beyond this the answer is `429 overloaded`.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 256 * 1024, max_in_flight: 4096 }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Metrics {
    accepted: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    unavailable: AtomicU64,
}

/// The read side a server answers queries from: the views and how far they are.
pub struct ReadSide<S: ViewStore> {
    pub views: Arc<S>,
    /// The views' checkpoint, as the projection runner advances it.
    pub position: watch::Receiver<u64>,
}

/// Everything a handler needs. A role serves only its part: commands (unless
/// [`App::without_commands`]), queries (with [`App::with_read`]), queues (with
/// [`App::with_queues`]); tokens and health always.
pub struct App<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore> {
    pub service: Arc<CommandService<L>>,
    pub tokens: Arc<Tokens<T>>,
    pub read: Option<ReadSide<S>>,
    pub queues: Option<Arc<Q>>,
    pub commands: bool,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    in_flight: Arc<Semaphore>,
    metrics: Metrics,
}

impl<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore> App<L, T, S, Q> {
    /// An app that takes commands and serves tokens and health.
    pub fn new(service: Arc<CommandService<L>>, tokens: Arc<Tokens<T>>, clock: Arc<dyn Clock>, limits: Limits) -> Self {
        App {
            service,
            tokens,
            read: None,
            queues: None,
            commands: true,
            clock,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            metrics: Metrics::default(),
        }
    }

    /// Also answers queries from these views.
    pub fn with_read(mut self, read: ReadSide<S>) -> Self {
        self.read = Some(read);
        self
    }

    /// Also leases and acks queue messages.
    pub fn with_queues(mut self, queues: Arc<Q>) -> Self {
        self.queues = Some(queues);
        self
    }

    /// Takes no commands (a projector).
    pub fn without_commands(mut self) -> Self {
        self.commands = false;
        self
    }
}

/// The router.
pub fn router<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(app: Arc<App<L, T, S, Q>>) -> Router {
    let mut r = Router::new()
        .route("/v1/tokens", post(issue_token::<L, T, S, Q>).get(list_tokens::<L, T, S, Q>))
        .route("/v1/tokens/{token_id}", delete(revoke_token::<L, T, S, Q>))
        .route("/healthz", get(|| async { json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}), false) }))
        .route("/readyz", get(readyz::<L, T, S, Q>))
        .route("/metrics", get(metrics::<L, T, S, Q>));
    if app.commands {
        r = r.route("/v1/commands", post(post_command::<L, T, S, Q>));
    }
    if app.read.is_some() {
        r = r
            .route("/v1/customers/{customer_id}/tickets", get(customer_tickets::<L, T, S, Q>))
            .route("/v1/customers/{customer_id}/service-health", get(service_health::<L, T, S, Q>))
            .route("/v1/tickets/{ticket_id}", get(ticket::<L, T, S, Q>))
            .route("/v1/tickets/{ticket_id}/history", get(history::<L, T, S, Q>))
            .route("/v1/partners/{partner_id}/tickets", get(partner_tickets::<L, T, S, Q>))
            .route("/v1/partners/{partner_id}/access", get(access::<L, T, S, Q>))
            .route("/v1/audit/rejections", get(rejections::<L, T, S, Q>))
            .route("/v1/events", get(events::<L, T, S, Q>));
    }
    if app.queues.is_some() {
        r = r
            .route("/v1/queues/{queue}/messages", get(lease::<L, T, S, Q>))
            .route("/v1/queues/{queue}/messages/{id}/ack", post(ack::<L, T, S, Q>));
    }
    r.fallback(|| async {
        rejected(&Rejection::without_rule(Code::RequestMalformed, "no such endpoint here; see docs/API.md"), false)
            .map_status(StatusCode::NOT_FOUND)
    })
    .method_not_allowed_fallback(|| async {
        rejected(&Rejection::without_rule(Code::MethodNotAllowed, "this endpoint does not take that method"), false)
    })
    .with_state(app)
}

/// Answers one request in process, without a socket: the NATS request/reply roles
/// hand their requests to the same router, so both transports answer alike.
pub async fn dispatch(
    router: &Router,
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> (u16, Option<String>, Bytes) {
    use tower::ServiceExt as _;
    let mut req = axum::http::Request::builder().method(method).uri(path_and_query);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(Body::from(body)) {
        Ok(r) => r,
        Err(e) => {
            let r = Rejection::without_rule(Code::RequestMalformed, format!("not a valid request: {e}"));
            return (400, Some("application/json".into()), Bytes::from(serde_json::to_vec(&r).unwrap_or_default()));
        }
    };
    let response = match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
    (status, content_type, body)
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, a connection reset before accept: keep serving.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        // Headers (and an idle keep-alive connection's next request) must arrive within
        // HEADER_TIMEOUT, or the connection is closed.
        http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    // Stop accepting; let requests in flight finish, for SHUTDOWN_DEADLINE at most.
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_DEADLINE, graceful.shutdown()).await.is_err() {
        tracing::warn!(deadline = ?SHUTDOWN_DEADLINE, "closing the connections still open at the shutdown deadline");
    }
    Ok(())
}

/// How long a client may take to send a request's headers, and how long an idle
/// connection is kept for its next request.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a client may take to send a request's body once its headers are in.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long shutdown waits for requests in flight before closing what is left.
pub const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

trait MapStatus {
    fn map_status(self, status: StatusCode) -> Response;
}
impl MapStatus for Response {
    fn map_status(mut self, status: StatusCode) -> Response {
        *self.status_mut() = status;
        self
    }
}

/// The HTTP status of each rejection code, as `docs/API.md` tables them (a test reads
/// that table and holds this to it).
pub fn status_of(code: Code) -> StatusCode {
    match code {
        Code::RequestMalformed => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Forbidden
        | Code::NotAdminAgent
        | Code::NoRelationship
        | Code::RelationshipInactive
        | Code::RelationshipExpired
        | Code::NoAccess
        | Code::MissingPermission
        | Code::RbacMissing
        | Code::ResellerCannotFile
        | Code::NotSubscriptionProvider
        | Code::CloudMismatch => StatusCode::FORBIDDEN,
        Code::TicketNotFound => StatusCode::NOT_FOUND,
        Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        Code::TicketClosed | Code::InvalidTransition | Code::ConcurrencyConflict => StatusCode::CONFLICT,
        Code::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::ValidationInvalid
        | Code::BadSeverity
        | Code::UnsupportedWorkload
        | Code::SubscriptionInvalid
        | Code::MarketplaceProduct
        | Code::ContactMustBePartner
        | Code::OwnTenantNeedsSupportPlan
        | Code::SupportPlanInvalid
        | Code::SupportPlanMustBeCsp
        | Code::IncidentNotFound
        | Code::IdempotencyKeyReused
        | Code::InvalidRelationship
        | Code::RoleNotInRelationship => StatusCode::UNPROCESSABLE_ENTITY,
        Code::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    /// Every code is in API.md's status table once, on the row of the status it is
    /// answered with.
    #[test]
    fn statuses_are_the_api_tables() {
        let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md")).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        for line in api.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let Some(status) = cells.get(1).and_then(|c| c.parse::<u16>().ok()) else { continue };
            for code in cells.get(2).unwrap_or(&"").split('`').skip(1).step_by(2) {
                if let Some(c) = Code::parse(code) {
                    assert!(seen.insert(c, status).is_none(), "{code} is on two rows");
                }
            }
        }
        for c in Code::ALL {
            assert_eq!(seen.get(c).copied(), Some(status_of(*c).as_u16()), "{c}: API.md and status_of disagree");
        }
    }
}

fn json_response<B: Serialize>(status: StatusCode, body: &B, msgpack: bool) -> Response {
    let (bytes, ctype) = if msgpack {
        (rmp_serde::to_vec_named(body).unwrap_or_default(), "application/msgpack")
    } else {
        (serde_json::to_vec(body).unwrap_or_default(), "application/json")
    };
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

#[derive(Serialize)]
struct RejectedBody<'a> {
    outcome: &'static str,
    code: Code,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<behalf_domain::Rule>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    details: &'a BTreeMap<String, behalf_domain::rejection::Detail>,
}

/// A rejection with its HTTP status (and `Retry-After` where the caller should retry).
fn rejected(r: &Rejection, msgpack: bool) -> Response {
    let status = status_of(r.code);
    let body =
        RejectedBody { outcome: "rejected", code: r.code, message: &r.message, rule: r.rule, details: &r.details };
    let mut resp = json_response(status, &body, msgpack);
    if matches!(r.code, Code::Overloaded | Code::Unavailable) {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if r.code == Code::Unauthenticated {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

fn unavailable(e: &ServiceError) -> Response {
    // Logged once, here at the edge. Nothing was appended for this request.
    tracing::warn!(error = %e, "answering unavailable");
    rejected(&Rejection::without_rule(Code::Unavailable, "the service cannot decide right now; retry"), false)
}

fn wants_msgpack(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/msgpack"))
}

fn is_msgpack(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/msgpack") || v.starts_with("application/x-msgpack"))
}

/// The principal of the request's bearer token.
/// A response that ends a handler early (boxed: a `Response` is large).
type Early = Box<Response>;

fn authenticate<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    app: &App<L, T, S, Q>,
    headers: &HeaderMap,
) -> Result<Principal, Early> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let unauth =
        || rejected(&Rejection::without_rule(Code::Unauthenticated, "missing, unknown or revoked token"), false);
    let Some(token) = token else { return Err(Box::new(unauth())) };
    match app.tokens.authenticate(token) {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(r)) => Err(Box::new(rejected(&r, false))),
        Err(e) => Err(Box::new(unavailable(&e))),
    }
}

/// Reads the body, refusing more than the limit with `413 request.too_large`.
async fn read_body(body: Body, limit: usize, headers: &HeaderMap) -> Result<Bytes, Response> {
    let too_large = || {
        let mut r = rejected(
            &Rejection::without_rule(Code::RequestTooLarge, format!("the body is larger than {limit} bytes")),
            false,
        );
        // The rest of the body is not read, so the connection cannot carry another
        // request: say so, or a client may reuse it and find it closed.
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(read) => read.map_err(|_| too_large()),
        Err(_) => {
            let msg = format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs());
            let mut r = rejected(&Rejection::without_rule(Code::RequestTimeout, msg), false);
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

async fn post_command<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let msgpack_out = wants_msgpack(&headers);
    let principal = match authenticate(&app, &headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let bytes = match read_body(body, app.limits.max_body_bytes, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let encoding = if is_msgpack(&headers) { Encoding::MsgPack } else { Encoding::Json };
    // A key that cannot be read is refused, not dropped: dropped, the server would make
    // its own id and a retry would append the command a second time.
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(_)) => {
            let r = Rejection::without_rule(Code::RequestMalformed, "the Idempotency-Key header must be visible ASCII")
                .with("field", "Idempotency-Key");
            return rejected(&r, msgpack_out);
        }
    };
    let req = match request::parse(&bytes, encoding, key) {
        Ok(r) => r,
        Err(r) => return rejected(&r, msgpack_out),
    };
    let Ok(_permit) = Arc::clone(&app.in_flight).try_acquire_owned() else {
        return rejected(&Rejection::without_rule(Code::Overloaded, "too many commands in flight; retry"), msgpack_out);
    };
    match app.service.execute(principal, req).await {
        Ok(Outcome::Accepted(a)) => {
            app.metrics.accepted.fetch_add(1, Ordering::Relaxed);
            let status = if a.created() { StatusCode::CREATED } else { StatusCode::OK };
            json_response(status, &a, msgpack_out)
        }
        Ok(Outcome::Rejected(r)) => {
            *app.metrics.rejected.lock().unwrap_or_else(|p| p.into_inner()).entry(r.code.as_str()).or_default() += 1;
            rejected(&r, msgpack_out)
        }
        Err(e) => {
            app.metrics.unavailable.fetch_add(1, Ordering::Relaxed);
            unavailable(&e)
        }
    }
}

fn admin_only<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    app: &App<L, T, S, Q>,
    headers: &HeaderMap,
) -> Result<(), Early> {
    if authenticate(app, headers)? == Principal::Admin {
        Ok(())
    } else {
        Err(Box::new(rejected(&Rejection::without_rule(Code::Forbidden, "only an admin token manages tokens"), false)))
    }
}

async fn issue_token<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = admin_only(&app, &headers) {
        return *r;
    }
    let bytes = match read_body(body, app.limits.max_body_bytes, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let spec: TokenSpec = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => return rejected(&Rejection::without_rule(Code::RequestMalformed, e.to_string()), false),
    };
    let principal = match spec.principal() {
        Ok(p) => p,
        Err(r) => return rejected(&r, false),
    };
    match app.tokens.issue(principal, spec.label.as_deref().unwrap_or(""), app.clock.as_ref()) {
        Ok(issued) => json_response(StatusCode::CREATED, &issued, false),
        Err(e) => unavailable(&e),
    }
}

async fn list_tokens<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin_only(&app, &headers) {
        return *r;
    }
    match app.tokens.list() {
        Ok(list) => json_response(StatusCode::OK, &serde_json::json!({ "tokens": list }), false),
        Err(e) => unavailable(&e),
    }
}

async fn revoke_token<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path(token_id): Path<String>,
) -> Response {
    if let Err(r) = admin_only(&app, &headers) {
        return *r;
    }
    match app.tokens.revoke(&token_id) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => rejected(&Rejection::without_rule(Code::RequestMalformed, format!("no token {token_id}")), false)
            .map_status(StatusCode::NOT_FOUND),
        Err(e) => unavailable(&e),
    }
}

async fn readyz<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
) -> Response {
    if app.service.ready().await {
        json_response(StatusCode::OK, &serde_json::json!({"status": "ready"}), false)
    } else {
        rejected(&Rejection::without_rule(Code::Unavailable, "catching up with the log"), false)
    }
}

async fn metrics<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP behalf_commands_total Commands answered, by outcome and rejection code.");
    let _ = writeln!(out, "# TYPE behalf_commands_total counter");
    let _ =
        writeln!(out, "behalf_commands_total{{outcome=\"accepted\"}} {}", app.metrics.accepted.load(Ordering::Relaxed));
    for (code, n) in app.metrics.rejected.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(out, "behalf_commands_total{{outcome=\"rejected\",code=\"{code}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "behalf_commands_total{{outcome=\"unavailable\"}} {}",
        app.metrics.unavailable.load(Ordering::Relaxed)
    );
    let head = app.service.log().head().await.unwrap_or(0);
    let mut gauges = vec![
        ("behalf_log_head", "The last durable log position.", head),
        ("behalf_gdap_position", "The log position the GDAP projection has applied.", app.service.gdap().position()),
    ];
    if let Some(read) = &app.read {
        let views = *read.position.borrow();
        gauges.push(("behalf_views_position", "The log position the views have applied.", views));
        gauges.push(("behalf_views_lag", "Commits the views are behind the log.", head.saturating_sub(views)));
    }
    if let Some(queues) = &app.queues {
        let queued = queues.checkpoint().unwrap_or(0);
        gauges.push(("behalf_notifier_position", "The log position the notifier has forwarded.", queued));
        gauges.push(("behalf_notifier_lag", "Commits the notifier is behind the log.", head.saturating_sub(queued)));
    }
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    for (name, help, value) in app.service.log().counters() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

// ---------------------------------------------------------------------------------
// Queries (read models; eventually consistent, with read-your-writes by min_position).

type Params = Query<std::collections::HashMap<String, String>>;

fn bad_param(name: &str, why: &str) -> Response {
    rejected(
        &Rejection::without_rule(Code::ValidationInvalid, format!("query parameter {name}: {why}")).with("field", name),
        false,
    )
}

/// `limit`: `default` when absent, refused (422) outside 1..=`max` rather than clamped.
fn limit_param(p: &Params, default: usize, max: usize) -> Result<usize, Early> {
    match param::<usize>(p, "limit")? {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(Box::new(bad_param("limit", &format!("must be from 1 to {max}")))),
    }
}

fn param<T: std::str::FromStr>(p: &Params, name: &str) -> Result<Option<T>, Early> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| Box::new(bad_param(name, "not a valid value"))),
    }
}

/// Authenticates, then waits (up to `wait_ms`, default 2000) until the views have
/// applied `min_position`.
async fn reader<'a, L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    app: &'a App<L, T, S, Q>,
    headers: &HeaderMap,
    p: &Params,
) -> Result<(Principal, &'a ReadSide<S>), Early> {
    let who = authenticate(app, headers)?;
    let read = read_side(app)?;
    if let Some(min) = param::<u64>(p, "min_position")? {
        let wait = param::<u64>(p, "wait_ms")?.unwrap_or(2000).min(30_000);
        // Both the views and the GDAP projection (which scopes every answer, R24) must
        // have applied the position, or a grant ended there could still show tickets.
        // One deadline for both waits: the answer comes within `wait_ms`, not twice it.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
        let mut rx = read.position.clone();
        // (The watch guard is dropped here: it must not be held across the next wait.)
        let views = matches!(tokio::time::timeout_at(deadline, rx.wait_for(|pos| *pos >= min)).await, Ok(Ok(_)));
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let gdap = app.service.gdap().wait_for(min, left).await;
        if !views || gdap.is_err() {
            let msg = format!("the views have not reached position {min} within {wait} ms; retry");
            return Err(Box::new(rejected(&Rejection::without_rule(Code::Unavailable, msg), false)));
        }
    }
    Ok((who, read))
}

fn answer(a: Result<serde_json::Value, QueryError>) -> Response {
    match a {
        Ok(v) => json_response(StatusCode::OK, &v, false),
        Err(QueryError::Rejected(r)) => rejected(&r, false),
        Err(QueryError::Internal(e)) => unavailable(&ServiceError::Log(e)),
    }
}

/// The views, where this role has them (the query routes are mounted only then).
fn read_side<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    app: &App<L, T, S, Q>,
) -> Result<&ReadSide<S>, Early> {
    app.read.as_ref().ok_or_else(|| not_served("queries"))
}

/// `404`: this role does not serve that part of the API.
fn not_served(what: &str) -> Early {
    let r = Rejection::without_rule(Code::RequestMalformed, format!("this role serves no {what}"));
    Box::new(rejected(&r, false).map_status(StatusCode::NOT_FOUND))
}

/// The queues, where this role has them (the queue routes are mounted only then).
fn queue_side<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    app: &App<L, T, S, Q>,
) -> Result<&Arc<Q>, Early> {
    app.queues.as_ref().ok_or_else(|| not_served("queues"))
}

fn queries<'a, L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    app: &'a App<L, T, S, Q>,
    read: &'a ReadSide<S>,
) -> Queries<'a, S, L> {
    Queries {
        views: read.views.as_ref(),
        log: app.service.log(),
        gdap: app.service.gdap().as_ref(),
        now: app.clock.now(),
    }
}

fn filter(p: &Params) -> Result<(ListFilter, usize), Early> {
    let vocab = |name: &str| p.get(name).filter(|v| !v.is_empty()).map(String::as_str);
    let parse = |name: &str| -> Result<Option<&str>, Early> { Ok(vocab(name)) };
    let f = ListFilter {
        status: parse("status")?
            .map(|v| TicketStatus::parse(v).ok_or_else(|| Box::new(bad_param("status", "not a ticket status"))))
            .transpose()?,
        workload: parse("workload")?
            .map(|v| Workload::parse(v).ok_or_else(|| Box::new(bad_param("workload", "not a workload"))))
            .transpose()?,
        severity: parse("severity")?
            .map(|v| {
                Severity::parse_raw(&RawValue::text(v)).ok_or_else(|| Box::new(bad_param("severity", "not a severity")))
            })
            .transpose()?,
        customer_id: parse("customer_id")?.map(CustomerId::new),
    };
    let limit = limit_param(p, 50, 500)?;
    Ok((f, limit))
}

use behalf_domain::{CustomerId, PartnerId, RawValue, Severity, TicketId, TicketStatus, UserId, Workload};

macro_rules! early {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}

async fn customer_tickets<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path(customer): Path<String>,
    p: Params,
) -> Response {
    let (who, read) = early!(reader(&app, &headers, &p).await);
    let (f, limit) = early!(filter(&p));
    // `after` is a ticket id (the last of the previous page).
    let after = p.get("after").map(String::as_str).filter(|a| !a.is_empty());
    if let Some(a) = after {
        if let Err(why) = TicketId::new(a).check() {
            return bad_param("after", why);
        }
    }
    answer(queries(&app, read).customer_tickets(&who, &CustomerId::new(customer), &f, limit, after))
}

async fn ticket<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    p: Params,
) -> Response {
    let (who, read) = early!(reader(&app, &headers, &p).await);
    answer(queries(&app, read).ticket(&who, &TicketId::new(id)).await)
}

async fn history<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    p: Params,
) -> Response {
    let (who, read) = early!(reader(&app, &headers, &p).await);
    answer(queries(&app, read).history(&who, &TicketId::new(id)).await)
}

async fn partner_tickets<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path(partner): Path<String>,
    p: Params,
) -> Response {
    let (who, read) = early!(reader(&app, &headers, &p).await);
    let (f, limit) = early!(filter(&p));
    answer(queries(&app, read).partner_tickets(&who, &PartnerId::new(partner), &f, limit))
}

async fn service_health<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path(customer): Path<String>,
    p: Params,
) -> Response {
    let (who, read) = early!(reader(&app, &headers, &p).await);
    answer(queries(&app, read).service_health(&who, &CustomerId::new(customer)))
}

async fn access<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path(partner): Path<String>,
    p: Params,
) -> Response {
    let (who, read) = early!(reader(&app, &headers, &p).await);
    let (Some(user), Some(customer)) = (p.get("user_id"), p.get("customer_id")) else {
        return bad_param("user_id", "user_id and customer_id are required");
    };
    answer(queries(&app, read).access(
        &who,
        &PartnerId::new(partner),
        &UserId::new(user.as_str()),
        &CustomerId::new(customer.as_str()),
    ))
}

async fn rejections<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let (who, read) = early!(reader(&app, &headers, &p).await);
    let after = early!(param::<u64>(&p, "after")).unwrap_or(0);
    let limit = early!(limit_param(&p, 100, 1000));
    answer(queries(&app, read).rejections(&who, after, limit))
}

async fn events<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let who = early!(authenticate(&app, &headers));
    let after = early!(param::<u64>(&p, "after")).unwrap_or(0);
    let limit = early!(limit_param(&p, 100, 1000));
    answer(queries::events(app.service.log(), &who, after, limit).await)
}

// ---------------------------------------------------------------------------------
// Queues (either engine): lease, ack; redelivered once a lease runs out. Who may
// consume a queue is the domain's `policy::may_consume_queue`.

async fn lease<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path(queue): Path<String>,
    p: Params,
) -> Response {
    let who = early!(authenticate(&app, &headers));
    if !behalf_domain::policy::may_consume_queue(&who, &queue) {
        return rejected(
            &Rejection::without_rule(Code::Forbidden, format!("this principal may not consume {queue}")),
            false,
        );
    }
    let limit = early!(limit_param(&p, 10, 1000));
    let lease_ms = match early!(param::<i64>(&p, "lease_ms")) {
        None => 30_000,
        Some(ms) if (1_000..=3_600_000).contains(&ms) => ms,
        Some(_) => return bad_param("lease_ms", "must be from 1000 to 3600000"),
    };
    let queues = early!(queue_side(&app));
    match queues.lease(&queue, limit, app.clock.now().millis(), lease_ms) {
        Ok(messages) => {
            json_response(StatusCode::OK, &serde_json::json!({ "queue": queue, "messages": messages }), false)
        }
        Err(e) => unavailable(&ServiceError::Log(e)),
    }
}

async fn ack<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    State(app): State<Arc<App<L, T, S, Q>>>,
    headers: HeaderMap,
    Path((queue, id)): Path<(String, String)>,
) -> Response {
    let who = early!(authenticate(&app, &headers));
    if !behalf_domain::policy::may_consume_queue(&who, &queue) {
        return rejected(
            &Rejection::without_rule(Code::Forbidden, format!("this principal may not consume {queue}")),
            false,
        );
    }
    let queues = early!(queue_side(&app));
    match queues.ack(&queue, &id) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => {
            rejected(&Rejection::without_rule(Code::RequestMalformed, format!("no message {id} in {queue}")), false)
                .map_status(StatusCode::NOT_FOUND)
        }
        Err(e) => unavailable(&ServiceError::Log(e)),
    }
}
