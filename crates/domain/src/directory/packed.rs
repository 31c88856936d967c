//! The GDAP facts that grow with the vendor — customers, relationships and access
//! assignments — stored packed. Every id (and every duration, every list of roles) is
//! text held once in one arena and named by a `u32`; a fact is a row of those numbers
//! and its few values of its own; a fact is turned back into its public type when it is
//! read. The indexes hold numbers only: rows by id in vectors indexed by text number;
//! chains through the rows for what a decision asks (a customer's relationships, a
//! relationship's assignments: a few cache misses each, where a tree of ten million
//! entries costs a miss per level); and one ordered set of (partner, customer,
//! relationship) for a partner's customers in order.
//!
//! Why (issue 29): with the facts inline in `BTreeMap`s, one relationship with its
//! customer and assignment took ~1,260 bytes — tree nodes half full of 150-byte facts,
//! eleven small allocations, an interner of `Arc`s. Packed, it is a few hundred.
//!
//! Text is never taken out of the arena: ids outlive their facts in an append-only
//! directory, and durations and role lists are a handful shared by all. A customer's name
//! and domains are the customer's own values, freed when it is registered again.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::facts::{Assignment, Customer, Relationship};
use crate::time::Timestamp;
use crate::vocab::{AssignmentStatus, Cloud, RelationshipStatus};
use crate::{AssignmentId, CustomerId, GroupId, PartnerId, RelationshipId, RoleId};

/// Hashes the texts' fingerprints with one multiplication: they are already SipHash
/// under this process's own random key, so hashing them again would only cost time.
#[derive(Clone, Copy, Default)]
struct NumberHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for NumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MIX));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(MIX);
    }
}

type Fingerprints = HashMap<u64, u32, BuildHasherDefault<NumberHasher>>;

/// Texts, each held once: `bytes[ends[i - 1]..ends[i]]` is text `i`. Found by a 64-bit
/// fingerprint of the text (SipHash with this process's random key, so nobody can choose
/// ids that crowd one bucket); the rare text whose fingerprint another already holds is
/// found by its whole text instead.
#[derive(Clone, Default)]
struct Texts {
    bytes: String,
    ends: Vec<u64>,
    key: RandomState,
    by_fingerprint: Fingerprints,
    collided: HashMap<Box<str>, u32>,
}

fn text_at<'a>(bytes: &'a str, ends: &[u64], i: u32) -> &'a str {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &bytes[start..ends[i] as usize]
}

impl Texts {
    fn get(&self, i: u32) -> &str {
        text_at(&self.bytes, &self.ends, i)
    }

    fn find(&self, s: &str) -> Option<u32> {
        match self.by_fingerprint.get(&self.key.hash_one(s)) {
            Some(&i) if self.get(i) == s => Some(i),
            Some(_) => self.collided.get(s).copied(),
            None => None,
        }
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.find(s) {
            return i;
        }
        self.push(s)
    }

    /// Adds `s`, which is not there yet.
    fn push(&mut self, s: &str) -> u32 {
        // Four thousand million texts would need hundreds of GiB first.
        let i = u32::try_from(self.ends.len()).expect("fewer than 2^32 texts");
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len() as u64);
        match self.by_fingerprint.entry(self.key.hash_one(s)) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(_) => {
                self.collided.insert(s.into(), i);
            }
        }
        i
    }

    /// From a snapshot's arena: checks every end, then indexes every text where it is.
    fn rebuild(bytes: String, ends: Vec<u64>) -> Result<Texts, String> {
        let count = u32::try_from(ends.len()).map_err(|_| "too many texts")?;
        let mut start = 0u64;
        for &end in &ends {
            if end < start || end > bytes.len() as u64 || !bytes.is_char_boundary(end as usize) {
                return Err(format!("a text ends at {end}, outside its arena"));
            }
            start = end;
        }
        if start != bytes.len() as u64 {
            return Err("the arena holds bytes no text names".into());
        }
        let key = RandomState::new();
        let mut by_fingerprint = Fingerprints::with_capacity_and_hasher(ends.len(), Default::default());
        let mut collided = HashMap::new();
        for i in 0..count {
            let s = text_at(&bytes, &ends, i);
            match by_fingerprint.entry(key.hash_one(s)) {
                Entry::Vacant(v) => {
                    v.insert(i);
                }
                Entry::Occupied(o) if text_at(&bytes, &ends, *o.get()) != s => {
                    if collided.insert(Box::<str>::from(s), i).is_some() {
                        return Err("a text is held twice".into());
                    }
                }
                Entry::Occupied(_) => return Err("a text is held twice".into()),
            }
        }
        Ok(Texts { bytes, ends, key, by_fingerprint, collided })
    }

    fn arc(&self, i: u32) -> Arc<str> {
        Arc::from(self.get(i))
    }
}

/// A list of roles as one text: each role's length, `:`, the role.
fn roles_text(roles: &[RoleId]) -> String {
    roles.iter().map(|r| format!("{}:{}", r.as_str().len(), r.as_str())).collect()
}

/// The roles of a list made by [`roles_text`], in order, borrowed from it.
fn role_texts(mut text: &str) -> impl Iterator<Item = &str> {
    std::iter::from_fn(move || {
        let (len, rest) = text.split_once(':')?;
        let role = len.parse::<usize>().ok().and_then(|n| rest.get(..n))?;
        text = &rest[role.len()..];
        Some(role)
    })
}

fn roles_of(text: &str) -> Vec<RoleId> {
    role_texts(text).map(|r| RoleId(Arc::from(r))).collect()
}

/// A row's own id (a text number).
trait Row {
    fn id(&self) -> u32;
}

/// Rows, found by their id (a text number): `by_id[text]` is the row's number, or
/// `NONE`. Four bytes for every text, denser and faster than a hash map when most texts
/// are the id of some fact.
#[derive(Clone)]
struct Rows<R> {
    rows: Vec<R>,
    by_id: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl<R> Default for Rows<R> {
    fn default() -> Self {
        Rows { rows: Vec::new(), by_id: Vec::new() }
    }
}

impl<R: Row> Rows<R> {
    fn with_capacity(rows: usize, texts: usize) -> Self {
        Rows { rows: Vec::with_capacity(rows), by_id: Vec::with_capacity(texts) }
    }

    fn find(&self, id: u32) -> Option<u32> {
        self.by_id.get(id as usize).copied().filter(|&r| r != NONE)
    }

    fn get(&self, id: u32) -> Option<&R> {
        self.find(id).map(|r| &self.rows[r as usize])
    }

    /// Puts `row` in the place of the row with its id, or at the end: its row number
    /// and the row it replaced.
    fn upsert(&mut self, row: R) -> (u32, Option<R>) {
        if let Some(at) = self.find(row.id()) {
            return (at, Some(std::mem::replace(&mut self.rows[at as usize], row)));
        }
        // `NONE` is no row's number: 2^32 - 1 facts of a kind would need hundreds of GiB.
        let at = u32::try_from(self.rows.len()).ok().filter(|&at| at != NONE).expect("fewer than 2^32 - 1 facts");
        let id = row.id() as usize;
        if self.by_id.len() <= id {
            self.by_id.resize(id + 1, NONE);
        }
        self.by_id[id] = at;
        self.rows.push(row);
        (at, None)
    }
}

#[derive(Clone)]
struct CustomerRow {
    id: u32,
    cloud: Cloud,
    name: Box<str>,
    domains: Box<[Box<str>]>,
}

#[derive(Clone)]
struct RelationshipRow {
    id: u32,
    partner: u32,
    customer: u32,
    roles: u32,
    duration: u32,
    auto_extend: u32,
    status: RelationshipStatus,
    activated_at: Option<Timestamp>,
}

#[derive(Clone)]
struct AssignmentRow {
    id: u32,
    relationship: u32,
    group: u32,
    roles: u32,
    status: AssignmentStatus,
}

impl Row for CustomerRow {
    fn id(&self) -> u32 {
        self.id
    }
}

impl Row for RelationshipRow {
    fn id(&self) -> u32 {
        self.id
    }
}

impl Row for AssignmentRow {
    fn id(&self) -> u32 {
        self.id
    }
}

/// Rows of one kind chained by a key (a text number): `head[key]` is the last row
/// linked under it, `next[row]` the one linked before (`NONE` ends a chain). Linking and
/// following are a vector access a row; unlinking walks the key's chain (a customer's
/// relationships, a relationship's assignments: a handful).
#[derive(Clone, Default)]
struct Chains {
    head: Vec<u32>,
    next: Vec<u32>,
}

impl Chains {
    fn with_capacity(keys: usize, rows: usize) -> Chains {
        Chains { head: Vec::with_capacity(keys), next: Vec::with_capacity(rows) }
    }

    fn link(&mut self, key: u32, row: u32) {
        let (k, r) = (key as usize, row as usize);
        if self.head.len() <= k {
            self.head.resize(k + 1, NONE);
        }
        if self.next.len() <= r {
            self.next.resize(r + 1, NONE);
        }
        self.next[r] = self.head[k];
        self.head[k] = row;
    }

    fn unlink(&mut self, key: u32, row: u32) {
        let (Some(first), Some(&after)) = (self.head.get(key as usize).copied(), self.next.get(row as usize)) else {
            return;
        };
        if first == row {
            self.head[key as usize] = after;
        } else {
            let mut at = first;
            loop {
                if at == NONE {
                    return; // not under this key
                }
                let n = self.next[at as usize];
                if n == row {
                    self.next[at as usize] = after;
                    break;
                }
                at = n;
            }
        }
        self.next[row as usize] = NONE;
    }

    /// The rows linked under `key`, the last linked first.
    fn rows(&self, key: u32) -> impl Iterator<Item = u32> + '_ {
        let mut at = self.head.get(key as usize).copied().unwrap_or(NONE);
        std::iter::from_fn(move || {
            (at != NONE).then(|| {
                let row = at;
                at = self.next[row as usize];
                row
            })
        })
    }
}

/// Relationships as a decision collects them: a pair of partner and customer has one or
/// two, held inline.
pub type Views<'a> = smallvec::SmallVec<[RelationshipView<'a>; 4]>;

/// A customer as a decision reads it: borrowed from its row, nothing copied.
#[derive(Clone, Copy)]
pub struct CustomerView<'a> {
    packed: &'a Packed,
    row: &'a CustomerRow,
}

impl<'a> CustomerView<'a> {
    pub fn id(self) -> &'a str {
        self.packed.texts.get(self.row.id)
    }

    pub fn cloud(self) -> Cloud {
        self.row.cloud
    }

    pub fn domains(self) -> impl Iterator<Item = &'a str> {
        self.row.domains.iter().map(|d| &**d)
    }

    pub fn to_owned(self) -> Customer {
        self.packed.customer_of(self.row)
    }
}

/// A relationship as a decision reads it: borrowed from its row, so judging it
/// allocates nothing (issue 29: at ten million relationships, a decision that turned
/// every fact it read into its owned type spent its tail in the allocator).
#[derive(Clone, Copy)]
pub struct RelationshipView<'a> {
    packed: &'a Packed,
    row: &'a RelationshipRow,
}

impl<'a> RelationshipView<'a> {
    pub fn id(self) -> &'a str {
        self.packed.texts.get(self.row.id)
    }

    pub fn status(self) -> RelationshipStatus {
        self.row.status
    }

    /// R5's end as seen at `now` ([`Relationship::end_at`]).
    pub fn end_at(self, now: Timestamp) -> Option<Timestamp> {
        let t = &self.packed.texts;
        crate::facts::relationship_end(
            self.row.activated_at,
            t.get(self.row.duration),
            t.get(self.row.auto_extend),
            now,
        )
    }

    pub fn roles(self) -> impl Iterator<Item = &'a str> {
        role_texts(self.packed.texts.get(self.row.roles))
    }

    pub fn has_role(self, role: &str) -> bool {
        self.roles().any(|r| r == role)
    }

    /// The access assignments on it, in no particular order.
    pub fn assignments(self) -> impl Iterator<Item = AssignmentView<'a>> {
        let packed = self.packed;
        packed
            .on_relationship
            .rows(self.row.id)
            .map(move |at| AssignmentView { packed, row: &packed.assignments.rows[at as usize] })
    }

    pub fn to_owned(self) -> Relationship {
        self.packed.relationship_of(self.row)
    }
}

/// An access assignment as a decision reads it: borrowed from its row.
#[derive(Clone, Copy)]
pub struct AssignmentView<'a> {
    packed: &'a Packed,
    row: &'a AssignmentRow,
}

impl<'a> AssignmentView<'a> {
    pub fn id(self) -> &'a str {
        self.packed.texts.get(self.row.id)
    }

    pub fn group(self) -> &'a str {
        self.packed.texts.get(self.row.group)
    }

    pub fn status(self) -> AssignmentStatus {
        self.row.status
    }

    pub fn roles(self) -> impl Iterator<Item = &'a str> {
        role_texts(self.packed.texts.get(self.row.roles))
    }

    pub fn to_owned(self) -> Assignment {
        self.packed.assignment_of(self.row)
    }
}

/// Customers, relationships and assignments, packed (see the module's text).
#[derive(Clone, Default)]
pub(crate) struct Packed {
    texts: Texts,
    customers: Rows<CustomerRow>,
    relationships: Rows<RelationshipRow>,
    assignments: Rows<AssignmentRow>,
    /// (partner, customer, relationship row): a partner's customers, in order.
    by_pair: BTreeSet<(u32, u32, u32)>,
    /// Relationship rows by customer id.
    of_customer: Chains,
    /// Assignment rows by relationship id.
    on_relationship: Chains,
}

impl Packed {
    pub(crate) fn put_customer(&mut self, c: &Customer) {
        let row = CustomerRow {
            id: self.texts.intern(c.customer_id.as_str()),
            cloud: c.cloud,
            name: c.name.as_str().into(),
            domains: c.domains.iter().map(|d| d.as_str().into()).collect(),
        };
        self.customers.upsert(row);
    }

    pub(crate) fn put_relationship(&mut self, r: &Relationship) {
        let t = &mut self.texts;
        let row = RelationshipRow {
            id: t.intern(r.relationship_id.as_str()),
            partner: t.intern(r.partner_id.as_str()),
            customer: t.intern(r.customer_id.as_str()),
            roles: t.intern(&roles_text(&r.roles)),
            duration: t.intern(&r.duration),
            auto_extend: t.intern(&r.auto_extend),
            status: r.status,
            activated_at: r.activated_at,
        };
        self.index_relationship(row);
    }

    fn index_relationship(&mut self, row: RelationshipRow) {
        let pair = (row.partner, row.customer);
        let (at, old) = self.relationships.upsert(row);
        if let Some(old) = old {
            self.by_pair.remove(&(old.partner, old.customer, at));
            self.of_customer.unlink(old.customer, at);
        }
        self.by_pair.insert((pair.0, pair.1, at));
        self.of_customer.link(pair.1, at);
    }

    pub(crate) fn put_assignment(&mut self, a: &Assignment) {
        let t = &mut self.texts;
        let row = AssignmentRow {
            id: t.intern(a.assignment_id.as_str()),
            relationship: t.intern(a.relationship_id.as_str()),
            group: t.intern(a.group_id.as_str()),
            roles: t.intern(&roles_text(&a.roles)),
            status: a.status,
        };
        self.index_assignment(row);
    }

    fn index_assignment(&mut self, row: AssignmentRow) {
        let relationship = row.relationship;
        let (at, old) = self.assignments.upsert(row);
        if let Some(old) = old {
            self.on_relationship.unlink(old.relationship, at);
        }
        self.on_relationship.link(relationship, at);
    }

    fn customer_of(&self, row: &CustomerRow) -> Customer {
        Customer {
            customer_id: CustomerId(self.texts.arc(row.id)),
            name: row.name.to_string(),
            domains: row.domains.iter().map(|d| d.to_string()).collect(),
            cloud: row.cloud,
        }
    }

    fn relationship_of(&self, row: &RelationshipRow) -> Relationship {
        let t = &self.texts;
        Relationship {
            relationship_id: RelationshipId(t.arc(row.id)),
            partner_id: PartnerId(t.arc(row.partner)),
            customer_id: CustomerId(t.arc(row.customer)),
            status: row.status,
            roles: roles_of(t.get(row.roles)),
            activated_at: row.activated_at,
            duration: t.get(row.duration).to_owned(),
            auto_extend: t.get(row.auto_extend).to_owned(),
        }
    }

    fn assignment_of(&self, row: &AssignmentRow) -> Assignment {
        let t = &self.texts;
        Assignment {
            assignment_id: AssignmentId(t.arc(row.id)),
            relationship_id: RelationshipId(t.arc(row.relationship)),
            group_id: GroupId(t.arc(row.group)),
            roles: roles_of(t.get(row.roles)),
            status: row.status,
        }
    }

    pub(crate) fn customer(&self, id: &str) -> Option<Customer> {
        self.customer_view(id).map(CustomerView::to_owned)
    }

    pub(crate) fn customer_view(&self, id: &str) -> Option<CustomerView<'_>> {
        let row = self.customers.get(self.texts.find(id)?)?;
        Some(CustomerView { packed: self, row })
    }

    pub(crate) fn has_customer(&self, id: &str) -> bool {
        self.texts.find(id).is_some_and(|i| self.customers.find(i).is_some())
    }

    pub(crate) fn relationship(&self, id: &str) -> Option<Relationship> {
        let row = self.relationships.get(self.texts.find(id)?)?;
        Some(self.relationship_of(row))
    }

    pub(crate) fn assignment(&self, id: &str) -> Option<Assignment> {
        let row = self.assignments.get(self.texts.find(id)?)?;
        Some(self.assignment_of(row))
    }

    /// The relationships between a partner and a customer, in id order.
    pub(crate) fn relationships_between(&self, partner: &str, customer: &str) -> Vec<Relationship> {
        self.relationship_views_between(partner, customer).into_iter().map(RelationshipView::to_owned).collect()
    }

    /// The same, borrowed.
    pub(crate) fn relationship_views_between(&self, partner: &str, customer: &str) -> Views<'_> {
        let (Some(p), Some(c)) = (self.texts.find(partner), self.texts.find(customer)) else {
            return Views::new();
        };
        let mut found: Views<'_> = self
            .of_customer
            .rows(c)
            .map(|at| &self.relationships.rows[at as usize])
            .filter(|r| r.partner == p)
            .map(|row| RelationshipView { packed: self, row })
            .collect();
        found.sort_by(|a, b| a.id().cmp(b.id()));
        found
    }

    /// A partner's customers (by customer id), each with its relationships in id order.
    pub(crate) fn customers_of(&self, partner: &str) -> Vec<(CustomerId, Vec<Relationship>)> {
        let Some(p) = self.texts.find(partner) else { return Vec::new() };
        let mut found: Vec<(CustomerId, Vec<Relationship>)> = Vec::new();
        let mut last = None;
        for &(_, c, at) in self.by_pair.range((p, 0, 0)..=(p, u32::MAX, u32::MAX)) {
            let rel = self.relationship_of(&self.relationships.rows[at as usize]);
            match found.last_mut() {
                Some((_, rels)) if last == Some(c) => rels.push(rel),
                Some(_) | None => found.push((CustomerId(self.texts.arc(c)), vec![rel])),
            }
            last = Some(c);
        }
        found.iter_mut().for_each(|(_, rels)| rels.sort_by(|a, b| a.relationship_id.cmp(&b.relationship_id)));
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// The access assignments on a relationship, in id order.
    pub(crate) fn assignments_on(&self, relationship: &str) -> Vec<Assignment> {
        let Some(r) = self.texts.find(relationship) else { return Vec::new() };
        let mut found: Vec<Assignment> =
            self.on_relationship.rows(r).map(|at| self.assignment_of(&self.assignments.rows[at as usize])).collect();
        found.sort_by(|a, b| a.assignment_id.cmp(&b.assignment_id));
        found
    }

    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.customers.rows.len(), self.relationships.rows.len(), self.assignments.rows.len())
    }

    pub(crate) fn customers(&self) -> impl Iterator<Item = Customer> + '_ {
        self.customers.rows.iter().map(|r| self.customer_of(r))
    }

    pub(crate) fn relationships(&self) -> impl Iterator<Item = Relationship> + '_ {
        self.relationships.rows.iter().map(|r| self.relationship_of(r))
    }

    pub(crate) fn assignments(&self) -> impl Iterator<Item = Assignment> + '_ {
        self.assignments.rows.iter().map(|r| self.assignment_of(r))
    }
}

/// Equal when they hold the same facts (however their texts and rows are numbered).
impl PartialEq for Packed {
    fn eq(&self, other: &Packed) -> bool {
        self.counts() == other.counts()
            && self.customers().all(|c| other.customer(c.customer_id.as_str()).as_ref() == Some(&c))
            && self.relationships().all(|r| other.relationship(r.relationship_id.as_str()).as_ref() == Some(&r))
            && self.assignments().all(|a| other.assignment(a.assignment_id.as_str()).as_ref() == Some(&a))
    }
}

impl Eq for Packed {}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (customers, relationships, assignments) = self.counts();
        f.debug_struct("Packed")
            .field("customers", &customers)
            .field("relationships", &relationships)
            .field("assignments", &assignments)
            .field("texts", &self.texts.ends.len())
            .finish()
    }
}

/// What a snapshot holds: the arena and the rows, each row a tuple of its fields (no
/// field names repeated a million times); the indexes are built again when read.
type CustomerTuple = (u32, Cloud, Box<str>, Box<[Box<str>]>);
type RelationshipTuple = (u32, u32, u32, u32, u32, u32, RelationshipStatus, Option<Timestamp>);
type AssignmentTuple = (u32, u32, u32, u32, AssignmentStatus);

/// Rows written as a sequence of tuples, each made as it is written.
struct Tuples<'a, R, F>(&'a [R], F);

fn tuples<'a, R, T: Serialize, F: Fn(&'a R) -> T>(rows: &'a [R], f: F) -> Tuples<'a, R, F> {
    Tuples(rows, f)
}

impl<'a, R, T: Serialize, F: Fn(&'a R) -> T> Serialize for Tuples<'a, R, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
    }
}

impl Serialize for Packed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let customers = tuples(&self.customers.rows, |r| (r.id, r.cloud, &*r.name, &*r.domains));
        let relationships = tuples(&self.relationships.rows, |r| {
            (r.id, r.partner, r.customer, r.roles, r.duration, r.auto_extend, r.status, r.activated_at)
        });
        let assignments = tuples(&self.assignments.rows, |r| (r.id, r.relationship, r.group, r.roles, r.status));
        (&self.texts.bytes, &self.texts.ends, customers, relationships, assignments).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        type Whole = (String, Vec<u64>, Vec<CustomerTuple>, Vec<RelationshipTuple>, Vec<AssignmentTuple>);
        let (bytes, ends, customers, relationships, assignments) = Whole::deserialize(d)?;
        let texts = Texts::rebuild(bytes, ends).map_err(D::Error::custom)?;
        let count = texts.ends.len() as u64;
        let known = |ids: &[u32]| ids.iter().all(|&i| u64::from(i) < count);
        let mut packed = Packed {
            texts,
            customers: Rows::with_capacity(customers.len(), count as usize),
            relationships: Rows::with_capacity(relationships.len(), count as usize),
            assignments: Rows::with_capacity(assignments.len(), count as usize),
            ..Packed::default()
        };
        for (id, cloud, name, domains) in customers {
            if !known(&[id]) {
                return Err(D::Error::custom("a customer names a text that is not there"));
            }
            packed.customers.upsert(CustomerRow { id, cloud, name, domains });
        }
        for (id, partner, customer, roles, duration, auto_extend, status, activated_at) in relationships {
            if !known(&[id, partner, customer, roles, duration, auto_extend]) {
                return Err(D::Error::custom("a relationship names a text that is not there"));
            }
            let row = RelationshipRow { id, partner, customer, roles, duration, auto_extend, status, activated_at };
            packed.relationships.upsert(row);
        }
        for (id, relationship, group, roles, status) in assignments {
            if !known(&[id, relationship, group, roles]) {
                return Err(D::Error::custom("an assignment names a text that is not there"));
            }
            packed.assignments.upsert(AssignmentRow { id, relationship, group, roles, status });
        }
        // Built whole from sorted entries: full nodes, and no search per entry.
        packed.by_pair = (0u32..).zip(&packed.relationships.rows).map(|(at, r)| (r.partner, r.customer, at)).collect();
        packed.of_customer = Chains::with_capacity(count as usize, packed.relationships.rows.len());
        for (at, r) in (0u32..).zip(&packed.relationships.rows) {
            packed.of_customer.link(r.customer, at);
        }
        packed.on_relationship = Chains::with_capacity(count as usize, packed.assignments.rows.len());
        for (at, a) in (0u32..).zip(&packed.assignments.rows) {
            packed.on_relationship.link(a.relationship, at);
        }
        Ok(packed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_text() {
        let roles =
            vec![RoleId("a:b".into()), RoleId("".into()), RoleId("62e90394-69f5-4237-9190-012177145e10".into())];
        assert_eq!(roles_of(&roles_text(&roles)), roles);
        assert!(roles_of("").is_empty());
    }

    #[test]
    fn texts_are_held_once_and_checked_when_read_back() {
        let mut t = Texts::default();
        let a = t.intern("alpha");
        let b = t.intern("beta");
        assert_eq!(t.intern("alpha"), a);
        assert_eq!((t.get(a), t.get(b)), ("alpha", "beta"));
        assert_eq!(t.find("beta"), Some(b));
        assert_eq!(t.find("gamma"), None);
        let back = Texts::rebuild(t.bytes.clone(), t.ends.clone()).unwrap();
        assert_eq!(back.find("alpha"), Some(a));
        assert!(Texts::rebuild("ab".into(), vec![3]).is_err());
        assert!(Texts::rebuild("aa".into(), vec![1, 2]).is_err());
        assert!(Texts::rebuild("abc".into(), vec![1, 2]).is_err(), "bytes no text holds");
        assert!(Texts::rebuild("ab".into(), vec![2, 1]).is_err());
    }

    #[test]
    fn chains_link_unlink_and_follow() {
        let mut c = Chains::default();
        let rows = |c: &Chains, k| c.rows(k).collect::<Vec<_>>();
        for (key, row) in [(3, 0), (1, 1), (3, 2), (3, 4)] {
            c.link(key, row);
        }
        assert_eq!((rows(&c, 3), rows(&c, 1), rows(&c, 7)), (vec![4, 2, 0], vec![1], vec![]));
        c.unlink(3, 2); // the middle
        assert_eq!(rows(&c, 3), [4, 0]);
        c.unlink(3, 4); // the head
        assert_eq!(rows(&c, 3), [0]);
        c.unlink(3, 9); // not there: nothing changes
        c.unlink(8, 0);
        c.unlink(1, 0); // under another key: nothing changes
        assert_eq!(rows(&c, 1), [1]);
        assert_eq!(rows(&c, 3), [0]);
        c.link(1, 2); // moved to another key
        assert_eq!((rows(&c, 3), rows(&c, 1)), (vec![0], vec![2, 1]));
        c.unlink(3, 0);
        assert!(rows(&c, 3).is_empty());
    }

    #[test]
    fn a_relationship_moved_to_another_customer_is_found_there_only() {
        use crate::facts::Relationship;
        let mut p = Packed::default();
        let rel = |id: &str, partner: &str, customer: &str| Relationship {
            relationship_id: RelationshipId(id.into()),
            partner_id: PartnerId(partner.into()),
            customer_id: CustomerId(customer.into()),
            status: RelationshipStatus::Active,
            roles: Vec::new(),
            activated_at: None,
            duration: "P730D".into(),
            auto_extend: "PT0S".into(),
        };
        p.put_relationship(&rel("r1", "p1", "c1"));
        p.put_relationship(&rel("r2", "p2", "c1"));
        p.put_relationship(&rel("r3", "p1", "c1"));
        let between = |p: &Packed, partner, customer| {
            p.relationships_between(partner, customer)
                .into_iter()
                .map(|r| r.relationship_id.0.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(between(&p, "p1", "c1"), ["r1", "r3"], "in id order, the other partner's left out");
        p.put_relationship(&rel("r1", "p1", "c2"));
        assert_eq!((between(&p, "p1", "c1"), between(&p, "p1", "c2")), (vec!["r3".to_owned()], vec!["r1".to_owned()]));
        assert_eq!(between(&p, "p2", "c1"), ["r2"]);
    }
}
