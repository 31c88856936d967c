//! The SLA sweep — the one producer among the followers: it reads the views and a
//! clock (never in-memory timers, so it survives restarts) and issues commands. Every
//! ticket past its response target (R20) gets `ticket.sla_check` as the vendor side,
//! which records `SlaBreached` and an `sla_breach` escalation once.

use std::sync::Arc;

use behalf_domain::{Principal, Timestamp};
use behalf_log::views::ViewStore;
use behalf_log::EventLog;

use crate::commands::CommandService;
use crate::request::Request;
use crate::views::{decode, TicketView};
use crate::{Refused, ServiceError};

/// R20: every open ticket of the views whose response target has passed unanswered
/// gets `ticket.sla_check` (as the vendor side), which records `SlaBreached` and an
/// `sla_breach` escalation once. The command id names the ticket and the version the
/// view saw, so a check is idempotent and a later state gets a fresh one. Returns how
/// many breaches were recorded.
pub async fn sla_sweep<L: EventLog, S: ViewStore + ?Sized>(
    views: &S,
    service: &Arc<CommandService<L>>,
    now: Timestamp,
) -> Result<usize, ServiceError> {
    let mut recorded = 0;
    let mut after: Option<Vec<u8>> = None;
    while let Some(page) = ticket_page(views, &mut after)? {
        for view in page {
            let sla = view.sla_at(now);
            let t = &view.ticket;
            if t.case.status == behalf_domain::TicketStatus::Closed
                || !sla.breached
                || sla.breach_recorded
                || sla.responded_at.is_some()
            {
                continue;
            }
            let cmd = behalf_domain::Command::TicketSlaCheck(behalf_domain::command::TicketRef {
                ticket_id: t.case.ticket_id.clone(),
            });
            let req = Request {
                command_id: Some(behalf_domain::CommandId::new(format!(
                    "sla:{}:v{}",
                    t.case.ticket_id, t.case.version
                ))),
                expected_version: None,
                command: cmd,
            };
            match service.execute(Principal::Vendor, req).await {
                Ok(a) if !a.events.is_empty() && !a.duplicate => recorded += 1,
                // Refused (closed or answered meanwhile): the next sweep sees the new state.
                Ok(_) | Err(Refused::Rejected(_)) => {}
                Err(Refused::Failed(e)) => return Err(e),
            }
        }
    }
    Ok(recorded)
}

/// Retention (issue 26): every closed ticket of the views closed at least `after` ago
/// and not yet redacted gets `ticket.redact` as the vendor side, with its own command
/// id (`retention:<ticket id>`: a retry answers its first outcome). Returns how many
/// were redacted.
pub async fn retention_sweep<L: EventLog, S: ViewStore + ?Sized>(
    views: &S,
    service: &Arc<CommandService<L>>,
    now: Timestamp,
    after: std::time::Duration,
) -> Result<usize, ServiceError> {
    let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    let mut redacted = 0;
    let mut from: Option<Vec<u8>> = None;
    while let Some(page) = ticket_page(views, &mut from)? {
        for view in page {
            let t = &view.ticket.case;
            let due = t.closed_at.is_some_and(|c| c.millis().saturating_add(after_ms) <= now.millis());
            if view.redacted || t.status != behalf_domain::TicketStatus::Closed || !due {
                continue;
            }
            let req = Request {
                command_id: Some(behalf_domain::CommandId::new(format!("retention:{}", t.ticket_id))),
                expected_version: None,
                command: behalf_domain::Command::TicketRedact(behalf_domain::command::TicketRef {
                    ticket_id: t.ticket_id.clone(),
                }),
            };
            match service.execute(Principal::Vendor, req).await {
                Ok(a) if !a.duplicate => redacted += 1,
                Ok(_) | Err(Refused::Rejected(_)) => {}
                Err(Refused::Failed(e)) => return Err(e),
            }
        }
    }
    Ok(redacted)
}

/// The next page of ticket views after `after` (moved on past it), or `None` at the end:
/// the walk both sweeps make.
fn ticket_page<S: ViewStore + ?Sized>(
    views: &S,
    after: &mut Option<Vec<u8>>,
) -> Result<Option<Vec<TicketView>>, ServiceError> {
    let page = views.scan(b"t/", after.as_deref(), 1024)?;
    let Some((last, _)) = page.last() else { return Ok(None) };
    *after = Some(last.clone());
    Ok(Some(page.iter().map(|(_, v)| decode(v)).collect::<Result<_, _>>()?))
}
