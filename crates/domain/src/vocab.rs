//! The closed vocabularies of the product: programs, clouds, workloads, severities,
//! statuses. Written lower-case snake case; read case-insensitively, ignoring `_` and
//! `-` (so the vendor's `approvalPending` reads as `approval_pending`).

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Compares ignoring ASCII case and the separators `_`, `-` and space, without
/// allocating (this runs for every enum field of every event decoded).
fn same_word(a: &str, b: &str) -> bool {
    let keep = |c: &u8| !matches!(c, b'_' | b'-' | b' ');
    let mut x = a.bytes().filter(keep).map(|c| c.to_ascii_lowercase());
    let mut y = b.bytes().filter(keep).map(|c| c.to_ascii_lowercase());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

macro_rules! vocab {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Case-insensitive; `_`, `-` and spaces are ignored.
            pub fn parse(s: &str) -> Option<Self> {
                // The exact written form first: that is what stored events hold.
                $(if s == $text { return Some($name::$variant); })+
                $(if same_word(s, $text) { return Some($name::$variant); })+
                None
            }
        }

        /// The written forms (read case-insensitively, ignoring `_`, `-` and spaces).
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                schemars::json_schema!({"type": "string", "enum": all})
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::parse(s).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    format!("{s:?} is not one of {}", all.join(", "))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }
    };
}

vocab!(/// A partner's CSP program.
    Program { DirectBill = "direct_bill", IndirectProvider = "indirect_provider", IndirectReseller = "indirect_reseller", Advisor = "advisor" });

vocab!(/// The cloud instance a tenant lives in (R14).
    Cloud { Commercial = "commercial", UsGov = "usgov" });

vocab!(/// The workloads tickets may be filed for (R1).
    Workload { Azure = "azure", Office365 = "office365", Ems = "ems", DynamicsCrmOnline = "dynamics_crm_online" });

impl Workload {
    /// The Microsoft 365 workloads, authorised by the `supportTickets` permission (R7).
    pub fn is_microsoft_365(self) -> bool {
        match self {
            Workload::Office365 | Workload::Ems | Workload::DynamicsCrmOnline => true,
            Workload::Azure => false,
        }
    }
}

vocab!(/// Ticket severity (R15). Legacy integers 1, 2, 3 are read by [`Severity::parse_raw`].
    Severity { Critical = "critical", Moderate = "moderate", Minimal = "minimal" });

impl Severity {
    /// Rank for queue ordering: lower is more urgent.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Critical => 0,
            Severity::Moderate => 1,
            Severity::Minimal => 2,
        }
    }
}

vocab!(/// GDAP relationship status (vendor's `delegatedAdminRelationshipStatus`).
RelationshipStatus {
    Created = "created", ApprovalPending = "approval_pending", Approved = "approved",
    Activating = "activating", Active = "active", Expiring = "expiring", Expired = "expired",
    TerminationRequested = "termination_requested", Terminating = "terminating", Terminated = "terminated",
});

vocab!(/// GDAP access assignment status.
    AssignmentStatus { Pending = "pending", Active = "active", Deleting = "deleting", Deleted = "deleted", Error = "error" });

vocab!(/// The kind of principal a token is bound to.
    PrincipalKind { PartnerAgent = "partner_agent", PartnerSync = "partner_sync", Customer = "customer", Vendor = "vendor", Auditor = "auditor", Admin = "admin" });

vocab!(/// How a subscription is billed (R23).
    Billing { Trial = "trial", Paid = "paid" });

vocab!(/// A partner's own support contract (R13).
    SupportPlanKind { PartnerProgram = "partner_program", PremierUnified = "premier_unified", AzureSupportPlan = "azure_support_plan" });

vocab!(/// How the ticket's contact wants to be reached (R16).
    PreferredContact { Email = "email", Phone = "phone" });

vocab!(/// Service health issue classification.
    Classification { Incident = "incident", Advisory = "advisory" });

vocab!(/// Where a customer's support request goes (R23).
    Route { Partner = "partner", Vendor = "vendor", Isv = "isv" });

vocab!(/// A ticket's lifecycle state (R17).
    TicketStatus { Open = "open", AttentionNeeded = "attention_needed", Closed = "closed" });

vocab!(/// Why a ticket was escalated (R20, R21).
    EscalationReason { Partner = "partner", CriticalOnOpen = "critical_on_open", SlaBreach = "sla_breach" });

vocab!(/// A GDAP permission the policy authorises on (never the role name).
    Permission { SupportTickets = "supportTickets", ServiceHealth = "serviceHealth" });

/// A value that may arrive as text or as a legacy integer (severity, R15). Kept raw
/// in commands so that `decide`, not the parser, answers with the rule's code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawValue {
    Int(i64),
    Text(String),
}

/// A severity as `decide` reads it (R15): a name or its number.
pub fn severity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = Severity::ALL.iter().map(|v| v.as_str()).collect();
    schemars::json_schema!({"anyOf": [
        {"type": "string", "enum": names},
        {"type": "integer", "minimum": 1, "maximum": Severity::ALL.len()}
    ], "description": "R15: a name or 1 (critical) to 3 (minimal)"})
}

impl RawValue {
    pub fn text(s: &str) -> Self {
        RawValue::Text(s.to_owned())
    }
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Int(i) => write!(f, "{i}"),
            RawValue::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl Severity {
    /// R15: `critical|moderate|minimal` in any case, or the legacy 1, 2, 3.
    /// `unknown`, 0 and anything else are refused.
    pub fn parse_raw(v: &RawValue) -> Option<Severity> {
        match v {
            RawValue::Int(1) => Some(Severity::Critical),
            RawValue::Int(2) => Some(Severity::Moderate),
            RawValue::Int(3) => Some(Severity::Minimal),
            RawValue::Int(_) => None,
            RawValue::Text(s) => match s.trim() {
                "1" => Some(Severity::Critical),
                "2" => Some(Severity::Moderate),
                "3" => Some(Severity::Minimal),
                t => Severity::parse(t),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_read_case_insensitively() {
        assert_eq!(RelationshipStatus::parse("approvalPending"), Some(RelationshipStatus::ApprovalPending));
        assert_eq!(RelationshipStatus::parse("TERMINATED"), Some(RelationshipStatus::Terminated));
        assert_eq!(Workload::parse("Dynamics_CRM_Online"), Some(Workload::DynamicsCrmOnline));
        assert_eq!(Workload::parse("intune"), None);
        assert_eq!(Cloud::parse("USGov"), Some(Cloud::UsGov));
        let w: Workload = serde_json::from_str("\"Office365\"").unwrap();
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"office365\"");
    }

    #[test]
    fn r15_severity_accepts_names_and_legacy_integers() {
        assert_eq!(Severity::parse_raw(&RawValue::text("CRITICAL")), Some(Severity::Critical));
        assert_eq!(Severity::parse_raw(&RawValue::Int(2)), Some(Severity::Moderate));
        assert_eq!(Severity::parse_raw(&RawValue::text("3")), Some(Severity::Minimal));
        assert_eq!(Severity::parse_raw(&RawValue::text("unknown")), None);
        assert_eq!(Severity::parse_raw(&RawValue::Int(0)), None);
        assert_eq!(Severity::parse_raw(&RawValue::Int(4)), None);
    }
}
