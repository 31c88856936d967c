//! `/v1/tokens`: issue, list, revoke (admin only).

use super::{
    App, Arc, Body, Code, EventLog, HeaderMap, IntoResponse, Path, Rejection, Response, State, StatusCode, TokenSpec,
};
use crate::respond::{json_response, rejected, unavailable, MapStatus};
use crate::{admin_only, read_body};

pub(crate) async fn issue_token<L: EventLog>(
    State(app): State<Arc<App<L>>>,
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

pub(crate) async fn list_tokens<L: EventLog>(State(app): State<Arc<App<L>>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin_only(&app, &headers) {
        return *r;
    }
    match app.tokens.list() {
        Ok(list) => json_response(StatusCode::OK, &behalf_service::tokens::TokenList { tokens: list }, false),
        Err(e) => unavailable(&e),
    }
}

pub(crate) async fn revoke_token<L: EventLog>(
    State(app): State<Arc<App<L>>>,
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
