//! The reads a console needs (issue 15's API part), through the real binary: who am I,
//! a partner's customers with their relationships' state, a partner's own refusals, a
//! queue's depth without leasing, and the chain's status for auditors — each scoped
//! by the API (R24), not by the page.

use crate::support;

use behalf_domain::Principal;
use serde_json::{json, Value};
use support::world::*;
use support::{send_world, Client, Server};

#[tokio::test(flavor = "multi_thread")]
async fn the_console_reads_are_answered_and_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let agent_token = c.token(&server.admin, &agent()).await;
    let other = c.token(&server.admin, &agent_of(PROVIDER, PROVIDER_AGENT)).await;
    let vendor = c.token(&server.admin, &Principal::Vendor).await;
    let auditor = c.token(&server.admin, &Principal::Auditor).await;

    // Who am I.
    let (status, me) = c.get(&agent_token, "/v1/whoami").await;
    assert_eq!((status, me["kind"].as_str(), me["partner_id"].as_str()), (200, Some("partner_agent"), Some(PARTNER)));
    assert_eq!(c.get("bh_nope_nope", "/v1/whoami").await.0, 401);

    // A partner's customers, its own only.
    let (status, mine) = c.get(&agent_token, &format!("/v1/partners/{PARTNER}/customers")).await;
    assert_eq!(status, 200, "{mine}");
    let customer =
        mine["customers"].as_array().unwrap().iter().find(|x| x["customer_id"] == CUSTOMER).expect("its customer");
    assert_eq!(customer["relationships"][0]["live"], true, "{customer}");
    assert_eq!(c.get(&other, &format!("/v1/partners/{PARTNER}/customers")).await.0, 403, "another partner's customers");
    assert_eq!(c.get(&vendor, &format!("/v1/partners/{PARTNER}/customers")).await.0, 200);

    // A refusal of each partner; each sees its own only.
    let (_, refused) = c.post(&agent_token, &open(json!({"workload": "intune"}))).await;
    assert_eq!(refused["code"], "ticket.unsupported_workload");
    let (_, refused) = c.post(&other, &open(json!({"workload": "intune"}))).await;
    assert_eq!(refused["code"], "ticket.unsupported_workload");
    let rejections = |v: &Value| v["rejections"].as_array().map(Vec::len).unwrap_or(0);
    // The refusals are in the log now; read after them (an answer names no position).
    let head = c.metric("behalf_log_head").await;
    let (status, own) = c.get(&agent_token, &format!("/v1/partners/{PARTNER}/rejections?min_position={head}")).await;
    assert_eq!((status, rejections(&own)), (200, 1), "{own}");
    assert!(own["rejections"][0]["principal"]["partner_id"] == PARTNER);
    assert_eq!(c.get(&agent_token, &format!("/v1/partners/{PROVIDER}/rejections")).await.0, 403);

    // A queue's depth, without leasing: an escalation waits in the vendor's queue.
    let (status, opened) = c.post(&agent_token, &open_o365()).await;
    assert_eq!(status, 201, "{opened}");
    let escalate = json!({"type":"ticket.escalate","ticket_id":opened["ticket_id"],"reason":"down for everyone"});
    assert_eq!(c.post(&agent_token, &escalate).await.0, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let depth = loop {
        let (status, depth) = c.get(&vendor, "/v1/queues/commercial.office365").await;
        assert_eq!(status, 200, "{depth}");
        if depth["depth"].as_u64() >= Some(1) {
            break depth;
        }
        support::before(deadline, "the escalation reaches the queue");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(depth["leased"], 0, "looking leases nothing: {depth}");
    assert!(depth["oldest_at"].is_string(), "{depth}");
    let (_, again) = c.get(&vendor, "/v1/queues/commercial.office365").await;
    assert_eq!(again["depth"], depth["depth"], "looking twice takes nothing");
    let (_, leased) = c.get(&vendor, "/v1/queues/commercial.office365/messages?lease_ms=60000").await;
    assert!(!leased["messages"].as_array().unwrap().is_empty(), "the work is still there for a worker");
    assert_eq!(c.get(&agent_token, "/v1/queues/commercial.office365").await.0, 403, "workload queues are the vendor's");

    // Tickets across partners, for the vendor side: those waiting for a partner.
    let attention = json!({"type":"ticket.request_attention","ticket_id":opened["ticket_id"],"text":"logs please"});
    let (status, asked) = c.post(&vendor, &attention).await;
    assert_eq!(status, 200, "{asked}");
    // Read after that write (an earlier position may be answered before the views have it).
    let at = asked["position"].as_u64().unwrap();
    let (status, waiting) = c.get(&vendor, &format!("/v1/tickets?status=attention_needed&min_position={at}")).await;
    assert_eq!(status, 200, "{waiting}");
    let ids: Vec<&str> =
        waiting["tickets"].as_array().unwrap().iter().filter_map(|t| t["ticket_id"].as_str()).collect();
    assert!(ids.contains(&opened["ticket_id"].as_str().unwrap()), "{waiting}");
    assert!(waiting["tickets"].as_array().unwrap().iter().all(|t| t["status"] == "attention_needed"));
    assert_eq!(c.get(&agent_token, "/v1/tickets").await.0, 403, "partners read their own lists");

    // The chain, for auditors.
    let (status, chain) = c.get(&auditor, "/v1/audit/verify").await;
    assert_eq!((status, chain["ok"].as_bool()), (200, Some(true)), "{chain}");
    assert!(chain["verified"].as_u64() > Some(10));
    assert_eq!(c.get(&agent_token, "/v1/audit/verify").await.0, 403);
}

fn open(extra: Value) -> Value {
    merge(open_o365(), extra)
}
