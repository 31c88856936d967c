//! `/v1/queues`: lease and ack, on either engine's queues.

use super::*;

/// The queues, where this role has them (the queue routes are mounted only then).
pub(crate) fn queue_side<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
    app: &App<L, T, S, Q>,
) -> Result<&Arc<Q>, Early> {
    app.queues.as_ref().ok_or_else(|| not_served("queues"))
}

// ---------------------------------------------------------------------------------
// Queues (either engine): lease, ack; redelivered once a lease runs out. Who may
// consume a queue is the domain's `policy::may_consume_queue`.

pub(crate) async fn lease<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
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

pub(crate) async fn ack<L: EventLog, T: TokenStore, S: ViewStore, Q: QueueStore>(
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
