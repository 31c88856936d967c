//! `behalf demo`: the seed's story, told through the real HTTP API of a real server on
//! a fresh temporary store. Each step prints what was sent, the answer and the rule.
//! Exits non-zero if any step is answered otherwise than the rules say.

use std::time::Duration;

use anyhow::{bail, Context as _};
use behalf_client::{Client, Refusal, Retry};
use behalf_domain::Command;
use serde_json::{json, Value};

const CONTOSO: &str = "c0a1b2c3-0000-4000-8000-000000000001"; // direct bill
const NORTHWIND: &str = "c0a1b2c3-0000-4000-8000-000000000002"; // indirect provider
const TAILSPIN: &str = "c0a1b2c3-0000-4000-8000-000000000003"; // indirect reseller
const FABRIKAM: &str = "f0a1b2c3-0000-4000-8000-000000000001"; // customer
const AYU: &str = "a0a1b2c3-0000-4000-8000-000000000001"; // Contoso's admin agent
const RINA: &str = "a0a1b2c3-0000-4000-8000-000000000002"; // Tailspin's admin agent
const CONTOSO_AGENTS: &str = "90a1b2c3-0000-4000-8000-000000000001";
const TAILSPIN_AGENTS: &str = "90a1b2c3-0000-4000-8000-000000000002";
const HELPDESK: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";

pub struct Demo {
    http: reqwest::Client,
    base: String,
    pub failures: Vec<String>,
}

enum Expect {
    Accepted,
    Refused(&'static str),
}

impl Demo {
    pub fn new(base: String) -> anyhow::Result<Demo> {
        Ok(Demo {
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            base,
            failures: Vec::new(),
        })
    }

    /// Sends through the producers' client (one send: the story shows refusals as
    /// they come). Accepted answers come back as JSON for the narration.
    async fn send(&self, token: &str, body: &Value) -> anyhow::Result<Result<Value, Refusal>> {
        let command: Command = serde_json::from_value(body.clone()).context("the demo sends only API.md commands")?;
        let client = Client::with_http(self.http.clone(), &self.base, token).with_retry(Retry::NONE);
        match client.send(&command).await {
            Ok(a) => Ok(Ok(json!({
                "position": a.position, "ticket_id": a.ticket_id,
                "events": a.events.iter().map(|e| e.type_name()).collect::<Vec<_>>(),
            }))),
            Err(behalf_client::Error::Refused { refusal, .. }) => Ok(Err(refusal)),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends quietly (the cast and the grants); any refusal is a failure.
    async fn setup(&mut self, token: &str, body: Value) -> anyhow::Result<Value> {
        match self.send(token, &body).await? {
            Ok(answer) => Ok(answer),
            Err(r) => {
                self.failures.push(format!("set-up {} was refused: {} {}", body["type"], r.code, r.message));
                Ok(Value::Null)
            }
        }
    }

    /// Sends and narrates one step of the story.
    async fn step(
        &mut self,
        n: u32,
        title: &str,
        who: &str,
        token: &str,
        body: Value,
        expect: Expect,
    ) -> anyhow::Result<Value> {
        println!("\n── {n}. {title}");
        println!("   {who} sends {}", body);
        let answer = self.send(token, &body).await?;
        let ok = match (&expect, &answer) {
            (Expect::Accepted, Ok(a)) => {
                let types: Vec<&str> =
                    a["events"].as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
                println!("   ← accepted at position {}: {}", a["position"], types.join(", "));
                true
            }
            (Expect::Refused(code), Err(r)) => {
                println!("   ← rejected {} ({}): {}", r.code, r.rule.as_deref().unwrap_or("-"), r.message);
                if !r.details.is_empty() {
                    println!("     details {}", Value::Object(r.details.clone()));
                }
                r.code == *code
            }
            (_, Ok(a)) => {
                println!("   ← accepted {a}");
                false
            }
            (_, Err(r)) => {
                println!("   ← rejected {} {}", r.code, r.message);
                false
            }
        };
        if !ok {
            self.failures.push(format!("step {n} ({title}) was not answered as the rules say"));
        }
        Ok(answer.unwrap_or(Value::Null))
    }

    /// A read with a token, its JSON answer.
    async fn get(&self, token: &str, path: &str) -> anyhow::Result<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await?;
        Ok(r.json().await?)
    }

    pub async fn token(&self, admin: &str, spec: Value) -> anyhow::Result<String> {
        let r = self.http.post(format!("{}/v1/tokens", self.base)).bearer_auth(admin).json(&spec).send().await?;
        let v: Value = r.json().await?;
        v["token"].as_str().map(str::to_owned).with_context(|| format!("no token issued: {v}"))
    }
}

fn contact(email: &str) -> Value {
    json!({"first_name": "Ayu", "last_name": "Lestari", "email": email, "preferred_contact": "email"})
}

fn ticket(customer: &str, workload: &str, email: &str) -> Value {
    json!({
        "type": "ticket.open", "customer_id": customer, "workload": workload,
        "title": "Users cannot sign in to Outlook", "description": "Since 08:00 WIB every sign-in fails with AADSTS50058.",
        "severity": "moderate", "support_topic": "Exchange Online / Sign-in", "country_code": "ID", "contact": contact(email)
    })
}

/// A month before now: when the demo's grants were activated (for two years).
fn month_ago() -> String {
    use behalf_service::clock::Clock as _;
    behalf_service::clock::SystemClock.now().plus_millis(-30 * 86_400_000).to_string()
}

/// A GDAP relationship of `partner` with Fabrikam, Helpdesk Administrator, two years.
fn grant(partner: &str, rel: &str, status: &str, activated: &str) -> Value {
    json!({"type":"gdap.relationship.upsert","relationship_id":rel,"partner_id":partner,"customer_id":FABRIKAM,"status":status,"roles":[HELPDESK],"activated_at":activated,"duration":"P730D","auto_extend":"PT0S"})
}

/// The tokens of the cast.
pub struct Cast {
    pub contoso_sync: String,
    pub ayu: String,
    pub rina: String,
}

/// Registers the cast (tenants, users, groups, GDAP grants, subscriptions, RBAC, a
/// marketplace product, a support plan) through the API; used by the demo and by
/// `behalf bench`.
pub async fn cast(d: &mut Demo, admin: &str) -> anyhow::Result<Cast> {
    let vendor = d.token(admin, json!({"kind": "vendor", "label": "demo vendor"})).await?;
    let contoso_sync = d.token(admin, json!({"kind": "partner_sync", "partner_id": CONTOSO})).await?;
    let tailspin_sync = d.token(admin, json!({"kind": "partner_sync", "partner_id": TAILSPIN})).await?;
    let ayu = d.token(admin, json!({"kind": "partner_agent", "partner_id": CONTOSO, "user_id": AYU})).await?;
    let rina = d.token(admin, json!({"kind": "partner_agent", "partner_id": TAILSPIN, "user_id": RINA})).await?;

    for body in [
        json!({"type":"partner.register","partner_id":CONTOSO,"name":"Contoso","program":"direct_bill","domains":["contoso-partner.com"],"cloud":"commercial"}),
        json!({"type":"partner.register","partner_id":NORTHWIND,"name":"Northwind Distribution","program":"indirect_provider","domains":["northwind.example"],"cloud":"commercial"}),
        json!({"type":"partner.register","partner_id":TAILSPIN,"name":"Tailspin Reseller","program":"indirect_reseller","domains":["tailspin.example"],"cloud":"commercial","provider_id":NORTHWIND}),
        json!({"type":"customer.register","customer_id":FABRIKAM,"name":"Fabrikam Indonesia","domains":["fabrikam.co.id"],"cloud":"commercial"}),
        json!({"type":"customer.register","customer_id":CONTOSO,"name":"Contoso (own tenant)","domains":["contoso-partner.com"],"cloud":"commercial"}),
        json!({"type":"marketplace.product.register","product_id":"northwind-backup","isv_name":"Northwind Backup Ltd","support_url":"https://support.northwind-backup.example","support_email":"help@northwind-backup.example"}),
        json!({"type":"subscription.register","subscription_id":"fab-azure-1","customer_id":FABRIKAM,"workload":"azure","provider_id":CONTOSO,"billing":"paid"}),
        json!({"type":"subscription.register","subscription_id":"fab-azure-2","customer_id":FABRIKAM,"workload":"azure","provider_id":NORTHWIND,"reseller_id":TAILSPIN,"billing":"paid"}),
        json!({"type":"subscription.register","subscription_id":"fab-backup","customer_id":FABRIKAM,"workload":"azure","provider_id":CONTOSO,"billing":"paid","marketplace_product_id":"northwind-backup"}),
        json!({"type":"rbac.assign","assignment_id":"rbac-ayu","subscription_id":"fab-azure-1","principal_id":AYU,"role_id":CONTRIBUTOR}),
        json!({"type":"rbac.assign","assignment_id":"rbac-rina","subscription_id":"fab-azure-2","principal_id":RINA,"role_id":CONTRIBUTOR}),
        json!({"type":"support_plan.register","plan_id":"contoso-premier","partner_id":CONTOSO,"kind":"premier_unified","valid_until":"2099-01-01T00:00:00Z"}),
    ] {
        d.setup(&vendor, body).await?;
    }
    let activated = month_ago();
    let grant = |partner: &str, rel: &str, status: &str| grant(partner, rel, status, &activated);
    for (sync, partner, user, email, group, rel) in [
        (&contoso_sync, CONTOSO, AYU, "ayu@contoso-partner.com", CONTOSO_AGENTS, "rel-contoso-fabrikam"),
        (&tailspin_sync, TAILSPIN, RINA, "rina@tailspin.example", TAILSPIN_AGENTS, "rel-tailspin-fabrikam"),
    ] {
        d.setup(
            sync,
            json!({"type":"partner.user.upsert","partner_id":partner,"user_id":user,"email":email,"admin_agent":true}),
        )
        .await?;
        d.setup(sync, json!({"type":"group.member.add","partner_id":partner,"group_id":group,"user_id":user})).await?;
        d.setup(sync, grant(partner, rel, "active")).await?;
        d.setup(sync, json!({"type":"gdap.assignment.upsert","assignment_id":format!("{rel}-helpdesk"),"relationship_id":rel,"group_id":group,"roles":[HELPDESK],"status":"active"})).await?;
    }
    Ok(Cast { contoso_sync, ayu, rina })
}

/// `behalf demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// After the story, keep the server up (until Ctrl-C) and print a console link for
    /// each role: partner agent, vendor, auditor
    #[arg(long)]
    serve: bool,
    /// With --serve: where to listen
    #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
    listen: std::net::SocketAddr,
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let listen = if a.serve { a.listen } else { "127.0.0.1:0".parse()? };
    let server = crate::serve::Temporary::start_on(1024, listen).await?;
    let admin = server.admin.clone();
    println!("Behalf demo — a fresh store in {}, HTTP on {}", server.dir.path().display(), server.addr);
    println!("The admin token was written to {}.", server.admin_token_path.display());

    let mut d = Demo::new(server.base())?;
    println!("\nThe cast: Contoso (CSP direct bill), Northwind (indirect provider) and its reseller");
    println!("Tailspin; their customer Fabrikam. The vendor registers the tenants; each partner");
    println!("syncs its own users, groups and GDAP grants.");
    let Cast { contoso_sync, ayu, rina } = cast(&mut d, &admin).await?;
    if !d.failures.is_empty() {
        bail!("setting up the cast failed: {}", d.failures.join("; "));
    }
    println!("Registered: 3 partners, 1 customer, 3 subscriptions, 2 GDAP relationships with Helpdesk Administrator.");

    let opened = d
        .step(
            1,
            "An admin agent files an Office 365 ticket for the customer (R3–R7, R11)",
            "Ayu (Contoso)",
            &ayu,
            ticket(FABRIKAM, "office365", "ayu@contoso-partner.com"),
            Expect::Accepted,
        )
        .await?;
    let ticket_id = opened["ticket_id"].as_str().unwrap_or_default().to_owned();
    let mut azure = ticket(FABRIKAM, "azure", "ayu@contoso-partner.com");
    azure["subscription_id"] = json!("fab-azure-1");
    azure["support_plan"] = json!("cloud_solution_provider");
    azure["title"] = json!("VM will not start after resize");
    azure["description"] = json!("The VM stopped after a resize to D4s_v5 and does not start again.");
    azure["support_topic"] = json!("Virtual Machines / Cannot start");
    d.step(
        2,
        "The subscription's provider files an Azure ticket: GDAP and RBAC (R8–R10)",
        "Ayu (Contoso)",
        &ayu,
        azure.clone(),
        Expect::Accepted,
    )
    .await?;
    let mut resold = azure.clone();
    resold["subscription_id"] = json!("fab-azure-2");
    resold["contact"] = contact("rina@tailspin.example");
    d.step(
        3,
        "The indirect reseller tries an Azure ticket: only the provider files them (R9)",
        "Rina (Tailspin)",
        &rina,
        resold,
        Expect::Refused("azure.reseller_cannot_file"),
    )
    .await?;
    d.step(
        4,
        "A ticket with the customer's own e-mail as contact (R11)",
        "Ayu (Contoso)",
        &ayu,
        ticket(FABRIKAM, "office365", "budi@fabrikam.co.id"),
        Expect::Refused("ticket.contact_must_be_partner"),
    )
    .await?;
    let mut backup = azure.clone();
    backup["subscription_id"] = json!("fab-backup");
    d.step(
        5,
        "A marketplace product is supported by its ISV, not through CSP (R12)",
        "Ayu (Contoso)",
        &ayu,
        backup,
        Expect::Refused("ticket.marketplace_product"),
    )
    .await?;
    d.step(
        6,
        "Contoso's own tenant: CSP support does not apply (R13)",
        "Ayu (Contoso)",
        &ayu,
        ticket(CONTOSO, "office365", "ayu@contoso-partner.com"),
        Expect::Refused("ticket.own_tenant_needs_support_plan"),
    )
    .await?;
    let mut own = ticket(CONTOSO, "office365", "ayu@contoso-partner.com");
    own["support_plan"] = json!("contoso-premier");
    d.step(7, "…with its own Premier support plan it is accepted (R13)", "Ayu (Contoso)", &ayu, own, Expect::Accepted)
        .await?;
    d.step(
        8,
        "Contoso's sync reports the GDAP relationship terminated",
        "Contoso sync",
        &contoso_sync,
        grant(CONTOSO, "rel-contoso-fabrikam", "terminated", &month_ago()),
        Expect::Accepted,
    )
    .await?;
    d.step(
        9,
        "The next note on the ticket is refused: authority is checked every time (R18)",
        "Ayu (Contoso)",
        &ayu,
        json!({"type":"ticket.note","ticket_id":ticket_id,"text":"Any update?"}),
        Expect::Refused("gdap.relationship_inactive"),
    )
    .await?;

    let mut resold = ticket(FABRIKAM, "office365", "rina@tailspin.example");
    resold["title"] = json!("Shared mailbox lost its permissions");
    resold["description"] = json!("Since the migration, nobody can open the finance@ shared mailbox.");
    resold["support_topic"] = json!("Exchange Online / Mailbox permissions");
    resold["contact"]["first_name"] = json!("Rina");
    resold["contact"]["last_name"] = json!("Wijaya");
    let resold = d
        .step(
            10,
            "Tailspin's agent files an Office 365 ticket: only Azure is the provider's alone (R9)",
            "Rina (Tailspin)",
            &rina,
            resold,
            Expect::Accepted,
        )
        .await?;
    d.step(
        11,
        "…and escalates it: the notifier puts it in the vendor's Office 365 queue (R19, R21)",
        "Rina (Tailspin)",
        &rina,
        json!({"type":"ticket.escalate","ticket_id":resold["ticket_id"],"reason":"the finance team is blocked"}),
        Expect::Accepted,
    )
    .await?;

    // The three users of the design, each through its own read.
    let vendor = d.token(&admin, json!({"kind": "vendor", "label": "demo reader"})).await?;
    let auditor = d.token(&admin, json!({"kind": "auditor", "label": "demo reader"})).await?;
    println!("\n── 12. The readers: a partner's view, the vendor's queue, the auditor's chain");
    let tickets =
        d.get(&rina, &format!("/v1/customers/{FABRIKAM}/tickets?min_position={}", resold["position"])).await?;
    let titles: Vec<&str> =
        tickets["tickets"].as_array().into_iter().flatten().filter_map(|t| t["title"].as_str()).collect();
    println!(
        "   Rina reads Fabrikam's tickets from the read model: {} — only what Tailspin may see (R24)",
        titles.join("; ")
    );
    let mut queued = Value::Null;
    for _ in 0..50 {
        queued = d.get(&vendor, "/v1/queues/commercial.office365").await?;
        if queued["depth"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "   the vendor's commercial.office365 queue holds {} message(s), without anyone leasing them",
        queued["depth"]
    );
    let chain = d.get(&auditor, "/v1/audit/verify").await?;
    println!("   the auditor walks the hash chain: {} commits, intact: {}", chain["verified"], chain["ok"]);
    if titles.is_empty() || queued["depth"].as_u64().unwrap_or(0) == 0 || chain["ok"] != true {
        d.failures.push("a reader did not see what the story wrote".into());
    }

    if a.serve {
        // The demo's own throw-away tokens: printed once, here, never to a log.
        println!("\nThe console (the demo's own tokens, valid until this store goes):");
        for (who, token) in [("Rina, Tailspin's agent", &rina), ("the vendor", &vendor), ("an auditor", &auditor)] {
            println!("  {who}: {}/console/#token={token}", server.base());
        }
        let stop = crate::listen::shutdown_signal();
        println!("Serving on {} until Ctrl-C.", server.addr);
        stop.await;
    }
    server.stop().await?;
    println!();
    if d.failures.is_empty() {
        println!("Every step was answered as the rules say. Every command above, accepted or refused, is in the log.");
        Ok(())
    } else {
        for f in &d.failures {
            eprintln!("demo: {f}");
        }
        bail!("{} step(s) were not answered as the rules say", d.failures.len())
    }
}
