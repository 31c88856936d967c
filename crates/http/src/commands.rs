//! `POST /v1/commands`: reading the body (limit, timeout, key) and answering the
//! command service's outcome.

use super::{
    header, App, Arc, Body, Bytes, Code, Encoding, EventLog, HeaderMap, HeaderValue, Refused, Rejection, Response,
    State, StatusCode, BODY_TIMEOUT,
};
use std::time::Instant;

use crate::authenticate;
use crate::metrics::count_command;
use crate::respond::{is_msgpack, json_response, not_served, refused, rejected, wants_msgpack};
use behalf_log::metrics::Stage;
use behalf_service::request;

/// Reads the body, refusing more than the limit with `413 request.too_large`.
pub(crate) async fn read_body(body: Body, limit: usize, headers: &HeaderMap) -> Result<Bytes, Response> {
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

pub(crate) async fn post_command<L: EventLog>(
    State(app): State<Arc<App<L>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let msgpack_out = wants_msgpack(&headers);
    let start = Instant::now();
    let principal = match authenticate(&app, &headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let start = Stage::Authenticate.since(start);
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
    Stage::Decode.since(start);
    let Ok(_permit) = Arc::clone(&app.in_flight).try_acquire_owned() else {
        return rejected(&Rejection::without_rule(Code::Overloaded, "too many commands in flight; retry"), msgpack_out);
    };
    let Some(service) = &app.commands else { return *not_served("commands") };
    let answer = service.execute(principal, req).await;
    let start = Instant::now();
    match &answer {
        Ok(_) => count_command("accepted", None),
        Err(Refused::Rejected(r)) => count_command("rejected", Some(r.code.as_str())),
        Err(Refused::Failed(_)) => count_command("unavailable", None),
    };
    let response = match answer {
        Ok(a) => json_response(if a.created() { StatusCode::CREATED } else { StatusCode::OK }, &a, msgpack_out),
        Err(r) => refused(&r, msgpack_out),
    };
    Stage::Respond.since(start);
    response
}
