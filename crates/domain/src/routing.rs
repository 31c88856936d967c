//! R23: where a customer's own request for help goes. A trial subscription routes to
//! the partner only; a paid one to the vendor or the partner as the customer prefers
//! (partner by default); a marketplace product to its ISV with the ISV's contacts.

use crate::command::SupportRequest;
use crate::directory::{Directory, Subscription};
use crate::event::{Event, Isv, SupportRequestRouted};
use crate::rejection::{Code, Rejection, Rule};
use crate::vocab::{Billing, Route};
use crate::{Context, PartnerId, Principal, RequestId};

/// The partner a customer deals with for a subscription: its reseller, else its provider.
pub fn selling_partner(sub: &Subscription) -> &PartnerId {
    sub.reseller_id.as_ref().unwrap_or(&sub.provider_id)
}

pub(crate) fn decide_support_request(
    dir: &Directory,
    req: &SupportRequest,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let user_id = match &ctx.principal {
        Principal::Customer { customer_id, user_id } if customer_id == &req.customer_id => user_id.clone(),
        Principal::Customer { .. } => {
            return Err(Rejection::new(Code::Forbidden, Rule::R23, "a customer asks for help for its own tenant only"))
        }
        Principal::PartnerAgent { .. }
        | Principal::PartnerSync { .. }
        | Principal::Vendor
        | Principal::Auditor
        | Principal::Admin => {
            return Err(Rejection::new(Code::Forbidden, Rule::R23, "only a customer user sends support requests"))
        }
    };
    let summary = req.summary.trim();
    if summary.is_empty() || req.summary.chars().count() > 10_000 {
        return Err(Rejection::invalid("summary", "must be 1 to 10,000 characters"));
    }
    let prefer = match req.prefer.as_deref() {
        None => None,
        Some(p) => match Route::parse(p) {
            Some(r @ (Route::Vendor | Route::Partner)) => Some(r),
            Some(Route::Isv) | None => return Err(Rejection::invalid("prefer", "must be vendor or partner")),
        },
    };
    let sub = match &req.subscription_id {
        Some(id) => match dir.subscriptions.get(id) {
            Some(s) if s.customer_id == req.customer_id => Some(s),
            Some(_) | None => {
                return Err(Rejection::new(
                    Code::SubscriptionInvalid,
                    Rule::R23,
                    format!("subscription {id} is not one of this customer's"),
                ))
            }
        },
        None => None,
    };
    let product_id = req.product_id.clone().or_else(|| sub.and_then(|s| s.marketplace_product_id.clone()));
    let routed = |route: Route, partner_id: Option<PartnerId>, isv: Option<Isv>| SupportRequestRouted {
        request_id: RequestId::new(ctx.new_id.clone()),
        customer_id: req.customer_id.clone(),
        user_id: user_id.clone(),
        subscription_id: req.subscription_id.clone(),
        product_id: product_id.clone(),
        route,
        partner_id,
        isv,
        summary: summary.to_owned(),
        at: ctx.now,
    };
    if let Some(pid) = &product_id {
        let product =
            dir.products.get(pid).ok_or_else(|| Rejection::invalid("product_id", "no such marketplace product"))?;
        return Ok(vec![Event::SupportRequestRouted(routed(Route::Isv, None, Some(Isv::from(product))))]);
    }
    let sub = sub
        .ok_or_else(|| Rejection::invalid("subscription_id", "a support request names a subscription or a product"))?;
    let partner = selling_partner(sub).clone();
    let route = match (sub.billing, prefer) {
        (Billing::Trial, _) => Route::Partner,
        (Billing::Paid, Some(Route::Vendor)) => Route::Vendor,
        (Billing::Paid, Some(Route::Partner | Route::Isv) | None) => Route::Partner,
    };
    Ok(vec![Event::SupportRequestRouted(routed(route, Some(partner), None))])
}
