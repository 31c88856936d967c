//! # behalf-http
//!
//! The HTTP API of `API.md`: `POST /v1/commands` (JSON or MessagePack) over the command
//! service, the queries (`/v1/customers/…`, `/v1/tickets/…`, `/v1/events`, …) over the
//! views, the queues (`/v1/queues/…`), `/v1/tokens`, `/v1/openapi.json`, the operator
//! console (`/console/`), `/healthz`, `/readyz` and `/metrics` — each role serves the
//! part it has (see [`App`]). The same router answers the NATS roles' requests
//! ([`dispatch`]). The only crate that names axum. User errors are answered (a rejection with its code, HTTP status and
//! rule), never logged as errors; internal errors are logged once, here, at the edge.
//!
//! `serve(listener, app, shutdown)` takes the shutdown signal as a value, so tests and
//! the binary pass their own.

use crate::respond::rejected;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
pub use axum::Router;
use behalf_domain::{Code, Principal, Rejection};
use behalf_log::queues::QueueStore;
use behalf_log::views::ViewStore;
use behalf_log::EventLog;
use behalf_service::clock::Clock;
use behalf_service::commands::CommandService;
use behalf_service::gdap::GdapProjection;
use behalf_service::queries::{ListFilter, Queries};
use behalf_service::request::Encoding;
use behalf_service::tokens::{TokenSpec, Tokens};
use behalf_service::{Refused, ServiceError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};

mod app;
mod auth;
pub mod baseline;
mod commands;
mod health;
pub mod metrics;
pub mod openapi;
mod queues;
mod reads;
mod respond;
mod routes;
mod seal;
mod tls;
mod tokens;
mod webhooks;

pub use app::{App, Limits, ReadSide};
use auth::{admin_only, authenticate};
use commands::{post_command, read_body};
use health::readyz;
use metrics::metrics;
use queues::{ack, lease, queue_depth};
use reads::{
    access, audit_verify, customer_tickets, events, history, limit_param, partner_customers, partner_rejections,
    partner_tickets, ranged_param, rejections, service_health, ticket, tickets, whoami, Params,
};
pub use respond::status_of;
use respond::MapStatus;
pub use routes::{query_path, Part, QueryRoute, Route};
pub use tls::{Tls, TlsFiles};
use tokens::{issue_token, list_tokens, revoke_token};

/// Every query parameter of a request is one its route reads (the names the OpenAPI
/// document lists for it, [`openapi::query_names`]), given once and not empty: a
/// misspelt or repeated parameter is refused (422), never silently ignored.
async fn known_query(names: Arc<[String]>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.uri().query().is_some() {
        let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(req.uri()) else {
            return reads::bad_param("(query)", "not a valid query string");
        };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in &pairs {
            if !names.iter().any(|n| n == name) {
                return reads::bad_param(name, "is not a parameter of this endpoint");
            }
            if seen.contains(&name.as_str()) {
                return reads::bad_param(name, "is given more than once");
            }
            if value.is_empty() {
                return reads::bad_param(name, "is empty");
            }
            seen.push(name);
        }
    }
    next.run(req).await
}

/// The router: the routes of [`Route::all`] whose part this app serves (routes on one
/// path, different methods, are merged).
pub fn router<L: EventLog>(app: Arc<App<L>>) -> Router {
    let serves = |part: Part| match part {
        Part::Always => true,
        Part::Commands => app.commands.is_some(),
        Part::Queries => app.read.is_some(),
        Part::Queues => app.queues.is_some(),
        Part::Webhooks => app.webhooks.is_some() && app.commands.is_some() && app.queues.is_some(),
    };
    let mut by_path: Vec<(&'static str, axum::routing::MethodRouter<Arc<App<L>>>)> = Vec::new();
    for route in Route::all().into_iter().filter(|r| serves(r.part())) {
        let handler = if route == Route::Console {
            route.handler::<L>()
        } else {
            let names: Arc<[String]> = openapi::query_names(route).into();
            route
                .handler::<L>()
                .layer(axum::middleware::from_fn(move |req, next| known_query(Arc::clone(&names), req, next)))
        };
        match by_path.iter_mut().find(|(p, _)| *p == route.path()) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => by_path.push((route.path(), handler)),
        }
    }
    let mut r = Router::new();
    for (path, methods) in by_path {
        r = r.route(path, methods);
    }
    if let Some(keyring) = &app.keyring {
        r = r.layer(axum::middleware::from_fn_with_state(Arc::clone(keyring), seal::open_sealed));
    }
    r.fallback(|| async {
        rejected(&Rejection::without_rule(Code::RequestMalformed, "no such endpoint here; see docs/API.md"), false)
            .map_status(StatusCode::NOT_FOUND)
    })
    .method_not_allowed_fallback(|| async {
        rejected(&Rejection::without_rule(Code::MethodNotAllowed, "this endpoint does not take that method"), false)
    })
    .layer(axum::middleware::from_fn(metrics::track))
    .with_state(app)
}

/// An answer as a transport other than HTTP carries it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Reply {
    async fn of(response: Response) -> Reply {
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
        Reply { status, content_type, body }
    }
}

/// Answers one request in process, without a socket: the NATS request/reply roles
/// hand their requests to the same router, so both transports answer alike.
pub async fn dispatch(
    router: &Router,
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Reply {
    use tower::ServiceExt as _;
    let mut req = axum::http::Request::builder().method(method).uri(path_and_query);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(Body::from(body)) {
        Ok(r) => r,
        Err(e) => {
            let r = Rejection::without_rule(Code::RequestMalformed, format!("not a valid request: {e}"));
            return Reply::of(rejected(&r, false)).await;
        }
    };
    match router.clone().oneshot(req).await {
        Ok(r) => Reply::of(r).await,
        Err(never) => match never {},
    }
}

/// Answers a named query (`behalf.query.<name>`) whose parameters are a JSON object,
/// as the `GET` of [`query_path`].
pub async fn dispatch_query(router: &Router, name: &str, headers: &[(String, String)], params: &[u8]) -> Reply {
    match query_path(name, params) {
        Ok(path) => dispatch(router, "GET", &path, headers, Bytes::new()).await,
        Err(refused) => Reply::of(*refused).await,
    }
}

/// Serves plain HTTP until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, app, None, shutdown).await
}

/// As [`serve`], over TLS only: a connection that does not complete the handshake
/// within [`HEADER_TIMEOUT`] (plain HTTP among them) is closed.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, app, Some(tls), shutdown).await
}

async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                // Answers go out as soon as they are written (no waiting for an ACK
                // to coalesce small segments).
                let _ = stream.set_nodelay(true);
                stream
            }
            Err(e) => {
                // Out of file descriptors, a connection reset before accept: keep serving.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (app, watcher) = (app.clone(), graceful.watcher());
        match &tls {
            None => {
                tokio::spawn(serve_connection(stream, app, watcher));
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                tokio::spawn(async move {
                    // The handshake falls under the header timeout, like a slow request.
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "a TLS handshake failed"),
                        Err(_) => tracing::debug!("a TLS handshake did not finish in time"),
                    }
                });
            }
        }
    }
    // Stop accepting; let requests in flight finish, for SHUTDOWN_DEADLINE at most.
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_DEADLINE, graceful.shutdown()).await.is_err() {
        tracing::warn!(deadline = ?SHUTDOWN_DEADLINE, "closing the connections still open at the shutdown deadline");
    }
    Ok(())
}

/// One connection: HTTP/1.1, headers (and an idle keep-alive connection's next request)
/// within [`HEADER_TIMEOUT`], watched for graceful shutdown.
async fn serve_connection<S>(stream: S, app: Router, watcher: hyper_util::server::graceful::Watcher)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await;
}

/// How long a client may take to send a request's headers, and how long an idle
/// connection is kept for its next request.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a client may take to send a request's body once its headers are in.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long shutdown waits for requests in flight before closing what is left.
pub const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
