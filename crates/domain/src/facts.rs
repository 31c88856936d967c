//! The directory's facts: the payloads of the directory commands and events
//! (partners, users, groups, customers, GDAP relationships and access assignments,
//! subscriptions, RBAC, marketplace products, support plans, service health issues).
//! [`crate::command`], [`crate::event`] and [`crate::directory`] (their projection)
//! all name them; they name none of those.

use crate::time::{parse_iso_duration_days, MS_PER_DAY};
use crate::{
    AssignmentId, AssignmentStatus, Billing, Classification, Cloud, CustomerId, GroupId, IssueId, PartnerId, PlanId,
    ProductId, Program, RbacAssignmentId, RelationshipId, RelationshipStatus, RoleId, SubscriptionId, SupportPlanKind,
    Timestamp, UserId, Workload,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Partner {
    pub partner_id: PartnerId,
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    pub program: Program,
    #[schemars(length(min = 1))]
    pub domains: Vec<String>,
    pub cloud: Cloud,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<PartnerId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PartnerUser {
    pub partner_id: PartnerId,
    pub user_id: UserId,
    #[schemars(email)]
    pub email: String,
    pub admin_agent: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GroupMember {
    pub partner_id: PartnerId,
    pub group_id: GroupId,
    pub user_id: UserId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Customer {
    pub customer_id: CustomerId,
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub domains: Vec<String>,
    pub cloud: Cloud,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Relationship {
    pub relationship_id: RelationshipId,
    pub partner_id: PartnerId,
    pub customer_id: CustomerId,
    pub status: RelationshipStatus,
    #[schemars(length(min = 1))]
    pub roles: Vec<RoleId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Timestamp>,
    /// ISO-8601, `P1D` … `P2Y` (R28).
    #[schemars(extend("format" = "duration"))]
    pub duration: String,
    /// `PT0S`/`P0D` (off) or `P180D` (R28).
    #[schemars(extend("format" = "duration"))]
    pub auto_extend: String,
}

/// Auto-extension step of R5: 180 days.
pub const AUTO_EXTEND_DAYS: i64 = 180;

impl Relationship {
    pub fn auto_extends(&self) -> bool {
        parse_iso_duration_days(&self.auto_extend).is_some_and(|d| d > 0)
    }
    /// R5: the end of the relationship as seen at `now` — activation + duration, rolled
    /// forward by 180-day steps while auto-extend is on. `None` without an activation.
    pub fn end_at(&self, now: Timestamp) -> Option<Timestamp> {
        relationship_end(self.activated_at, &self.duration, &self.auto_extend, now)
    }
}

/// [`Relationship::end_at`] from the fields it reads.
pub(crate) fn relationship_end(
    activated_at: Option<Timestamp>,
    duration: &str,
    auto_extend: &str,
    now: Timestamp,
) -> Option<Timestamp> {
    let start = activated_at?;
    let days = parse_iso_duration_days(duration).map_or(0, i64::from);
    let end = start.plus_millis(days * MS_PER_DAY);
    if parse_iso_duration_days(auto_extend).is_some_and(|d| d > 0) && now >= end {
        let step = AUTO_EXTEND_DAYS * MS_PER_DAY;
        let steps = now.millis().saturating_sub(end.millis()) / step + 1;
        return Some(end.plus_millis(steps.saturating_mul(step)));
    }
    Some(end)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Assignment {
    pub assignment_id: AssignmentId,
    pub relationship_id: RelationshipId,
    pub group_id: GroupId,
    #[schemars(length(min = 1))]
    pub roles: Vec<RoleId>,
    pub status: AssignmentStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Subscription {
    pub subscription_id: SubscriptionId,
    pub customer_id: CustomerId,
    pub workload: Workload,
    pub provider_id: PartnerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseller_id: Option<PartnerId>,
    pub billing: Billing,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketplace_product_id: Option<ProductId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RbacAssignment {
    pub assignment_id: RbacAssignmentId,
    pub subscription_id: SubscriptionId,
    /// A partner user or security group.
    pub principal_id: UserId,
    pub role_id: RoleId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Product {
    pub product_id: ProductId,
    #[schemars(length(min = 1, max = 256))]
    pub isv_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(url)]
    pub support_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(email)]
    pub support_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_phone: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SupportPlan {
    pub plan_id: PlanId,
    pub partner_id: PartnerId,
    pub kind: SupportPlanKind,
    pub valid_until: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthIssue {
    pub issue_id: IssueId,
    pub workload: Workload,
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    pub classification: Classification,
    #[schemars(length(min = 1, max = 64))]
    pub status: String,
    pub is_resolved: bool,
    pub start: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    /// Empty: every customer of the workload.
    #[serde(default)]
    pub customer_ids: Vec<CustomerId>,
}
