//! Rejections: the answer to a refused command. A value, never a panic or an error:
//! the command changed nothing and the caller is told the stable code, the rule and why.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($variant:ident = $text:literal;)+) => {
        /// The stable rejection codes of `API.md`. (Which HTTP status each is answered
        /// with is the HTTP crate's business: `behalf_http::status_of`.)
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant),+ }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Code> {
                match s { $($text => Some(Code::$variant),)+ _ => None }
            }
        }
    };
}

codes! {
    RequestMalformed = "request.malformed";
    Unauthenticated = "auth.unauthenticated";
    Forbidden = "auth.forbidden";
    NotAdminAgent = "partner.not_admin_agent";
    NoRelationship = "gdap.no_relationship";
    RelationshipInactive = "gdap.relationship_inactive";
    RelationshipExpired = "gdap.relationship_expired";
    NoAccess = "gdap.no_access";
    MissingPermission = "gdap.missing_permission";
    RbacMissing = "azure.rbac_missing";
    ResellerCannotFile = "azure.reseller_cannot_file";
    NotSubscriptionProvider = "azure.not_subscription_provider";
    CloudMismatch = "tenant.cloud_mismatch";
    TicketNotFound = "ticket.not_found";
    TicketClosed = "ticket.closed";
    InvalidTransition = "ticket.invalid_transition";
    ConcurrencyConflict = "concurrency.conflict";
    RequestTooLarge = "request.too_large";
    RequestTimeout = "request.timeout";
    MethodNotAllowed = "request.method_not_allowed";
    ValidationInvalid = "validation.invalid";
    BadSeverity = "validation.bad_severity";
    UnsupportedWorkload = "ticket.unsupported_workload";
    SubscriptionInvalid = "ticket.subscription_invalid";
    MarketplaceProduct = "ticket.marketplace_product";
    ContactMustBePartner = "ticket.contact_must_be_partner";
    OwnTenantNeedsSupportPlan = "ticket.own_tenant_needs_support_plan";
    SupportPlanInvalid = "ticket.support_plan_invalid";
    SupportPlanMustBeCsp = "azure.support_plan_must_be_csp";
    IncidentNotFound = "ticket.incident_not_found";
    IdempotencyKeyReused = "idempotency.key_reused";
    InvalidRelationship = "gdap.invalid_relationship";
    RoleNotInRelationship = "gdap.role_not_in_relationship";
    WebhookNotFound = "webhook.not_found";
    PersonNotFound = "person.not_found";
    WebhookUrlNotAllowed = "webhook.url_not_allowed";
    Overloaded = "overloaded";
    Unavailable = "unavailable";
}

impl schemars::JsonSchema for Code {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Code".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let all: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        schemars::json_schema!({"type": "string", "enum": all, "description": "a stable rejection code (API.md)"})
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Code::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown rejection code {s:?}")))
    }
}

/// A rule id of `RULES.md`, `R1` … `R30`: a closed set, written `R<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    R16,
    R17,
    R18,
    R19,
    R20,
    R21,
    R22,
    R23,
    R24,
    R25,
    R26,
    R27,
    R28,
    R29,
    R30,
}

impl Rule {
    pub const ALL: [Rule; 30] = [
        Rule::R1,
        Rule::R2,
        Rule::R3,
        Rule::R4,
        Rule::R5,
        Rule::R6,
        Rule::R7,
        Rule::R8,
        Rule::R9,
        Rule::R10,
        Rule::R11,
        Rule::R12,
        Rule::R13,
        Rule::R14,
        Rule::R15,
        Rule::R16,
        Rule::R17,
        Rule::R18,
        Rule::R19,
        Rule::R20,
        Rule::R21,
        Rule::R22,
        Rule::R23,
        Rule::R24,
        Rule::R25,
        Rule::R26,
        Rule::R27,
        Rule::R28,
        Rule::R29,
        Rule::R30,
    ];

    /// The rule's number (`R17` → 17).
    pub fn number(self) -> u8 {
        Rule::ALL.iter().position(|r| *r == self).map_or(0, |i| i as u8 + 1)
    }

    /// The rule with this number, if RULES.md has it.
    pub fn from_number(n: u8) -> Option<Rule> {
        Rule::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R{}", self.number())
    }
}

impl schemars::JsonSchema for Rule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rule".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let all: Vec<String> = Rule::ALL.iter().map(ToString::to_string).collect();
        schemars::json_schema!({"type": "string", "enum": all, "description": "a rule of RULES.md"})
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.strip_prefix('R')
            .and_then(|n| n.parse().ok())
            .and_then(Rule::from_number)
            .ok_or_else(|| serde::de::Error::custom(format!("not a rule id: {s:?}")))
    }
}

/// A detail value: text or a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Detail {
    Number(u64),
    Text(String),
}

impl From<&str> for Detail {
    fn from(s: &str) -> Self {
        Detail::Text(s.to_owned())
    }
}
impl From<String> for Detail {
    fn from(s: String) -> Self {
        Detail::Text(s)
    }
}
impl From<u64> for Detail {
    fn from(n: u64) -> Self {
        Detail::Number(n)
    }
}

/// A refused command: the stable code, the rule that refused it, a message for
/// people and machine-readable details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Detail>,
}

impl Rejection {
    pub fn new(code: Code, rule: Rule, message: impl Into<String>) -> Self {
        Rejection { code, rule: Some(rule), message: message.into(), details: BTreeMap::new() }
    }
    /// A rejection no single rule owns (`request.malformed`, `overloaded`, …).
    pub fn without_rule(code: Code, message: impl Into<String>) -> Self {
        Rejection { code, rule: None, message: message.into(), details: BTreeMap::new() }
    }
    pub fn with(mut self, key: &str, value: impl Into<Detail>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
    /// R16: a missing or malformed field.
    pub fn invalid(field: &str, why: impl fmt::Display) -> Self {
        Rejection::new(Code::ValidationInvalid, Rule::R16, format!("{field}: {why}")).with("field", field)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some(r) => write!(f, "{} ({r}): {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}
