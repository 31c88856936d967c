//! One realistic example of every event type: the golden fixtures are made from these,
//! and benchmarks use them as a realistic mix. [`type_index`] is an exhaustive match,
//! so a new event type fails to build until it has a sample here.

use behalf_domain::directory::{
    Assignment, Customer, GroupMember, HealthIssue, Partner, PartnerUser, Product, RbacAssignment, Relationship,
    Subscription, SupportPlan,
};
use behalf_domain::erasure::{PersonErased, TicketRedacted};
use behalf_domain::event::{
    AttachmentAdded, AttentionCleared, AttentionRequested, CommandRejected, Contact, Event, Evidence, Grant, Isv,
    NoteAdded, SlaBreached, SupportRequestRouted, TicketClosed, TicketEscalated, TicketOpened, TicketReopened,
    TicketUpdated, VendorResponded,
};
use behalf_domain::webhook::{Changed, Subscribed};
use behalf_domain::{
    AssignmentStatus, Billing, Classification, Cloud, Code, EscalationReason, Permission, PreferredContact, Principal,
    Program, RelationshipStatus, Route, Rule, Severity, SupportPlanKind, TicketId, Timestamp, Workload,
};

const P: &str = "6a3f1b2c-0000-4000-8000-00000000000a";
const C: &str = "7b4e2d3f-0000-4000-8000-00000000000b";
const U: &str = "8c5f3e4a-0000-4000-8000-00000000000c";
const G: &str = "9d6a4f5b-0000-4000-8000-00000000000d";
const HELPDESK: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_780_000_000_000 + ms)
}

fn evidence() -> Evidence {
    Evidence {
        directory_position: 41,
        user_id: U.into(),
        grant: Grant::Gdap {
            relationship_id: "rel-1".into(),
            assignment_id: "asg-1".into(),
            group_id: G.into(),
            role_id: HELPDESK.into(),
            permission: Some(Permission::SupportTickets),
            rbac_assignment_id: None,
            rbac_role_id: None,
        },
    }
}

fn contact() -> Contact {
    Contact {
        first_name: "Ayu".into(),
        last_name: "Lestari".into(),
        email: "ayu@contoso-partner.com".into(),
        phone: Some("+62 21 555 0100".into()),
        preferred_contact: PreferredContact::Email,
    }
}

/// The number of event types, and each type's index (exhaustive on purpose).
pub const EVENT_TYPES: usize = 32;
pub fn type_index(e: &Event) -> usize {
    match e {
        Event::PartnerRegistered(_) => 0,
        Event::CustomerRegistered(_) => 1,
        Event::PartnerUserUpserted(_) => 2,
        Event::GroupMemberAdded(_) => 3,
        Event::GroupMemberRemoved(_) => 4,
        Event::RelationshipUpserted(_) => 5,
        Event::AssignmentUpserted(_) => 6,
        Event::SubscriptionRegistered(_) => 7,
        Event::RbacAssigned(_) => 8,
        Event::RbacRemoved(_) => 9,
        Event::MarketplaceProductRegistered(_) => 10,
        Event::SupportPlanRegistered(_) => 11,
        Event::ServiceHealthIssueUpserted(_) => 12,
        Event::TicketOpened(_) => 13,
        Event::NoteAdded(_) => 14,
        Event::TicketUpdated(_) => 15,
        Event::AttachmentAdded(_) => 16,
        Event::TicketEscalated(_) => 17,
        Event::VendorResponded(_) => 18,
        Event::AttentionRequested(_) => 19,
        Event::AttentionCleared(_) => 20,
        Event::TicketClosed(_) => 21,
        Event::TicketReopened(_) => 22,
        Event::SlaBreached(_) => 23,
        Event::SupportRequestRouted(_) => 24,
        Event::CommandRejected(_) => 25,
        Event::WebhookSubscribed(_) => 26,
        Event::WebhookSecretRotated(_) => 27,
        Event::WebhookDisabled(_) => 28,
        Event::WebhookDeleted(_) => 29,
        Event::PersonErased(_) => 30,
        Event::TicketRedacted(_) => 31,
    }
}

/// A ticket-opened event for ticket `id` (benchmarks vary the id).
pub fn ticket_opened(id: &str) -> Event {
    Event::TicketOpened(TicketOpened {
        ticket_id: id.into(),
        partner_id: P.into(),
        customer_id: C.into(),
        workload: Workload::Office365,
        cloud: Cloud::Commercial,
        subscription_id: None,
        title: "Mailbox cannot receive external mail".into(),
        description: "Since this morning the shared mailbox bounces every external message with 550 5.7.1.".into(),
        severity: Severity::Moderate,
        support_topic: "Exchange Online / Mail flow".into(),
        support_plan: None,
        country_code: "ID".into(),
        contact: contact(),
        incident_id: None,
        csp_priority: true,
        at: t(0),
        evidence: evidence(),
    })
}

/// A note event on ticket `id`.
pub fn note_added(id: &str, text: &str) -> Event {
    Event::NoteAdded(NoteAdded {
        ticket_id: id.into(),
        author: Principal::PartnerAgent { partner_id: P.into(), user_id: U.into() },
        text: text.into(),
        at: t(60_000),
        evidence: Some(evidence()),
    })
}

/// One sample of every event type, in [`type_index`] order.
pub fn every_event_type() -> Vec<Event> {
    let tid: TicketId = "01JDQ8Z6W3M1V5B2X9K7H4N0PA".into();
    let mut v = vec![
        Event::PartnerRegistered(Partner {
            partner_id: P.into(),
            name: "Contoso Partner".into(),
            program: Program::IndirectReseller,
            domains: vec!["contoso-partner.com".into()],
            cloud: Cloud::Commercial,
            provider_id: Some("5e2a0c1b-0000-4000-8000-000000000009".into()),
        }),
        Event::CustomerRegistered(Customer {
            customer_id: C.into(),
            name: "Fabrikam".into(),
            domains: vec!["fabrikam.com".into(), "fabrikam.co.id".into()],
            cloud: Cloud::Commercial,
        }),
        Event::PartnerUserUpserted(PartnerUser {
            partner_id: P.into(),
            user_id: U.into(),
            email: "agent@contoso-partner.com".into(),
            admin_agent: true,
        }),
        Event::GroupMemberAdded(GroupMember { partner_id: P.into(), group_id: G.into(), user_id: U.into() }),
        Event::GroupMemberRemoved(GroupMember { partner_id: P.into(), group_id: G.into(), user_id: U.into() }),
        Event::RelationshipUpserted(Relationship {
            relationship_id: "rel-1".into(),
            partner_id: P.into(),
            customer_id: C.into(),
            status: RelationshipStatus::Active,
            roles: vec![HELPDESK.into()],
            activated_at: Some(t(-86_400_000)),
            duration: "P730D".into(),
            auto_extend: "P180D".into(),
        }),
        Event::AssignmentUpserted(Assignment {
            assignment_id: "asg-1".into(),
            relationship_id: "rel-1".into(),
            group_id: G.into(),
            roles: vec![HELPDESK.into()],
            status: AssignmentStatus::Active,
        }),
        Event::SubscriptionRegistered(Subscription {
            subscription_id: "sub-1".into(),
            customer_id: C.into(),
            workload: Workload::Azure,
            provider_id: P.into(),
            reseller_id: None,
            billing: Billing::Paid,
            marketplace_product_id: Some("prod-1".into()),
        }),
        Event::RbacAssigned(RbacAssignment {
            assignment_id: "rbac-1".into(),
            subscription_id: "sub-1".into(),
            principal_id: U.into(),
            role_id: "b24988ac-6180-42a0-ab88-20f7382dd24c".into(),
        }),
        Event::RbacRemoved(RbacAssignment {
            assignment_id: "rbac-1".into(),
            subscription_id: "sub-1".into(),
            principal_id: U.into(),
            role_id: "b24988ac-6180-42a0-ab88-20f7382dd24c".into(),
        }),
        Event::MarketplaceProductRegistered(Product {
            product_id: "prod-1".into(),
            isv_name: "Northwind ISV".into(),
            support_url: Some("https://support.northwind.example".into()),
            support_email: Some("help@northwind.example".into()),
            support_phone: None,
        }),
        Event::SupportPlanRegistered(SupportPlan {
            plan_id: "plan-1".into(),
            partner_id: P.into(),
            kind: SupportPlanKind::PremierUnified,
            valid_until: t(365 * 86_400_000),
        }),
        Event::ServiceHealthIssueUpserted(HealthIssue {
            issue_id: "MO226784".into(),
            workload: Workload::Office365,
            title: "Users may be unable to send mail".into(),
            classification: Classification::Incident,
            status: "serviceDegradation".into(),
            is_resolved: false,
            start: t(-3_600_000),
            end: None,
            customer_ids: vec![C.into()],
        }),
        ticket_opened(tid.as_str()),
        note_added(tid.as_str(), "Attached the message trace."),
        Event::TicketUpdated(TicketUpdated {
            ticket_id: tid.clone(),
            severity: Some(Severity::Critical),
            contact: Some(contact()),
            at: t(120_000),
            evidence: evidence(),
        }),
        Event::AttachmentAdded(AttachmentAdded {
            ticket_id: tid.clone(),
            name: "trace.csv".into(),
            uri: "https://files.contoso-partner.com/trace.csv".into(),
            at: t(130_000),
            evidence: evidence(),
        }),
        Event::TicketEscalated(TicketEscalated {
            ticket_id: tid.clone(),
            reason: EscalationReason::Partner,
            note: Some("Business down".into()),
            incident_id: Some("MO226784".into()),
            partner_id: P.into(),
            customer_id: C.into(),
            workload: Workload::Office365,
            cloud: Cloud::Commercial,
            severity: Severity::Critical,
            csp_priority: true,
            at: t(140_000),
            evidence: Some(evidence()),
        }),
        Event::VendorResponded(VendorResponded {
            ticket_id: tid.clone(),
            text: "Investigating.".into(),
            at: t(150_000),
        }),
        Event::AttentionRequested(AttentionRequested {
            ticket_id: tid.clone(),
            partner_id: P.into(),
            customer_id: C.into(),
            text: "Please send the NDR.".into(),
            at: t(160_000),
        }),
        Event::AttentionCleared(AttentionCleared { ticket_id: tid.clone(), at: t(170_000) }),
        Event::TicketClosed(TicketClosed {
            ticket_id: tid.clone(),
            by: Principal::Vendor,
            resolution: "Connector fixed.".into(),
            at: t(180_000),
            evidence: None,
        }),
        Event::TicketReopened(TicketReopened {
            ticket_id: tid.clone(),
            reason: "It is back.".into(),
            at: t(190_000),
            evidence: evidence(),
        }),
        Event::SlaBreached(SlaBreached { ticket_id: tid.clone(), due_at: t(14_400_000), at: t(14_400_001) }),
        Event::SupportRequestRouted(SupportRequestRouted {
            request_id: "01JDQ8Z6W3M1V5B2X9K7H4N0PB".into(),
            customer_id: C.into(),
            user_id: U.into(),
            subscription_id: Some("sub-1".into()),
            product_id: Some("prod-1".into()),
            route: Route::Isv,
            partner_id: None,
            isv: Some(Isv {
                name: "Northwind ISV".into(),
                support_url: Some("https://support.northwind.example".into()),
                support_email: None,
                support_phone: None,
            }),
            summary: "The VM image will not boot.".into(),
            at: t(200_000),
        }),
        Event::CommandRejected(CommandRejected {
            command_type: "ticket.open".into(),
            principal: Principal::PartnerAgent { partner_id: P.into(), user_id: U.into() },
            code: Code::ResellerCannotFile,
            rule: Some(Rule::R9),
            message: "an indirect_reseller cannot file Azure tickets".into(),
            details: Default::default(),
            ticket_id: None,
            at: t(210_000),
        }),
        Event::WebhookSubscribed(Subscribed {
            webhook_id: "01JDW8Z0R5X3J9Q2K7M4N6P8T1".into(),
            queue: format!("partner.{P}"),
            url_redacted: "https://hooks.contoso-partner.com/…".into(),
            description: "Escalations to our ServiceNow".into(),
            owner: Principal::PartnerSync { partner_id: P.into() },
            at: t(220_000),
        }),
        Event::WebhookSecretRotated(Changed {
            webhook_id: "01JDW8Z0R5X3J9Q2K7M4N6P8T1".into(),
            reason: String::new(),
            at: t(230_000),
        }),
        Event::WebhookDisabled(Changed {
            webhook_id: "01JDW8Z0R5X3J9Q2K7M4N6P8T1".into(),
            reason: "the receiver answered 410 Gone".into(),
            at: t(240_000),
        }),
        Event::WebhookDeleted(Changed {
            webhook_id: "01JDW8Z0R5X3J9Q2K7M4N6P8T1".into(),
            reason: String::new(),
            at: t(250_000),
        }),
        Event::PersonErased(PersonErased {
            subject: "3f9a0c1d5e7b2a4c6d8e0f1a2b3c4d5e".into(),
            key_ids: vec!["p3c1e9a7b5d2f4a6c".into()],
            by: Principal::Vendor,
            at: t(260_000),
        }),
        Event::TicketRedacted(TicketRedacted {
            ticket_id: "01JDW8Z0R5X3J9Q2K7M4N6P8TB".into(),
            key_ids: vec!["t8b2d4f6a1c3e5a7b".into()],
            by: Principal::PartnerAgent { partner_id: P.into(), user_id: U.into() },
            at: t(270_000),
            evidence: Some(evidence()),
        }),
    ];
    v.sort_by_key(type_index);
    v
}
