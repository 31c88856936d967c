//! Answers: JSON or MessagePack bodies, rejections with their status (`status_of`,
//! held to API.md's table), the early-return helpers every handler uses.

use super::{
    header, BTreeMap, Body, Code, HeaderMap, HeaderValue, Refused, Rejection, Response, Serialize, ServiceError,
    StatusCode,
};

pub(crate) trait MapStatus {
    fn map_status(self, status: StatusCode) -> Response;
}
impl MapStatus for Response {
    fn map_status(mut self, status: StatusCode) -> Response {
        *self.status_mut() = status;
        self
    }
}

/// The HTTP status of each rejection code, as `docs/API.md` tables them (a test reads
/// that table and holds this to it).
pub fn status_of(code: Code) -> StatusCode {
    match code {
        Code::RequestMalformed => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Forbidden
        | Code::NotAdminAgent
        | Code::NoRelationship
        | Code::RelationshipInactive
        | Code::RelationshipExpired
        | Code::NoAccess
        | Code::MissingPermission
        | Code::RbacMissing
        | Code::ResellerCannotFile
        | Code::NotSubscriptionProvider
        | Code::CloudMismatch => StatusCode::FORBIDDEN,
        Code::TicketNotFound | Code::WebhookNotFound | Code::PersonNotFound => StatusCode::NOT_FOUND,
        Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        Code::TicketClosed | Code::InvalidTransition | Code::ConcurrencyConflict => StatusCode::CONFLICT,
        Code::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::ValidationInvalid
        | Code::BadSeverity
        | Code::UnsupportedWorkload
        | Code::SubscriptionInvalid
        | Code::MarketplaceProduct
        | Code::ContactMustBePartner
        | Code::OwnTenantNeedsSupportPlan
        | Code::SupportPlanInvalid
        | Code::SupportPlanMustBeCsp
        | Code::IncidentNotFound
        | Code::IdempotencyKeyReused
        | Code::InvalidRelationship
        | Code::RoleNotInRelationship
        | Code::WebhookUrlNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
        Code::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    /// Every code is in API.md's status table once, on the row of the status it is
    /// answered with.
    #[test]
    fn statuses_are_the_api_tables() {
        let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md")).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        for line in api.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let Some(status) = cells.get(1).and_then(|c| c.parse::<u16>().ok()) else { continue };
            for code in cells.get(2).unwrap_or(&"").split('`').skip(1).step_by(2) {
                if let Some(c) = Code::parse(code) {
                    assert!(seen.insert(c, status).is_none(), "{code} is on two rows");
                }
            }
        }
        for c in Code::ALL {
            assert_eq!(seen.get(c).copied(), Some(status_of(*c).as_u16()), "{c}: API.md and status_of disagree");
        }
    }
}

pub(crate) fn json_response<B: Serialize>(status: StatusCode, body: &B, msgpack: bool) -> Response {
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

/// Every refusal's body (the document's `Rejected`).
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "Rejected")]
pub(crate) struct RejectedBody<'a> {
    #[schemars(extend("const" = "rejected"))]
    outcome: &'static str,
    code: Code,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<behalf_domain::Rule>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    details: &'a BTreeMap<String, behalf_domain::rejection::Detail>,
}

/// A rejection with its HTTP status (and `Retry-After` where the caller should retry).
pub(crate) fn rejected(r: &Rejection, msgpack: bool) -> Response {
    let status = status_of(r.code);
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

pub(crate) fn unavailable(e: &ServiceError) -> Response {
    // Logged once, here at the edge. Nothing was appended for this request.
    tracing::warn!(error = %e, "answering unavailable");
    rejected(&Rejection::without_rule(Code::Unavailable, "the service cannot decide right now; retry"), false)
}

/// The refusal of any service call: its rejection, or 503 for an internal failure.
pub(crate) fn refused(r: &Refused, msgpack: bool) -> Response {
    match r {
        Refused::Rejected(r) => rejected(r, msgpack),
        Refused::Failed(e) => unavailable(e),
    }
}

/// A service call's answer: `ok` with its JSON, or its refusal.
pub(crate) fn answer<T: Serialize>(a: Result<T, Refused>) -> Response {
    match a {
        Ok(v) => json_response(StatusCode::OK, &v, false),
        Err(r) => refused(&r, false),
    }
}

pub(crate) fn wants_msgpack(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/msgpack"))
}

pub(crate) fn is_msgpack(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/msgpack") || v.starts_with("application/x-msgpack"))
}

/// The principal of the request's bearer token.
/// A response that ends a handler early (boxed: a `Response` is large).
pub(crate) type Early = Box<Response>;

/// `404`: this role does not serve that part of the API.
pub(crate) fn not_served(what: &str) -> Early {
    let r = Rejection::without_rule(Code::RequestMalformed, format!("this role serves no {what}"));
    Box::new(rejected(&r, false).map_status(StatusCode::NOT_FOUND))
}

/// Unwraps a handler step or returns its early answer.
macro_rules! early {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}
pub(crate) use early;
