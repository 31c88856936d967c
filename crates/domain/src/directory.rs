//! The directory: partners, users, groups, customers, GDAP relationships and access
//! assignments, subscriptions, RBAC, marketplace products, support plans and service
//! health issues. Each fact is an upsert command checked here (R25 who may write it,
//! R28 whether it is a valid GDAP fact) and, once accepted, an event folded into
//! [`Directory`] — the GDAP projection the policy judges against.

use crate::kinds::{DirectoryEvent, EventKind};
use crate::{
    AssignmentId, CustomerId, Event, GroupId, IssueId, PartnerId, PlanId, ProductId, RbacAssignmentId, RelationshipId,
    SubscriptionId, UserId,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod decide;

pub use crate::facts::{
    Assignment, Customer, GroupMember, HealthIssue, Partner, PartnerUser, Product, RbacAssignment, Relationship,
    Subscription, SupportPlan, AUTO_EXTEND_DAYS,
};

pub(crate) use decide::decide;
pub use decide::{contact_domain, email_domain, is_domain};

/// A small ordered set of ids, kept as a sorted vector: most sets of the directory's
/// indexes hold one or two ids, and a `BTreeSet` node takes ~300 bytes even for one.
/// It serializes as a sequence, as a `BTreeSet` does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdSet<T>(Vec<T>);

impl<T> Default for IdSet<T> {
    fn default() -> Self {
        IdSet(Vec::new())
    }
}

impl<T: Ord> IdSet<T> {
    /// Adds `id`; false if it was there.
    pub fn insert(&mut self, id: T) -> bool {
        match self.0.binary_search(&id) {
            Ok(_) => false,
            Err(at) => {
                // Small sets hold exactly what they need; larger ones grow as vectors do.
                if self.0.len() < 4 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(at, id);
                true
            }
        }
    }

    /// Takes `id` out; false if it was not there.
    pub fn remove(&mut self, id: &T) -> bool {
        match self.0.binary_search(id) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains(&self, id: &T) -> bool {
        self.0.binary_search(id).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// In order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a IdSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The members of one security group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub partner_id: Option<PartnerId>,
    pub members: IdSet<UserId>,
}

/// The GDAP projection: every directory fact, folded from the log, with the indexes
/// the policy needs to judge a command without scanning. It serializes whole, for the
/// projection's snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub partners: BTreeMap<PartnerId, Partner>,
    pub users: BTreeMap<UserId, PartnerUser>,
    pub groups: BTreeMap<GroupId, Group>,
    pub user_groups: BTreeMap<UserId, IdSet<GroupId>>,
    pub customers: BTreeMap<CustomerId, Customer>,
    pub relationships: BTreeMap<RelationshipId, Relationship>,
    pub relationships_by_pair: BTreeMap<(PartnerId, CustomerId), IdSet<RelationshipId>>,
    pub assignments: BTreeMap<AssignmentId, Assignment>,
    pub assignments_by_relationship: BTreeMap<RelationshipId, IdSet<AssignmentId>>,
    pub subscriptions: BTreeMap<SubscriptionId, Subscription>,
    pub rbac: BTreeMap<RbacAssignmentId, RbacAssignment>,
    pub rbac_by_subscription: BTreeMap<SubscriptionId, IdSet<RbacAssignmentId>>,
    pub products: BTreeMap<ProductId, Product>,
    pub plans: BTreeMap<PlanId, SupportPlan>,
    pub issues: BTreeMap<IssueId, HealthIssue>,
    /// Webhook subscriptions (`crate::webhook`): not GDAP facts, but configuration the
    /// command service decides against and the senders read.
    #[serde(default)]
    pub webhooks: crate::webhook::Webhooks,
    /// One allocation per id text, shared by every fact and index that names it.
    #[serde(skip)]
    shared: Shared,
}

/// The ids the directory holds, each once: a fact's ids are swapped for the shared
/// ones as it is folded (a partner named by a thousand relationships is one `Arc`). Ids
/// no fact holds any more are dropped as the set grows. Not part of the directory's
/// value (equal directories may have shared differently).
#[derive(Clone, Default)]
struct Shared {
    ids: std::collections::HashSet<std::sync::Arc<str>>,
    /// The set's size after its last pruning.
    pruned_at: usize,
}

impl PartialEq for Shared {
    fn eq(&self, _: &Shared) -> bool {
        true
    }
}

impl Eq for Shared {}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    fn share(&mut self, id: &mut std::sync::Arc<str>) {
        match self.ids.get(&**id) {
            Some(shared) => *id = std::sync::Arc::clone(shared),
            None => {
                if self.ids.len() >= 2 * self.pruned_at.max(1024) {
                    self.ids.retain(|a| std::sync::Arc::strong_count(a) > 1);
                    self.pruned_at = self.ids.len();
                }
                self.ids.insert(std::sync::Arc::clone(id));
            }
        }
    }
}

impl Directory {
    /// Folds one event. Events that are not directory facts are ignored, so the
    /// projection can follow the whole log.
    pub fn apply(&mut self, event: &Event) {
        let e = match event.kind() {
            EventKind::Directory(e) => e,
            EventKind::Webhook(w) => return self.webhooks.apply(w),
            EventKind::Ticket(_) | EventKind::Routed(_) | EventKind::Rejected(_) | EventKind::PersonErased(_) => return,
        };
        match e {
            DirectoryEvent::PartnerRegistered(p) => {
                self.partners.insert(p.partner_id.clone(), p.clone());
            }
            DirectoryEvent::CustomerRegistered(c) => {
                let mut c = c.clone();
                self.shared.share(&mut c.customer_id.0);
                self.customers.insert(c.customer_id.clone(), c);
            }
            DirectoryEvent::PartnerUserUpserted(u) => {
                self.users.insert(u.user_id.clone(), u.clone());
            }
            DirectoryEvent::GroupMemberAdded(m) => {
                let g = self.groups.entry(m.group_id.clone()).or_default();
                g.partner_id = Some(m.partner_id.clone());
                g.members.insert(m.user_id.clone());
                self.user_groups.entry(m.user_id.clone()).or_default().insert(m.group_id.clone());
            }
            DirectoryEvent::GroupMemberRemoved(m) => {
                if let Some(g) = self.groups.get_mut(&m.group_id) {
                    g.members.remove(&m.user_id);
                }
                if let Some(gs) = self.user_groups.get_mut(&m.user_id) {
                    gs.remove(&m.group_id);
                    if gs.is_empty() {
                        self.user_groups.remove(&m.user_id);
                    }
                }
            }
            DirectoryEvent::RelationshipUpserted(r) => {
                let mut r = r.clone();
                for id in [&mut r.relationship_id.0, &mut r.partner_id.0, &mut r.customer_id.0] {
                    self.shared.share(id);
                }
                r.roles.iter_mut().for_each(|role| self.shared.share(&mut role.0));
                self.relationships_by_pair
                    .entry((r.partner_id.clone(), r.customer_id.clone()))
                    .or_default()
                    .insert(r.relationship_id.clone());
                self.relationships.insert(r.relationship_id.clone(), r);
            }
            DirectoryEvent::AssignmentUpserted(a) => {
                let mut a = a.clone();
                for id in [&mut a.assignment_id.0, &mut a.relationship_id.0, &mut a.group_id.0] {
                    self.shared.share(id);
                }
                a.roles.iter_mut().for_each(|role| self.shared.share(&mut role.0));
                self.assignments_by_relationship
                    .entry(a.relationship_id.clone())
                    .or_default()
                    .insert(a.assignment_id.clone());
                let g = self.groups.entry(a.group_id.clone()).or_default();
                if g.partner_id.is_none() {
                    g.partner_id = self.relationships.get(&a.relationship_id).map(|r| r.partner_id.clone());
                }
                self.assignments.insert(a.assignment_id.clone(), a);
            }
            DirectoryEvent::SubscriptionRegistered(s) => {
                self.subscriptions.insert(s.subscription_id.clone(), s.clone());
            }
            DirectoryEvent::RbacAssigned(r) => {
                self.rbac_by_subscription.entry(r.subscription_id.clone()).or_default().insert(r.assignment_id.clone());
                self.rbac.insert(r.assignment_id.clone(), r.clone());
            }
            DirectoryEvent::RbacRemoved(r) => {
                if let Some(set) = self.rbac_by_subscription.get_mut(&r.subscription_id) {
                    set.remove(&r.assignment_id);
                }
                self.rbac.remove(&r.assignment_id);
            }
            DirectoryEvent::MarketplaceProductRegistered(p) => {
                self.products.insert(p.product_id.clone(), p.clone());
            }
            DirectoryEvent::SupportPlanRegistered(p) => {
                self.plans.insert(p.plan_id.clone(), p.clone());
            }
            DirectoryEvent::ServiceHealthIssueUpserted(i) => {
                self.issues.insert(i.issue_id.clone(), i.clone());
            }
        }
    }

    /// Shares every id of the GDAP facts (after a directory was decoded whole, from a
    /// snapshot: decoding gives each id its own allocation).
    pub fn reshare(&mut self) {
        let mut sh = std::mem::take(&mut self.shared);
        let roles = |sh: &mut Shared, roles: &mut Vec<crate::RoleId>| roles.iter_mut().for_each(|r| sh.share(&mut r.0));
        self.customers = std::mem::take(&mut self.customers)
            .into_values()
            .map(|mut c| {
                sh.share(&mut c.customer_id.0);
                (c.customer_id.clone(), c)
            })
            .collect();
        self.relationships = std::mem::take(&mut self.relationships)
            .into_values()
            .map(|mut r| {
                for id in [&mut r.relationship_id.0, &mut r.partner_id.0, &mut r.customer_id.0] {
                    sh.share(id);
                }
                roles(&mut sh, &mut r.roles);
                (r.relationship_id.clone(), r)
            })
            .collect();
        self.relationships_by_pair = std::mem::take(&mut self.relationships_by_pair)
            .into_iter()
            .map(|((mut p, mut c), mut ids)| {
                sh.share(&mut p.0);
                sh.share(&mut c.0);
                ids.0.iter_mut().for_each(|id| sh.share(&mut id.0));
                ((p, c), ids)
            })
            .collect();
        self.assignments = std::mem::take(&mut self.assignments)
            .into_values()
            .map(|mut a| {
                for id in [&mut a.assignment_id.0, &mut a.relationship_id.0, &mut a.group_id.0] {
                    sh.share(id);
                }
                roles(&mut sh, &mut a.roles);
                (a.assignment_id.clone(), a)
            })
            .collect();
        self.assignments_by_relationship = std::mem::take(&mut self.assignments_by_relationship)
            .into_iter()
            .map(|(mut r, mut ids)| {
                sh.share(&mut r.0);
                ids.0.iter_mut().for_each(|id| sh.share(&mut id.0));
                (r, ids)
            })
            .collect();
        self.shared = sh;
    }

    /// The groups a user belongs to.
    pub fn groups_of(&self, user: &UserId) -> impl Iterator<Item = &GroupId> {
        self.user_groups.get(user).into_iter().flatten()
    }

    /// Relationships between a partner and a customer, in id order.
    pub fn relationships_between<'a>(
        &'a self,
        partner: &PartnerId,
        customer: &CustomerId,
    ) -> impl Iterator<Item = &'a Relationship> {
        self.relationships_by_pair
            .get(&(partner.clone(), customer.clone()))
            .into_iter()
            .flatten()
            .filter_map(|id| self.relationships.get(id))
    }

    /// Access assignments on a relationship, in id order.
    pub fn assignments_on<'a>(&'a self, relationship: &RelationshipId) -> impl Iterator<Item = &'a Assignment> {
        self.assignments_by_relationship
            .get(relationship)
            .into_iter()
            .flatten()
            .filter_map(|id| self.assignments.get(id))
    }

    /// RBAC assignments on a subscription, in id order.
    pub fn rbac_on<'a>(&'a self, subscription: &SubscriptionId) -> impl Iterator<Item = &'a RbacAssignment> {
        self.rbac_by_subscription.get(subscription).into_iter().flatten().filter_map(|id| self.rbac.get(id))
    }
}
