//! The authorisation policy, R2–R14, R18, R22 and R24, in one place. Each check is a
//! function named after its rule; `authorize_ticket` runs them in the order the rules
//! read and returns the R29 evidence of the grant that allowed the action.
//!
//! The policy authorises on permissions (see [`crate::roles`]), never on role names.

use crate::directory::{
    contact_domain, AssignmentView, CustomerView, Directory, Partner, Relationship, RelationshipView, Views,
};
use crate::event::{Evidence, Grant};
use crate::rejection::{Code, Rejection, Rule};
use crate::roles::{azure_role_may_open_support, entra_role_permits};
use crate::time::Timestamp;
use crate::{
    AssignmentStatus, Cloud, CustomerId, GroupId, PartnerId, Permission, PlanId, Principal, Program, RbacAssignmentId,
    RelationshipStatus, RoleId, SubscriptionId, UserId, Workload,
};

mod explain;

pub use explain::{explain_access, rejudge, WorkloadAccess};

/// The support plan a customer's Azure ticket must name (R10).
pub const CSP_SUPPORT_PLAN: &str = "cloud_solution_provider";

/// What a ticket action is about: enough to judge R2–R11 for it.
#[derive(Clone, Copy, Debug)]
pub struct TicketScope<'a> {
    pub customer_id: &'a CustomerId,
    pub workload: Workload,
    pub subscription_id: Option<&'a SubscriptionId>,
    pub support_plan: Option<&'a str>,
    pub contact_email: &'a str,
}

/// R2: only a partner user acts for customers; the actor comes from the token.
pub fn r2_partner_agent(principal: &Principal) -> Result<(&PartnerId, &UserId), Rejection> {
    match principal {
        Principal::PartnerAgent { partner_id, user_id } => Ok((partner_id, user_id)),
        Principal::PartnerSync { .. }
        | Principal::Customer { .. }
        | Principal::Vendor
        | Principal::Auditor
        | Principal::Admin => {
            Err(Rejection::new(Code::Forbidden, Rule::R2, "only a partner agent may act on tickets for customers"))
        }
    }
}

fn registered_partner<'d>(dir: &'d Directory, partner: &PartnerId) -> Result<&'d Partner, Rejection> {
    dir.partners
        .get(partner)
        .ok_or_else(|| Rejection::new(Code::Forbidden, Rule::R2, format!("partner {partner} is not registered")))
}

/// R3: the user holds the partner's Admin agent role.
pub fn r3_admin_agent(dir: &Directory, partner: &PartnerId, user: &UserId) -> Result<(), Rejection> {
    match dir.users.get(user) {
        Some(u) if &u.partner_id == partner && u.admin_agent => Ok(()),
        Some(u) if &u.partner_id == partner => Err(Rejection::new(
            Code::NotAdminAgent,
            Rule::R3,
            format!("user {user} does not hold the Admin agent role"),
        )),
        Some(_) | None => Err(Rejection::new(
            Code::NotAdminAgent,
            Rule::R3,
            format!("user {user} is not a known user of partner {partner}"),
        )),
    }
}

/// R14: partner and customer are in the same cloud instance.
pub fn r14_one_cloud(partner: &Partner, customer_cloud: Cloud) -> Result<(), Rejection> {
    if partner.cloud == customer_cloud {
        Ok(())
    } else {
        Err(Rejection::new(
            Code::CloudMismatch,
            Rule::R14,
            format!("partner is in the {} cloud, customer in {}", partner.cloud, customer_cloud),
        )
        .with("partner_cloud", partner.cloud.as_str())
        .with("customer_cloud", customer_cloud.as_str()))
    }
}

/// R5 for one relationship: active, and `now` before its (auto-extended) end.
pub fn r5_is_live(rel: &Relationship, now: Timestamp) -> Result<(), Rejection> {
    r5_live(rel.relationship_id.as_str(), rel.status, || rel.end_at(now), now)
}

/// R5 for a relationship read in place.
fn r5_view_is_live(rel: RelationshipView<'_>, now: Timestamp) -> Result<(), Rejection> {
    r5_live(rel.id(), rel.status(), || rel.end_at(now), now)
}

fn r5_live(
    id: &str,
    status: RelationshipStatus,
    end_at: impl FnOnce() -> Option<Timestamp>,
    now: Timestamp,
) -> Result<(), Rejection> {
    match status {
        RelationshipStatus::Active => match end_at() {
            Some(end) if now < end => Ok(()),
            Some(end) => {
                Err(Rejection::new(Code::RelationshipExpired, Rule::R5, format!("relationship {id} ended at {end}"))
                    .with("relationship_id", id)
                    .with("ended_at", end.to_string()))
            }
            None => Err(Rejection::new(
                Code::RelationshipInactive,
                Rule::R5,
                format!("relationship {id} has no activation time"),
            )
            .with("status", status.as_str())),
        },
        RelationshipStatus::Expired => {
            Err(Rejection::new(Code::RelationshipExpired, Rule::R5, format!("relationship {id} has expired"))
                .with("relationship_id", id)
                .with("status", status.as_str()))
        }
        RelationshipStatus::Created
        | RelationshipStatus::ApprovalPending
        | RelationshipStatus::Approved
        | RelationshipStatus::Activating
        | RelationshipStatus::Expiring
        | RelationshipStatus::TerminationRequested
        | RelationshipStatus::Terminating
        | RelationshipStatus::Terminated => {
            Err(Rejection::new(Code::RelationshipInactive, Rule::R5, format!("relationship {id} is {status}"))
                .with("relationship_id", id)
                .with("status", status.as_str()))
        }
    }
}

/// R4 and R5: the partner's live relationships with the customer, in id order, read
/// in place.
pub fn r4_r5_live_relationships<'d>(
    dir: &'d Directory,
    partner: &PartnerId,
    customer: &CustomerId,
    now: Timestamp,
) -> Result<Views<'d>, Rejection> {
    let mut first_refusal = None;
    let mut live = dir.relationship_views_between(partner, customer);
    live.retain(|rel| match r5_view_is_live(*rel, now) {
        Ok(()) => true,
        Err(r) => {
            first_refusal.get_or_insert(r);
            false
        }
    });
    match (live.is_empty(), first_refusal) {
        (false, _) => Ok(live),
        (true, Some(refusal)) => Err(refusal),
        (true, None) => Err(Rejection::new(
            Code::NoRelationship,
            Rule::R4,
            format!("partner {partner} has no GDAP relationship with customer {customer}"),
        )),
    }
}

/// A live relationship and an active assignment on it that reaches the user.
pub type Reaching<'d> = (RelationshipView<'d>, AssignmentView<'d>);

/// What R6 finds, held inline: a user is reached by one or two assignments.
pub type AllReaching<'d> = smallvec::SmallVec<[Reaching<'d>; 4]>;

/// R6: the active assignments on live relationships whose group holds the user, by
/// relationship id, then assignment id.
pub fn r6_reaching_assignments<'d>(
    dir: &'d Directory,
    live: &[RelationshipView<'d>],
    user: &UserId,
) -> Result<AllReaching<'d>, Rejection> {
    let in_group = |group: &str| dir.groups_of(user).any(|g| g.as_str() == group);
    let mut reaching = AllReaching::new();
    for &rel in live {
        let first = reaching.len();
        reaching.extend(
            rel.assignments()
                .filter(|a| a.status() == AssignmentStatus::Active && in_group(a.group()))
                .map(|a| (rel, a)),
        );
        reaching[first..].sort_by(|x, y| x.1.id().cmp(y.1.id()));
    }
    if reaching.is_empty() {
        Err(Rejection::new(Code::NoAccess, Rule::R6, format!("no active access assignment reaches user {user}")))
    } else {
        Ok(reaching)
    }
}

/// The roles an assignment really grants: its own, within its relationship's.
fn granted_roles<'a>(rel: RelationshipView<'a>, a: AssignmentView<'a>) -> impl Iterator<Item = &'a str> {
    a.roles().filter(move |r| rel.has_role(r))
}

/// The evidence of a GDAP grant: its ids become owned only here, once a decision allows.
fn gdap_grant((rel, a): Reaching<'_>, role: &str) -> Grant {
    Grant::Gdap {
        relationship_id: rel.id().into(),
        assignment_id: a.id().into(),
        group_id: a.group().into(),
        role_id: role.into(),
        permission: None,
        rbac_assignment_id: None,
        rbac_role_id: None,
    }
}

/// R7 and R22: a reaching assignment with a role that carries `permission`.
pub fn r7_permission(
    reaching: &[Reaching<'_>],
    permission: Permission,
    rule: Rule,
    user: &UserId,
    position: u64,
) -> Result<Evidence, Rejection> {
    reaching
        .iter()
        .find_map(|&(rel, a)| {
            granted_roles(rel, a).find(|r| entra_role_permits(r, permission)).map(|role| {
                let mut grant = gdap_grant((rel, a), role);
                if let Grant::Gdap { permission: p, .. } = &mut grant {
                    *p = Some(permission);
                }
                Evidence { directory_position: position, user_id: user.clone(), grant }
            })
        })
        .ok_or_else(|| {
            Rejection::new(
                Code::MissingPermission,
                rule,
                format!("no assigned role carries the {} permission", permission.as_str()),
            )
            .with("permission", permission.as_str())
        })
}

/// R8 (subscription part) and R9: the subscription is the customer's Azure one, and
/// this partner is its provider and may file for it.
pub fn r8_r9_azure_subscription(
    dir: &Directory,
    partner: &Partner,
    customer: &CustomerId,
    sub: Option<&SubscriptionId>,
) -> Result<SubscriptionId, Rejection> {
    let invalid = |why: String| Rejection::new(Code::SubscriptionInvalid, Rule::R8, why);
    let sub_id = sub.ok_or_else(|| {
        invalid("an Azure ticket names the customer's subscription".into()).with("field", "subscription_id")
    })?;
    let sub = dir.subscriptions.get(sub_id).ok_or_else(|| invalid(format!("subscription {sub_id} does not exist")))?;
    if &sub.customer_id != customer {
        return Err(invalid(format!("subscription {sub_id} does not belong to customer {customer}")));
    }
    if sub.workload != Workload::Azure {
        return Err(invalid(format!("subscription {sub_id} is a {} subscription, not Azure", sub.workload)));
    }
    match partner.program {
        Program::DirectBill | Program::IndirectProvider => {}
        Program::IndirectReseller | Program::Advisor => {
            return Err(Rejection::new(
                Code::ResellerCannotFile,
                Rule::R9,
                format!("an {} cannot file Azure tickets; the subscription's provider files them", partner.program),
            )
            .with("program", partner.program.as_str())
            .with("provider_id", sub.provider_id.as_str()));
        }
    }
    if sub.provider_id != partner.partner_id {
        return Err(Rejection::new(
            Code::NotSubscriptionProvider,
            Rule::R9,
            format!("subscription {sub_id} is provided by another partner"),
        ));
    }
    Ok(sub_id.clone())
}

/// R8 (RBAC part): the user or one of its groups holds a role on the subscription
/// that may open support requests. Returns the RBAC assignment.
pub fn r8_rbac(dir: &Directory, sub: &SubscriptionId, user: &UserId) -> Result<(RbacAssignmentId, RoleId), Rejection> {
    let groups: Vec<&GroupId> = dir.groups_of(user).collect();
    dir.rbac_on(sub)
        .find(|r| {
            (r.principal_id == *user || groups.iter().any(|g| g.as_str() == r.principal_id.as_str()))
                && azure_role_may_open_support(&r.role_id)
        })
        .map(|r| (r.assignment_id.clone(), r.role_id.clone()))
        .ok_or_else(|| {
            Rejection::new(
                Code::RbacMissing,
                Rule::R8,
                format!(
                    "user {user} holds no Owner, Contributor or Support Request Contributor role on subscription {sub}"
                ),
            )
        })
}

/// R10: a customer's Azure ticket names the CSP support plan.
pub fn r10_csp_support_plan(plan: Option<&str>) -> Result<(), Rejection> {
    match plan {
        Some(p) if p.trim().eq_ignore_ascii_case(CSP_SUPPORT_PLAN) => Ok(()),
        Some(_) | None => Err(Rejection::new(
            Code::SupportPlanMustBeCsp,
            Rule::R10,
            format!("a customer's Azure ticket names the support plan {CSP_SUPPORT_PLAN}"),
        )),
    }
}

/// R11: the contact is the partner's (one of its domains), not the customer's.
pub fn r11_partner_contact(
    partner: &Partner,
    customer: Option<CustomerView<'_>>,
    email: &str,
) -> Result<(), Rejection> {
    let refuse = |why: &str| {
        Rejection::new(Code::ContactMustBePartner, Rule::R11, why.to_owned()).with("field", "contact.email")
    };
    let domain = contact_domain(email).ok_or_else(|| refuse("the contact e-mail is not an e-mail address"))?;
    if customer.is_some_and(|c| c.domains().any(|d| d == domain)) {
        return Err(refuse("the contact must be the partner's, not the customer's"));
    }
    if !partner.domains.iter().any(|d| *d == domain) {
        return Err(refuse("the contact e-mail is not on one of the partner's verified domains"));
    }
    Ok(())
}

/// R13: on its own tenant a partner files under a registered, unexpired plan of its own.
pub fn r13_own_support_plan(
    dir: &Directory,
    partner: &PartnerId,
    plan: Option<&str>,
    now: Timestamp,
) -> Result<PlanId, Rejection> {
    let plan = plan.ok_or_else(|| {
        Rejection::new(
            Code::OwnTenantNeedsSupportPlan,
            Rule::R13,
            "on its own tenant a partner files under its own support plan, not CSP support",
        )
    })?;
    let id = PlanId::new(plan.trim());
    match dir.plans.get(&id) {
        Some(p) if &p.partner_id == partner && now < p.valid_until => Ok(id),
        Some(p) if &p.partner_id == partner => Err(Rejection::new(
            Code::SupportPlanInvalid,
            Rule::R13,
            format!("support plan {id} expired at {}", p.valid_until),
        )),
        Some(_) | None => Err(Rejection::new(
            Code::SupportPlanInvalid,
            Rule::R13,
            format!("support plan {id} is not a registered plan of partner {partner}"),
        )),
    }
}

/// R2–R11, R13, R14 for a ticket action at `now`: the evidence of the grant that
/// allows it (R29), or the rule that refuses it. R18 calls this again for every
/// command on an existing ticket.
pub fn authorize_ticket(
    dir: &Directory,
    principal: &Principal,
    scope: &TicketScope<'_>,
    now: Timestamp,
    position: u64,
) -> Result<Evidence, Rejection> {
    let (partner_id, user_id) = r2_partner_agent(principal)?;
    let partner = registered_partner(dir, partner_id)?;
    r3_admin_agent(dir, partner_id, user_id)?;
    let customer = dir.customer_view(scope.customer_id);
    if partner_id.as_str() == scope.customer_id.as_str() {
        // R13: the partner's own tenant. GDAP is not needed; its own plan is.
        let plan_id = r13_own_support_plan(dir, partner_id, scope.support_plan, now)?;
        r11_partner_contact(partner, None, scope.contact_email)?;
        return Ok(Evidence {
            directory_position: position,
            user_id: user_id.clone(),
            grant: Grant::OwnTenant { plan_id },
        });
    }
    let customer = customer.ok_or_else(|| {
        Rejection::new(
            Code::NoRelationship,
            Rule::R4,
            format!("partner {partner_id} has no GDAP relationship with customer {}", scope.customer_id),
        )
    })?;
    r14_one_cloud(partner, customer.cloud())?;
    let live = r4_r5_live_relationships(dir, partner_id, scope.customer_id, now)?;
    let reaching = r6_reaching_assignments(dir, &live, user_id)?;
    let evidence = match scope.workload {
        Workload::Azure => {
            let sub = r8_r9_azure_subscription(dir, partner, scope.customer_id, scope.subscription_id)?;
            // R8: any Entra role through an active assignment.
            let (granted, role) = reaching
                .iter()
                .find_map(|&(rel, a)| granted_roles(rel, a).next().map(|role| ((rel, a), role)))
                .ok_or_else(|| {
                    Rejection::new(Code::NoAccess, Rule::R6, format!("no assigned role reaches user {user_id}"))
                })?;
            let (rbac_id, rbac_role) = r8_rbac(dir, &sub, user_id)?;
            r10_csp_support_plan(scope.support_plan)?;
            let mut grant = gdap_grant(granted, role);
            if let Grant::Gdap { rbac_assignment_id, rbac_role_id, .. } = &mut grant {
                *rbac_assignment_id = Some(rbac_id);
                *rbac_role_id = Some(rbac_role);
            }
            Evidence { directory_position: position, user_id: user_id.clone(), grant }
        }
        Workload::Office365 | Workload::Ems | Workload::DynamicsCrmOnline => {
            r7_permission(&reaching, Permission::SupportTickets, Rule::R7, user_id, position)?
        }
    };
    r11_partner_contact(partner, Some(customer), scope.contact_email)?;
    Ok(evidence)
}

/// R22: a partner user reads a customer's service health through a live relationship
/// whose active assignment carries `serviceHealth` for that user. Customers read their
/// own; the vendor side and auditors read all.
pub fn authorize_service_health(
    dir: &Directory,
    principal: &Principal,
    customer: &CustomerId,
    now: Timestamp,
    position: u64,
) -> Result<Option<Evidence>, Rejection> {
    match principal {
        Principal::PartnerAgent { partner_id, user_id } => {
            registered_partner(dir, partner_id)?;
            let live = r4_r5_live_relationships(dir, partner_id, customer, now)?;
            let reaching = r6_reaching_assignments(dir, &live, user_id)?;
            r7_permission(&reaching, Permission::ServiceHealth, Rule::R22, user_id, position).map(Some)
        }
        Principal::Customer { customer_id, .. } if customer_id == customer => Ok(None),
        Principal::Vendor | Principal::Auditor => Ok(None),
        Principal::Customer { .. } | Principal::PartnerSync { .. } | Principal::Admin => {
            Err(Rejection::new(Code::Forbidden, Rule::R22, "this principal may not read the customer's service health"))
        }
    }
}

/// R24: whether a principal may see a ticket filed by `partner` for `customer`.
pub fn r24_can_see_ticket(
    dir: &Directory,
    principal: &Principal,
    partner: &PartnerId,
    customer: &CustomerId,
    now: Timestamp,
) -> bool {
    match principal {
        Principal::PartnerAgent { partner_id, .. } => {
            partner_id == partner
                && (partner_id.as_str() == customer.as_str()
                    || r4_r5_live_relationships(dir, partner_id, customer, now).is_ok())
        }
        Principal::Customer { customer_id, .. } => customer_id == customer,
        Principal::Vendor | Principal::Auditor => true,
        Principal::PartnerSync { .. } | Principal::Admin => false,
    }
}

/// Who may lease and ack a queue's messages: workload queues are the vendor side's; a
/// partner's queue (`partner.<id>`) is that partner's agents' and directory sync's, and
/// the vendor's.
pub fn may_consume_queue(who: &Principal, queue: &str) -> bool {
    match (who, queue.strip_prefix("partner.")) {
        (Principal::Vendor, _) => true,
        (Principal::PartnerAgent { partner_id, .. } | Principal::PartnerSync { partner_id }, Some(p)) => {
            partner_id.as_str() == p
        }
        (Principal::PartnerAgent { .. } | Principal::PartnerSync { .. }, None) => false,
        (Principal::Customer { .. } | Principal::Auditor | Principal::Admin, _) => false,
    }
}
