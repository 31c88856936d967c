//! `behalf import graph` against the real binary: Graph pages in any order become the
//! partner's GDAP facts; the same pages again append nothing; a page reporting the
//! relationship terminated makes tickets under it refused (R5); a file that is not a
//! Graph page stops the import, names the file, and sends nothing.

use crate::support;

use std::process::Command;

use serde_json::{json, Value};
use support::world::*;
use support::{send_world, Client, Server};

fn import(server: &Server, token: &str, files: &[&std::path::Path]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_behalf"))
        .args(["import", "graph", "--server", &server.base, "--partner-id", PARTNER])
        .args(files)
        .env("BEHALF_TOKEN", token)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn relationships(status: &str, modified: &str) -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#tenantRelationships/delegatedAdminRelationships",
        "value": [
            {"id": "rel-1", "displayName": "Contoso–Fabrikam", "duration": "P730D", "status": status,
             "autoExtendDuration": "PT0S", "activatedDateTime": now().plus_millis(-5 * 86_400_000).to_string(),
             "lastModifiedDateTime": modified, "createdDateTime": "2026-01-01T00:00:00Z",
             "customer": {"tenantId": CUSTOMER, "displayName": "Fabrikam"},
             "accessDetails": {"unifiedRoles": [{"roleDefinitionId": HELPDESK}, {"roleDefinitionId": GLOBAL_READER}, {"roleDefinitionId": DIRECTORY_READERS}]}},
            {"id": "rel-future", "status": "unknownFutureValue", "customer": {"tenantId": CUSTOMER}}
        ]
    })
}

fn assignments() -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#tenantRelationships/delegatedAdminRelationships('rel-1')/accessAssignments",
        "value": [{"id": "asg-1", "status": "active", "lastModifiedDateTime": "2026-03-01T00:00:00Z",
                   "accessContainer": {"accessContainerId": GROUP, "accessContainerType": "securityGroup"},
                   "accessDetails": {"unifiedRoles": [{"roleDefinitionId": HELPDESK}]}}]
    })
}

fn now() -> behalf_domain::Timestamp {
    support::now()
}

#[tokio::test(flavor = "multi_thread")]
async fn graph_pages_become_gdap_facts_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let c = Client::of(&server);
    send_world(&c, &server.admin).await;
    let sync_token = c.token(&server.admin, &sync(PARTNER)).await;
    let agent_token = c.token(&server.admin, &agent()).await;
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, v: &Value| {
        let p = files.path().join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        p
    };
    // Assignments first on the command line: the importer sends relationships first.
    let asg = write("assignments.json", &assignments());
    let rel = write("relationships.json", &relationships("active", "2026-03-01T00:00:00Z"));
    let (ok, out) = import(&server, &sync_token, &[&asg, &rel]);
    assert!(ok, "{out}");
    assert!(out.contains("sent 2:") && out.contains("1 skipped") && out.contains("unknownFutureValue"), "{out}");
    let (status, opened) = c.post(&agent_token, &open_o365()).await;
    assert_eq!(status, 201, "tickets under the imported relationship: {opened}");

    // Again: nothing appended.
    let events_before =
        c.get(&c.token(&server.admin, &behalf_domain::Principal::Auditor).await, "/v1/events?limit=1000").await;
    let (ok, out) = import(&server, &sync_token, &[&rel, &asg]);
    assert!(ok && out.contains("0 accepted, 2 already known"), "{out}");
    let auditor = c.token(&server.admin, &behalf_domain::Principal::Auditor).await;
    let events_after = c.get(&auditor, "/v1/events?limit=1000").await;
    assert_eq!(events_after.1["events"].as_array().map(Vec::len), events_before.1["events"].as_array().map(Vec::len));

    // Graph reports it terminated: tickets under it are refused (R5).
    let ended = write("terminated.json", &relationships("terminated", "2026-04-01T00:00:00Z"));
    let (ok, out) = import(&server, &sync_token, &[&ended]);
    assert!(ok && out.contains("1 accepted"), "{out}");
    let (status, refused) = c.post(&agent_token, &open_o365()).await;
    assert_eq!(
        (status, refused["code"].as_str(), refused["rule"].as_str()),
        (403, Some("gdap.relationship_inactive"), Some("R5")),
        "{refused}"
    );

    // Not a Graph page: the import stops, names the file, and sends nothing.
    let notes = write("notes.json", &json!({"hello": "world"}));
    let count = |v: &(u16, Value)| v.1["events"].as_array().map(Vec::len);
    let before = c.get(&auditor, "/v1/events?limit=1000").await;
    let (ok, out) = import(&server, &sync_token, &[&rel, &notes]);
    assert!(!ok && out.contains("notes.json"), "{out}");
    assert_eq!(count(&c.get(&auditor, "/v1/events?limit=1000").await), count(&before), "nothing was sent");
}
