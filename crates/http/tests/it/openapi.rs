//! The OpenAPI document against the code: every route the router serves is in it (and
//! answered by the router, not its fallback), and its command table matches the
//! bodies the rule table and the standard world send.

use crate::common;

use behalf_domain::Command;
use behalf_http::openapi::document;
use behalf_http::openapi::COMMANDS;
use behalf_http::{dispatch, Route};
use behalf_test_support::cases::cases;
use behalf_test_support::world::{standard_world, FIXED_TIMES};

#[test]
fn the_command_table_matches_what_is_sent() {
    let mut bodies: Vec<serde_json::Value> = standard_world(&FIXED_TIMES).into_iter().map(|(_, b)| b).collect();
    bodies.extend(cases().iter().map(|c| (c.when)()));
    // The types neither sends, as API.md shows them.
    bodies.extend([
        serde_json::json!({"type":"group.member.remove","partner_id":"p","group_id":"g","user_id":"u"}),
        serde_json::json!({"type":"rbac.remove","assignment_id":"a","subscription_id":"s","principal_id":"u","role_id":"r"}),
        serde_json::json!({"type":"ticket.update","ticket_id":"t","severity":"critical"}),
        serde_json::json!({"type":"ticket.attach","ticket_id":"t","name":"trace.csv","uri":"https://files.example/t.csv"}),
        serde_json::json!({"type":"ticket.respond","ticket_id":"t","text":"looking"}),
        serde_json::json!({"type":"ticket.request_attention","ticket_id":"t","text":"logs please"}),
    ]);
    let mut seen = std::collections::BTreeSet::new();
    for mut body in bodies {
        let obj = body.as_object_mut().unwrap();
        obj.remove("__expected");
        let kind = obj["type"].as_str().unwrap().to_owned();
        let (_, fields) =
            COMMANDS.iter().find(|(k, _)| *k == kind).unwrap_or_else(|| panic!("{kind} is not documented"));
        let documented: Vec<&str> = fields.split_whitespace().map(|f| f.trim_end_matches('!')).collect();
        for key in obj.keys().filter(|k| !["type", "command_id", "expected_version"].contains(&k.as_str())) {
            assert!(documented.contains(&key.as_str()), "{kind}: field {key} is not documented");
        }
        if serde_json::from_value::<Command>(body.clone()).is_ok() {
            for required in fields.split_whitespace().filter_map(|f| f.strip_suffix('!')) {
                assert!(
                    body.get(required).is_some(),
                    "{kind}: {required} is marked required but a readable body lacks it"
                );
            }
        }
        seen.insert(kind);
    }
    assert_eq!(seen.len(), COMMANDS.len(), "every documented command type is sent: {seen:?}");
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
