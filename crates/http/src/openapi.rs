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

/// A success answer: status, description, body schema (none for 204 or a body that
/// is not JSON).
type Answer = (u16, &'static str, Option<Value>);

/// What an operation answers when it succeeds, its body's schema drawn by `gen` (the
/// answers' generator: how the server writes the type).
fn success(route: Route, gen: &mut SchemaGenerator) -> (&'static str, Vec<Answer>) {
    use behalf_service::answers as a;
    let ok = |description, schema| vec![(200, description, Some(schema))];
    match route {
        Route::Command => {
            let accepted = schema_of::<behalf_service::commands::Accepted>(gen);
            (
                "Send a command (JSON or MessagePack); 201 when a ticket was opened",
                vec![(200, "accepted", Some(accepted.clone())), (201, "accepted: a ticket was opened", Some(accepted))],
            )
        }
        Route::Query(q) => {
            let schema = match q {
                QueryRoute::CustomerTickets | QueryRoute::Tickets => schema_of::<a::TicketPage>(gen),
                QueryRoute::ServiceHealth => schema_of::<a::ServiceHealth>(gen),
                QueryRoute::Ticket => schema_of::<a::TicketDetail>(gen),
                QueryRoute::History => schema_of::<a::History>(gen),
                QueryRoute::PartnerTickets => schema_of::<a::PartnerTickets>(gen),
                QueryRoute::Access => schema_of::<a::Access>(gen),
                QueryRoute::Rejections | QueryRoute::PartnerRejections => schema_of::<a::Rejections>(gen),
                QueryRoute::Events => schema_of::<a::EventPage>(gen),
                QueryRoute::PartnerCustomers => schema_of::<a::PartnerCustomers>(gen),
            };
            ("A query, scoped by the caller (R24)", ok(q.name(), schema))
        }
        Route::Lease => {
            ("Lease messages of a queue", ok("the leased messages", schema_of::<crate::queues::Leased>(gen)))
        }
        Route::Ack => ("Acknowledge a leased message", vec![(204, "acknowledged", None)]),
        Route::IssueToken => (
            "Issue a token (admin)",
            vec![(201, "the token, shown once", Some(schema_of::<behalf_service::tokens::Issued>(gen)))],
        ),
        Route::ListTokens => (
            "List tokens (admin)",
            ok("the tokens, without secrets", schema_of::<behalf_service::tokens::TokenList>(gen)),
        ),
        Route::RevokeToken => ("Revoke a token (admin)", vec![(204, "revoked", None)]),
        Route::Health => ("Liveness", ok("ok", schema_of::<crate::health::Status>(gen))),
        Route::Ready => {
            ("Readiness: the GDAP projection has caught up", ok("ready", schema_of::<crate::health::Status>(gen)))
        }
        Route::Metrics => ("Prometheus metrics", vec![(200, "text/plain; version=0.0.4", None)]),
        Route::OpenApi => ("This document", ok("OpenAPI 3.1", json!({"type": "object", "required": ["openapi"]}))),
        Route::Console => ("The operator console (HTML; sign in with a token)", vec![(200, "text/html", None)]),
        Route::WhoAmI => (
            "The token's principal: kind, partner, user, customer",
            ok("the principal", schema_of::<behalf_domain::Principal>(gen)),
        ),
        Route::AuditVerify => (
            "Walk the log's hash chain now (auditor, vendor)",
            ok("the chain's status", schema_of::<a::ChainStatus>(gen)),
        ),
        Route::QueueDepth => (
            "A queue's depth and oldest message, without leasing",
            ok("depth, leased, oldest_position, oldest_at", schema_of::<a::QueueDepth>(gen)),
        ),
        Route::Webhook(w) => {
            use crate::webhooks as h;
            let answer = match w {
                WebhookRoute::Create => (201, Some(schema_of::<h::Created>(gen))),
                WebhookRoute::Delete => (204, None),
                WebhookRoute::List => (200, Some(schema_of::<h::WebhookList>(gen))),
                WebhookRoute::Read => (200, Some(schema_of::<h::Shown>(gen))),
                WebhookRoute::Rotate => (200, Some(schema_of::<h::Rotated>(gen))),
                WebhookRoute::Deliveries => (200, Some(schema_of::<h::Deliveries>(gen))),
                WebhookRoute::Replay => (200, Some(schema_of::<h::Replayed>(gen))),
            };
            (w.summary(), vec![(answer.0, w.summary(), answer.1)])
        }
    }
}

/// The routes answered without a token (probes, metrics, this document, the console).
fn open(route: Route) -> bool {
    matches!(route, Route::Health | Route::Ready | Route::Metrics | Route::OpenApi | Route::Console)
}

/// The refusal codes `route` may answer with. Every authenticated route: a malformed
/// request, no or a bad token, a principal that may not, a parameter out of range,
/// a body too large, time out, overload, unavailable. A command may be refused by any
/// rule; some reads and the webhook routes have their own `not_found`.
fn codes_of(route: Route) -> Vec<Code> {
    if open(route) {
        return vec![Code::Unavailable];
    }
    if route == Route::Command {
        return Code::ALL.to_vec();
    }
    let mut codes = vec![
        Code::RequestMalformed,
        Code::Unauthenticated,
        Code::Forbidden,
        Code::RequestTimeout,
        Code::RequestTooLarge,
        Code::ValidationInvalid,
        Code::Overloaded,
        Code::Unavailable,
    ];
    if matches!(route, Route::Query(QueryRoute::Ticket | QueryRoute::History)) {
        codes.push(Code::TicketNotFound);
    } else if route == Route::Webhook(WebhookRoute::Create) {
        codes.push(Code::WebhookUrlNotAllowed);
    } else if matches!(route, Route::Webhook(_)) {
        codes.push(Code::WebhookNotFound);
    }
    codes
}

/// The refusal statuses of `route`, each with its codes. `request.malformed` also
/// answers 404 for an id that names nothing (a token, a queue message) and for a part
/// of the API this role does not serve.
fn refusals(route: Route) -> Vec<(u16, Vec<&'static str>)> {
    let mut by_status: std::collections::BTreeMap<u16, Vec<&'static str>> = Default::default();
    let codes = codes_of(route);
    for code in &codes {
        by_status.entry(status_of(*code).as_u16()).or_default().push(code.as_str());
    }
    if codes.contains(&Code::RequestMalformed) {
        by_status.entry(404).or_default().push(Code::RequestMalformed.as_str());
    }
    by_status.into_iter().collect()
}

fn operation_id(route: Route) -> String {
    format!("{}{}", route.method().to_lowercase(), route.path().replace(['/', '{', '}', '.', '-'], "_"))
}

/// OpenAPI links from an answer to the operations on what it made (Schemathesis'
/// stateful phase and generated clients follow them): an opened ticket (201) to its
/// reads, a new webhook to the operations on it, a leased message to its ack.
fn links(route: Route, status: u16) -> Option<Value> {
    let to = |op: Route, parameters: Value| json!({"operationId": operation_id(op), "parameters": parameters});
    match (route, status) {
        (Route::Command, 201) => {
            let ticket = json!({"ticket_id": "$response.body#/ticket_id"});
            Some(json!({
                "ReadTicket": to(Route::Query(QueryRoute::Ticket), ticket.clone()),
                "TicketHistory": to(Route::Query(QueryRoute::History), ticket),
            }))
        }
        (Route::Webhook(WebhookRoute::Create), 201) => {
            let hook = json!({"webhook_id": "$response.body#/id"});
            let mut links = Map::new();
            for (name, op) in [
                ("ReadWebhook", WebhookRoute::Read),
                ("RotateSecret", WebhookRoute::Rotate),
                ("Deliveries", WebhookRoute::Deliveries),
                ("Replay", WebhookRoute::Replay),
                ("DeleteWebhook", WebhookRoute::Delete),
            ] {
                links.insert(name.into(), to(Route::Webhook(op), hook.clone()));
            }
            Some(Value::Object(links))
        }
        (Route::Lease, 200) => Some(json!({"Ack": to(Route::Ack, json!({
            "queue": "$request.path.queue", "id": "$response.body#/messages/0/id"
        }))})),
        _ => None,
    }
}

fn operation(route: Route, answers: &mut SchemaGenerator) -> Value {
    let (summary, ok) = success(route, answers);
    let mut responses = Map::new();
    let open = open(route);
    for (status, description, body) in ok {
        let mut r = json!({"description": description});
        if let Some(schema) = body {
            r["content"] = json_body(schema);
        } else if route == Route::Metrics {
            r["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
        } else if route == Route::Console {
            r["content"] = json!({"text/html": {"schema": {"type": "string"}}});
        }
        if let Some(links) = links(route, status) {
            r["links"] = links;
        }
        responses.insert(status.to_string(), r);
    }
    let rejected = schema_of::<crate::respond::RejectedBody>(answers);
    for (status, codes) in refusals(route) {
        let schema = json!({"allOf": [rejected, {"properties": {"code": {"enum": codes}}}]});
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

/// Where the answers' generator puts its schemas until [`merge`] names them.
const ANSWERS: &str = "/components/answers";

/// Puts the answers' schemas beside the requests'. A type read and written alike keeps
/// one schema; one whose two forms differ (a field serde defaults when reading is
/// always written; a time read in two forms is written in one) is named
/// `<Name>Answer` for the written form. Every `$ref` into [`ANSWERS`] is repointed.
fn merge(doc: &mut Value, mut answers: Map<String, Value>) {
    let schemas = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let mut names: std::collections::BTreeMap<String, String> =
        answers.keys().map(|n| (n.clone(), n.clone())).collect();
    let repoint = |v: &mut Value, names: &std::collections::BTreeMap<String, String>| {
        walk_refs(v, &mut |r| {
            if let Some(n) = r.strip_prefix(&format!("#{ANSWERS}/")) {
                *r = format!("#/components/schemas/{}", names.get(n).map_or(n, String::as_str));
            }
        });
    };
    // Share a name only while the written form equals the read one, refs included.
    loop {
        let mut changed = false;
        for (name, schema) in &answers {
            if names[name] != *name || !schemas.contains_key(name) {
                continue;
            }
            let mut written = schema.clone();
            repoint(&mut written, &names);
            if written != schemas[name] {
                names.insert(name.clone(), format!("{name}Answer"));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let target = doc["components"]["schemas"].as_object_mut().expect("the document has schemas");
    for (name, mut schema) in std::mem::take(&mut answers) {
        let to = names[&name].clone();
        if to == name && schemas.contains_key(&name) {
            continue;
        }
        assert!(!target.contains_key(&to), "two schemas named {to}");
        repoint(&mut schema, &names);
        target.insert(to, schema);
    }
    repoint(doc, &names);
}

fn walk_refs(v: &mut Value, f: &mut impl FnMut(&mut String)) {
    if let Some(m) = v.as_object_mut() {
        for (k, v) in m.iter_mut() {
            match (k.as_str(), v) {
                ("$ref", Value::String(r)) => f(r),
                (_, v) => walk_refs(v, f),
            }
        }
    } else if let Some(a) = v.as_array_mut() {
        a.iter_mut().for_each(|v| walk_refs(v, f));
    }
}

/// `POST /v1/commands`' body: one of the commands, told apart by `type`, each with the
/// request's `command_id` (R26) and `expected_version` (R27) beside its own fields
/// (`behalf_service::request`). Each command is its own object schema (`<Type>Command`,
/// an `allOf` of its fields, its `type` and the envelope), so that generated clients
/// get one class per command.
fn command_body(gen: &mut SchemaGenerator) -> Value {
    schema_of::<Command>(gen);
    let envelope = json!({"type": "object", "properties": {
        "command_id": schema_of::<behalf_domain::CommandId>(gen),
        "expected_version": {"type": "integer", "minimum": 0, "maximum": u64::MAX,
            "description": "the stream's version this command expects (R27)"}
    }});
    let defs = gen.definitions_mut();
    defs.insert("CommandEnvelope".into(), envelope);
    let command = defs.remove("Command").expect("Command's schema is generated");
    let mut one_of = Vec::new();
    let mut mapping = Map::new();
    for branch in command["oneOf"].as_array().expect("Command is a oneOf of its variants") {
        let mut branch = branch.as_object().expect("each command is an object").clone();
        let tag = branch["properties"]["type"]["const"].as_str().expect("each command has its type").to_owned();
        let name: String = tag
            .split(['.', '_'])
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .chain(std::iter::once("Command".to_owned()))
            .collect();
        let mut all_of: Vec<Value> = branch.remove("$ref").map(|r| json!({"$ref": r})).into_iter().collect();
        all_of.push(Value::Object(branch));
        all_of.push(json!({"$ref": "#/components/schemas/CommandEnvelope"}));
        let schema = json!({"allOf": all_of, "description": format!("`{tag}`")});
        assert!(defs.insert(name.clone(), schema).is_none(), "two commands named {name}");
        let to = format!("#/components/schemas/{name}");
        one_of.push(json!({"$ref": to}));
        mapping.insert(tag, json!(to));
    }
    json!({"oneOf": one_of, "discriminator": {"propertyName": "type", "mapping": mapping}, "description": command["description"]})
}

/// The whole document.
pub fn document() -> Value {
    let mut gen = generator();
    let mut answers =
        SchemaSettings::draft2020_12().for_serialize().with(|s| s.definitions_path = ANSWERS.into()).into_generator();
    let mut paths = Map::new();
    for route in Route::all() {
        let entry = paths.entry(route.path()).or_insert_with(|| json!({}));
        let mut op = operation(route, &mut answers);
        if route == Route::Command {
            let command = command_body(&mut gen);
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
    let schemas: Map<String, Value> = gen.take_definitions(true);
    let mut doc = json!({
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
    });
    merge(&mut doc, answers.take_definitions(true));
    doc
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
        let codes = doc["components"]["schemas"]["Code"]["enum"].as_array().unwrap();
        assert_eq!(codes.len(), Code::ALL.len());
        assert!(!doc.to_string().contains(ANSWERS), "every answer schema is named in components");
    }
}
