//! The decisions on tickets: R16 field checks, `ticket.open` (R1–R16 through the
//! policy), and one function per command on an existing ticket (R17–R21, R27).

use crate::command::{
    AttachToTicket, CloseTicket, ContactInput, EscalateTicket, OpenTicket, ReopenTicket, TicketText, UpdateTicket,
};
use crate::directory::email_domain;
use crate::event::{
    AttachmentAdded, AttentionCleared, AttentionRequested, Contact, NoteAdded, SlaBreached, TicketClosed, TicketOpened,
    TicketReopened, TicketUpdated, VendorResponded,
};
use crate::policy::{authorize_ticket, r2_partner_agent, TicketScope};
use crate::{
    Cloud, Code, Context, Directory, EscalationReason, Event, Evidence, IssueId, PreferredContact, Principal, RawValue,
    Rejection, Rule, Severity, Ticket, TicketCommand, TicketId, TicketStatus, Workload,
};

// ---------------------------------------------------------------------------------
// R16 field checks.

fn bounded(field: &str, v: &str, max: usize) -> Result<String, Rejection> {
    let t = v.trim();
    let n = t.chars().count();
    if n == 0 {
        Err(Rejection::invalid(field, "is required"))
    } else if n > max {
        Err(Rejection::invalid(field, format!("must be at most {max} characters")))
    } else if t.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        Err(Rejection::invalid(field, "must not contain control characters"))
    } else {
        Ok(t.to_owned())
    }
}

/// ISO 3166-1 alpha-2, the officially assigned codes.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL \
GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR \
LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK \
PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR \
TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

fn country(v: &str) -> Result<String, Rejection> {
    let c = v.trim().to_ascii_uppercase();
    if c.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|x| x == c) {
        Ok(c)
    } else {
        Err(Rejection::invalid("country_code", format!("{v:?} is not an ISO 3166 alpha-2 country code")))
    }
}

fn phone(v: &str) -> bool {
    let digits = v.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits) && v.len() <= 32 && v.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// R16: a complete, well-formed contact.
pub fn check_contact(c: Option<&ContactInput>) -> Result<Contact, Rejection> {
    let c = c.ok_or_else(|| Rejection::invalid("contact", "is required"))?;
    let first_name = bounded("contact.first_name", &c.first_name, 100)?;
    let last_name = bounded("contact.last_name", &c.last_name, 100)?;
    let email = c.email.trim().to_owned();
    if email_domain(&email).is_none() || email.len() > 254 {
        return Err(Rejection::invalid("contact.email", "not an e-mail address"));
    }
    let preferred_contact = PreferredContact::parse(&c.preferred_contact)
        .ok_or_else(|| Rejection::invalid("contact.preferred_contact", "must be email or phone"))?;
    let phone_no = c.phone.as_deref().map(str::trim).filter(|p| !p.is_empty());
    match (preferred_contact, phone_no) {
        (PreferredContact::Phone, None) => {
            return Err(Rejection::invalid("contact.phone", "is required when the preferred contact is phone"))
        }
        (_, Some(p)) if !phone(p) => return Err(Rejection::invalid("contact.phone", "not a phone number")),
        (PreferredContact::Phone | PreferredContact::Email, _) => {}
    }
    Ok(Contact { first_name, last_name, email, phone: phone_no.map(str::to_owned), preferred_contact })
}

fn severity(v: &RawValue) -> Result<Severity, Rejection> {
    Severity::parse_raw(v).ok_or_else(|| {
        Rejection::new(
            Code::BadSeverity,
            Rule::R15,
            format!("severity {v} must be critical, moderate or minimal (or 1, 2, 3)"),
        )
        .with("field", "severity")
    })
}

/// R21: a cited service health issue must exist.
fn incident(dir: &Directory, id: Option<&IssueId>) -> Result<(), Rejection> {
    match id {
        Some(i) if !dir.issues.contains_key(i) => {
            Err(Rejection::new(Code::IncidentNotFound, Rule::R21, format!("service health issue {i} does not exist"))
                .with("incident_id", i.as_str()))
        }
        Some(_) | None => Ok(()),
    }
}

/// R12: a ticket about a marketplace product goes to the ISV.
fn marketplace(dir: &Directory, open: &OpenTicket) -> Result<(), Rejection> {
    let product = open.product_id.clone().or_else(|| {
        open.subscription_id
            .as_ref()
            .and_then(|s| dir.subscriptions.get(s))
            .and_then(|s| s.marketplace_product_id.clone())
    });
    let Some(pid) = product else { return Ok(()) };
    let mut r = Rejection::new(
        Code::MarketplaceProduct,
        Rule::R12,
        format!("marketplace product {pid} is supported by its ISV, not through CSP"),
    )
    .with("product_id", pid.as_str());
    if let Some(p) = dir.products.get(&pid) {
        r.message = format!("marketplace product {pid} is supported by its ISV {}", p.isv_name);
        r = r.with("isv_name", p.isv_name.as_str());
        for (k, v) in
            [("support_url", &p.support_url), ("support_email", &p.support_email), ("support_phone", &p.support_phone)]
        {
            if let Some(v) = v {
                r = r.with(k, v.as_str());
            }
        }
    }
    Err(r)
}

pub(crate) fn decide_open(dir: &Directory, cmd: &OpenTicket, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    let (partner_id, _) = r2_partner_agent(&ctx.principal)?;
    let ticket_id = TicketId::new(ctx.new_id.clone());
    ticket_id.check().map_err(|why| Rejection::invalid("ticket_id", why))?;
    cmd.customer_id.check().map_err(|why| Rejection::invalid("customer_id", why))?;
    let workload = Workload::parse(&cmd.workload).ok_or_else(|| {
        Rejection::new(
            Code::UnsupportedWorkload,
            Rule::R1,
            format!("workload {:?} is not one of azure, office365, ems, dynamics_crm_online", cmd.workload),
        )
        .with("field", "workload")
    })?;
    let title = bounded("title", &cmd.title, 200)?;
    let description = bounded("description", &cmd.description, 10_000)?;
    let severity = severity(&cmd.severity)?;
    let support_topic = bounded("support_topic", &cmd.support_topic, 200)?;
    let country_code = country(&cmd.country_code)?;
    let contact = check_contact(cmd.contact.as_ref())?;
    marketplace(dir, cmd)?;
    let scope = TicketScope {
        customer_id: &cmd.customer_id,
        workload,
        subscription_id: cmd.subscription_id.as_ref(),
        support_plan: cmd.support_plan.as_deref(),
        contact_email: &contact.email,
    };
    let evidence = authorize_ticket(dir, &ctx.principal, &scope, ctx.now, ctx.directory_position)?;
    incident(dir, cmd.incident_id.as_ref())?;
    let cloud = dir.partners.get(partner_id).map_or(Cloud::Commercial, |p| p.cloud);
    let opened = TicketOpened {
        ticket_id,
        partner_id: partner_id.clone(),
        customer_id: cmd.customer_id.clone(),
        workload,
        cloud,
        subscription_id: if workload == Workload::Azure { cmd.subscription_id.clone() } else { None },
        title,
        description,
        severity,
        support_topic,
        support_plan: cmd.support_plan.as_ref().map(|p| p.trim().to_owned()),
        country_code,
        contact,
        incident_id: cmd.incident_id.clone(),
        // R19: every ticket is filed by a partner through the CSP route (a customer's own
        // request for help is a support request, R23, which opens no ticket), so every
        // ticket carries CSP priority. The queue order still weighs it
        // (`notify::priority_key`), for notices that do not carry it.
        csp_priority: true,
        at: ctx.now,
        evidence: evidence.clone(),
    };
    let mut events = vec![Event::TicketOpened(opened)];
    if severity == Severity::Critical {
        // R21: critical tickets escalate on opening.
        let t = Ticket::fold(&events).expect("a TicketOpened event opens a ticket");
        events.push(t.escalation(
            EscalationReason::CriticalOnOpen,
            None,
            cmd.incident_id.clone(),
            ctx.now,
            Some(evidence),
        ));
    }
    Ok(events)
}

/// Who acts on an existing ticket, and with what authority.
enum Actor {
    /// A partner agent of the ticket's partner, authorised now (R18).
    Partner(Evidence),
    Vendor,
}

/// R2, R18, R24 for a command on an existing ticket. `vendor_may` says whether the
/// vendor side may send this command.
fn actor(
    dir: &Directory,
    t: &Ticket,
    ctx: &Context,
    vendor_may: bool,
    contact_email: &str,
) -> Result<Actor, Rejection> {
    match &ctx.principal {
        Principal::PartnerAgent { partner_id, .. } => {
            if partner_id != &t.case.partner_id {
                // R24: another partner's ticket is not there for this caller.
                return Err(not_found(&t.case.ticket_id));
            }
            authorize_ticket(dir, &ctx.principal, &t.scope(contact_email), ctx.now, ctx.directory_position)
                .map(Actor::Partner)
        }
        Principal::Vendor if vendor_may => Ok(Actor::Vendor),
        Principal::Vendor
        | Principal::PartnerSync { .. }
        | Principal::Customer { .. }
        | Principal::Auditor
        | Principal::Admin => {
            Err(Rejection::new(Code::Forbidden, Rule::R2, "this principal may not send this command"))
        }
    }
}

fn partner_only(ctx: &Context, t: &Ticket, dir: &Directory, contact_email: &str) -> Result<Evidence, Rejection> {
    match actor(dir, t, ctx, false, contact_email)? {
        Actor::Partner(e) => Ok(e),
        Actor::Vendor => Err(Rejection::new(Code::Forbidden, Rule::R2, "only a partner agent may send this command")),
    }
}

fn not_found(id: &TicketId) -> Rejection {
    Rejection::new(Code::TicketNotFound, Rule::R17, format!("ticket {id} not found")).with("ticket_id", id.as_str())
}

fn not_closed(t: &Ticket) -> Result<(), Rejection> {
    if t.case.status == TicketStatus::Closed {
        Err(Rejection::new(
            Code::TicketClosed,
            Rule::R17,
            format!("ticket {} is closed; it takes only reopen", t.case.ticket_id),
        ))
    } else {
        Ok(())
    }
}

/// A partner's note or update returns an `attention_needed` ticket to `open` (R17).
fn clear_attention(t: &Ticket, ctx: &Context, events: &mut Vec<Event>) {
    if t.case.status == TicketStatus::AttentionNeeded {
        events.push(Event::AttentionCleared(AttentionCleared { ticket_id: t.case.ticket_id.clone(), at: ctx.now }));
    }
}

/// Decides a command on an existing ticket: the checks every such command shares
/// (the ticket exists, R24, R27), then the command's own decision.
pub(crate) fn decide_existing(
    dir: &Directory,
    ticket: Option<&Ticket>,
    id: &TicketId,
    cmd: TicketCommand<'_>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let t = match ticket {
        Some(t) if &t.case.ticket_id == id => t,
        Some(_) | None => return Err(not_found(id)),
    };
    // R24 before anything else: callers who may not see the ticket learn nothing.
    if let Principal::PartnerAgent { partner_id, .. } = &ctx.principal {
        if partner_id != &t.case.partner_id {
            return Err(not_found(id));
        }
    }
    if let Some(expected) = ctx.expected_version {
        if expected != t.case.version {
            return Err(Rejection::new(
                Code::ConcurrencyConflict,
                Rule::R27,
                format!("ticket {id} is at version {}, not {expected}", t.case.version),
            )
            .with("expected", expected)
            .with("actual", t.case.version));
        }
    }
    let on = On { dir, t, ctx };
    match cmd {
        TicketCommand::Note(c) => on.note(c),
        TicketCommand::Update(c) => on.update(c),
        TicketCommand::Attach(c) => on.attach(c),
        TicketCommand::Escalate(c) => on.escalate(c),
        TicketCommand::Respond(c) => on.respond(c),
        TicketCommand::RequestAttention(c) => on.request_attention(c),
        TicketCommand::Close(c) => on.close(c),
        TicketCommand::Reopen(c) => on.reopen(c),
        TicketCommand::SlaCheck => on.sla_check(),
        TicketCommand::Redact => on.redact(),
    }
}

/// One command on an existing ticket, past the shared checks.
struct On<'a> {
    dir: &'a Directory,
    t: &'a Ticket,
    ctx: &'a Context,
}

impl On<'_> {
    /// The contact the ticket holds (R10 checks the caller against it).
    fn email(&self) -> &str {
        self.t.case.contact.email.as_str()
    }

    /// The vendor side, or a partner agent authorised now (with its evidence).
    fn partner_or_vendor(&self) -> Result<Option<Evidence>, Rejection> {
        Ok(match actor(self.dir, self.t, self.ctx, true, self.email())? {
            Actor::Partner(e) => Some(e),
            Actor::Vendor => None,
        })
    }

    /// The vendor side only (R2).
    fn vendor_only(&self, why: &str) -> Result<(), Rejection> {
        match actor(self.dir, self.t, self.ctx, true, self.email())? {
            Actor::Vendor => Ok(()),
            Actor::Partner(_) => Err(Rejection::new(Code::Forbidden, Rule::R2, why)),
        }
    }

    fn note(&self, c: &TicketText) -> Result<Vec<Event>, Rejection> {
        let text = bounded("text", &c.text, 10_000)?;
        let evidence = self.partner_or_vendor()?;
        not_closed(self.t)?;
        let by_partner = evidence.is_some();
        let (ticket_id, author, at) = (self.t.case.ticket_id.clone(), self.ctx.principal.clone(), self.ctx.now);
        let mut events = vec![Event::NoteAdded(NoteAdded { ticket_id, author, text, at, evidence })];
        if by_partner {
            clear_attention(self.t, self.ctx, &mut events);
        }
        Ok(events)
    }

    fn update(&self, c: &UpdateTicket) -> Result<Vec<Event>, Rejection> {
        let severity = c.severity.as_ref().map(severity).transpose()?;
        let contact = c.contact.as_ref().map(|c| check_contact(Some(c))).transpose()?;
        if severity.is_none() && contact.is_none() {
            return Err(Rejection::invalid("severity", "an update changes the severity, the contact or both"));
        }
        let email = contact.as_ref().map_or(self.email(), |c| c.email.as_str());
        let evidence = partner_only(self.ctx, self.t, self.dir, email)?;
        not_closed(self.t)?;
        let (ticket_id, at) = (self.t.case.ticket_id.clone(), self.ctx.now);
        let mut events = vec![Event::TicketUpdated(TicketUpdated { ticket_id, severity, contact, at, evidence })];
        clear_attention(self.t, self.ctx, &mut events);
        Ok(events)
    }

    fn attach(&self, c: &AttachToTicket) -> Result<Vec<Event>, Rejection> {
        let name = bounded("name", &c.name, 255)?;
        let uri = bounded("uri", &c.uri, 2048)?;
        let lower = uri.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) || uri.contains(char::is_whitespace) {
            return Err(Rejection::invalid("uri", "must be an http(s) URI"));
        }
        let evidence = partner_only(self.ctx, self.t, self.dir, self.email())?;
        not_closed(self.t)?;
        let (ticket_id, at) = (self.t.case.ticket_id.clone(), self.ctx.now);
        Ok(vec![Event::AttachmentAdded(AttachmentAdded { ticket_id, name, uri, at, evidence })])
    }

    fn escalate(&self, c: &EscalateTicket) -> Result<Vec<Event>, Rejection> {
        let reason = bounded("reason", &c.reason, 1_000)?;
        let evidence = partner_only(self.ctx, self.t, self.dir, self.email())?;
        not_closed(self.t)?;
        incident(self.dir, c.incident_id.as_ref())?;
        let at = self.ctx.now;
        Ok(vec![self.t.escalation(EscalationReason::Partner, Some(reason), c.incident_id.clone(), at, Some(evidence))])
    }

    fn respond(&self, c: &TicketText) -> Result<Vec<Event>, Rejection> {
        let text = bounded("text", &c.text, 10_000)?;
        self.vendor_only("only the vendor side responds or asks for attention")?;
        not_closed(self.t)?;
        Ok(vec![Event::VendorResponded(VendorResponded {
            ticket_id: self.t.case.ticket_id.clone(),
            text,
            at: self.ctx.now,
        })])
    }

    fn request_attention(&self, c: &TicketText) -> Result<Vec<Event>, Rejection> {
        let text = bounded("text", &c.text, 10_000)?;
        self.vendor_only("only the vendor side responds or asks for attention")?;
        not_closed(self.t)?;
        let t = self.t;
        if t.case.status == TicketStatus::AttentionNeeded {
            return Err(Rejection::new(
                Code::InvalidTransition,
                Rule::R17,
                format!("ticket {} already needs the partner's attention", t.case.ticket_id),
            ));
        }
        Ok(vec![Event::AttentionRequested(AttentionRequested {
            ticket_id: t.case.ticket_id.clone(),
            partner_id: t.case.partner_id.clone(),
            customer_id: t.case.customer_id.clone(),
            text,
            at: self.ctx.now,
        })])
    }

    fn close(&self, c: &CloseTicket) -> Result<Vec<Event>, Rejection> {
        let resolution = bounded("resolution", &c.resolution, 1_000)?;
        let evidence = self.partner_or_vendor()?;
        not_closed(self.t)?;
        Ok(vec![Event::TicketClosed(TicketClosed {
            ticket_id: self.t.case.ticket_id.clone(),
            by: self.ctx.principal.clone(),
            resolution,
            at: self.ctx.now,
            evidence,
        })])
    }

    fn reopen(&self, c: &ReopenTicket) -> Result<Vec<Event>, Rejection> {
        let reason = bounded("reason", &c.reason, 1_000)?;
        let evidence = partner_only(self.ctx, self.t, self.dir, self.email())?;
        let t = self.t;
        if t.case.status != TicketStatus::Closed {
            return Err(Rejection::new(
                Code::InvalidTransition,
                Rule::R17,
                format!("ticket {} is {}; only a closed ticket reopens", t.case.ticket_id, t.case.status),
            ));
        }
        Ok(vec![Event::TicketReopened(TicketReopened {
            ticket_id: t.case.ticket_id.clone(),
            reason,
            at: self.ctx.now,
            evidence,
        })])
    }

    /// R20: a missed target is recorded once and escalates.
    /// `ticket.redact`: the vendor side, or the ticket's partner's admin agent
    /// authorised now (R2–R11 again, R18). Closed tickets too: retention redacts them.
    /// The shell deletes the keys and names them in the event.
    fn redact(&self) -> Result<Vec<Event>, Rejection> {
        let evidence = self.partner_or_vendor()?;
        Ok(vec![Event::TicketRedacted(crate::erasure::TicketRedacted {
            ticket_id: self.t.case.ticket_id.clone(),
            key_ids: Vec::new(),
            by: self.ctx.principal.clone(),
            at: self.ctx.now,
            evidence,
        })])
    }

    fn sla_check(&self) -> Result<Vec<Event>, Rejection> {
        self.vendor_only("SLA checks are the vendor side's")?;
        not_closed(self.t)?;
        let (t, at) = (self.t, self.ctx.now);
        let sla = t.sla_at(at);
        if sla.breached && !sla.breach_recorded && sla.responded_at.is_none() {
            Ok(vec![
                Event::SlaBreached(SlaBreached { ticket_id: t.case.ticket_id.clone(), due_at: sla.due_at, at }),
                t.escalation(EscalationReason::SlaBreach, None, None, at, None),
            ])
        } else {
            Ok(Vec::new())
        }
    }
}
