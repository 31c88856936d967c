//! The query routes: parameters, read-your-writes waits, scoped answers.

use super::{
    App, Arc, Code, EventLog, HeaderMap, IntoResponse, ListFilter, Path, Principal, Queries, Query, ReadSide,
    Rejection, Response, State, StatusCode,
};
use crate::authenticate;
use crate::respond::{answer, early, json_response, not_served, rejected, Early};
use behalf_domain::{CustomerId, PartnerId, RawValue, Severity, TicketId, TicketStatus, UserId, Workload};
use behalf_service::queries;

// ---------------------------------------------------------------------------------
// Queries (read models; eventually consistent, with read-your-writes by min_position).

pub(crate) type Params = Query<std::collections::HashMap<String, String>>;

pub(crate) fn bad_param(name: &str, why: &str) -> Response {
    rejected(
        &Rejection::without_rule(Code::ValidationInvalid, format!("query parameter {name}: {why}")).with("field", name),
        false,
    )
}

/// A number parameter: `default` when absent, refused (422) outside `range` rather than
/// clamped.
pub(crate) fn ranged_param<T>(
    p: &Params,
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, Early>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match param::<T>(p, name)? {
        None => Ok(default),
        Some(n) if range.contains(&n) => Ok(n),
        Some(_) => {
            let why = format!("must be from {} to {}", range.start(), range.end());
            Err(Box::new(bad_param(name, &why)))
        }
    }
}

/// Each list's `limit` as (default, largest); the OpenAPI document reads these.
pub(crate) const TICKET_PAGE: (usize, usize) = (50, 500);
pub(crate) const FEED_PAGE: (usize, usize) = (100, 1000);
pub(crate) const LEASE_PAGE: (usize, usize) = (10, 1000);
pub(crate) const DELIVERY_PAGE: (usize, usize) = (50, 1000);
/// A lease's `lease_ms`: (default, shortest, longest).
pub(crate) const LEASE_MS: (i64, i64, i64) = (30_000, 1_000, 3_600_000);
/// The longest `wait_ms` honoured (a longer one is cut to it), and the default.
pub(crate) const WAIT_MS: (u64, u64) = (2_000, 30_000);

/// `limit`: from 1 to `max`, `default` when absent.
pub(crate) fn limit_param(p: &Params, default: usize, max: usize) -> Result<usize, Early> {
    ranged_param(p, "limit", default, 1..=max)
}

pub(crate) fn param<T: std::str::FromStr>(p: &Params, name: &str) -> Result<Option<T>, Early> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| Box::new(bad_param(name, "not a valid value"))),
    }
}

/// Authenticates, then waits (up to `wait_ms`, default 2000) until the views have
/// applied `min_position`.
pub(crate) async fn reader<'a, L: EventLog>(
    app: &'a App<L>,
    headers: &HeaderMap,
    p: &Params,
) -> Result<(Principal, &'a ReadSide), Early> {
    let who = authenticate(app, headers)?;
    let read = read_side(app)?;
    // Both read (and refused when bad) whether or not there is anything to wait for.
    let wait = param::<u64>(p, "wait_ms")?.unwrap_or(WAIT_MS.0).min(WAIT_MS.1);
    if let Some(min) = param::<u64>(p, "min_position")? {
        // Both the views and the GDAP projection (which scopes every answer, R24) must
        // have applied the position, or a grant ended there could still show tickets.
        // One deadline for both waits: the answer comes within `wait_ms`, not twice it.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
        let mut rx = read.position.clone();
        // (The watch guard is dropped here: it must not be held across the next wait.)
        let views = matches!(tokio::time::timeout_at(deadline, rx.wait_for(|pos| *pos >= min)).await, Ok(Ok(_)));
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let gdap = app.gdap.wait_for(min, left).await;
        if !views || gdap.is_err() {
            let msg = format!("the views have not reached position {min} within {wait} ms; retry");
            return Err(Box::new(rejected(&Rejection::without_rule(Code::Unavailable, msg), false)));
        }
    }
    Ok((who, read))
}

/// The views, where this role has them (the query routes are mounted only then).
pub(crate) fn read_side<L: EventLog>(app: &App<L>) -> Result<&ReadSide, Early> {
    app.read.as_ref().ok_or_else(|| not_served("queries"))
}

pub(crate) fn queries<'a, L: EventLog>(app: &'a App<L>, read: &'a ReadSide) -> Queries<'a, L> {
    Queries { views: read.views.as_ref(), log: &app.log, gdap: app.gdap.as_ref(), now: app.clock.now() }
}

pub(crate) fn filter(p: &Params) -> Result<(ListFilter, usize), Early> {
    let vocab = |name: &str| p.get(name).filter(|v| !v.is_empty()).map(String::as_str);
    let parse = |name: &str| -> Result<Option<&str>, Early> { Ok(vocab(name)) };
    let f = ListFilter {
        status: parse("status")?
            .map(|v| TicketStatus::parse(v).ok_or_else(|| Box::new(bad_param("status", "not a ticket status"))))
            .transpose()?,
        workload: parse("workload")?
            .map(|v| Workload::parse(v).ok_or_else(|| Box::new(bad_param("workload", "not a workload"))))
            .transpose()?,
        severity: parse("severity")?
            .map(|v| {
                Severity::parse_raw(&RawValue::text(v)).ok_or_else(|| Box::new(bad_param("severity", "not a severity")))
            })
            .transpose()?,
        customer_id: parse("customer_id")?.map(CustomerId::new),
    };
    if let Some(Err(why)) = f.customer_id.as_ref().map(CustomerId::check) {
        return Err(Box::new(bad_param("customer_id", why)));
    }
    let limit = limit_param(p, TICKET_PAGE.0, TICKET_PAGE.1)?;
    Ok((f, limit))
}

/// A query request, extracted: authenticated, with its parameters, and the views (and
/// the GDAP projection) past its `min_position`. Every query handler takes one.
pub(crate) struct Reader<L: EventLog> {
    app: Arc<App<L>>,
    who: Principal,
    p: Params,
}

impl<L: EventLog> axum::extract::FromRequestParts<Arc<App<L>>> for Reader<L> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App<L>>) -> Result<Self, Response> {
        let p = Params::from_request_parts(parts, app).await.map_err(IntoResponse::into_response)?;
        let (who, _) = reader(app, &parts.headers, &p).await.map_err(|r| *r)?;
        Ok(Reader { app: Arc::clone(app), who, p })
    }
}

impl<L: EventLog> Reader<L> {
    fn queries(&self) -> Queries<'_, L> {
        let read = self.app.read.as_ref().expect("the extractor checked that this role has the views");
        queries(&self.app, read)
    }
}

pub(crate) async fn customer_tickets<L: EventLog>(r: Reader<L>, Path(customer): Path<String>) -> Response {
    let (f, limit) = early!(filter(&r.p));
    // `after` is a ticket id (the last of the previous page).
    let after = r.p.get("after").map(String::as_str).filter(|a| !a.is_empty());
    if let Some(a) = after {
        if let Err(why) = TicketId::new(a).check() {
            return bad_param("after", why);
        }
    }
    answer(r.queries().customer_tickets(&r.who, &CustomerId::new(customer), &f, limit, after))
}

pub(crate) async fn ticket<L: EventLog>(r: Reader<L>, Path(id): Path<String>) -> Response {
    answer(r.queries().ticket(&r.who, &TicketId::new(id)).await)
}

pub(crate) async fn history<L: EventLog>(r: Reader<L>, Path(id): Path<String>) -> Response {
    answer(r.queries().history(&r.who, &TicketId::new(id)).await)
}

pub(crate) async fn partner_tickets<L: EventLog>(r: Reader<L>, Path(partner): Path<String>) -> Response {
    let (f, limit) = early!(filter(&r.p));
    answer(r.queries().partner_tickets(&r.who, &PartnerId::new(partner), &f, limit))
}

pub(crate) async fn service_health<L: EventLog>(r: Reader<L>, Path(customer): Path<String>) -> Response {
    answer(r.queries().service_health(&r.who, &CustomerId::new(customer)))
}

pub(crate) async fn access<L: EventLog>(r: Reader<L>, Path(partner): Path<String>) -> Response {
    let (Some(user), Some(customer)) = (r.p.get("user_id"), r.p.get("customer_id")) else {
        return bad_param("user_id", "user_id and customer_id are required");
    };
    let (partner, user, customer) =
        (PartnerId::new(partner), UserId::new(user.as_str()), CustomerId::new(customer.as_str()));
    answer(r.queries().access(&r.who, &partner, &user, &customer))
}

pub(crate) async fn rejections<L: EventLog>(r: Reader<L>) -> Response {
    let after = early!(param::<u64>(&r.p, "after")).unwrap_or(0);
    let limit = early!(limit_param(&r.p, FEED_PAGE.0, FEED_PAGE.1));
    answer(r.queries().rejections(&r.who, after, limit))
}

/// The raw feed reads the log, not the views: no `min_position` wait.
pub(crate) async fn events<L: EventLog>(State(app): State<Arc<App<L>>>, headers: HeaderMap, p: Params) -> Response {
    let who = early!(authenticate(&app, &headers));
    let after = early!(param::<u64>(&p, "after")).unwrap_or(0);
    let limit = early!(limit_param(&p, FEED_PAGE.0, FEED_PAGE.1));
    answer(queries::events(&app.log, &who, after, limit).await)
}

pub(crate) async fn partner_customers<L: EventLog>(r: Reader<L>, Path(partner): Path<String>) -> Response {
    answer(r.queries().partner_customers(&r.who, &PartnerId::new(partner)))
}

pub(crate) async fn partner_rejections<L: EventLog>(r: Reader<L>, Path(partner): Path<String>) -> Response {
    let after = early!(param::<u64>(&r.p, "after")).unwrap_or(0);
    let limit = early!(limit_param(&r.p, FEED_PAGE.0, FEED_PAGE.1));
    answer(r.queries().partner_rejections(&r.who, &PartnerId::new(partner), after, limit))
}

/// Who the token is: its principal (kind, and partner, user or customer).
pub(crate) async fn whoami<L: EventLog>(State(app): State<Arc<App<L>>>, headers: HeaderMap) -> Response {
    let who = early!(authenticate(&app, &headers));
    json_response(StatusCode::OK, &who, false)
}

/// The chain's status, walked now (auditors, the vendor side).
pub(crate) async fn audit_verify<L: EventLog>(State(app): State<Arc<App<L>>>, headers: HeaderMap) -> Response {
    let who = early!(authenticate(&app, &headers));
    answer(queries::verify(&app.log, &who).await)
}

pub(crate) async fn tickets<L: EventLog>(r: Reader<L>) -> Response {
    let (f, limit) = early!(filter(&r.p));
    answer(r.queries().tickets(&r.who, &f, limit))
}
