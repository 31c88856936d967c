//! Every route as one table ([`Route`]): the router mounts them from it, the OpenAPI
//! document lists them from it, and a named query (`behalf.query.<name>` on NATS, with
//! a JSON object of parameters) is turned into the same `GET` from it, so both
//! transports answer alike.

use super::{delete, get, header, post, App, Arc, Body, Code, EventLog, HeaderValue, Rejection, Response, StatusCode};
use crate::respond::{json_response, rejected, MapStatus};
use crate::{
    access, ack, audit_verify, customer_tickets, events, history, issue_token, lease, list_tokens, metrics,
    partner_customers, partner_rejections, partner_tickets, post_command, queue_depth, readyz, rejections,
    revoke_token, service_health, ticket, tickets, whoami,
};
use axum::routing::MethodRouter;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The queries of API.md, by the name NATS requests use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryRoute {
    CustomerTickets,
    ServiceHealth,
    Ticket,
    History,
    PartnerTickets,
    Access,
    Rejections,
    Events,
    PartnerCustomers,
    PartnerRejections,
    Tickets,
}

impl QueryRoute {
    pub const ALL: [QueryRoute; 11] = [
        QueryRoute::CustomerTickets,
        QueryRoute::ServiceHealth,
        QueryRoute::Ticket,
        QueryRoute::History,
        QueryRoute::PartnerTickets,
        QueryRoute::Access,
        QueryRoute::Rejections,
        QueryRoute::Events,
        QueryRoute::PartnerCustomers,
        QueryRoute::PartnerRejections,
        QueryRoute::Tickets,
    ];

    /// The name in `behalf.query.<name>`.
    pub fn name(self) -> &'static str {
        match self {
            QueryRoute::CustomerTickets => "customer_tickets",
            QueryRoute::ServiceHealth => "service_health",
            QueryRoute::Ticket => "ticket",
            QueryRoute::History => "history",
            QueryRoute::PartnerTickets => "partner_tickets",
            QueryRoute::Access => "access",
            QueryRoute::Rejections => "rejections",
            QueryRoute::Events => "events",
            QueryRoute::PartnerCustomers => "partner_customers",
            QueryRoute::PartnerRejections => "partner_rejections",
            QueryRoute::Tickets => "tickets",
        }
    }

    /// The path, with at most one `{id}` segment named after the parameter it takes.
    pub fn path(self) -> &'static str {
        match self {
            QueryRoute::CustomerTickets => "/v1/customers/{customer_id}/tickets",
            QueryRoute::ServiceHealth => "/v1/customers/{customer_id}/service-health",
            QueryRoute::Ticket => "/v1/tickets/{ticket_id}",
            QueryRoute::History => "/v1/tickets/{ticket_id}/history",
            QueryRoute::PartnerTickets => "/v1/partners/{partner_id}/tickets",
            QueryRoute::Access => "/v1/partners/{partner_id}/access",
            QueryRoute::Rejections => "/v1/audit/rejections",
            QueryRoute::Events => "/v1/events",
            QueryRoute::PartnerCustomers => "/v1/partners/{partner_id}/customers",
            QueryRoute::PartnerRejections => "/v1/partners/{partner_id}/rejections",
            QueryRoute::Tickets => "/v1/tickets",
        }
    }

    pub(crate) fn handler<L: EventLog>(self) -> MethodRouter<Arc<App<L>>> {
        match self {
            QueryRoute::CustomerTickets => get(customer_tickets::<L>),
            QueryRoute::ServiceHealth => get(service_health::<L>),
            QueryRoute::Ticket => get(ticket::<L>),
            QueryRoute::History => get(history::<L>),
            QueryRoute::PartnerTickets => get(partner_tickets::<L>),
            QueryRoute::Access => get(access::<L>),
            QueryRoute::Rejections => get(rejections::<L>),
            QueryRoute::Events => get(events::<L>),
            QueryRoute::PartnerCustomers => get(partner_customers::<L>),
            QueryRoute::PartnerRejections => get(partner_rejections::<L>),
            QueryRoute::Tickets => get(tickets::<L>),
        }
    }

    pub fn named(name: &str) -> Option<QueryRoute> {
        QueryRoute::ALL.into_iter().find(|q| q.name() == name)
    }

    /// The id parameter its path takes, if any.
    fn id_field(self) -> Option<&'static str> {
        let path = self.path();
        let open = path.find('{')?;
        let close = path[open..].find('}')? + open;
        Some(&path[open + 1..close])
    }
}

/// Which part of the API a route belongs to: a role serves only its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Tokens, health, metrics, the OpenAPI document: every role.
    Always,
    Commands,
    Queries,
    Queues,
    /// `/v1/webhooks`: where the webhook store, the commands and the queues are.
    Webhooks,
}

/// Every route of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    IssueToken,
    ListTokens,
    RevokeToken,
    Health,
    Ready,
    Metrics,
    OpenApi,
    WhoAmI,
    Console,
    Command,
    Query(QueryRoute),
    AuditVerify,
    QueueDepth,
    Lease,
    Ack,
    Webhook(WebhookRoute),
}

/// The routes of `/v1/webhooks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookRoute {
    Create,
    List,
    Read,
    Delete,
    Rotate,
    Deliveries,
    Replay,
}

impl WebhookRoute {
    pub const ALL: [WebhookRoute; 7] = [
        WebhookRoute::Create,
        WebhookRoute::List,
        WebhookRoute::Read,
        WebhookRoute::Delete,
        WebhookRoute::Rotate,
        WebhookRoute::Deliveries,
        WebhookRoute::Replay,
    ];

    fn method(self) -> &'static str {
        match self {
            WebhookRoute::Create | WebhookRoute::Rotate | WebhookRoute::Replay => "POST",
            WebhookRoute::List | WebhookRoute::Read | WebhookRoute::Deliveries => "GET",
            WebhookRoute::Delete => "DELETE",
        }
    }

    fn path(self) -> &'static str {
        match self {
            WebhookRoute::Create | WebhookRoute::List => "/v1/webhooks",
            WebhookRoute::Read | WebhookRoute::Delete => "/v1/webhooks/{webhook_id}",
            WebhookRoute::Rotate => "/v1/webhooks/{webhook_id}/rotate",
            WebhookRoute::Deliveries => "/v1/webhooks/{webhook_id}/deliveries",
            WebhookRoute::Replay => "/v1/webhooks/{webhook_id}/replay",
        }
    }

    pub(crate) fn summary(self) -> &'static str {
        match self {
            WebhookRoute::Create => "Subscribe a URL to a queue; the signing secret is shown once (201)",
            WebhookRoute::List => "The caller's webhook subscriptions",
            WebhookRoute::Read => "One webhook subscription",
            WebhookRoute::Delete => "Delete a webhook subscription (204)",
            WebhookRoute::Rotate => "A new signing secret; the old one signs for a grace period",
            WebhookRoute::Deliveries => "Recent delivery attempts, and how many wait or failed",
            WebhookRoute::Replay => "Send the failed deliveries again",
        }
    }

    fn handler<L: EventLog>(self) -> MethodRouter<Arc<App<L>>> {
        use crate::webhooks as w;
        match self {
            WebhookRoute::Create => post(w::create::<L>),
            WebhookRoute::List => get(w::list::<L>),
            WebhookRoute::Read => get(w::read::<L>),
            WebhookRoute::Delete => delete(w::remove::<L>),
            WebhookRoute::Rotate => post(w::rotate::<L>),
            WebhookRoute::Deliveries => get(w::deliveries::<L>),
            WebhookRoute::Replay => post(w::replay::<L>),
        }
    }
}

impl Route {
    /// All of them, in the order the document lists them.
    pub fn all() -> Vec<Route> {
        let mut all = vec![Route::Command];
        all.extend(QueryRoute::ALL.into_iter().map(Route::Query));
        all.extend([Route::AuditVerify, Route::QueueDepth, Route::Lease, Route::Ack]);
        all.extend(WebhookRoute::ALL.into_iter().map(Route::Webhook));
        all.extend([
            Route::IssueToken,
            Route::ListTokens,
            Route::RevokeToken,
            Route::Health,
            Route::Ready,
            Route::Metrics,
            Route::OpenApi,
            Route::WhoAmI,
            Route::Console,
        ]);
        all
    }

    pub fn method(self) -> &'static str {
        match self {
            Route::IssueToken | Route::Command | Route::Ack => "POST",
            Route::RevokeToken => "DELETE",
            Route::ListTokens
            | Route::Health
            | Route::Ready
            | Route::Metrics
            | Route::OpenApi
            | Route::Query(_)
            | Route::WhoAmI
            | Route::Console
            | Route::AuditVerify
            | Route::QueueDepth
            | Route::Lease => "GET",
            Route::Webhook(w) => w.method(),
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::IssueToken | Route::ListTokens => "/v1/tokens",
            Route::RevokeToken => "/v1/tokens/{token_id}",
            Route::Health => "/healthz",
            Route::Ready => "/readyz",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/v1/openapi.json",
            Route::Command => "/v1/commands",
            Route::Query(q) => q.path(),
            Route::WhoAmI => "/v1/whoami",
            Route::Console => "/console/",
            Route::AuditVerify => "/v1/audit/verify",
            Route::QueueDepth => "/v1/queues/{queue}",
            Route::Lease => "/v1/queues/{queue}/messages",
            Route::Ack => "/v1/queues/{queue}/messages/{id}/ack",
            Route::Webhook(w) => w.path(),
        }
    }

    pub fn part(self) -> Part {
        match self {
            Route::Command => Part::Commands,
            Route::Query(_) | Route::AuditVerify | Route::Console => Part::Queries,
            Route::Lease | Route::Ack | Route::QueueDepth => Part::Queues,
            Route::Webhook(_) => Part::Webhooks,
            // Tokens, and what every role says of itself.
            Route::IssueToken | Route::ListTokens | Route::RevokeToken => Part::Always,
            Route::Health | Route::Ready | Route::Metrics | Route::OpenApi | Route::WhoAmI => Part::Always,
        }
    }

    pub(crate) fn handler<L: EventLog>(self) -> MethodRouter<Arc<App<L>>> {
        match self {
            Route::IssueToken => post(issue_token::<L>),
            Route::ListTokens => get(list_tokens::<L>),
            Route::RevokeToken => delete(revoke_token::<L>),
            Route::Health => {
                get(|| async { json_response(StatusCode::OK, &crate::health::Status { status: "ok" }, false) })
            }
            Route::Ready => get(readyz::<L>),
            Route::Metrics => get(metrics::<L>),
            Route::OpenApi => get(|| async { json_response(StatusCode::OK, &crate::openapi::document(), false) }),
            Route::Command => post(post_command::<L>),
            Route::Query(q) => q.handler::<L>(),
            Route::WhoAmI => get(whoami::<L>),
            Route::Console => get(|| async { console() }),
            Route::AuditVerify => get(audit_verify::<L>),
            Route::QueueDepth => get(queue_depth::<L>),
            Route::Lease => get(lease::<L>),
            Route::Ack => post(ack::<L>),
            Route::Webhook(w) => w.handler::<L>(),
        }
    }
}

/// The operator console: one self-contained page (no CDN, no other request than the
/// API's), embedded in the binary. It shows what the viewer's token may read.
fn console() -> Response {
    let mut r = Response::new(Body::from(include_str!("../console/index.html")));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // The page talks to this server only; tokens stay out of URLs sent anywhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A named query with a JSON object of parameters (its id among them) → the path and
/// query string the router answers, or the refusal.
pub fn query_path(name: &str, params: &[u8]) -> Result<String, Box<Response>> {
    let refuse = |code, message: String| Box::new(rejected(&Rejection::without_rule(code, message), false));
    let Some(route) = QueryRoute::named(name) else {
        let names: Vec<&str> = QueryRoute::ALL.iter().map(|q| q.name()).collect();
        let why = format!("no query {name:?}; one of {}", names.join(", "));
        return Err(Box::new((*refuse(Code::RequestMalformed, why)).map_status(StatusCode::NOT_FOUND)));
    };
    let mut params = if params.is_empty() {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(params) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) | Err(_) => {
                return Err(refuse(Code::RequestMalformed, "the parameters are not a JSON object".into()))
            }
        }
    };
    let text = |v: serde_json::Value| if let serde_json::Value::String(s) = v { s } else { v.to_string() };
    let encode = |s: &str| utf8_percent_encode(s, COMPONENT).to_string();
    let mut path = route.path().to_owned();
    if let Some(field) = route.id_field() {
        let Some(id) = params.remove(field).map(text).filter(|s| !s.is_empty()) else {
            return Err(refuse(Code::ValidationInvalid, format!("the query {name} needs {field}")));
        };
        path = path.replace(&format!("{{{field}}}"), &encode(&id));
    }
    let query: Vec<String> = params.into_iter().map(|(k, v)| format!("{}={}", encode(&k), encode(&text(v)))).collect();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_queries_map_to_their_paths() {
        let ok = |n: &str, p: &str| query_path(n, p.as_bytes()).unwrap_or_else(|r| panic!("{}", r.status()));
        assert_eq!(ok("ticket", r#"{"ticket_id":"t 1"}"#), "/v1/tickets/t%201");
        assert_eq!(
            ok("customer_tickets", r#"{"customer_id":"c1","status":"open","min_position":7}"#),
            "/v1/customers/c1/tickets?min_position=7&status=open"
        );
        assert_eq!(ok("events", ""), "/v1/events");
        let refused = |n: &str, p: &str| query_path(n, p.as_bytes()).unwrap_err().status().as_u16();
        assert_eq!(refused("nope", "{}"), 404);
        assert_eq!(refused("ticket", "{}"), 422);
        assert_eq!(refused("ticket", "[1]"), 400);
    }

    #[test]
    fn every_route_has_a_distinct_name_and_path() {
        let names: std::collections::BTreeSet<_> = QueryRoute::ALL.iter().map(|q| q.name()).collect();
        let paths: std::collections::BTreeSet<_> = QueryRoute::ALL.iter().map(|q| q.path()).collect();
        assert_eq!((names.len(), paths.len()), (QueryRoute::ALL.len(), QueryRoute::ALL.len()));
        for q in QueryRoute::ALL {
            assert_eq!(QueryRoute::named(q.name()), Some(q));
        }
    }
}
