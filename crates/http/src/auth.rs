//! Who is asking: the bearer token's principal, and the admin-only gate.

use super::{header, App, Code, EventLog, HeaderMap, Principal, Rejection};
use crate::respond::{refused, rejected, Early};

pub(crate) fn authenticate<L: EventLog>(app: &App<L>, headers: &HeaderMap) -> Result<Principal, Early> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let unauth =
        || rejected(&Rejection::without_rule(Code::Unauthenticated, "missing, unknown or revoked token"), false);
    let Some(token) = token else { return Err(Box::new(unauth())) };
    app.tokens.authenticate(token).map_err(|r| Box::new(refused(&r, false)))
}

pub(crate) fn admin_only<L: EventLog>(app: &App<L>, headers: &HeaderMap) -> Result<(), Early> {
    if authenticate(app, headers)? == Principal::Admin {
        Ok(())
    } else {
        Err(Box::new(rejected(&Rejection::without_rule(Code::Forbidden, "only an admin token manages tokens"), false)))
    }
}
