"""Schemathesis hooks for Behalf's run (crates/cli/tests/it/schemathesis.rs).

A read given `min_position` waits up to `wait_ms` (at most 30 s) for the views to reach
it; a drawn position is usually far past the log's head, so every such read would wait
its full `wait_ms`. Whole numbers above 100 are cut to 100 ms so that the run is not
spent waiting; anything else (a wrong type, a negative number) is sent as drawn.
"""

import os
import re

import schemathesis


@schemathesis.hook
def map_query(ctx, query):
    if query and isinstance(query.get("wait_ms"), int) and not isinstance(query["wait_ms"], bool):
        if query["wait_ms"] > 100:
            query["wait_ms"] = 100
    return query


# Most drawn commands are refused by rules that need the log's state (no such customer,
# no grant), and a `ticket.open` is one of ~30 command types: left alone, the run would
# never see a command accepted, nor follow the links from an opened ticket. So, just
# before a command is sent (`before_call`: Schemathesis re-checks what the hook changed,
# so a case it drew to be invalid and that stays invalid is still judged as such):
# - a drawn `ticket.open` names the world's customer, a contact on the partner's
#   domain, a real country and a workload the agent's grant covers; only values that
#   are well-formed are replaced, by values as well-formed;
# - one in four other valid commands becomes such a `ticket.open`, with the drawn
#   command id.
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
COUNTRY = re.compile(r"^[A-Za-z]{2}$")
ID = re.compile(r"^[^\s\x00-\x1f\x7f-\x9f]{1,128}$")
SENT = {"commands": 0}


def world_ticket(body):
    customer = os.environ["BEHALF_ST_CUSTOMER"]
    if isinstance(body.get("customer_id"), str) and GUID.match(body["customer_id"]):
        body["customer_id"] = customer
    if isinstance(body.get("workload"), str):
        body["workload"] = "office365"
    if isinstance(body.get("country_code"), str) and COUNTRY.match(body["country_code"]):
        body["country_code"] = "ID"
    # Ids of things the world does not have (an incident, a product, a subscription)
    # and a support plan are refused by rules that need them; a well-formed one is
    # replaced by null, which the schema allows as well.
    for key in ("incident_id", "product_id", "subscription_id", "support_plan"):
        if isinstance(body.get(key), str) and ID.match(body[key]):
            body[key] = None
    contact = body.get("contact")
    if isinstance(contact, dict) and isinstance(contact.get("email"), str) and contact["email"].count("@") == 1:
        local = contact["email"].split("@")[0] or "someone"
        contact["email"] = f"{local}@contoso-partner.com"
    return body


def positive(case):
    meta = getattr(case, "_meta", None)
    return meta is None or meta.generation.mode.is_positive


def webhooks(case):
    """The seeded subscription is kept for the operations that name it (a delete of
    it, reached through a link from the list, names one that is not there instead);
    a new one never takes the queue the run leases and acks from."""
    if case.method.upper() == "DELETE" and case.path == "/v1/webhooks/{webhook_id}":
        if (case.path_parameters or {}).get("webhook_id") == os.environ["BEHALF_ST_WEBHOOK"]:
            case.path_parameters["webhook_id"] = "kept-for-the-run"
    if case.method.upper() == "POST" and case.path == "/v1/webhooks" and isinstance(case.body, dict):
        if case.body.get("queue") == "commercial.office365":
            case.body["queue"] = "commercial.azure"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    webhooks(case)
    if case.method.upper() != "POST" or case.path != "/v1/commands" or not isinstance(case.body, dict):
        return
    if case.body.get("type") == "ticket.open":
        world_ticket(case.body)
        return
    SENT["commands"] += 1
    if positive(case) and SENT["commands"] % 4 == 0:
        ticket = {
            "type": "ticket.open",
            "customer_id": os.environ["BEHALF_ST_CUSTOMER"],
            "workload": "office365",
            "title": "Mail bounces",
            "description": "External mail bounces with 550 5.7.1.",
            "severity": "moderate",
            "support_topic": "Exchange Online / Mail flow",
            "country_code": "ID",
            "contact": {"first_name": "Ayu", "last_name": "Lestari", "email": "ayu@contoso-partner.com",
                        "preferred_contact": "email"},
        }
        if isinstance(case.body.get("command_id"), str):
            ticket["command_id"] = case.body["command_id"]
        case.body = ticket
