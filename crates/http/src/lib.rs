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
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use behalf_domain::{Code, Principal, Rejection};
use behalf_log::tokens::TokenStore;
use behalf_log::EventLog;
use behalf_service::clock::Clock;
use behalf_service::commands::{CommandService, Outcome};
use behalf_service::request::{self, Encoding};
use behalf_service::tokens::{TokenSpec, Tokens};
use behalf_service::ServiceError;
use serde::Serialize;
use tokio::sync::Semaphore;

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

/// Everything a handler needs.
pub struct App<L: EventLog, T: TokenStore> {
    pub service: Arc<CommandService<L>>,
    pub tokens: Arc<Tokens<T>>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    in_flight: Arc<Semaphore>,
    metrics: Metrics,
}

impl<L: EventLog, T: TokenStore> App<L, T> {
    pub fn new(
        service: Arc<CommandService<L>>,
        tokens: Arc<Tokens<T>>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Arc<Self> {
        Arc::new(App {
            service,
            tokens,
            clock,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            metrics: Metrics::default(),
        })
    }
}

/// The router.
pub fn router<L: EventLog, T: TokenStore>(app: Arc<App<L, T>>) -> Router {
    Router::new()
        .route("/v1/commands", post(post_command::<L, T>))
        .route("/v1/tokens", post(issue_token::<L, T>).get(list_tokens::<L, T>))
        .route("/v1/tokens/{token_id}", delete(revoke_token::<L, T>))
        .route("/healthz", get(|| async { json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}), false) }))
        .route("/readyz", get(readyz::<L, T>))
        .route("/metrics", get(metrics::<L, T>))
        .fallback(|| async {
            rejected(&Rejection::without_rule(Code::RequestMalformed, "no such endpoint; see docs/API.md"), false)
                .map_status(StatusCode::NOT_FOUND)
        })
        .with_state(app)
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

trait MapStatus {
    fn map_status(self, status: StatusCode) -> Response;
}
impl MapStatus for Response {
    fn map_status(mut self, status: StatusCode) -> Response {
        *self.status_mut() = status;
        self
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
    let status = StatusCode::from_u16(r.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
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

fn authenticate<L: EventLog, T: TokenStore>(app: &App<L, T>, headers: &HeaderMap) -> Result<Principal, Early> {
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
        rejected(
            &Rejection::without_rule(Code::RequestTooLarge, format!("the body is larger than {limit} bytes")),
            false,
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

async fn post_command<L: EventLog, T: TokenStore>(
    State(app): State<Arc<App<L, T>>>,
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
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
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

fn admin_only<L: EventLog, T: TokenStore>(app: &App<L, T>, headers: &HeaderMap) -> Result<(), Early> {
    if authenticate(app, headers)? == Principal::Admin {
        Ok(())
    } else {
        Err(Box::new(rejected(&Rejection::without_rule(Code::Forbidden, "only an admin token manages tokens"), false)))
    }
}

async fn issue_token<L: EventLog, T: TokenStore>(
    State(app): State<Arc<App<L, T>>>,
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

async fn list_tokens<L: EventLog, T: TokenStore>(State(app): State<Arc<App<L, T>>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_only(&app, &headers) {
        return *r;
    }
    match app.tokens.list() {
        Ok(list) => json_response(StatusCode::OK, &serde_json::json!({ "tokens": list }), false),
        Err(e) => unavailable(&e),
    }
}

async fn revoke_token<L: EventLog, T: TokenStore>(
    State(app): State<Arc<App<L, T>>>,
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

async fn readyz<L: EventLog, T: TokenStore>(State(app): State<Arc<App<L, T>>>) -> Response {
    if app.service.ready().await {
        json_response(StatusCode::OK, &serde_json::json!({"status": "ready"}), false)
    } else {
        rejected(&Rejection::without_rule(Code::Unavailable, "catching up with the log"), false)
    }
}

async fn metrics<L: EventLog, T: TokenStore>(State(app): State<Arc<App<L, T>>>) -> Response {
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
    let _ = writeln!(out, "# HELP behalf_log_head The last durable log position.");
    let _ = writeln!(out, "# TYPE behalf_log_head gauge");
    let _ = writeln!(out, "behalf_log_head {}", app.service.log().head().await.unwrap_or(0));
    let _ = writeln!(out, "# HELP behalf_gdap_position The log position the GDAP projection has applied.");
    let _ = writeln!(out, "# TYPE behalf_gdap_position gauge");
    let _ = writeln!(out, "behalf_gdap_position {}", app.service.gdap().position());
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
