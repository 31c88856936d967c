//! The policy asked the other way round: `explain_access` (what may this user do for
//! this customer, per workload, with the same functions that decide) and `rejudge`
//! (does a recorded grant still justify an action: the audit's question).

use crate::policy::{
    authorize_ticket, r13_own_support_plan, r2_partner_agent, r3_admin_agent, r5_is_live, TicketScope, CSP_SUPPORT_PLAN,
};
use crate::roles::{azure_role_may_open_support, entra_role_permits};
use crate::{
    AssignmentStatus, CustomerId, Directory, Evidence, Grant, PartnerId, Principal, Rejection, SubscriptionId,
    Timestamp, UserId, Workload,
};
/// One workload's answer in an access explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadAccess {
    pub workload: Workload,
    pub subscription_id: Option<SubscriptionId>,
    pub outcome: Result<Evidence, Rejection>,
}

/// What a partner user may do for a customer, per workload (and per Azure
/// subscription of the customer), judged by the same [`authorize_ticket`] the command
/// service uses. The contact and plan checks (R10, R11) concern a ticket's content,
/// not access, so they are assumed satisfied.
pub fn explain_access(
    dir: &Directory,
    partner: &PartnerId,
    user: &UserId,
    customer: &CustomerId,
    now: Timestamp,
    position: u64,
) -> Vec<WorkloadAccess> {
    let principal = Principal::PartnerAgent { partner_id: partner.clone(), user_id: user.clone() };
    let email =
        dir.partners.get(partner).and_then(|p| p.domains.first()).map(|d| format!("contact@{d}")).unwrap_or_default();
    let own_plan = dir
        .plans
        .values()
        .find(|p| &p.partner_id == partner && now < p.valid_until)
        .map(|p| p.plan_id.as_str().to_owned());
    let mut out = Vec::new();
    for w in [Workload::Office365, Workload::Ems, Workload::DynamicsCrmOnline] {
        let scope = TicketScope {
            customer_id: customer,
            workload: w,
            subscription_id: None,
            support_plan: own_plan.as_deref(),
            contact_email: &email,
        };
        out.push(WorkloadAccess {
            workload: w,
            subscription_id: None,
            outcome: authorize_ticket(dir, &principal, &scope, now, position),
        });
    }
    let subs: Vec<&SubscriptionId> = dir
        .subscriptions
        .values()
        .filter(|s| &s.customer_id == customer && s.workload == Workload::Azure)
        .map(|s| &s.subscription_id)
        .collect();
    let plan = if partner.as_str() == customer.as_str() { own_plan.clone() } else { Some(CSP_SUPPORT_PLAN.to_owned()) };
    if subs.is_empty() {
        let scope = TicketScope {
            customer_id: customer,
            workload: Workload::Azure,
            subscription_id: None,
            support_plan: plan.as_deref(),
            contact_email: &email,
        };
        out.push(WorkloadAccess {
            workload: Workload::Azure,
            subscription_id: None,
            outcome: authorize_ticket(dir, &principal, &scope, now, position),
        });
    }
    for sub in subs {
        let scope = TicketScope {
            customer_id: customer,
            workload: Workload::Azure,
            subscription_id: Some(sub),
            support_plan: plan.as_deref(),
            contact_email: &email,
        };
        out.push(WorkloadAccess {
            workload: Workload::Azure,
            subscription_id: Some(sub.clone()),
            outcome: authorize_ticket(dir, &principal, &scope, now, position),
        });
    }
    out
}

/// R29, judged again: does the grant recorded in `evidence` still justify a partner's
/// action on `scope` at `now`, against the directory as it stood at the evidence's
/// position? `Err` says what no longer holds. This is what an audit runs over history.
pub fn rejudge(
    dir: &Directory,
    principal: &Principal,
    scope: &TicketScope<'_>,
    evidence: &Evidence,
    now: Timestamp,
) -> Result<(), String> {
    let (partner_id, user_id) = r2_partner_agent(principal).map_err(|r| r.message)?;
    if &evidence.user_id != user_id {
        return Err(format!("the evidence names user {} but the actor is {user_id}", evidence.user_id));
    }
    r3_admin_agent(dir, partner_id, user_id).map_err(|r| r.message)?;
    match &evidence.grant {
        Grant::OwnTenant { plan_id } => {
            if partner_id.as_str() != scope.customer_id.as_str() {
                return Err("an own-tenant grant on another tenant's ticket".into());
            }
            r13_own_support_plan(dir, partner_id, Some(plan_id.as_str()), now).map(|_| ()).map_err(|r| r.message)
        }
        Grant::Gdap {
            relationship_id,
            assignment_id,
            group_id,
            role_id,
            permission,
            rbac_assignment_id,
            rbac_role_id,
        } => {
            let rel = dir
                .relationship(relationship_id)
                .ok_or_else(|| format!("relationship {relationship_id} did not exist"))?;
            if &rel.partner_id != partner_id || &rel.customer_id != scope.customer_id {
                return Err(format!("relationship {relationship_id} is not between this partner and customer"));
            }
            r5_is_live(&rel, now).map_err(|r| r.message)?;
            let a = dir.assignment(assignment_id).ok_or_else(|| format!("assignment {assignment_id} did not exist"))?;
            if &a.relationship_id != relationship_id || &a.group_id != group_id {
                return Err(format!("assignment {assignment_id} is not on that relationship and group"));
            }
            if a.status != AssignmentStatus::Active {
                return Err(format!("assignment {assignment_id} was {}", a.status));
            }
            if !dir.groups_of(user_id).any(|g| g == group_id) {
                return Err(format!("user {user_id} was not in group {group_id}"));
            }
            if !a.roles.contains(role_id) || !rel.roles.contains(role_id) {
                return Err(format!("role {role_id} was not granted by the assignment"));
            }
            if let Some(p) = permission {
                if !entra_role_permits(role_id.as_str(), *p) {
                    return Err(format!("role {role_id} does not carry {}", p.as_str()));
                }
            }
            if scope.workload == Workload::Azure {
                let (Some(rbac_id), Some(rbac_role)) = (rbac_assignment_id, rbac_role_id) else {
                    return Err("an Azure action without its RBAC assignment".into());
                };
                let r = dir.rbac.get(rbac_id).ok_or_else(|| format!("RBAC assignment {rbac_id} did not exist"))?;
                let holder =
                    r.principal_id == *user_id || dir.groups_of(user_id).any(|g| g.as_str() == r.principal_id.as_str());
                if Some(&r.subscription_id) != scope.subscription_id
                    || &r.role_id != rbac_role
                    || !holder
                    || !azure_role_may_open_support(rbac_role)
                {
                    return Err(format!(
                        "RBAC assignment {rbac_id} does not give this user a support role on the subscription"
                    ));
                }
            }
            Ok(())
        }
    }
}
