//! `behalf import graph`: GDAP facts from Microsoft Graph response pages, sent as
//! `gdap.relationship.upsert` and `gdap.assignment.upsert` through the producers'
//! client with a `partner_sync` token.
//!
//! Input: verbatim pages of `GET /tenantRelationships/delegatedAdminRelationships` and
//! `…/delegatedAdminRelationships/{id}/accessAssignments` (`@odata.context` and
//! `value`; further pages as further files, in any order). An assignment page's
//! relationship is read from its `@odata.context`. Unknown fields are ignored; a
//! status Behalf does not know (`unknownFutureValue`) is reported and skipped. Every
//! file is read and checked before anything is sent. Command ids come from the Graph
//! id and `lastModifiedDateTime`, so importing the same pages again appends nothing
//! (R26), and a later change of the same object is a new command.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use behalf_client::{Client, Error, Retry};
use behalf_domain::{AssignmentStatus, Command, RelationshipStatus};
use serde_json::{json, Value};

#[derive(clap::Subcommand, Debug)]
pub enum ImportCmd {
    /// Import GDAP relationships and access assignments from Microsoft Graph response
    /// pages (JSON files as Graph returned them)
    Graph(GraphArgs),
}

#[derive(clap::Args, Debug)]
pub struct GraphArgs {
    /// Behalf's HTTP or HTTPS base URL (e.g. http://127.0.0.1:8080)
    #[arg(long, value_name = "URL")]
    server: String,
    /// A partner_sync token of the partner (BEHALF_TOKEN keeps it out of `ps`)
    #[arg(long, env = "BEHALF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The partner whose relationships these are (its tenant id)
    #[arg(long, value_name = "ID")]
    partner_id: String,
    /// A CA certificate (PEM) to trust for an HTTPS --server signed by a private CA
    #[arg(long, value_name = "FILE")]
    server_ca: Option<PathBuf>,
    /// Graph response pages: relationships and access assignments, in any order
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// One command to send, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub command_id: String,
    pub body: Value,
    pub what: String,
}

/// What the pages hold: facts to send, and what was skipped and why.
#[derive(Debug, Default, PartialEq)]
pub struct Pages {
    pub relationships: Vec<Fact>,
    pub assignments: Vec<Fact>,
    pub skipped: Vec<String>,
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn roles(item: &Value) -> Vec<String> {
    item.pointer("/accessDetails/unifiedRoles")
        .and_then(Value::as_array)
        .map(|rs| rs.iter().filter_map(|r| text(r, "roleDefinitionId")).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A command id from a Graph object: its kind, id and last change (R26: the same page
/// again is the same command).
fn command_id(kind: &str, item: &Value) -> String {
    let id = text(item, "id").unwrap_or_default();
    let changed: String =
        text(item, "lastModifiedDateTime").unwrap_or("0").chars().filter(char::is_ascii_digit).collect();
    format!("graph-{kind}-{id}-{changed}")
}

/// The relationship id an access-assignment page's `@odata.context` names:
/// `…/delegatedAdminRelationships('ID')/accessAssignments`.
fn assignment_page_relationship(context: &str) -> Option<String> {
    let (_, rest) = context.split_once("delegatedAdminRelationships('")?;
    let (id, rest) = rest.split_once("')")?;
    rest.contains("accessAssignments").then(|| id.to_owned())
}

impl Pages {
    /// Reads one page (the file's name for messages); an error names what is wrong.
    pub fn read(&mut self, name: &str, page: &Value, partner_id: &str) -> anyhow::Result<()> {
        let context =
            text(page, "@odata.context").with_context(|| format!("{name}: no @odata.context: not a Graph page"))?;
        let items = page.get("value").and_then(Value::as_array).with_context(|| format!("{name}: no value array"))?;
        if let Some(relationship) = assignment_page_relationship(context) {
            for item in items {
                self.assignment(name, item, &relationship)?;
            }
        } else if context.contains("delegatedAdminRelationships") {
            for item in items {
                self.relationship(name, item, partner_id)?;
            }
        } else {
            bail!(
                "{name}: @odata.context {context:?} is neither delegatedAdminRelationships nor their accessAssignments"
            );
        }
        Ok(())
    }

    /// A Graph object's id and status; a status Behalf does not know is recorded as
    /// skipped (`None`), not guessed.
    fn id_and_status<'a, S>(
        &mut self,
        name: &str,
        kind: &str,
        item: &'a Value,
        parse: fn(&str) -> Option<S>,
    ) -> anyhow::Result<Option<(&'a str, S)>> {
        let id = text(item, "id").with_context(|| format!("{name}: a {kind} without an id"))?;
        let graph_status = text(item, "status").unwrap_or_default();
        match parse(graph_status) {
            Some(status) => Ok(Some((id, status))),
            None => {
                self.skipped.push(format!("{kind} {id}: status {graph_status:?} is not one Behalf knows"));
                Ok(None)
            }
        }
    }

    fn relationship(&mut self, name: &str, item: &Value, partner_id: &str) -> anyhow::Result<()> {
        let Some((id, status)) = self.id_and_status(name, "relationship", item, RelationshipStatus::parse)? else {
            return Ok(());
        };
        let customer = item
            .pointer("/customer/tenantId")
            .and_then(Value::as_str)
            .with_context(|| format!("{name}: relationship {id} has no customer.tenantId"))?;
        let mut body = json!({
            "type": "gdap.relationship.upsert",
            "relationship_id": id,
            "partner_id": partner_id,
            "customer_id": customer,
            "status": status.as_str(),
            "roles": roles(item),
            "duration": text(item, "duration").unwrap_or("P730D"),
            "auto_extend": text(item, "autoExtendDuration").unwrap_or("PT0S"),
        });
        if let Some(at) = text(item, "activatedDateTime") {
            body["activated_at"] = at.into();
        }
        self.relationships.push(Fact { command_id: command_id("rel", item), body, what: format!("relationship {id}") });
        Ok(())
    }

    fn assignment(&mut self, name: &str, item: &Value, relationship: &str) -> anyhow::Result<()> {
        let Some((id, status)) = self.id_and_status(name, "assignment", item, AssignmentStatus::parse)? else {
            return Ok(());
        };
        let group = item
            .pointer("/accessContainer/accessContainerId")
            .and_then(Value::as_str)
            .with_context(|| format!("{name}: assignment {id} has no accessContainer.accessContainerId"))?;
        let body = json!({
            "type": "gdap.assignment.upsert",
            "assignment_id": id,
            "relationship_id": relationship,
            "group_id": group,
            "roles": roles(item),
            "status": status.as_str(),
        });
        self.assignments.push(Fact { command_id: command_id("asg", item), body, what: format!("assignment {id}") });
        Ok(())
    }
}

pub async fn run(cmd: ImportCmd) -> anyhow::Result<()> {
    let ImportCmd::Graph(a) = cmd;
    // Every file first: one that is not a Graph page stops the import before anything is sent.
    let mut pages = Pages::default();
    for file in &a.files {
        let name = file.display().to_string();
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {name}"))?;
        let page: Value = serde_json::from_slice(&bytes).with_context(|| format!("{name}: not JSON"))?;
        pages.read(&name, &page, &a.partner_id)?;
    }
    let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(35));
    if let Some(ca) = &a.server_ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        http = http.add_root_certificate(
            reqwest::Certificate::from_pem(&pem).context("--server-ca is not a PEM certificate")?,
        );
    }
    let Some(token) = a.token else {
        bail!("give the partner_sync token with --token or BEHALF_TOKEN");
    };
    let client = Client::with_http(http.build()?, &a.server, &token).with_retry(Retry::default());
    let total = pages.relationships.len() + pages.assignments.len();
    let bar = indicatif::ProgressBar::new(total as u64);
    let (mut accepted, mut unchanged, mut refused) = (0, 0, Vec::new());
    // Relationships before their assignments.
    for fact in pages.relationships.iter().chain(&pages.assignments) {
        let command: Command = serde_json::from_value(fact.body.clone())
            .with_context(|| format!("{}: not a command Behalf takes", fact.what))?;
        match client.send_as(&command, &fact.command_id, None).await {
            Ok(a) if a.duplicate || a.events.is_empty() => unchanged += 1,
            Ok(_) => accepted += 1,
            Err(Error::Refused { refusal, .. }) => refused.push(format!(
                "{}: {} ({}) {}",
                fact.what,
                refusal.code,
                refusal.rule.as_deref().unwrap_or("-"),
                refusal.message
            )),
            Err(e) => bail!("{}: {e}", fact.what),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "sent {total}: {accepted} accepted, {unchanged} already known, {} refused, {} skipped",
        refused.len(),
        pages.skipped.len()
    );
    for line in refused.iter().chain(&pages.skipped) {
        println!("  {line}");
    }
    if refused.is_empty() {
        Ok(())
    } else {
        bail!("{} fact(s) were refused", refused.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTNER: &str = "11111111-0000-4000-8000-000000000001";

    #[test]
    fn graph_pages_map_to_gdap_commands() {
        let rels = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#tenantRelationships/delegatedAdminRelationships",
            "@odata.nextLink": "https://graph.microsoft.com/v1.0/…&$skiptoken=x",
            "value": [
                {"@odata.type": "#microsoft.graph.delegatedAdminRelationship", "id": "rel-9", "displayName": "Contoso",
                 "duration": "P730D", "status": "approvalPending", "autoExtendDuration": "P180D",
                 "createdDateTime": "2026-05-01T00:00:00Z", "activatedDateTime": null,
                 "lastModifiedDateTime": "2026-05-02T10:11:12.345Z", "endDateTime": null,
                 "customer": {"tenantId": "22222222-0000-4000-8000-000000000001", "displayName": "Fabrikam"},
                 "accessDetails": {"unifiedRoles": [{"roleDefinitionId": "729827e3-9c14-49f7-bb1b-9608f156bbb8"}]},
                 "somethingNew": 1},
                {"id": "rel-x", "status": "unknownFutureValue", "customer": {"tenantId": "c"}}
            ]
        });
        let asgs = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#tenantRelationships/delegatedAdminRelationships('rel-9')/accessAssignments",
            "value": [{"id": "asg-9", "status": "active", "lastModifiedDateTime": "2026-05-03T00:00:00Z",
                       "accessContainer": {"accessContainerId": "44444444-0000-4000-8000-000000000001", "accessContainerType": "securityGroup"},
                       "accessDetails": {"unifiedRoles": [{"roleDefinitionId": "729827e3-9c14-49f7-bb1b-9608f156bbb8"}]}}]
        });
        let mut p = Pages::default();
        p.read("assignments.json", &asgs, PARTNER).unwrap();
        p.read("relationships.json", &rels, PARTNER).unwrap();
        assert_eq!(p.relationships.len(), 1);
        let r = &p.relationships[0];
        assert_eq!(r.command_id, "graph-rel-rel-9-20260502101112345");
        assert_eq!(r.body["status"], "approval_pending");
        assert_eq!(r.body["auto_extend"], "P180D");
        assert_eq!(r.body["customer_id"], "22222222-0000-4000-8000-000000000001");
        assert!(r.body.get("activated_at").is_none(), "null activation is left out");
        let a = &p.assignments[0];
        assert_eq!(
            (a.body["relationship_id"].as_str(), a.body["group_id"].as_str()),
            (Some("rel-9"), Some("44444444-0000-4000-8000-000000000001"))
        );
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        for f in p.relationships.iter().chain(&p.assignments) {
            let _: Command = serde_json::from_value(f.body.clone()).expect("a command Behalf takes");
        }
    }

    #[test]
    fn what_is_not_a_graph_page_is_refused_by_name() {
        let mut p = Pages::default();
        let e = p.read("notes.json", &json!({"value": []}), PARTNER).unwrap_err().to_string();
        assert!(e.contains("notes.json") && e.contains("@odata.context"), "{e}");
        let users = json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", "value": []});
        assert!(p.read("users.json", &users, PARTNER).unwrap_err().to_string().contains("users.json"));
    }
}
