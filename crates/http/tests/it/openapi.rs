//! The OpenAPI document against the code: every route the router serves is in it (and
//! answered by the router, not its fallback), and every command body the rule table
//! and the standard world send is one of its command schemas (derived from the types
//! the server parses), with no field the schema lacks.

use crate::common;

use behalf_domain::Command;
use behalf_http::openapi::document;
use behalf_http::{dispatch, Route};
use behalf_test_support::cases::{cases, Then};
use behalf_test_support::world::{standard_world, FIXED_TIMES};
use serde_json::Value;

/// The command schemas of the document, by `type`: (properties, required). Each
/// command is `<Type>Command`: an `allOf` of its fields' schema, its `type` and the
/// request's envelope.
fn command_schemas(doc: &Value) -> std::collections::BTreeMap<String, (Vec<String>, Vec<String>)> {
    let schemas = &doc["components"]["schemas"];
    let body = &doc["paths"]["/v1/commands"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let mapping = body["discriminator"]["mapping"].as_object().unwrap();
    assert_eq!(mapping.len(), body["oneOf"].as_array().unwrap().len(), "one mapping per command");
    let names = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
    };
    let mut out = std::collections::BTreeMap::new();
    for (kind, to) in mapping {
        let command = &schemas[to.as_str().unwrap().rsplit('/').next().unwrap()];
        let (mut properties, mut required) = (Vec::new(), Vec::new());
        for part in command["allOf"].as_array().unwrap() {
            let part = match part["$ref"].as_str() {
                Some(r) => &schemas[r.rsplit('/').next().unwrap()],
                None => part,
            };
            properties.extend(part["properties"].as_object().unwrap().keys().cloned());
            required.extend(names(&part["required"]));
        }
        assert!(required.contains(&"type".to_owned()), "{kind}: type is required");
        out.insert(kind.clone(), (properties, required));
    }
    out
}

#[test]
fn every_body_sent_is_a_documented_command() {
    let documented = command_schemas(&document());
    // (body, whether it is accepted)
    let mut bodies: Vec<(Value, bool)> = standard_world(&FIXED_TIMES).into_iter().map(|(_, b)| (b, true)).collect();
    bodies.extend(cases().iter().map(|c| ((c.when)(), matches!(c.then, Then::Accepts(_)))));
    // The types neither sends, as API.md shows them.
    bodies.extend(
        [
            serde_json::json!({"type":"group.member.remove","partner_id":"p","group_id":"g","user_id":"u"}),
            serde_json::json!({"type":"rbac.remove","assignment_id":"a","subscription_id":"s","principal_id":"u","role_id":"r"}),
            serde_json::json!({"type":"ticket.update","ticket_id":"t","severity":"critical"}),
            serde_json::json!({"type":"ticket.attach","ticket_id":"t","name":"trace.csv","uri":"https://files.example/t.csv"}),
            serde_json::json!({"type":"ticket.respond","ticket_id":"t","text":"looking"}),
            serde_json::json!({"type":"ticket.request_attention","ticket_id":"t","text":"logs please"}),
            serde_json::json!({"type":"person.erase","email":"ayu@contoso-partner.com"}),
            serde_json::json!({"type":"ticket.redact","ticket_id":"t"}),
        ]
        .map(|b| (b, true)),
    );
    let mut seen = std::collections::BTreeSet::new();
    for (mut body, accepted) in bodies {
        let obj = body.as_object_mut().unwrap();
        obj.remove("__expected");
        let kind = obj["type"].as_str().unwrap().to_owned();
        let (properties, required) = documented.get(&kind).unwrap_or_else(|| panic!("{kind} is not documented"));
        for key in obj.keys().filter(|k| !["type", "command_id", "expected_version"].contains(&k.as_str())) {
            assert!(properties.contains(key), "{kind}: field {key} is not documented");
        }
        // Required: what serde or `decide` needs. A body the server accepts has it all.
        if accepted {
            assert!(serde_json::from_value::<Command>(body.clone()).is_ok(), "{kind}: an accepted body reads");
            for r in required {
                assert!(body.get(r).is_some(), "{kind}: {r} is marked required but an accepted body lacks it");
            }
        }
        seen.insert(kind);
    }
    let kinds: std::collections::BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(seen, kinds, "every documented command type is sent, and nothing else");
}

#[test]
fn every_documented_route_is_the_routers() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let server = common::server();
        let r = server.router;
        let doc = document();
        for route in Route::all() {
            let path = route.path().replace("{queue}", "commercial.office365").replace('{', "x").replace('}', "");
            let reply = dispatch(&r, route.method(), &path, &[], Default::default()).await;
            assert!(
                reply.status != 404 && reply.status != 405,
                "{} {path} fell through to the router's fallback: {}",
                route.method(),
                String::from_utf8_lossy(&reply.body)
            );
            assert!(doc["paths"][route.path()][route.method().to_lowercase()].is_object());
        }
        let served = dispatch(&r, "GET", "/v1/openapi.json", &[], Default::default()).await;
        assert_eq!(served.status, 200);
        let served: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
        assert_eq!(served, doc, "the router serves the document");
    });
}
