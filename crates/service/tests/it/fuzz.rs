//! Property-based fuzzing of request parsing, JSON and MessagePack: any bytes, and any
//! JSON object near a real command, are a `Request` or a refusal with a stable code —
//! never a panic — and a valid command parses to itself. `PROPTEST_CASES=1000000 cargo
//! test -p behalf-service --test fuzz` is the long form.

use behalf_domain::Code;
use behalf_service::request::{parse, Encoding};
use proptest::prelude::*;
use serde_json::{json, Value};

fn commands() -> Vec<Value> {
    vec![
        json!({"type":"ticket.note","ticket_id":"t1","text":"hello"}),
        json!({"type":"ticket.open","customer_id":"22222222-0000-4000-8000-000000000001","workload":"office365","title":"t","description":"d","severity":"moderate","support_topic":"x","country_code":"ID","contact":{"first_name":"A","last_name":"B","email":"a@p.example","preferred_contact":"email"}}),
        json!({"type":"gdap.relationship.upsert","relationship_id":"r","partner_id":"11111111-0000-4000-8000-000000000001","customer_id":"22222222-0000-4000-8000-000000000001","status":"active","roles":[],"activated_at":"2026-01-01T00:00:00Z","duration":"P30D","auto_extend":"PT0S"}),
        json!({"type":"support.request","customer_id":"22222222-0000-4000-8000-000000000001","subscription_id":"s","summary":"help"}),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A refusal of input: a stable code of the request's own making, never an internal one.
fn refused_stably(code: Code) -> bool {
    Code::parse(code.as_str()) == Some(code) && !matches!(code, Code::Unavailable | Code::Overloaded)
}

proptest! {
    #[test]
    fn any_bytes_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512), packed in prop::bool::ANY) {
        let encoding = if packed { Encoding::MsgPack } else { Encoding::Json };
        if let Err(r) = parse(&bytes, encoding, None) {
            prop_assert!(refused_stably(r.code), "{:?}", r.code);
        }
    }

    #[test]
    fn commands_with_fields_changed_parse_or_are_refused(
        n in 0usize..4,
        changes in prop::collection::vec(("[a-z_]{1,14}", json_value()), 0..4),
        packed in prop::bool::ANY,
        key in prop::option::of("\\PC{0,16}"),
    ) {
        let mut v = commands()[n].clone();
        for (k, x) in changes {
            v[k] = x;
        }
        let bytes = if packed { rmp_serde::to_vec_named(&v).unwrap() } else { serde_json::to_vec(&v).unwrap() };
        let encoding = if packed { Encoding::MsgPack } else { Encoding::Json };
        if let Err(r) = parse(&bytes, encoding, key.as_deref()) {
            prop_assert!(refused_stably(r.code), "{:?}", r.code);
        }
    }

    #[test]
    fn valid_commands_parse_the_same_in_both_encodings(n in 0usize..4, id in "[a-z0-9-]{1,20}") {
        let mut v = commands()[n].clone();
        v["command_id"] = json!(id);
        let a = parse(&serde_json::to_vec(&v).unwrap(), Encoding::Json, None).unwrap();
        let b = parse(&rmp_serde::to_vec_named(&v).unwrap(), Encoding::MsgPack, Some(&id)).unwrap();
        prop_assert_eq!(a.command_id.as_ref().map(|c| c.as_str()), Some(id.as_str()));
        prop_assert_eq!(a, b);
    }
}
