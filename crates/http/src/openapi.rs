//! The OpenAPI 3.1 document, served at `GET /v1/openapi.json`, built from the code's
//! own tables: the paths from [`Route::all`] (what the router mounts), the rejection
//! codes from `Code::ALL` with `status_of`, and the command bodies from [`COMMANDS`]
//! (the domain names only serde, so its types carry no schema derives; a test holds
//! this table to the bodies the rule table and the standard world send).

use super::{status_of, Code, QueryRoute, Route};
use serde_json::{json, Map, Value};

/// Every command type with its fields; `!` marks a field the body must have to be
/// read at all (the others are checked by the rules, R16, and refused with a code).
pub const COMMANDS: &[(&str, &str)] = &[
    ("partner.register", "partner_id! name! program! domains! cloud! provider_id"),
    ("customer.register", "customer_id! name! domains! cloud!"),
    ("partner.user.upsert", "partner_id! user_id! email! admin_agent!"),
    ("group.member.add", "partner_id! group_id! user_id!"),
    ("group.member.remove", "partner_id! group_id! user_id!"),
    ("gdap.relationship.upsert", "relationship_id! partner_id! customer_id! status! roles! activated_at duration! auto_extend!"),
    ("gdap.assignment.upsert", "assignment_id! relationship_id! group_id! roles! status!"),
    ("subscription.register", "subscription_id! customer_id! workload! provider_id! reseller_id billing! marketplace_product_id"),
    ("rbac.assign", "assignment_id! subscription_id! principal_id! role_id!"),
    ("rbac.remove", "assignment_id! subscription_id! principal_id! role_id!"),
    ("marketplace.product.register", "product_id! isv_name! support_url support_email support_phone"),
    ("support_plan.register", "plan_id! partner_id! kind! valid_until!"),
    (
        "service_health.issue.upsert",
        "issue_id! workload! title! classification! status! is_resolved! start! end customer_ids",
    ),
    (
        "ticket.open",
        "customer_id! workload title description severity support_topic country_code contact subscription_id product_id support_plan incident_id",
    ),
    ("ticket.note", "ticket_id! text"),
    ("ticket.update", "ticket_id! severity contact"),
    ("ticket.attach", "ticket_id! name uri"),
    ("ticket.escalate", "ticket_id! reason incident_id"),
    ("ticket.respond", "ticket_id! text"),
    ("ticket.request_attention", "ticket_id! text"),
    ("ticket.close", "ticket_id! resolution"),
    ("ticket.reopen", "ticket_id! reason"),
    ("ticket.sla_check", "ticket_id!"),
    ("support.request", "customer_id! subscription_id product_id prefer summary"),
];

/// The JSON schema of a command field, by its name.
fn field_schema(name: &str) -> Value {
    match name {
        "domains" | "roles" | "customer_ids" => json!({"type": "array", "items": {"type": "string"}}),
        "admin_agent" | "is_resolved" => json!({"type": "boolean"}),
        "severity" => {
            json!({"type": ["string", "integer"], "description": "critical, moderate, minimal (or 1–3) (R15)"})
        }
        "contact" => json!({"$ref": "#/components/schemas/Contact"}),
        "activated_at" | "valid_until" | "start" | "end" => json!({"type": "string", "format": "date-time"}),
        _ => json!({"type": "string"}),
    }
}

fn command_schema(kind: &str, fields: &str) -> Value {
    let mut properties = Map::new();
    properties.insert("type".into(), json!({"const": kind}));
    properties.insert("command_id".into(), json!({"type": "string", "description": "idempotency key (R26)"}));
    properties.insert("expected_version".into(), json!({"type": "integer", "minimum": 0, "description": "R27"}));
    let mut required = vec![json!("type")];
    for f in fields.split_whitespace() {
        let name = f.trim_end_matches('!');
        if f.ends_with('!') {
            required.push(json!(name));
        }
        properties.insert(name.into(), field_schema(name));
    }
    json!({"type": "object", "title": kind, "properties": properties, "required": required})
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn query_params(route: Route) -> Vec<Value> {
    let names: &[&str] = match route {
        Route::Query(QueryRoute::CustomerTickets | QueryRoute::PartnerTickets | QueryRoute::Tickets) => {
            &["status", "workload", "severity", "customer_id", "limit", "after", "min_position", "wait_ms"]
        }
        Route::Query(QueryRoute::Access) => &["user_id", "customer_id", "min_position", "wait_ms"],
        Route::Query(QueryRoute::Rejections | QueryRoute::PartnerRejections) => {
            &["after", "limit", "min_position", "wait_ms"]
        }
        Route::Query(QueryRoute::Events) => &["after", "limit"],
        Route::Query(
            QueryRoute::Ticket | QueryRoute::History | QueryRoute::ServiceHealth | QueryRoute::PartnerCustomers,
        ) => &["min_position", "wait_ms"],
        Route::Lease => &["limit", "lease_ms"],
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
        | Route::Ack => &[],
        Route::Webhook(crate::routes::WebhookRoute::Deliveries) => &["limit"],
        Route::Webhook(_) => &[],
    };
    names.iter().map(|n| json!({"name": n, "in": "query", "required": false, "schema": {"type": "string"}})).collect()
}

fn operation(route: Route) -> Value {
    let (summary, ok): (&str, Value) = match route {
        Route::Command => (
            "Send a command (JSON or MessagePack); 201 when a ticket was opened",
            json!({"description": "accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}}),
        ),
        Route::Query(q) => ("A query, scoped by the caller (R24)", json!({"description": q.name()})),
        Route::Lease => ("Lease messages of a queue", json!({"description": "the leased messages"})),
        Route::Ack => ("Acknowledge a leased message", json!({"description": "acknowledged (204)"})),
        Route::IssueToken => ("Issue a token (admin)", json!({"description": "the token, shown once (201)"})),
        Route::ListTokens => ("List tokens (admin)", json!({"description": "the tokens, without secrets"})),
        Route::RevokeToken => ("Revoke a token (admin)", json!({"description": "revoked (204)"})),
        Route::Health => ("Liveness", json!({"description": "ok"})),
        Route::Ready => ("Readiness: the GDAP projection has caught up", json!({"description": "ready"})),
        Route::Metrics => ("Prometheus metrics", json!({"description": "text/plain; version=0.0.4"})),
        Route::OpenApi => ("This document", json!({"description": "OpenAPI 3.1"})),
        Route::Console => ("The operator console (HTML; sign in with a token)", json!({"description": "text/html"})),
        Route::WhoAmI => {
            ("The token's principal: kind, partner, user, customer", json!({"description": "the principal"}))
        }
        Route::AuditVerify => (
            "Walk the log's hash chain now (auditor, vendor)",
            json!({"description": "verified, ok, first_bad_position"}),
        ),
        Route::QueueDepth => (
            "A queue's depth and oldest message, without leasing",
            json!({"description": "depth, leased, oldest_position, oldest_at"}),
        ),
        Route::Webhook(w) => (w.summary(), json!({"description": w.summary()})),
    };
    let parameters = [path_params(route.path()), query_params(route)].concat();
    let mut op = json!({
        "summary": summary,
        "operationId": format!("{}{}", route.method().to_lowercase(), route.path().replace(['/', '{', '}', '.', '-'], "_")),
        "parameters": parameters,
        "responses": {
            "200": ok,
            "default": {"description": "refused, with a stable code", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rejected"}}}}
        }
    });
    if !matches!(route, Route::Health | Route::Ready | Route::Metrics | Route::OpenApi | Route::Console) {
        op["security"] = json!([{"bearer": []}]);
    }
    if route == Route::Webhook(crate::routes::WebhookRoute::Create) {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["queue", "url"],
            "additionalProperties": false,
            "properties": {
                "queue": {"type": "string", "description": "<cloud>.<workload> or partner.<partner id>"},
                "url": {"type": "string", "format": "uri", "maxLength": 2048, "description": "https:// to a public address"},
                "description": {"type": "string", "maxLength": 500}
            }
        }}}});
    }
    if route == Route::Command {
        op["requestBody"] = json!({"required": true, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Command"}},
            "application/msgpack": {"schema": {"$ref": "#/components/schemas/Command"}}
        }});
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in Route::all() {
        let entry = paths.entry(route.path()).or_insert_with(|| json!({}));
        entry[route.method().to_lowercase()] = operation(route);
    }
    let codes: Vec<Value> = Code::ALL.iter().map(|c| json!(c.as_str())).collect();
    let statuses: Map<String, Value> =
        Code::ALL.iter().map(|c| (c.as_str().to_owned(), json!(status_of(*c).as_u16()))).collect();
    let commands: Vec<Value> = COMMANDS.iter().map(|(kind, fields)| command_schema(kind, fields)).collect();
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
            "schemas": {
                "Command": {"oneOf": commands, "discriminator": {"propertyName": "type"}},
                "Contact": {"type": "object", "properties": {
                    "first_name": {"type": "string"}, "last_name": {"type": "string"}, "email": {"type": "string"},
                    "phone": {"type": "string"}, "preferred_contact": {"enum": ["email", "phone"]}
                }},
                "Accepted": {"type": "object", "required": ["outcome", "command_id", "stream", "version", "position", "events"], "properties": {
                    "outcome": {"const": "accepted"}, "command_id": {"type": "string"}, "stream": {"type": "string"},
                    "version": {"type": "integer"}, "position": {"type": "integer"}, "ticket_id": {"type": "string"},
                    "route": {"enum": ["partner", "vendor", "isv"]}, "partner_id": {"type": "string"}, "isv": {"type": "object"},
                    "events": {"type": "array", "items": {"type": "object", "required": ["type"]}},
                    "duplicate": {"type": "boolean", "description": "the first outcome of an earlier identical request (R26)"}
                }},
                "Rejected": {"type": "object", "required": ["outcome", "code", "message"], "properties": {
                    "outcome": {"const": "rejected"},
                    "code": {"enum": codes, "description": "the HTTP status of each code is x-status"},
                    "message": {"type": "string"},
                    "rule": {"type": "string", "pattern": "^R[0-9]+$"},
                    "details": {"type": "object"}
                }, "x-status": statuses}
            }
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
        let kinds: std::collections::BTreeSet<&str> = COMMANDS.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds.len(), 24, "every command type once");
    }
}
