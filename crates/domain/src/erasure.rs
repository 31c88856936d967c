//! Erasure on request (issue 26): `person.erase` and `ticket.redact` as audited
//! commands. Personal fields are sealed, and their keys deleted, by the shell (the
//! service's `seal` module): crypto-shredding happens outside this pure crate. What the
//! domain decides is who may erase what, and what the log records of it — never the
//! erased values, and for a person never the address: the shell replaces it by its
//! keyed hash ([`SUBJECT_PREFIX`]) before the command is judged, hashed for R26 or
//! recorded.

use serde::{Deserialize, Serialize};

use crate::event::Evidence;
use crate::rejection::{Code, Rejection, Rule};
use crate::time::Timestamp;
use crate::{Event, Principal, StreamId, TicketId};

/// How a sealed string starts (the shell's envelope; only its clear `@domain` tail
/// matters here).
pub const SEALED_PREFIX: &str = "enc1.";

/// How an erasure names its person once the shell has hashed the address.
pub const SUBJECT_PREFIX: &str = "subject:";

/// `person.erase`: `{"email"}` as sent; by the time it is decided, `subject:<keyed hash>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErasePerson {
    pub email: String,
}

impl ErasePerson {
    /// The keyed hash this command names, once the shell has replaced the address.
    pub fn subject(&self) -> Option<&str> {
        self.email.strip_prefix(SUBJECT_PREFIX).filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// The person's stream: `person-<keyed hash>` (the address is never in the log).
    pub fn stream(&self) -> StreamId {
        StreamId::of("person", self.subject().unwrap_or("unhashed"))
    }
}

/// A person's keys were deleted: every sealed field of theirs reads as erased.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PersonErased {
    /// The keyed hash of the normalised address (not the address).
    pub subject: String,
    /// The keys deleted (random ids), so every reader forgets them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids: Vec<String>,
    pub by: Principal,
    pub at: Timestamp,
}

/// A ticket's free-text key was deleted: its title, description and texts read as
/// erased; its decisions, states and times stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TicketRedacted {
    pub ticket_id: TicketId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids: Vec<String>,
    pub by: Principal,
    pub at: Timestamp,
    /// R29: the partner admin agent's grant (none for the vendor side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// `person.erase`: the vendor side, or a partner's directory sync (the shell has
/// checked the person is one of that partner's users before hashing the address).
pub fn decide_erase_person(p: &Principal, c: &ErasePerson, now: Timestamp) -> Result<Vec<Event>, Rejection> {
    match p {
        Principal::Vendor | Principal::PartnerSync { .. } => {}
        Principal::PartnerAgent { .. } | Principal::Customer { .. } | Principal::Auditor | Principal::Admin => {
            return Err(Rejection::new(
                Code::Forbidden,
                Rule::R2,
                "only the vendor side or the person's partner's directory sync erases a person",
            ))
        }
    }
    let subject = c.subject().ok_or_else(|| Rejection::invalid("email", "not an e-mail address"))?;
    Ok(vec![Event::PersonErased(PersonErased {
        subject: subject.to_owned(),
        key_ids: Vec::new(),
        by: p.clone(),
        at: now,
    })])
}
