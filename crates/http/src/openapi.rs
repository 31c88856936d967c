//! The OpenAPI 3.1 document, served at `GET /v1/openapi.json`, generated from the
//! code: the paths from [`Route::all`] (what the router mounts); the request bodies
//! from the very types the server deserializes ([`Command`] and the webhook
//! subscription, through `schemars`, which follows their serde attributes, with the
//! shapes `decide` checks written beside the fields); the query parameters from the
//! handlers' own bounds ([`crate::reads`]'s page sizes) and vocabularies; and every
//! refusal status with the codes `status_of` gives it.

use super::{status_of, Code, QueryRoute, Route};
use crate::reads::{DELIVERY_PAGE, FEED_PAGE, LEASE_MS, LEASE_PAGE, TICKET_PAGE, WAIT_MS};
use crate::routes::WebhookRoute;
use behalf_domain::{Command, Severity, TicketStatus, Workload};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

/// Schemas go to `#/components/schemas/`, in JSON Schema 2020-12 (OpenAPI 3.1's).
fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().with(|s| s.definitions_path = "/components/schemas".into()).into_generator()
}

/// The `schema` of a type, its named parts added to `components`.
fn schema_of<T: JsonSchema>(gen: &mut SchemaGenerator) -> Value {
    gen.subschema_for::<T>().to_value()
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let schema = match name {
                // Read as the ids they are; an unknown one is a 404 (or an empty answer).
                "customer_id" | "partner_id" => behalf_domain::ids::id_schema(true).to_value(),
                "ticket_id" => behalf_domain::ids::id_schema(false).to_value(),
                _ => json!({"type": "string", "minLength": 1}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

fn words(all: impl Iterator<Item = &'static str>) -> Value {
    json!({"type": "string", "enum": all.collect::<Vec<_>>()})
}

/// A query parameter, typed as its handler reads it.
fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn page(name: &str, (default, max): (usize, usize)) -> Value {
    query(name, json!({"type": "integer", "minimum": 1, "maximum": max, "default": default}), "page size")
}

fn position(name: &str, description: &str) -> Value {
    query(name, json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}), description)
}

/// `min_position` and `wait_ms`: read your own writes.
fn waits() -> Vec<Value> {
    vec![
        position("min_position", "answer once the views have applied this log position (503 if not within wait_ms)"),
        query(
            "wait_ms",
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": WAIT_MS.0}),
            &format!("how long to wait for min_position; at most {} is honoured", WAIT_MS.1),
        ),
    ]
}

fn query_params(route: Route) -> Vec<Value> {
    let list = || {
        vec![
            query("status", words(TicketStatus::ALL.iter().map(|s| s.as_str())), "only tickets in this status"),
            query("workload", words(Workload::ALL.iter().map(|s| s.as_str())), "only tickets of this workload"),
            query("severity", words(Severity::ALL.iter().map(|s| s.as_str())), "only tickets of this severity"),
            query("customer_id", behalf_domain::ids::id_schema(true).to_value(), "only this customer's tickets"),
            page("limit", TICKET_PAGE),
        ]
    };
    let mut params = match route {
        Route::Query(QueryRoute::CustomerTickets) => {
            let mut p = list();
            p.push(query(
                "after",
                behalf_domain::ids::id_schema(false).to_value(),
                "the last ticket id of the page before",
            ));
            p
        }
        Route::Query(QueryRoute::PartnerTickets | QueryRoute::Tickets) => list(),
        Route::Query(QueryRoute::Access) => vec![
            json!({"name": "user_id", "in": "query", "required": true, "schema": behalf_domain::ids::id_schema(true).to_value()}),
            json!({"name": "customer_id", "in": "query", "required": true, "schema": behalf_domain::ids::id_schema(true).to_value()}),
        ],
        Route::Query(QueryRoute::Rejections | QueryRoute::PartnerRejections) => {
            vec![position("after", "the log position to read after"), page("limit", FEED_PAGE)]
        }
        Route::Query(QueryRoute::Events) => {
            return vec![position("after", "the log position to read after"), page("limit", FEED_PAGE)];
        }
        Route::Query(
            QueryRoute::Ticket | QueryRoute::History | QueryRoute::ServiceHealth | QueryRoute::PartnerCustomers,
        ) => vec![],
        Route::Lease => {
            let (default, min, max) = LEASE_MS;
            return vec![
                page("limit", LEASE_PAGE),
                query(
                    "lease_ms",
                    json!({"type": "integer", "minimum": min, "maximum": max, "default": default}),
                    "how long the messages stay leased",
                ),
            ];
        }
        Route::Webhook(WebhookRoute::Deliveries) => return vec![page("limit", DELIVERY_PAGE)],
        Route::IssueToken
        | Route::ListTokens
        | Route::RevokeToken
        | Route::Health
        | Route::Ready
        | Route::Metrics
        | Route::OpenApi
        | Route::WhoAmI
        | Route::Console
        | Route::AuditVerify
        | Route::QueueDepth
        | Route::Command
        | Route::Ack
        | Route::Webhook(_) => return vec![],
    };
    params.extend(waits());
    params
}

/// The query parameters `route` reads (what the router lets through to it).
pub fn query_names(route: Route) -> Vec<String> {
    query_params(route).iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect()
}

fn json_body(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn object() -> Value {
    json!({"type": "object"})
}

/// What an operation answers when it succeeds: status, description, body (none for 204).
/// A success answer: status, description, body schema (none for 204).
type Answer = (u16, &'static str, Option<Value>);

fn success(route: Route) -> (&'static str, Vec<Answer>) {
    let accepted = json!({"$ref": "#/components/schemas/Accepted"});
    match route {
        Route::Command => (
            "Send a command (JSON or MessagePack); 201 when a ticket was opened",
            vec![(200, "accepted", Some(accepted.clone())), (201, "accepted: a ticket was opened", Some(accepted))],
        ),
        Route::Query(q) => ("A query, scoped by the caller (R24)", vec![(200, q.name(), Some(object()))]),
        Route::Lease => ("Lease messages of a queue", vec![(200, "the leased messages", Some(object()))]),
        Route::Ack => ("Acknowledge a leased message", vec![(204, "acknowledged", None)]),
        Route::IssueToken => ("Issue a token (admin)", vec![(201, "the token, shown once", Some(object()))]),
        Route::ListTokens => ("List tokens (admin)", vec![(200, "the tokens, without secrets", Some(object()))]),
        Route::RevokeToken => ("Revoke a token (admin)", vec![(204, "revoked", None)]),
        Route::Health => ("Liveness", vec![(200, "ok", Some(object()))]),
        Route::Ready => ("Readiness: the GDAP projection has caught up", vec![(200, "ready", Some(object()))]),
        Route::Metrics => ("Prometheus metrics", vec![(200, "text/plain; version=0.0.4", None)]),
        Route::OpenApi => ("This document", vec![(200, "OpenAPI 3.1", Some(object()))]),
        Route::Console => ("The operator console (HTML; sign in with a token)", vec![(200, "text/html", None)]),
        Route::WhoAmI => {
            ("The token's principal: kind, partner, user, customer", vec![(200, "the principal", Some(object()))])
        }
        Route::AuditVerify => (
            "Walk the log's hash chain now (auditor, vendor)",
            vec![(200, "verified, ok, first_bad_position", Some(object()))],
        ),
        Route::QueueDepth => (
            "A queue's depth and oldest message, without leasing",
            vec![(200, "depth, leased, oldest_position, oldest_at", Some(object()))],
        ),
        Route::Webhook(w) => {
            let status = match w {
                WebhookRoute::Create => 201,
                WebhookRoute::Delete => 204,
                WebhookRoute::List
                | WebhookRoute::Read
                | WebhookRoute::Rotate
                | WebhookRoute::Deliveries
                | WebhookRoute::Replay => 200,
            };
            (w.summary(), vec![(status, w.summary(), (status != 204).then(object))])
        }
    }
}

/// The refusal statuses, each with the codes that answer with it. `request.malformed`
/// also answers 404 for an id that names nothing (a token, a queue message).
fn refusals() -> Vec<(u16, Vec<&'static str>)> {
    let mut by_status: std::collections::BTreeMap<u16, Vec<&'static str>> = Default::default();
    for code in Code::ALL {
        by_status.entry(status_of(*code).as_u16()).or_default().push(code.as_str());
    }
    by_status.entry(404).or_default().push(Code::RequestMalformed.as_str());
    by_status.into_iter().collect()
}

fn operation_id(route: Route) -> String {
    format!("{}{}", route.method().to_lowercase(), route.path().replace(['/', '{', '}', '.', '-'], "_"))
}

fn operation(route: Route) -> Value {
    let (summary, ok) = success(route);
    let mut responses = Map::new();
    let open = matches!(route, Route::Health | Route::Ready | Route::Metrics | Route::OpenApi | Route::Console);
    for (status, description, body) in ok {
        let mut r = json!({"description": description});
        if let Some(schema) = body {
            r["content"] = json_body(schema);
        } else if route == Route::Metrics {
            r["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
        } else if route == Route::Console {
            r["content"] = json!({"text/html": {"schema": {"type": "string"}}});
        }
        if route == Route::Command && status == 201 {
            // The ticket a `ticket.open` made, read back (Schemathesis' stateful phase
            // and generated clients follow these).
            let read = |to: Route| json!({"operationId": operation_id(to), "parameters": {"ticket_id": "$response.body#/ticket_id"}});
            r["links"] = json!({
                "ReadTicket": read(Route::Query(QueryRoute::Ticket)),
                "TicketHistory": read(Route::Query(QueryRoute::History)),
            });
        }
        responses.insert(status.to_string(), r);
    }
    for (status, codes) in refusals() {
        if open && status != 503 {
            continue;
        }
        let schema =
            json!({"allOf": [{"$ref": "#/components/schemas/Rejected"}, {"properties": {"code": {"enum": codes}}}]});
        responses.insert(
            status.to_string(),
            json!({"description": "refused, with a stable code", "content": json_body(schema)}),
        );
    }
    let parameters = [path_params(route.path()), query_params(route)].concat();
    let mut op = json!({
        "summary": summary,
        "operationId": operation_id(route),
        "parameters": parameters,
        "responses": responses,
    });
    if !open {
        op["security"] = json!([{"bearer": []}]);
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut gen = generator();
    let mut paths = Map::new();
    for route in Route::all() {
        let entry = paths.entry(route.path()).or_insert_with(|| json!({}));
        let mut op = operation(route);
        if route == Route::Command {
            // The command's own fields, with the request's `command_id` (R26) and
            // `expected_version` (R27) beside them (`behalf_service::request`).
            let command = json!({"allOf": [schema_of::<Command>(&mut gen), {"type": "object", "properties": {
                "command_id": schema_of::<behalf_domain::CommandId>(&mut gen),
                "expected_version": {"type": "integer", "minimum": 0, "maximum": u64::MAX}
            }}]});
            op["requestBody"] = json!({"required": true, "content": {
                "application/json": {"schema": command},
                "application/msgpack": {"schema": command}
            }});
        }
        if route == Route::IssueToken {
            op["requestBody"] = json!({"required": true, "content": json_body(schema_of::<behalf_service::tokens::TokenSpec>(&mut gen))});
        }
        if route == Route::Webhook(WebhookRoute::Create) {
            op["requestBody"] = json!({"required": true, "content": json_body(schema_of::<crate::webhooks::NewSubscription>(&mut gen))});
        }
        entry[route.method().to_lowercase()] = op;
    }
    let mut schemas: Map<String, Value> = gen.take_definitions(true);
    let codes: Vec<Value> = Code::ALL.iter().map(|c| json!(c.as_str())).collect();
    schemas.insert(
        "Accepted".into(),
        json!({"type": "object", "required": ["outcome", "command_id", "stream", "version", "position", "events"], "properties": {
            "outcome": {"const": "accepted"}, "command_id": {"type": "string"}, "stream": {"type": "string"},
            "version": {"type": "integer"}, "position": {"type": "integer"}, "ticket_id": {"type": "string"},
            "route": {"enum": ["partner", "vendor", "isv"]}, "partner_id": {"type": "string"}, "isv": {"type": "object"},
            "events": {"type": "array", "items": {"type": "object", "required": ["type"]}},
            "duplicate": {"type": "boolean", "description": "the first outcome of an earlier identical request (R26)"}
        }}),
    );
    schemas.insert(
        "Rejected".into(),
        json!({"type": "object", "required": ["outcome", "code", "message"], "properties": {
            "outcome": {"const": "rejected"},
            "code": {"enum": codes},
            "message": {"type": "string"},
            "rule": {"type": "string", "pattern": "^R[0-9]+$"},
            "details": {"type": "object"}
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Behalf",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Support tickets that CSP partners file on behalf of their customers, under GDAP. docs/API.md is the prose."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "bh_<token id>_<secret>"}},
            "schemas": schemas
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_code_is_in_the_document() {
        let doc = document();
        for route in Route::all() {
            let op = &doc["paths"][route.path()][route.method().to_lowercase()];
            assert!(op.is_object(), "{} {} is not in the document", route.method(), route.path());
        }
        let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, Route::all().len(), "nothing but the routes");
        let codes = doc["components"]["schemas"]["Rejected"]["properties"]["code"]["enum"].as_array().unwrap();
        assert_eq!(codes.len(), Code::ALL.len());
    }
}
