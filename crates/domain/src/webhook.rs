//! Webhook subscriptions: who may have a queue's messages pushed to a URL, and the
//! subscriptions' lifecycle (subscribed, secret rotated, disabled by a `410 Gone`,
//! deleted). The commands are audited like any other (R26); what they never carry is
//! a secret or the URL itself, which can hold credentials (Teams, Slack): the log
//! holds a redacted URL (`https://host/…`) and the shell keeps the URL with the signing
//! secrets in its secret store.
//!
//! Who may subscribe is who may consume the queue ([`crate::policy::may_consume_queue`]);
//! who may rotate or delete is who may consume the subscription's queue; disabling is
//! the vendor side's (the sender, on a `410 Gone`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Code, Event, Principal, Rejection, Rule, StreamId, Timestamp};

/// `webhook.subscribe`: the id is the server's, chosen before the command is sent
/// (the secret store is keyed by it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Subscribe {
    pub webhook_id: String,
    pub queue: String,
    /// The URL without its path's tail, query and credentials: `https://host[:port]/…`.
    pub url_redacted: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// `webhook.rotate` and `webhook.delete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookRef {
    pub webhook_id: String,
}

/// `webhook.disable` (internal, the vendor side): the receiver answered `410 Gone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Disable {
    pub webhook_id: String,
    pub reason: String,
}

/// A webhook command, by what it does.
#[derive(Clone, Copy, Debug)]
pub enum WebhookCommand<'a> {
    Subscribe(&'a Subscribe),
    Rotate(&'a WebhookRef),
    Delete(&'a WebhookRef),
    Disable(&'a Disable),
}

impl WebhookCommand<'_> {
    pub fn webhook_id(&self) -> &str {
        match self {
            WebhookCommand::Subscribe(s) => &s.webhook_id,
            WebhookCommand::Rotate(r) | WebhookCommand::Delete(r) => &r.webhook_id,
            WebhookCommand::Disable(d) => &d.webhook_id,
        }
    }

    /// The subscription's stream.
    pub fn stream(&self) -> StreamId {
        StreamId::of("webhook", self.webhook_id())
    }
}

/// What the log records of a subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Subscribed {
    pub webhook_id: String,
    pub queue: String,
    pub url_redacted: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Who subscribed (the tenant that may see and change it).
    pub owner: Principal,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Changed {
    pub webhook_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub at: Timestamp,
}

/// A webhook event, by what it records.
#[derive(Clone, Copy, Debug)]
pub enum WebhookEvent<'a> {
    Subscribed(&'a Subscribed),
    SecretRotated(&'a Changed),
    Disabled(&'a Changed),
    Deleted(&'a Changed),
}

/// A subscription as the directory holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Webhook {
    pub webhook_id: String,
    pub queue: String,
    pub url_redacted: String,
    #[serde(default)]
    pub description: String,
    pub owner: Principal,
    pub enabled: bool,
    /// Why it was disabled (a receiver's `410 Gone`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub disabled_reason: String,
    pub created_at: Timestamp,
    /// When the secret was last rotated (the previous one is honoured for a grace period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<Timestamp>,
}

/// Every subscription that was not deleted, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Webhooks(pub BTreeMap<String, Webhook>);

impl Webhooks {
    pub fn apply(&mut self, e: WebhookEvent<'_>) {
        match e {
            WebhookEvent::Subscribed(s) => {
                self.0.insert(
                    s.webhook_id.clone(),
                    Webhook {
                        webhook_id: s.webhook_id.clone(),
                        queue: s.queue.clone(),
                        url_redacted: s.url_redacted.clone(),
                        description: s.description.clone(),
                        owner: s.owner.clone(),
                        enabled: true,
                        disabled_reason: String::new(),
                        created_at: s.at,
                        rotated_at: None,
                    },
                );
            }
            WebhookEvent::SecretRotated(c) => {
                if let Some(w) = self.0.get_mut(&c.webhook_id) {
                    w.rotated_at = Some(c.at);
                }
            }
            WebhookEvent::Disabled(c) => {
                if let Some(w) = self.0.get_mut(&c.webhook_id) {
                    w.enabled = false;
                    w.disabled_reason.clone_from(&c.reason);
                }
            }
            WebhookEvent::Deleted(c) => {
                self.0.remove(&c.webhook_id);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&Webhook> {
        self.0.get(id)
    }

    /// The enabled subscriptions of a queue.
    pub fn of_queue<'a>(&'a self, queue: &'a str) -> impl Iterator<Item = &'a Webhook> + 'a {
        self.0.values().filter(move |w| w.enabled && w.queue == queue)
    }

    /// Every subscription `who` may see (those of queues it may consume).
    pub fn visible_to<'a>(&'a self, who: &'a Principal) -> impl Iterator<Item = &'a Webhook> + 'a {
        self.0.values().filter(move |w| crate::policy::may_consume_queue(who, &w.queue))
    }
}

/// The queue a subscription's deliveries wait in: one per subscription, so that each
/// gets every message of its queue once and a slow one holds up no other.
pub fn delivery_queue(webhook_id: &str) -> String {
    format!("webhook.{webhook_id}")
}

/// A queue's name as the API accepts it: `<cloud>.<workload>` or `partner.<id>`,
/// letters, digits, `.`, `-` and `_`, at most 200 characters; never a delivery queue.
pub fn is_subscribable_queue(queue: &str) -> bool {
    !queue.is_empty()
        && queue.len() <= 200
        && queue.contains('.')
        && !queue.starts_with("webhook.")
        && queue.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn forbidden(what: &str) -> Rejection {
    Rejection::new(Code::Forbidden, Rule::R2, format!("this principal may not {what}"))
}

fn not_found(id: &str) -> Rejection {
    Rejection::without_rule(Code::WebhookNotFound, format!("no webhook subscription {id}")).with("webhook_id", id)
}

/// Decides a webhook command against the subscriptions the directory holds.
pub fn decide(
    hooks: &Webhooks,
    who: &Principal,
    c: WebhookCommand<'_>,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let id = c.webhook_id();
    if id.is_empty() || id.len() > 64 || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
        return Err(Rejection::invalid("webhook_id", "must be 1-64 letters, digits or '-'"));
    }
    match c {
        WebhookCommand::Subscribe(s) => {
            if !is_subscribable_queue(&s.queue) {
                return Err(Rejection::invalid("queue", "is not a queue name"));
            }
            if !crate::policy::may_consume_queue(who, &s.queue) {
                return Err(forbidden("consume this queue"));
            }
            if s.description.chars().count() > 500 {
                return Err(Rejection::invalid("description", "must be at most 500 characters"));
            }
            if let Some(existing) = hooks.get(id) {
                // The same subscription again (a retry with another command id) records nothing new.
                return if existing.queue == s.queue && existing.url_redacted == s.url_redacted {
                    Ok(Vec::new())
                } else {
                    Err(Rejection::without_rule(Code::IdempotencyKeyReused, "this webhook id is taken"))
                };
            }
            Ok(vec![Event::WebhookSubscribed(Subscribed {
                webhook_id: s.webhook_id.clone(),
                queue: s.queue.clone(),
                url_redacted: s.url_redacted.clone(),
                description: s.description.clone(),
                owner: who.clone(),
                at: now,
            })])
        }
        WebhookCommand::Rotate(_) | WebhookCommand::Delete(_) => {
            let hook = hooks.get(id).ok_or_else(|| not_found(id))?;
            if !crate::policy::may_consume_queue(who, &hook.queue) {
                // Another tenant's subscription is not there, as far as this principal can tell.
                return Err(not_found(id));
            }
            let change = Changed { webhook_id: id.to_owned(), reason: String::new(), at: now };
            Ok(vec![match c {
                WebhookCommand::Rotate(_) => Event::WebhookSecretRotated(change),
                WebhookCommand::Subscribe(_) | WebhookCommand::Delete(_) | WebhookCommand::Disable(_) => {
                    Event::WebhookDeleted(change)
                }
            }])
        }
        WebhookCommand::Disable(d) => {
            if *who != Principal::Vendor {
                return Err(forbidden("disable a webhook subscription"));
            }
            let hook = hooks.get(id).ok_or_else(|| not_found(id))?;
            if !hook.enabled {
                return Ok(Vec::new());
            }
            let reason: String = d.reason.chars().take(200).collect();
            Ok(vec![Event::WebhookDisabled(Changed { webhook_id: id.to_owned(), reason, at: now })])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PartnerId, UserId};

    fn agent(p: &str) -> Principal {
        Principal::PartnerAgent { partner_id: PartnerId::new(p), user_id: UserId::new("u") }
    }

    fn subscribe(id: &str, queue: &str) -> Subscribe {
        Subscribe {
            webhook_id: id.into(),
            queue: queue.into(),
            url_redacted: "https://example.com/…".into(),
            description: String::new(),
        }
    }

    fn fold(hooks: &mut Webhooks, events: &[Event]) {
        for e in events {
            if let crate::EventKind::Webhook(w) = e.kind() {
                hooks.apply(w);
            }
        }
    }

    #[test]
    fn who_may_subscribe_is_who_may_consume() {
        let hooks = Webhooks::default();
        let now = Timestamp::from_millis(1);
        let s = subscribe("w1", "partner.p1");
        assert!(decide(&hooks, &agent("p1"), WebhookCommand::Subscribe(&s), now).is_ok());
        let e = decide(&hooks, &agent("p2"), WebhookCommand::Subscribe(&s), now).unwrap_err();
        assert_eq!(e.code, Code::Forbidden);
        let w = subscribe("w2", "azure.compute");
        assert_eq!(decide(&hooks, &agent("p1"), WebhookCommand::Subscribe(&w), now).unwrap_err().code, Code::Forbidden);
        assert!(decide(&hooks, &Principal::Vendor, WebhookCommand::Subscribe(&w), now).is_ok());
        let d = subscribe("w3", "webhook.w1");
        assert_eq!(
            decide(&hooks, &Principal::Vendor, WebhookCommand::Subscribe(&d), now).unwrap_err().code,
            Code::ValidationInvalid
        );
    }

    #[test]
    fn lifecycle_rotate_disable_delete() {
        let mut hooks = Webhooks::default();
        let now = Timestamp::from_millis(1);
        let s = subscribe("w1", "partner.p1");
        let p1 = agent("p1");
        let events = decide(&hooks, &p1, WebhookCommand::Subscribe(&s), now).unwrap();
        fold(&mut hooks, &events);
        assert_eq!(hooks.of_queue("partner.p1").count(), 1);
        assert!(decide(&hooks, &p1, WebhookCommand::Subscribe(&s), now).unwrap().is_empty(), "the same again");
        let r = WebhookRef { webhook_id: "w1".into() };
        assert_eq!(
            decide(&hooks, &agent("p2"), WebhookCommand::Rotate(&r), now).unwrap_err().code,
            Code::WebhookNotFound
        );
        let events = decide(&hooks, &p1, WebhookCommand::Rotate(&r), now).unwrap();
        fold(&mut hooks, &events);
        assert_eq!(hooks.get("w1").unwrap().rotated_at, Some(now));
        let d = Disable { webhook_id: "w1".into(), reason: "410 Gone".into() };
        assert_eq!(decide(&hooks, &p1, WebhookCommand::Disable(&d), now).unwrap_err().code, Code::Forbidden);
        let events = decide(&hooks, &Principal::Vendor, WebhookCommand::Disable(&d), now).unwrap();
        fold(&mut hooks, &events);
        assert_eq!(hooks.of_queue("partner.p1").count(), 0);
        assert_eq!(hooks.get("w1").unwrap().disabled_reason, "410 Gone");
        let events = decide(&hooks, &p1, WebhookCommand::Delete(&r), now).unwrap();
        fold(&mut hooks, &events);
        assert!(hooks.get("w1").is_none());
        assert_eq!(decide(&hooks, &p1, WebhookCommand::Delete(&r), now).unwrap_err().code, Code::WebhookNotFound);
    }
}
