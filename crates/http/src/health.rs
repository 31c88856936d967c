//! `/readyz` and `/metrics` (`/healthz` is answered in the router).

use super::{header, App, Arc, Body, Code, EventLog, HeaderValue, Ordering, Rejection, Response, State, StatusCode};
use crate::respond::{json_response, rejected};

pub(crate) async fn readyz<L: EventLog>(State(app): State<Arc<App<L>>>) -> Response {
    if app.gdap.ready(&app.log).await {
        json_response(StatusCode::OK, &serde_json::json!({"status": "ready"}), false)
    } else {
        rejected(&Rejection::without_rule(Code::Unavailable, "catching up with the log"), false)
    }
}

pub(crate) async fn metrics<L: EventLog>(State(app): State<Arc<App<L>>>) -> Response {
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
    let head = app.log.head().await.unwrap_or(0);
    let mut gauges = vec![
        ("behalf_log_head", "The last durable log position.", head),
        ("behalf_gdap_position", "The log position the GDAP projection has applied.", app.gdap.position()),
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
    for (name, help, value) in app.log.counters() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
