//! R20, the response targets, as a pure function of a ticket's events and a time:
//! 2 h (critical), 4 h (moderate), 8 h (minimal) from opening to the vendor's first
//! response, with the clock paused while the ticket is `attention_needed` (and while
//! it is closed).

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::kinds::{EventKind, TicketEvent};
use crate::time::{Timestamp, MS_PER_HOUR};
use crate::vocab::Severity;

/// The response target of a severity.
pub fn response_target_ms(severity: Severity) -> i64 {
    match severity {
        Severity::Critical => 2 * MS_PER_HOUR,
        Severity::Moderate => 4 * MS_PER_HOUR,
        Severity::Minimal => 8 * MS_PER_HOUR,
    }
}

/// The clock of one ticket, folded from its events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SlaClock {
    pub opened_at: Timestamp,
    pub target_ms: i64,
    pub responded_at: Option<Timestamp>,
    /// Paused time already over.
    pub paused_ms: i64,
    /// Paused since (attention needed, or closed).
    pub paused_since: Option<Timestamp>,
    pub breach_recorded: bool,
}

/// What the clock says at a moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SlaState {
    pub target_ms: i64,
    /// When the response is (or was) due, counting pauses up to `now`.
    pub due_at: Timestamp,
    pub paused: bool,
    pub paused_ms: i64,
    pub responded_at: Option<Timestamp>,
    /// The target was missed (by `now`, or by the time of the response).
    pub breached: bool,
    /// A `SlaBreached` event is already in the log.
    pub breach_recorded: bool,
}

impl SlaClock {
    pub fn apply(&mut self, event: &Event) {
        let EventKind::Ticket(e) = event.kind() else { return };
        match e {
            TicketEvent::Opened(e) => self.open(e.at, e.severity),
            TicketEvent::VendorResponded(e) => {
                self.responded_at.get_or_insert(e.at);
            }
            TicketEvent::AttentionRequested(e) => self.pause(e.at),
            TicketEvent::Closed(e) => self.pause(e.at),
            TicketEvent::AttentionCleared(e) => self.resume(e.at),
            TicketEvent::Reopened(e) => self.resume(e.at),
            TicketEvent::SlaBreached(_) => self.breach_recorded = true,
            TicketEvent::NoteAdded(_)
            | TicketEvent::Updated(_)
            | TicketEvent::AttachmentAdded(_)
            | TicketEvent::Escalated(_)
            | TicketEvent::Redacted(_) => {}
        }
    }

    /// Starts the clock at opening.
    pub fn open(&mut self, at: Timestamp, severity: Severity) {
        *self = SlaClock { opened_at: at, target_ms: response_target_ms(severity), ..SlaClock::default() };
    }

    fn pause(&mut self, at: Timestamp) {
        self.paused_since.get_or_insert(at);
    }

    fn resume(&mut self, at: Timestamp) {
        if let Some(since) = self.paused_since.take() {
            self.paused_ms += (at.millis() - since.millis()).max(0);
        }
    }

    fn paused_until(&self, t: Timestamp) -> i64 {
        self.paused_ms + self.paused_since.map_or(0, |s| (t.millis() - s.millis()).max(0))
    }

    /// The clock read at `now`.
    pub fn state(&self, now: Timestamp) -> SlaState {
        let paused_now = self.paused_until(now);
        let due_at = self.opened_at.plus_millis(self.target_ms + paused_now);
        let breached = match self.responded_at {
            Some(r) => r.millis() - self.opened_at.millis() - self.paused_until(r) > self.target_ms,
            None => now.millis() - self.opened_at.millis() - paused_now > self.target_ms,
        };
        SlaState {
            target_ms: self.target_ms,
            due_at,
            paused: self.paused_since.is_some(),
            paused_ms: paused_now,
            responded_at: self.responded_at,
            breached,
            breach_recorded: self.breach_recorded,
        }
    }
}

/// R20 over a ticket's events at `now`.
pub fn sla_state<'a>(events: impl IntoIterator<Item = &'a Event>, now: Timestamp) -> SlaState {
    let mut clock = SlaClock::default();
    for e in events {
        clock.apply(e);
    }
    clock.state(now)
}
