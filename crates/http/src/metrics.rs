//! `/metrics` on the `metrics` facade (and every request's span and time, [`track`]), rendered by `metrics-exporter-prometheus` on the
//! API's own listener (no token, as before; the exporter runs no listener of its own).
//! [`install`] puts the recorder in place once per process, before the first command;
//! every crate records through the facade with the names of `behalf_log::metrics`.
//! What only a scrape can say (the log's head, each follower's position and lag, the
//! engine's group counters) is read when `/metrics` is asked.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use behalf_domain::notify::workload_queue;
use behalf_domain::{Cloud, Workload};
use behalf_log::metrics::{
    FOLLOWER_LAG_SECONDS, GROUP_SIZE, GROUP_SIZE_BUCKETS, HTTP_SECONDS, SECONDS_BUCKETS, STAGE_SECONDS,
};
use behalf_log::EventLog;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::App;

/// Commands answered, by outcome (and a refusal's code).
pub(crate) const COMMANDS: &str = "behalf_commands_total";

/// Messages waiting in a workload queue (counted up to [`QUEUE_COUNTED`]).
pub(crate) const QUEUE_DEPTH: &str = "behalf_queue_depth";
const QUEUE_COUNTED: usize = 1_000;

/// How often the recorder folds what was recorded into its histograms, whether or not
/// anyone scrapes (so memory stays flat in a process nobody scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder as the process's recorder (once; later calls answer
/// the same handle). The binary calls it first thing; an [`App`] calls it when made.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(GROUP_SIZE.to_owned()), GROUP_SIZE_BUCKETS))
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only what is read at a scrape");
        }
        describe();
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
        handle
    })
}

fn describe() {
    describe_counter!(COMMANDS, "Commands answered, by outcome and rejection code.");
    // Present from the start, so a dashboard's rate has a series before the first command.
    counter!(COMMANDS, "outcome" => "accepted").increment(0);
    counter!(COMMANDS, "outcome" => "unavailable").increment(0);
    describe_histogram!(HTTP_SECONDS, Unit::Seconds, "HTTP requests, by route template, method and status.");
    describe_histogram!(STAGE_SECONDS, Unit::Seconds, "The time a command spends in each stage.");
    describe_histogram!(GROUP_SIZE, Unit::Count, "Commits per group commit (sled) or atomic batch (NATS).");
    describe_gauge!(FOLLOWER_LAG_SECONDS, Unit::Seconds, "Age of the oldest commit a follower has not applied.");
    describe_gauge!(QUEUE_DEPTH, "Messages waiting in a workload queue (counted up to 1,000).");
    describe_gauge!("behalf_log_head", "The last durable log position.");
    describe_gauge!("behalf_gdap_position", "The log position the GDAP projection has applied.");
    describe_gauge!("behalf_gdap_lag", "Commits the GDAP projection is behind the log.");
    describe_gauge!("behalf_views_position", "The log position the views have applied.");
    describe_gauge!("behalf_views_lag", "Commits the views are behind the log.");
    describe_gauge!("behalf_notifier_position", "The log position the notifier has forwarded.");
    describe_gauge!("behalf_notifier_lag", "Commits the notifier is behind the log.");
}

/// Counts a command's outcome.
pub(crate) fn count_command(outcome: &'static str, code: Option<&'static str>) {
    match code {
        Some(code) => counter!(COMMANDS, "outcome" => outcome, "code" => code).increment(1),
        None => counter!(COMMANDS, "outcome" => outcome).increment(1),
    }
}

/// Every request's span and time. The span (`<METHOD> <route>`, a server span) is a
/// child of the caller's trace when the request carries a W3C `traceparent` (an HTTP
/// header, or a NATS header handed through [`crate::dispatch`]); the time goes to
/// [`HTTP_SECONDS`] by the route's template (`unmatched` for no route).
pub(crate) async fn track(req: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    if req.headers().contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
        let _ = span.set_parent(parent);
    }
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    histogram!(HTTP_SECONDS, "route" => route, "method" => method, "status" => status.to_string())
        .record(start.elapsed().as_secs_f64());
    response
}

/// A request's headers as the propagator reads them.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// `GET /metrics`: what was recorded, and what only a scrape can read.
pub(crate) async fn metrics<L: EventLog>(State(app): State<std::sync::Arc<App<L>>>) -> Response {
    let handle = install();
    let head = app.log.head().await.unwrap_or(0);
    gauge!("behalf_log_head").set(head as f64);
    // Each follower: its label, its position and lag gauges, and where it is.
    let mut followers = vec![("gdap", "behalf_gdap_position", "behalf_gdap_lag", app.gdap.position())];
    if let Some(read) = &app.read {
        followers.push(("views", "behalf_views_position", "behalf_views_lag", *read.position.borrow()));
    }
    if let Some(queues) = &app.queues {
        let forwarded = queues.checkpoint().unwrap_or(0);
        followers.push(("notifier", "behalf_notifier_position", "behalf_notifier_lag", forwarded));
    }
    let now = app.clock.now();
    for (follower, position_gauge, lag_gauge, position) in followers {
        gauge!(position_gauge).set(position as f64);
        gauge!(lag_gauge).set(head.saturating_sub(position) as f64);
        // The oldest commit not applied yet: how long the follower has kept it waiting.
        let waiting = if position < head {
            app.log.read_all(position, 1).await.ok().and_then(|c| c.first().map(|c| c.at))
        } else {
            None
        };
        let seconds = waiting.map_or(0.0, |at| (now.millis() - at.millis()).max(0) as f64 / 1000.0);
        gauge!(FOLLOWER_LAG_SECONDS, "follower" => follower).set(seconds);
    }
    if let Some(queues) = &app.queues {
        // The workload queues' depth (a partner's own queue is its business).
        for cloud in Cloud::ALL {
            for workload in Workload::ALL {
                let queue = workload_queue(*cloud, *workload);
                if let Ok(waiting) = queues.peek(&queue, QUEUE_COUNTED) {
                    gauge!(QUEUE_DEPTH, "queue" => queue).set(waiting.len() as f64);
                }
            }
        }
    }
    for (name, _help, value) in app.log.counters() {
        counter!(name).absolute(value);
    }
    let mut r = Response::new(axum::body::Body::from(handle.render()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
