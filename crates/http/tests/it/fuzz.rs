//! Property-based fuzzing of what the HTTP layer decodes itself: query parameters on
//! every query route, and `/v1/tokens` bodies — on the real router over the embedded
//! stores, in process. Any input is answered below 500, an error with a stable code.
//! `PROPTEST_CASES=1000000 cargo test -p behalf-http --test fuzz` is the long form.

use crate::common;

use behalf_domain::Code;
use behalf_http::dispatch;
use proptest::prelude::*;

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: common::Server,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = rt.block_on(async { common::server() });
    Fixture { rt, server }
}

fn answered(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{status}: {}", String::from_utf8_lossy(body));
    if status >= 400 {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(Code::parse(v["code"].as_str().unwrap_or("")).is_some(), "{v}");
    }
    Ok(())
}

const ROUTES: &[&str] = &[
    "/v1/customers/22222222-0000-4000-8000-000000000001/tickets",
    "/v1/partners/11111111-0000-4000-8000-000000000001/tickets",
    "/v1/tickets/t1",
    "/v1/tickets/t1/history",
    "/v1/audit/rejections",
    "/v1/events",
    "/v1/queues/commercial.azure/messages",
];

fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,22}",
        "-[0-9]{1,20}",
        "\\PC{0,16}",
        Just("%ff%fe".to_owned()),
        Just("%00".to_owned()),
        Just("18446744073709551616".to_owned()),
    ]
}

/// Percent-encodes what a URL cannot carry as it is.
fn encoded(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"%-._".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn query_parameters_are_answered(
        route in 0usize..ROUTES.len(),
        params in prop::collection::vec(
            (prop::sample::select(vec!["limit", "after", "status", "workload", "severity", "customer_id", "lease_ms", "wait_ms", "x"]), param_value()),
            0..4,
        ),
    ) {
        thread_local!(static F: Fixture = fixture());
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encoded(v))).collect();
        let path = format!("{}?{}", ROUTES[route], query.join("&"));
        let behalf_http::Reply { status, body, .. } = F.with(|f| {
            let headers = vec![("Authorization".to_owned(), format!("Bearer {}", f.server.vendor))];
            f.rt.block_on(dispatch(&f.server.router, "GET", &path, &headers, Default::default()))
        });
        answered(status, &body)?;
    }

    #[test]
    fn token_bodies_are_answered(
        kind in prop::sample::select(vec!["vendor", "auditor", "admin", "partner_agent", "partner_sync", "customer", "nope", ""]),
        partner in prop::option::of("\\PC{0,40}"),
        user in prop::option::of("\\PC{0,40}"),
        junk in prop::collection::vec(any::<u8>(), 0..64),
        raw in prop::bool::ANY,
    ) {
        thread_local!(static F: Fixture = fixture());
        let body = if raw {
            junk
        } else {
            let mut v = serde_json::json!({"kind": kind});
            if let Some(p) = partner { v["partner_id"] = p.into(); }
            if let Some(u) = user { v["user_id"] = u.into(); }
            serde_json::to_vec(&v).unwrap()
        };
        let behalf_http::Reply { status, body: answer, .. } = F.with(|f| {
            let headers = vec![
                ("Authorization".to_owned(), format!("Bearer {}", f.server.admin)),
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ];
            f.rt.block_on(dispatch(&f.server.router, "POST", "/v1/tokens", &headers, body.into()))
        });
        answered(status, &answer)?;
    }
}
