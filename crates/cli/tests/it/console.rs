//! The operator console in a real headless Chromium (Debian's `chromium`, which
//! `./dev setup` installs): each role's token sees its view, and one partner never sees
//! another's tickets — the API's scoping, not the page's. Screenshots of each view go
//! to `target/tmp/console-*.png` for people to look at.

use crate::support;

use std::process::Command;

use behalf_domain::Principal;
use serde_json::json;
use support::world::*;
use support::{send_world, Client, Server};

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return c;
        }
    }
    panic!("no headless Chromium: run ./dev setup (it installs Debian's chromium)");
}

const FLAGS: [&str; 5] =
    ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=8000"];

/// The page as the browser built it, after its requests.
fn dom(url: &str) -> String {
    let out = Command::new(chromium()).args(FLAGS).arg("--dump-dom").arg(url).output().unwrap();
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot(url: &str, name: &str) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("console-{name}.png"));
    let out = Command::new(chromium())
        .args(FLAGS)
        .arg(format!("--screenshot={}", path.display()))
        .arg("--window-size=1400,900")
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success() && path.exists(), "screenshot {name}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_sees_its_view_and_nothing_of_another_partner() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(dir.path(), &["--webhooks-allow-insecure", "--webhooks-retry-schedule", "0s,100ms"]);
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let alpha = c.token(&server.admin, &agent()).await;
    // Partner A's queue is pushed to a receiver that is not there: the console shows it failing.
    let hook = json!({"queue": format!("partner.{PARTNER}"), "url": "http://127.0.0.1:9/hook?token=s3cret"});
    let r = c.http.post(format!("{}/v1/webhooks", c.base)).bearer_auth(&alpha).json(&hook).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let bravo = c.token(&server.admin, &agent_of(PROVIDER, PROVIDER_AGENT)).await;
    let vendor = c.token(&server.admin, &Principal::Vendor).await;
    let auditor = c.token(&server.admin, &Principal::Auditor).await;
    let (status, a) = c.post(&alpha, &merge(open_o365(), json!({"title": "Alpha-only mail outage"}))).await;
    assert_eq!(status, 201, "{a}");
    let bravo_contact =
        json!({"first_name":"B","last_name":"R","email":"bravo@provider.example","preferred_contact":"email"});
    let (status, b) = c
        .post(&bravo, &merge(open_o365(), json!({"title": "Bravo-only sign-in trouble", "contact": bravo_contact})))
        .await;
    assert_eq!(status, 201, "{b}");
    let escalate = json!({"type":"ticket.escalate","ticket_id":a["ticket_id"],"reason":"down for everyone"});
    assert_eq!(c.post(&alpha, &escalate).await.0, 200);
    let attention =
        json!({"type":"ticket.request_attention","ticket_id":b["ticket_id"],"text":"please send the sign-in logs"});
    assert_eq!(c.post(&vendor, &attention).await.0, 200);
    let attention_a = json!({"type":"ticket.request_attention","ticket_id":a["ticket_id"],"text":"which mailbox?"});
    assert_eq!(c.post(&vendor, &attention_a).await.0, 200);
    let reopen = json!({"type":"ticket.reopen","ticket_id":a["ticket_id"],"reason":"not closed"});
    assert_eq!(c.post(&alpha, &reopen).await.0, 409, "a refusal on the ticket");
    // Wait for the notifier, so the vendor's page has the escalation to show.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c.get(&vendor, "/v1/queues/commercial.office365").await.1["depth"].as_u64() < Some(1) {
        support::before(deadline, "the escalation reaches the queue");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let page = |token: &str| format!("{}/console/#token={token}", server.base);
    let webhook = format!("{}/v1/webhooks", server.base);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, listed) = c.get(&alpha, "/v1/webhooks").await;
        let id = listed["webhooks"][0]["id"].as_str().unwrap().to_owned();
        let r = c.http.get(format!("{webhook}/{id}/deliveries")).bearer_auth(&alpha).send().await.unwrap();
        if r.json::<serde_json::Value>().await.unwrap()["failed"] == 1 {
            break;
        }
        support::before(deadline, "the delivery to the missing receiver to fail");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let seen_a = dom(&page(&alpha));
    assert!(
        seen_a.contains("Webhooks") && seen_a.contains("127.0.0.1:9") && seen_a.contains("could not connect"),
        "{seen_a}"
    );
    assert!(!seen_a.contains("s3cret"), "the URL's credentials are not shown");
    assert!(seen_a.contains("Alpha-only mail outage"), "partner A sees its ticket: {seen_a}");
    assert!(!seen_a.contains("Bravo-only"), "partner A sees nothing of partner B");
    assert!(seen_a.contains("Open") && seen_a.contains("to target"), "a board with the SLA clock");
    let seen_b = dom(&page(&bravo));
    assert!(seen_b.contains("Bravo-only sign-in trouble"), "partner B sees its ticket: {seen_b}");
    assert!(!seen_b.contains("Alpha-only"), "partner B sees nothing of partner A");
    let seen_v = dom(&page(&vendor));
    assert!(seen_v.contains("Queues") && seen_v.contains("commercial.office365"), "{seen_v}");
    assert!(seen_v.contains("Escalations waiting") && seen_v.contains("down for everyone"), "the escalation: {seen_v}");
    assert!(seen_v.contains("Waiting for the partner") && seen_v.contains("Bravo-only sign-in trouble"), "{seen_v}");
    let seen_au = dom(&page(&auditor));
    assert!(seen_au.contains("The hash chain verifies"), "{seen_au}");
    // A ticket's story: every event, its actor, and the grant that allowed it (R29).
    let story = dom(&format!("{}/console/#token={alpha}&ticket={}", server.base, a["ticket_id"].as_str().unwrap()));
    assert!(story.contains("Story") && story.contains("TicketOpened") && story.contains("TicketEscalated"), "{story}");
    assert!(
        story.contains("relationship rel-1") && story.contains("SLA timeline"),
        "the grant and the timeline: {story}"
    );
    assert!(!story.contains(&alpha), "the token is not in the page");
    let other_story =
        dom(&format!("{}/console/#token={bravo}&ticket={}", server.base, a["ticket_id"].as_str().unwrap()));
    assert!(other_story.contains("ticket.not_found") && !other_story.contains("Alpha-only"), "{other_story}");
    // No token: the sign-in box; a bad one: refused, and the box again.
    assert!(dom(&format!("{}/console/", server.base)).contains("Sign in"));
    assert!(dom(&page("bh_bad_token")).contains("That token was not accepted"));

    for (name, token) in [("partner", &alpha), ("vendor", &vendor), ("auditor", &auditor)] {
        screenshot(&page(token), name);
    }
}

#[test]
fn demo_serve_keeps_the_story_up_with_a_console_link_per_role() {
    let args = ["demo", "--serve", "--listen", "127.0.0.1:0"];
    let (child, partner_link) = support::spawn_until(&args, "  Rina, Tailspin's agent: ");
    let _demo = support::Role(child);
    assert!(partner_link.contains("/console/#token=bh_"), "{partner_link}");
    // The demo's tickets, in the console of an agent whose grant is live.
    let seen = dom(&partner_link);
    assert!(seen.contains("Shared mailbox lost its permissions") && seen.contains("Fabrikam"), "{seen}");
}
