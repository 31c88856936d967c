//! `/readyz` (`/healthz` is answered in the router; `/metrics` is `metrics.rs`).

use super::{App, Arc, Code, EventLog, Rejection, Response, State, StatusCode};
use crate::respond::{json_response, rejected};

/// `/healthz` and `/readyz`: `ok` or `ready`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Status {
    #[schemars(extend("enum" = ["ok", "ready"]))]
    pub status: &'static str,
}

pub(crate) async fn readyz<L: EventLog>(State(app): State<Arc<App<L>>>) -> Response {
    if app.gdap.ready(&app.log).await {
        json_response(StatusCode::OK, &Status { status: "ready" }, false)
    } else {
        rejected(&Rejection::without_rule(Code::Unavailable, "catching up with the log"), false)
    }
}
