//! The OpenAPI document checked by a fuzzer nobody here wrote: Schemathesis (PyPI,
//! pinned in `./dev`, installed into `tools/st`) runs every check it has against the
//! real `behalf serve`, seeded with the standard world, each operation called with a
//! token that may call it. Any failure of any check fails the test, and so does an
//! operation it could not test. `BEHALF_SCHEMATHESIS_EXAMPLES` (default 25) sets the
//! examples per operation; the long form is README's.

use crate::support;

use std::path::PathBuf;
use std::process::Command;

use behalf_domain::Principal;
use serde_json::{json, Value};
use support::world::*;
use support::{send_world, Client, Server, Tokens};

const RULES: &str = "warnings = [\"missing_auth\"]\n[operations.checks.positive_data_acceptance]\nexpected-statuses = [\"2xx\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\"]\n";

/// A read given a `min_position` the views have not reached within `wait_ms` answers
/// 503 `unavailable` by contract (API.md; clients retry it): not a server error there.
/// (`schemathesis/behalf_hooks.py` cuts a drawn `wait_ms` to 100 ms so that such reads
/// do not hold the run.)
const READS: &str =
    "[operations.checks.not_a_server_error]\nexpected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"503\"]\n";

/// Which token each operation is called with, and the ids it needs to reach real data
/// (`[[operations]]` of Schemathesis' configuration; tokens come from the environment).
fn config(ids: &Value) -> String {
    let id = |k: &str| ids[k].as_str().unwrap().to_owned();
    let op = |path: &str, token: &str, params: &[(&str, String)]| {
        let mut s = format!("[[operations]]\ninclude-path-regex = '{path}'\nheaders = {{ Authorization = 'Bearer ${{BEHALF_ST_{token}}}' }}\n");
        if !params.is_empty() {
            let kv: Vec<String> = params.iter().map(|(k, v)| format!("\"{k}\" = \"{v}\"")).collect();
            s.push_str(&format!("parameters = {{ {} }}\n", kv.join(", ")));
        }
        s
    };
    [
        "headers = { Authorization = 'Bearer ${BEHALF_ST_VENDOR}' }\n".to_owned(),
        op("^/v1/tokens$", "ADMIN", &[]),
        // Revoking or acking works once; every later call is 404 by design.
        op("^/v1/tokens/", "ADMIN", &[("path.token_id", id("token"))]) + "warnings = false\n",
        // A command the schema allows can still be refused by a rule that needs the
        // log's state (no such customer, no grant, R5…): 422 and 403 with the rule's
        // code, as the document lists per status. The same for a webhook URL whose host
        // does not resolve. (So most generated commands are refused, and ticket commands
        // name drawn ids: the fuzzer's warnings of both are expected there.)
        op("^/v1/commands$", "AGENT", &[]) + RULES,
        op("^/v1/webhooks$", "VENDOR", &[]) + RULES,
        op("^/v1/customers/", "AGENT", &[("path.customer_id", CUSTOMER.into())]) + READS,
        op("^/v1/partners/[^/]+/(tickets|customers|rejections)$", "AGENT", &[("path.partner_id", PARTNER.into())])
            + READS,
        op(
            "^/v1/partners/[^/]+/access$",
            "AGENT",
            &[
                ("path.partner_id", PARTNER.into()),
                ("query.user_id", AGENT.into()),
                ("query.customer_id", CUSTOMER.into()),
            ],
        ) + READS,
        op("^/v1/tickets$", "VENDOR", &[]) + READS,
        op("^/v1/tickets/", "AGENT", &[("path.ticket_id", id("ticket"))]) + READS,
        op("^/v1/audit/rejections$", "AUDITOR", &[]) + READS,
        op("^/v1/(audit/verify|events)$", "AUDITOR", &[]),
        op("^/v1/queues/[^/]+$", "VENDOR", &[("path.queue", "commercial.office365".into())]),
        op("^/v1/queues/.*/messages$", "VENDOR", &[("path.queue", "commercial.office365".into())]),
        // Acking works once: every later ack of the message is 404 by design.
        op(
            "^/v1/queues/.*/ack$",
            "VENDOR",
            &[("path.queue", "commercial.office365".into()), ("path.id", id("message"))],
        ) + "warnings = false\n",
        // The operations on one webhook work on the seeded subscription, but delete,
        // which takes no fixed id: the stateful phase deletes what it creates or lists
        // (the hook keeps the seeded one from being deleted). A fixed id that had been
        // deleted would override the id of a webhook just created, and Schemathesis
        // report that webhook missing (what issue 28's "created, then 404" was).
        op("^/v1/webhooks/", "VENDOR", &[("path.webhook_id", id("webhook"))]) + "exclude-method = 'DELETE'\n",
        "[[operations]]\ninclude-path-regex = '^/v1/webhooks/[^/]+$'\ninclude-method = 'DELETE'\nheaders = { Authorization = 'Bearer ${BEHALF_ST_VENDOR}' }\nwarnings = false\n".to_owned(),
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_holds_under_schemathesis() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = root.join("tools/st");
    assert!(st.join("schemathesis").is_dir(), "Schemathesis is not installed in {}: run ./dev setup", st.display());

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--webhooks-allow-insecure"]);
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let mut tokens = Tokens::new(c.clone(), &server.admin);
    let (vendor, agent_token, auditor) =
        (tokens.of(&Principal::Vendor).await, tokens.of(&agent()).await, tokens.of(&Principal::Auditor).await);

    // Real data for the operations that read or change one thing: a ticket (escalated,
    // so the vendor's queue has a message to ack) and a webhook subscription.
    let opened = tokens.must(&agent(), &open_o365()).await;
    let ticket = opened["ticket_id"].as_str().unwrap().to_owned();
    tokens.must(&agent(), &json!({"type": "ticket.escalate", "ticket_id": ticket, "reason": "production down"})).await;
    // The queue is filled as the log is followed: wait for the message.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let message = loop {
        let leased = c.http.get(format!("{}/v1/queues/commercial.office365/messages?limit=1&lease_ms=1000", c.base));
        let leased: Value = leased.bearer_auth(&vendor).send().await.unwrap().json().await.unwrap();
        if let Some(id) = leased["messages"][0]["id"].as_str() {
            break id.to_owned();
        }
        support::before(deadline, "the escalation's queue message");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let hook = c.http.post(format!("{}/v1/webhooks", c.base)).bearer_auth(&vendor);
    // On another queue than the one leased and acked: a subscription takes a queue's
    // messages to deliver them.
    let hook = hook.json(&json!({"queue": "commercial.azure", "url": "http://127.0.0.1:9/hook"}));
    let hook: Value = hook.send().await.unwrap().json().await.unwrap();
    let webhook = hook["id"].as_str().unwrap_or_else(|| panic!("a webhook: {hook}")).to_owned();
    let spare =
        c.http.post(format!("{}/v1/tokens", c.base)).bearer_auth(&server.admin).json(&json!({"kind": "auditor"}));
    let spare: Value = spare.send().await.unwrap().json().await.unwrap();
    let token = spare["token_id"].as_str().unwrap_or_else(|| panic!("a token: {spare}")).to_owned();
    let ids = json!({"ticket": ticket, "message": message, "webhook": webhook, "token": token});

    let file = dir.path().join("schemathesis.toml");
    std::fs::write(&file, config(&ids)).unwrap();
    let examples = std::env::var("BEHALF_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let before = answered(&c).await;
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(&file)
        .args(["run", &format!("{}/v1/openapi.json", server.base)])
        .args(["--checks", "all", "--seed", "20261205", "--max-examples", &examples, "--no-color"])
        .args(["--suppress-health-check", "all", "--exclude-path", "/console/"])
        .env(
            "PYTHONPATH",
            format!(
                "{}:{}",
                st.display(),
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/schemathesis").display()
            ),
        )
        .env("SCHEMATHESIS_HOOKS", "behalf_hooks")
        .env("BEHALF_ST_ADMIN", &server.admin)
        .env("BEHALF_ST_VENDOR", &vendor)
        .env("BEHALF_ST_AGENT", &agent_token)
        .env("BEHALF_ST_AUDITOR", &auditor)
        .env("BEHALF_ST_CUSTOMER", CUSTOMER)
        .env("BEHALF_ST_WEBHOOK", &webhook)
        .current_dir(dir.path())
        .output()
        .expect("python3 runs Schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "Schemathesis found failures (above)");
    assert!(!report.contains("Missing test data") && !report.contains("Authentication failed"), "untested operations");

    // Every operation was answered 2xx at least once during the run (the server's own
    // request metrics, before and after): reached, not only refused.
    let after = answered(&c).await;
    let doc: Value = c.http.get(format!("{}/v1/openapi.json", c.base)).send().await.unwrap().json().await.unwrap();
    let mut unreached = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let key = (path.clone(), method.to_uppercase());
            let n = after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0);
            if n == 0 && path != "/console/" {
                unreached.push(format!("{} {path}", key.1));
            }
        }
    }
    assert!(unreached.is_empty(), "never answered 2xx under Schemathesis: {unreached:?}");
}

/// 2xx answers so far, by route template and method (`/metrics`).
async fn answered(c: &Client) -> std::collections::HashMap<(String, String), u64> {
    let text = c.http.get(format!("{}/metrics", c.base)).send().await.unwrap().text().await.unwrap();
    let mut out = std::collections::HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("behalf_http_request_duration_seconds_count{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).map(|i| i + name.len() + 2)?;
            line[start..].split('"').next().map(str::to_owned)
        };
        let (Some(route), Some(method), Some(status)) = (label("route"), label("method"), label("status")) else {
            continue;
        };
        if status.starts_with('2') {
            let n: u64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            *out.entry((route, method)).or_default() += n;
        }
    }
    out
}
