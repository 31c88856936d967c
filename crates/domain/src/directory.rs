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
use std::collections::{BTreeMap, HashMap};

mod decide;
mod packed;

pub use crate::facts::{
    Assignment, Customer, GroupMember, HealthIssue, Partner, PartnerUser, Product, RbacAssignment, Relationship,
    Subscription, SupportPlan, AUTO_EXTEND_DAYS,
};

pub(crate) use decide::decide;
pub use decide::{contact_domain, email_domain, is_domain};
pub use packed::{AssignmentView, CustomerView, RelationshipView, Views};

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
/// projection's snapshot. Customers, relationships and access assignments — the facts
/// that grow with the vendor — are held packed ([`packed`]) and read through methods
/// that give each back as its public type.
///
/// Partners, their users and the users' groups — what every decision looks up first —
/// are hashed: at ten thousand partners a tree lookup compares the id with a dozen keys,
/// each behind a pointer and, at vendor scale, a cache miss; a hash costs one or two.
/// They serialize and print (`Debug`) in key order all the same, so neither a
/// snapshot's bytes nor a comparison of two folds depends on a process's hash keys.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    #[serde(serialize_with = "in_key_order")]
    pub partners: HashMap<PartnerId, Partner>,
    #[serde(serialize_with = "in_key_order")]
    pub users: HashMap<UserId, PartnerUser>,
    pub groups: BTreeMap<GroupId, Group>,
    #[serde(serialize_with = "in_key_order")]
    pub user_groups: HashMap<UserId, IdSet<GroupId>>,
    gdap: packed::Packed,
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
}

/// A hashed map's entries as its keys sort.
fn sorted<K: Ord, V>(map: &HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// A hashed map written as its keys sort.
fn in_key_order<S: serde::Serializer, K: Ord + Serialize, V: Serialize>(
    map: &HashMap<K, V>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(sorted(map))
}

/// A hashed map printed as its keys sort.
struct Sorted<'a, K, V>(&'a HashMap<K, V>);

impl<K: Ord + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for Sorted<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(sorted(self.0)).finish()
    }
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("partners", &Sorted(&self.partners))
            .field("users", &Sorted(&self.users))
            .field("groups", &self.groups)
            .field("user_groups", &Sorted(&self.user_groups))
            .field("gdap", &self.gdap)
            .field("subscriptions", &self.subscriptions)
            .field("rbac", &self.rbac)
            .field("rbac_by_subscription", &self.rbac_by_subscription)
            .field("products", &self.products)
            .field("plans", &self.plans)
            .field("issues", &self.issues)
            .field("webhooks", &self.webhooks)
            .finish()
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
            DirectoryEvent::CustomerRegistered(c) => self.gdap.put_customer(c),
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
            DirectoryEvent::RelationshipUpserted(r) => self.gdap.put_relationship(r),
            DirectoryEvent::AssignmentUpserted(a) => {
                let g = self.groups.entry(a.group_id.clone()).or_default();
                if g.partner_id.is_none() {
                    g.partner_id = self.gdap.relationship(a.relationship_id.as_str()).map(|r| r.partner_id);
                }
                self.gdap.put_assignment(a);
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

    /// The groups a user belongs to.
    pub fn groups_of(&self, user: &UserId) -> impl Iterator<Item = &GroupId> {
        self.user_groups.get(user).into_iter().flatten()
    }

    /// A customer tenant, if registered.
    pub fn customer(&self, id: &CustomerId) -> Option<Customer> {
        self.gdap.customer(id.as_str())
    }

    /// The same, borrowed: what a decision reads.
    pub fn customer_view(&self, id: &CustomerId) -> Option<CustomerView<'_>> {
        self.gdap.customer_view(id.as_str())
    }

    pub fn has_customer(&self, id: &CustomerId) -> bool {
        self.gdap.has_customer(id.as_str())
    }

    pub fn relationship(&self, id: &RelationshipId) -> Option<Relationship> {
        self.gdap.relationship(id.as_str())
    }

    pub fn assignment(&self, id: &AssignmentId) -> Option<Assignment> {
        self.gdap.assignment(id.as_str())
    }

    /// Relationships between a partner and a customer, in id order.
    pub fn relationships_between(&self, partner: &PartnerId, customer: &CustomerId) -> Vec<Relationship> {
        self.gdap.relationships_between(partner.as_str(), customer.as_str())
    }

    /// The same, borrowed: what a decision reads.
    pub fn relationship_views_between(&self, partner: &PartnerId, customer: &CustomerId) -> Views<'_> {
        self.gdap.relationship_views_between(partner.as_str(), customer.as_str())
    }

    /// A partner's customers in id order, each with its relationships in id order.
    pub fn customers_of(&self, partner: &PartnerId) -> Vec<(CustomerId, Vec<Relationship>)> {
        self.gdap.customers_of(partner.as_str())
    }

    /// Access assignments on a relationship, in id order.
    pub fn assignments_on(&self, relationship: &RelationshipId) -> Vec<Assignment> {
        self.gdap.assignments_on(relationship.as_str())
    }

    /// How many customers, relationships and access assignments it holds.
    pub fn gdap_counts(&self) -> (usize, usize, usize) {
        self.gdap.counts()
    }

    /// Every relationship, in the order first folded.
    pub fn relationships(&self) -> impl Iterator<Item = Relationship> + '_ {
        self.gdap.relationships()
    }

    /// Every access assignment, in the order first folded.
    pub fn assignments(&self) -> impl Iterator<Item = Assignment> + '_ {
        self.gdap.assignments()
    }

    /// RBAC assignments on a subscription, in id order.
    pub fn rbac_on<'a>(&'a self, subscription: &SubscriptionId) -> impl Iterator<Item = &'a RbacAssignment> {
        self.rbac_by_subscription.get(subscription).into_iter().flatten().filter_map(|id| self.rbac.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{Cloud, Program};

    #[test]
    fn hashed_maps_are_written_and_printed_in_key_order() {
        let partner = |i: u32| Partner {
            partner_id: format!("p-{i:04}").as_str().into(),
            name: format!("Partner {i}"),
            program: Program::DirectBill,
            domains: vec![format!("p{i}.example")],
            cloud: Cloud::Commercial,
            provider_id: None,
        };
        let (mut up, mut down) = (Directory::default(), Directory::default());
        for i in 0..200 {
            up.partners.insert(partner(i).partner_id.clone(), partner(i));
            down.partners.insert(partner(199 - i).partner_id.clone(), partner(199 - i));
        }
        let (a, b) = (rmp_serde::to_vec(&up).unwrap(), rmp_serde::to_vec(&down).unwrap());
        assert_eq!(a, b, "the same directory, the same bytes");
        assert_eq!(format!("{up:?}"), format!("{down:?}"), "the same directory, the same print");
        let printed = format!("{up:?}");
        assert!(printed.find("p-0000").unwrap() < printed.find("p-0199").unwrap(), "in key order");
        let back: Directory = rmp_serde::from_slice(&a).unwrap();
        assert_eq!(back, up);
    }
}
