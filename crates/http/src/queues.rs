//! `/v1/queues`: lease and ack, on either engine's queues.

use super::{
    App, Arc, Code, EventLog, HeaderMap, IntoResponse, Path, QueueStore, Rejection, Response, ServiceError, State,
    StatusCode,
};
use crate::respond::{early, json_response, not_served, rejected, unavailable, Early, MapStatus};
use crate::{authenticate, limit_param, ranged_param, Params};

/// `GET /v1/queues/{queue}/messages`: the messages leased to the caller.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Leased {
    pub queue: String,
    pub messages: Vec<behalf_log::queues::QueueMessage>,
}

/// The queues, where this role has them (the queue routes are mounted only then).
pub(crate) fn queue_side<L: EventLog>(app: &App<L>) -> Result<&Arc<dyn QueueStore>, Early> {
    app.queues.as_ref().ok_or_else(|| not_served("queues"))
}

// ---------------------------------------------------------------------------------
// Queues (either engine): lease, ack; redelivered once a lease runs out. Who may
// consume a queue is the domain's `policy::may_consume_queue`.

/// The request's principal may consume `queue` (`policy::may_consume_queue`), or 403.
fn consumer<L: EventLog>(app: &App<L>, headers: &HeaderMap, queue: &str) -> Result<(), Early> {
    let who = authenticate(app, headers)?;
    if behalf_domain::policy::may_consume_queue(&who, queue) {
        Ok(())
    } else {
        let why = format!("this principal may not consume {queue}");
        Err(Box::new(rejected(&Rejection::without_rule(Code::Forbidden, why), false)))
    }
}

pub(crate) async fn lease<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    Path(queue): Path<String>,
    p: Params,
) -> Response {
    early!(consumer(&app, &headers, &queue));
    let limit = early!(limit_param(&p, crate::reads::LEASE_PAGE.0, crate::reads::LEASE_PAGE.1));
    let lease_ms = early!(ranged_param(
        &p,
        "lease_ms",
        crate::reads::LEASE_MS.0,
        crate::reads::LEASE_MS.1..=crate::reads::LEASE_MS.2
    ));
    let queues = early!(queue_side(&app));
    match queues.lease(&queue, limit, app.clock.now().millis(), lease_ms) {
        Ok(messages) => json_response(StatusCode::OK, &Leased { queue, messages }, false),
        Err(e) => unavailable(&ServiceError::Log(e)),
    }
}

pub(crate) async fn ack<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    Path((queue, id)): Path<(String, String)>,
) -> Response {
    early!(consumer(&app, &headers, &queue));
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

/// Depth and the oldest message of a queue, without leasing anything (a console must not
/// take work from the workers). Counts up to 10,000 messages.
pub(crate) async fn queue_depth<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    Path(queue): Path<String>,
) -> Response {
    const COUNTED: usize = 10_000;
    early!(consumer(&app, &headers, &queue));
    let queues = early!(queue_side(&app));
    let messages = match queues.peek(&queue, COUNTED + 1) {
        Ok(m) => m,
        Err(e) => return unavailable(&ServiceError::Log(e)),
    };
    let now = app.clock.now().millis();
    let oldest = messages.iter().map(|m| m.position).min();
    let oldest_at = match oldest {
        Some(p) => app.log.read_all(p.saturating_sub(1), 1).await.ok().and_then(|c| c.first().map(|c| c.at)),
        None => None,
    };
    let (depth, more) = (messages.len().min(COUNTED), messages.len() > COUNTED);
    let leased = messages.iter().filter(|m| m.leased_until > now).count();
    let depth = behalf_service::answers::QueueDepth {
        queue,
        depth,
        more,
        leased,
        oldest_position: oldest,
        oldest_at,
        first: messages.into_iter().take(20).collect(),
    };
    json_response(StatusCode::OK, &depth, false)
}
