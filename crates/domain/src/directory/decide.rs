//! The directory's decisions: validation of facts (R25 who writes, R28 valid GDAP
//! facts, R16 field shapes) and one function per directory command.

// ---------------------------------------------------------------------------------
// Validation of facts (R25 who writes, R28 valid GDAP facts, R16 field shapes).

use crate::facts::{
    Assignment, Customer, GroupMember, HealthIssue, Partner, PartnerUser, Product, RbacAssignment, Relationship,
    Subscription, SupportPlan,
};
use crate::roles::GLOBAL_ADMINISTRATOR;
use crate::time::parse_iso_duration_days;
use crate::{
    Code, Directory, DirectoryCommand, Event, PartnerId, Principal, Program, Rejection, RelationshipStatus, RoleId,
    Rule,
};
use std::borrow::Cow;
fn check_id<T>(field: &str, check: Result<(), &'static str>, _: &T) -> Result<(), Rejection> {
    check.map_err(|why| Rejection::invalid(field, why))
}

macro_rules! ids_ok {
    ($($field:literal => $id:expr),+ $(,)?) => {
        $( check_id($field, $id.check(), &$id)?; )+
    };
}

fn text(field: &str, v: &str, max: usize) -> Result<(), Rejection> {
    let n = v.trim().chars().count();
    if n == 0 {
        Err(Rejection::invalid(field, "is required"))
    } else if v.chars().count() > max {
        Err(Rejection::invalid(field, format!("must be at most {max} characters")))
    } else {
        Ok(())
    }
}

/// A mail domain: lower-case labels of letters, digits and `-`, at least two.
pub fn is_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `local@domain` with a valid domain; returns the lower-cased domain.
/// The domain R11 judges on a stored contact: the address's, or — where the address
/// is sealed (issue 26: only its domain stays in the clear, after the last `@`) — that
/// domain. A new contact is checked as an address first (R16).
/// Borrowed when already lower-case (as stored contacts are), so R11 allocates nothing.
pub fn contact_domain(e: &str) -> Option<Cow<'_, str>> {
    email_domain(e).or_else(|| {
        let (local, domain) = e.trim().rsplit_once('@')?;
        local.starts_with(crate::erasure::SEALED_PREFIX).then_some(())?;
        let domain = lower_case(domain);
        (!local.is_empty() && !local.contains(char::is_whitespace) && is_domain(&domain)).then_some(domain)
    })
}

fn lower_case(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

pub fn email_domain(e: &str) -> Option<Cow<'_, str>> {
    let (local, domain) = e.trim().rsplit_once('@')?;
    let domain = lower_case(domain);
    (!local.is_empty() && local.len() <= 64 && !local.contains(char::is_whitespace) && is_domain(&domain))
        .then_some(domain)
}

fn domains(field: &str, ds: &[String]) -> Result<(), Rejection> {
    if ds.is_empty() {
        return Err(Rejection::invalid(field, "at least one verified domain is required"));
    }
    match ds.iter().find(|d| !is_domain(&d.to_ascii_lowercase())) {
        Some(bad) => Err(Rejection::invalid(field, format!("{bad:?} is not a mail domain"))),
        None => Ok(()),
    }
}

fn vendor_only(principal: &Principal) -> Result<(), Rejection> {
    match principal {
        Principal::Vendor => Ok(()),
        Principal::PartnerAgent { .. }
        | Principal::PartnerSync { .. }
        | Principal::Customer { .. }
        | Principal::Auditor
        | Principal::Admin => {
            Err(Rejection::new(Code::Forbidden, Rule::R25, "only the vendor-side principal may write vendor facts"))
        }
    }
}

/// R25: the partner's own directory producer (or, where `vendor_too`, the vendor).
fn own_partner(principal: &Principal, partner: &PartnerId, vendor_too: bool) -> Result<(), Rejection> {
    match principal {
        Principal::PartnerSync { partner_id } if partner_id == partner => Ok(()),
        Principal::Vendor if vendor_too => Ok(()),
        Principal::PartnerSync { .. } => {
            Err(Rejection::new(Code::Forbidden, Rule::R25, "a partner may write facts of its own tenant only"))
        }
        Principal::Vendor
        | Principal::PartnerAgent { .. }
        | Principal::Customer { .. }
        | Principal::Auditor
        | Principal::Admin => {
            Err(Rejection::new(Code::Forbidden, Rule::R25, "only the partner's directory producer may write this fact"))
        }
    }
}

/// An upsert: the event when the fact is new or changed, nothing when it is the same.
fn upsert<T: PartialEq>(current: Option<&T>, new: &T, event: impl FnOnce() -> Event) -> Vec<Event> {
    if current == Some(new) {
        Vec::new()
    } else {
        vec![event()]
    }
}

fn lower(ds: &[String]) -> Vec<String> {
    ds.iter().map(|d| d.trim().to_ascii_lowercase()).collect()
}

/// Decides a directory command (R25 who writes, R28 valid GDAP): one function per fact.
pub(crate) fn decide(dir: &Directory, p: &Principal, c: DirectoryCommand<'_>) -> Result<Vec<Event>, Rejection> {
    match c {
        DirectoryCommand::PartnerRegister(x) => register_partner(dir, p, x),
        DirectoryCommand::CustomerRegister(x) => register_customer(dir, p, x),
        DirectoryCommand::PartnerUserUpsert(x) => upsert_user(dir, p, x),
        DirectoryCommand::GroupMemberAdd(x) => add_member(dir, p, x),
        DirectoryCommand::GroupMemberRemove(x) => remove_member(dir, p, x),
        DirectoryCommand::RelationshipUpsert(x) => upsert_relationship(dir, p, x),
        DirectoryCommand::AssignmentUpsert(x) => upsert_assignment(dir, p, x),
        DirectoryCommand::SubscriptionRegister(x) => register_subscription(dir, p, x),
        DirectoryCommand::RbacAssign(x) => assign_rbac(dir, p, x),
        DirectoryCommand::RbacRemove(x) => remove_rbac(dir, p, x),
        DirectoryCommand::ProductRegister(x) => register_product(dir, p, x),
        DirectoryCommand::SupportPlanRegister(x) => register_plan(dir, p, x),
        DirectoryCommand::ServiceHealthIssueUpsert(x) => upsert_issue(dir, p, x),
    }
}

pub(crate) fn register_partner(dir: &Directory, principal: &Principal, p: &Partner) -> Result<Vec<Event>, Rejection> {
    vendor_only(principal)?;
    ids_ok!("partner_id" => p.partner_id);
    text("name", &p.name, 256)?;
    domains("domains", &p.domains)?;
    let p = Partner { domains: lower(&p.domains), ..p.clone() };
    match (&p.program, &p.provider_id) {
        (Program::IndirectReseller, None) => {
            return Err(Rejection::invalid("provider_id", "an indirect reseller names its provider"))
        }
        (Program::IndirectReseller, Some(provider)) => match dir.partners.get(provider) {
            Some(pp) if pp.program == Program::IndirectProvider => {}
            Some(_) => return Err(Rejection::invalid("provider_id", "must be an indirect provider")),
            None => return Err(Rejection::invalid("provider_id", "no such partner")),
        },
        (Program::DirectBill | Program::IndirectProvider | Program::Advisor, Some(_)) => {
            return Err(Rejection::invalid("provider_id", "only an indirect reseller names a provider"));
        }
        (Program::DirectBill | Program::IndirectProvider | Program::Advisor, None) => {}
    }
    Ok(upsert(dir.partners.get(&p.partner_id), &p, || Event::PartnerRegistered(p.clone())))
}

pub(crate) fn register_customer(dir: &Directory, principal: &Principal, c: &Customer) -> Result<Vec<Event>, Rejection> {
    vendor_only(principal)?;
    ids_ok!("customer_id" => c.customer_id);
    text("name", &c.name, 256)?;
    domains("domains", &c.domains)?;
    let c = Customer { domains: lower(&c.domains), ..c.clone() };
    Ok(upsert(dir.customer(&c.customer_id).as_ref(), &c, || Event::CustomerRegistered(c.clone())))
}

pub(crate) fn upsert_user(dir: &Directory, principal: &Principal, u: &PartnerUser) -> Result<Vec<Event>, Rejection> {
    own_partner(principal, &u.partner_id, true)?;
    ids_ok!("partner_id" => u.partner_id, "user_id" => u.user_id);
    // The shell seals a user's address before this (issue 26); its domain stays.
    if contact_domain(&u.email).is_none() {
        return Err(Rejection::invalid("email", "not an e-mail address"));
    }
    if !dir.partners.contains_key(&u.partner_id) {
        return Err(Rejection::invalid("partner_id", "no such partner"));
    }
    if let Some(existing) = dir.users.get(&u.user_id) {
        if existing.partner_id != u.partner_id {
            return Err(Rejection::new(Code::Forbidden, Rule::R25, "the user belongs to another partner"));
        }
    }
    Ok(upsert(dir.users.get(&u.user_id), u, || Event::PartnerUserUpserted(u.clone())))
}

fn check_group_owner(dir: &Directory, m: &GroupMember) -> Result<(), Rejection> {
    ids_ok!("partner_id" => m.partner_id, "group_id" => m.group_id, "user_id" => m.user_id);
    if let Some(owner) = dir.groups.get(&m.group_id).and_then(|g| g.partner_id.as_ref()) {
        if owner != &m.partner_id {
            return Err(Rejection::new(Code::Forbidden, Rule::R25, "the group belongs to another partner"));
        }
    }
    Ok(())
}

pub(crate) fn add_member(dir: &Directory, principal: &Principal, m: &GroupMember) -> Result<Vec<Event>, Rejection> {
    own_partner(principal, &m.partner_id, false)?;
    check_group_owner(dir, m)?;
    match dir.users.get(&m.user_id) {
        Some(u) if u.partner_id == m.partner_id => {}
        Some(_) => return Err(Rejection::new(Code::Forbidden, Rule::R25, "the user belongs to another partner")),
        None => return Err(Rejection::invalid("user_id", "no such partner user")),
    }
    let present = dir.groups.get(&m.group_id).is_some_and(|g| g.members.contains(&m.user_id));
    Ok(if present { Vec::new() } else { vec![Event::GroupMemberAdded(m.clone())] })
}

pub(crate) fn remove_member(dir: &Directory, principal: &Principal, m: &GroupMember) -> Result<Vec<Event>, Rejection> {
    own_partner(principal, &m.partner_id, false)?;
    check_group_owner(dir, m)?;
    let present = dir.groups.get(&m.group_id).is_some_and(|g| g.members.contains(&m.user_id));
    Ok(if present { vec![Event::GroupMemberRemoved(m.clone())] } else { Vec::new() })
}

fn roles_ok(roles: &[RoleId]) -> Result<(), Rejection> {
    if roles.is_empty() {
        return Err(Rejection::invalid("roles", "at least one role is required"));
    }
    match roles.iter().find(|r| r.check().is_err()) {
        Some(bad) => Err(Rejection::invalid("roles", format!("{bad} is not a role template id"))),
        None => Ok(()),
    }
}

/// R28: a valid relationship.
pub(crate) fn upsert_relationship(
    dir: &Directory,
    principal: &Principal,
    r: &Relationship,
) -> Result<Vec<Event>, Rejection> {
    own_partner(principal, &r.partner_id, false)?;
    ids_ok!("relationship_id" => r.relationship_id, "partner_id" => r.partner_id, "customer_id" => r.customer_id);
    roles_ok(&r.roles)?;
    let partner = dir.partners.get(&r.partner_id).ok_or_else(|| Rejection::invalid("partner_id", "no such partner"))?;
    let customer = dir.customer(&r.customer_id).ok_or_else(|| Rejection::invalid("customer_id", "no such customer"))?;
    if partner.cloud != customer.cloud {
        return Err(Rejection::new(
            Code::CloudMismatch,
            Rule::R14,
            format!("partner is in {} but customer is in {}", partner.cloud, customer.cloud),
        ));
    }
    let invalid = |why: String| Rejection::new(Code::InvalidRelationship, Rule::R28, why);
    match parse_iso_duration_days(&r.duration) {
        Some(d) if (1..=730).contains(&d) => {}
        Some(_) | None => {
            return Err(
                invalid(format!("duration {:?} must be between P1D and P2Y", r.duration)).with("field", "duration")
            )
        }
    }
    match parse_iso_duration_days(&r.auto_extend) {
        Some(0) => {}
        Some(180) if r.roles.iter().any(|x| x.as_str() == GLOBAL_ADMINISTRATOR) => {
            return Err(
                invalid("auto-extend is not allowed with Global Administrator".into()).with("field", "auto_extend")
            );
        }
        Some(180) => {}
        Some(_) | None => {
            return Err(invalid(format!("auto_extend {:?} must be PT0S, P0D or P180D", r.auto_extend))
                .with("field", "auto_extend"))
        }
    }
    if r.status == RelationshipStatus::Active && r.activated_at.is_none() {
        return Err(invalid("an active relationship needs activated_at".into()).with("field", "activated_at"));
    }
    if let Some(existing) = dir.relationship(&r.relationship_id) {
        if existing.partner_id != r.partner_id || existing.customer_id != r.customer_id {
            return Err(invalid("a relationship's partner and customer never change".into()));
        }
    }
    let r = Relationship {
        duration: r.duration.trim().to_ascii_uppercase(),
        auto_extend: r.auto_extend.trim().to_ascii_uppercase(),
        ..r.clone()
    };
    Ok(upsert(dir.relationship(&r.relationship_id).as_ref(), &r, || Event::RelationshipUpserted(r.clone())))
}

/// R28: an assignment's roles are a subset of its relationship's.
pub(crate) fn upsert_assignment(
    dir: &Directory,
    principal: &Principal,
    a: &Assignment,
) -> Result<Vec<Event>, Rejection> {
    ids_ok!("assignment_id" => a.assignment_id, "relationship_id" => a.relationship_id, "group_id" => a.group_id);
    let rel = match dir.relationship(&a.relationship_id) {
        Some(rel) => rel,
        None => {
            // Who may write it cannot be known without the relationship; refuse
            // strangers first so that nobody learns which relationships exist.
            match principal {
                Principal::PartnerSync { .. } => {
                    return Err(Rejection::invalid("relationship_id", "no such relationship"))
                }
                Principal::Vendor
                | Principal::PartnerAgent { .. }
                | Principal::Customer { .. }
                | Principal::Auditor
                | Principal::Admin => {
                    return Err(Rejection::new(
                        Code::Forbidden,
                        Rule::R25,
                        "only the partner's directory producer may write this fact",
                    ))
                }
            }
        }
    };
    own_partner(principal, &rel.partner_id, false)?;
    roles_ok(&a.roles)?;
    if let Some(extra) = a.roles.iter().find(|r| !rel.roles.contains(r)) {
        return Err(Rejection::new(
            Code::RoleNotInRelationship,
            Rule::R28,
            format!(
                "role {extra} ({}) is not granted by relationship {}",
                crate::roles::role_name(extra),
                rel.relationship_id
            ),
        )
        .with("role_id", extra.as_str()));
    }
    if let Some(owner) = dir.groups.get(&a.group_id).and_then(|g| g.partner_id.as_ref()) {
        if owner != &rel.partner_id {
            return Err(Rejection::new(Code::Forbidden, Rule::R25, "the group belongs to another partner"));
        }
    }
    if let Some(existing) = dir.assignment(&a.assignment_id) {
        if existing.relationship_id != a.relationship_id {
            return Err(Rejection::invalid("relationship_id", "an assignment's relationship never changes"));
        }
    }
    Ok(upsert(dir.assignment(&a.assignment_id).as_ref(), a, || Event::AssignmentUpserted(a.clone())))
}

pub(crate) fn register_subscription(
    dir: &Directory,
    principal: &Principal,
    s: &Subscription,
) -> Result<Vec<Event>, Rejection> {
    vendor_only(principal)?;
    ids_ok!("subscription_id" => s.subscription_id, "customer_id" => s.customer_id, "provider_id" => s.provider_id);
    if !dir.has_customer(&s.customer_id) {
        return Err(Rejection::invalid("customer_id", "no such customer"));
    }
    if !dir.partners.contains_key(&s.provider_id) {
        return Err(Rejection::invalid("provider_id", "no such partner"));
    }
    if let Some(r) = &s.reseller_id {
        if !dir.partners.contains_key(r) {
            return Err(Rejection::invalid("reseller_id", "no such partner"));
        }
    }
    if let Some(p) = &s.marketplace_product_id {
        if !dir.products.contains_key(p) {
            return Err(Rejection::invalid("marketplace_product_id", "no such marketplace product"));
        }
    }
    Ok(upsert(dir.subscriptions.get(&s.subscription_id), s, || Event::SubscriptionRegistered(s.clone())))
}

pub(crate) fn assign_rbac(dir: &Directory, principal: &Principal, r: &RbacAssignment) -> Result<Vec<Event>, Rejection> {
    vendor_only(principal)?;
    ids_ok!("assignment_id" => r.assignment_id, "subscription_id" => r.subscription_id, "principal_id" => r.principal_id, "role_id" => r.role_id);
    if !dir.subscriptions.contains_key(&r.subscription_id) {
        return Err(Rejection::invalid("subscription_id", "no such subscription"));
    }
    Ok(upsert(dir.rbac.get(&r.assignment_id), r, || Event::RbacAssigned(r.clone())))
}

pub(crate) fn remove_rbac(dir: &Directory, principal: &Principal, r: &RbacAssignment) -> Result<Vec<Event>, Rejection> {
    vendor_only(principal)?;
    ids_ok!("assignment_id" => r.assignment_id);
    Ok(match dir.rbac.get(&r.assignment_id) {
        Some(existing) => vec![Event::RbacRemoved(existing.clone())],
        None => Vec::new(),
    })
}

pub(crate) fn register_product(dir: &Directory, principal: &Principal, p: &Product) -> Result<Vec<Event>, Rejection> {
    vendor_only(principal)?;
    ids_ok!("product_id" => p.product_id);
    text("isv_name", &p.isv_name, 256)?;
    if p.support_url.is_none() && p.support_email.is_none() && p.support_phone.is_none() {
        return Err(Rejection::invalid("support_url", "a product needs at least one support contact"));
    }
    if let Some(e) = &p.support_email {
        if email_domain(e).is_none() {
            return Err(Rejection::invalid("support_email", "not an e-mail address"));
        }
    }
    Ok(upsert(dir.products.get(&p.product_id), p, || Event::MarketplaceProductRegistered(p.clone())))
}

pub(crate) fn register_plan(dir: &Directory, principal: &Principal, p: &SupportPlan) -> Result<Vec<Event>, Rejection> {
    vendor_only(principal)?;
    ids_ok!("plan_id" => p.plan_id, "partner_id" => p.partner_id);
    if !dir.partners.contains_key(&p.partner_id) {
        return Err(Rejection::invalid("partner_id", "no such partner"));
    }
    Ok(upsert(dir.plans.get(&p.plan_id), p, || Event::SupportPlanRegistered(p.clone())))
}

pub(crate) fn upsert_issue(dir: &Directory, principal: &Principal, i: &HealthIssue) -> Result<Vec<Event>, Rejection> {
    vendor_only(principal)?;
    ids_ok!("issue_id" => i.issue_id);
    text("title", &i.title, 500)?;
    text("status", &i.status, 64)?;
    if let Some(bad) = i.customer_ids.iter().find(|c| c.check().is_err()) {
        return Err(Rejection::invalid("customer_ids", format!("{bad} is not a GUID")));
    }
    if i.end.is_some_and(|e| e < i.start) {
        return Err(Rejection::invalid("end", "ends before it starts"));
    }
    Ok(upsert(dir.issues.get(&i.issue_id), i, || Event::ServiceHealthIssueUpserted(i.clone())))
}
