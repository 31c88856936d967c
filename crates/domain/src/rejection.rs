//! Rejections: the answer to a refused command. A value, never a panic or an error:
//! the command changed nothing and the caller is told the stable code, the rule and why.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($variant:ident = $text:literal, $status:literal;)+) => {
        /// The stable rejection codes of `API.md`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant),+ }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text),+ }
            }
            /// The HTTP status `API.md` gives this code.
            pub const fn http_status(self) -> u16 {
                match self { $(Code::$variant => $status),+ }
            }
            pub fn parse(s: &str) -> Option<Code> {
                match s { $($text => Some(Code::$variant),)+ _ => None }
            }
        }
    };
}

codes! {
    RequestMalformed = "request.malformed", 400;
    Unauthenticated = "auth.unauthenticated", 401;
    Forbidden = "auth.forbidden", 403;
    NotAdminAgent = "partner.not_admin_agent", 403;
    NoRelationship = "gdap.no_relationship", 403;
    RelationshipInactive = "gdap.relationship_inactive", 403;
    RelationshipExpired = "gdap.relationship_expired", 403;
    NoAccess = "gdap.no_access", 403;
    MissingPermission = "gdap.missing_permission", 403;
    RbacMissing = "azure.rbac_missing", 403;
    ResellerCannotFile = "azure.reseller_cannot_file", 403;
    NotSubscriptionProvider = "azure.not_subscription_provider", 403;
    CloudMismatch = "tenant.cloud_mismatch", 403;
    TicketNotFound = "ticket.not_found", 404;
    TicketClosed = "ticket.closed", 409;
    InvalidTransition = "ticket.invalid_transition", 409;
    ConcurrencyConflict = "concurrency.conflict", 409;
    RequestTooLarge = "request.too_large", 413;
    RequestTimeout = "request.timeout", 408;
    MethodNotAllowed = "request.method_not_allowed", 405;
    ValidationInvalid = "validation.invalid", 422;
    BadSeverity = "validation.bad_severity", 422;
    UnsupportedWorkload = "ticket.unsupported_workload", 422;
    SubscriptionInvalid = "ticket.subscription_invalid", 422;
    MarketplaceProduct = "ticket.marketplace_product", 422;
    ContactMustBePartner = "ticket.contact_must_be_partner", 422;
    OwnTenantNeedsSupportPlan = "ticket.own_tenant_needs_support_plan", 422;
    SupportPlanInvalid = "ticket.support_plan_invalid", 422;
    SupportPlanMustBeCsp = "azure.support_plan_must_be_csp", 422;
    IncidentNotFound = "ticket.incident_not_found", 422;
    IdempotencyKeyReused = "idempotency.key_reused", 422;
    InvalidRelationship = "gdap.invalid_relationship", 422;
    RoleNotInRelationship = "gdap.role_not_in_relationship", 422;
    Overloaded = "overloaded", 429;
    Unavailable = "unavailable", 503;
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

/// A rule id of `RULES.md`, `R1` … `R30`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule(pub u8);

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R{}", self.0)
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
            .map(Rule)
            .ok_or_else(|| serde::de::Error::custom(format!("not a rule id: {s:?}")))
    }
}

/// A detail value: text or a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    pub fn new(code: Code, rule: u8, message: impl Into<String>) -> Self {
        Rejection { code, rule: Some(Rule(rule)), message: message.into(), details: BTreeMap::new() }
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
        Rejection::new(Code::ValidationInvalid, 16, format!("{field}: {why}")).with("field", field)
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
