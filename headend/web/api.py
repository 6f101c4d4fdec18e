"""The JSON API (read-only: state changes go through the pages' CSRF-protected forms).

Same data as the pages, as the storage layer gives it (times in epoch seconds, prepaid
money in integer milli-units, bill money as decimal strings). A meter's key and broker
password hash are never sent. Errors are ``{"error": message}`` with 400 or 404.
"""

from __future__ import annotations

from headend.web import data
from headend.web.pages_alerts import alert_state, select_alerts
from headend.web.pages_bills import STATES as BILL_STATES
from headend.web.pages_workorders import wo_state
from headend.web.request import HTTPError, Request, Response, json_response

METER_FIELDS = (
    "meter_id",
    "account",
    "created_at",
    "online",
    "last_seen",
    "status_seq",
    "fw",
    "board",
    "metering",
    "status_rates",
    "tariff",
    "boot_count",
    "ib_ma",
    "imax_ma",
    "un_mv",
    "rates",
)


def _limit(req: Request, default: int, most: int) -> int:
    text = req.query.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise HTTPError(400, "limit must be a whole number from 1 to %d" % most)
    return int(text)


def _meter(req: Request) -> dict:
    m = req.store.meter(req.params["meter_id"])
    if m is None:
        raise HTTPError(404, "unknown meter %r" % req.params["meter_id"])
    return {k: m.get(k) for k in METER_FIELDS}


def me(req: Request) -> Response:
    return json_response({"user": req.user, "role": req.role, "expires_at": req.session["expires_at"]})


def fleet(req: Request) -> Response:
    return json_response(data.fleet_summary(req.store, req.now))


def meters(req: Request) -> Response:
    offline = req.query.get("state") == "offline"
    return json_response(req.store.fleet_meters(req.query.get("after", ""), _limit(req, 500, 5000), offline))


def meter(req: Request) -> Response:
    m = _meter(req)
    return json_response(
        {
            **m,
            "commands": req.store.recent_commands(m["meter_id"], 50),
            "bills": req.store.meter_bills(m["meter_id"]),
        }
    )


def profile(req: Request) -> Response:
    m = _meter(req)
    day, days = data.parse_day(req.query.get("day")), data.parse_days(req.query.get("days"))
    return json_response(data.meter_profile(req.store, m["meter_id"], day, days, req.now))


def events(req: Request) -> Response:
    m = _meter(req)
    return json_response(req.store.recent_events(m["meter_id"], _limit(req, 100, 1000)))


def bills(req: Request) -> Response:
    cycle, state = req.query.get("cycle"), req.query.get("state") or None
    if state is not None and state not in BILL_STATES:
        raise HTTPError(400, "state must be one of %s" % ", ".join(BILL_STATES))
    if not cycle:
        return json_response({"review_queue": req.store.review_queue(), "cycles": req.store.bill_cycles()})
    rows = req.store.cycle_bills(cycle, state, req.query.get("after", ""), _limit(req, 200, 5000))
    return json_response({"cycle": cycle, "bills": rows})


def bill(req: Request) -> Response:
    b = req.store.bill_by_id(int(req.params["id"]))
    if b is None:
        raise HTTPError(404, "unknown bill %s" % req.params["id"])
    b.pop("rendered_html", None)
    return json_response({**b, "audit": req.store.bill_audit(b["id"])})


def prepaid(req: Request) -> Response:
    return json_response(req.store.prepaid_overview())


def prepaid_account(req: Request) -> Response:
    account_id = req.params["account_id"]
    acc = req.store.account(account_id)
    if acc is None or acc["billing"] != "prepaid":
        raise HTTPError(404, "unknown prepaid account %r" % account_id)
    return json_response(
        {
            "account_id": account_id,
            "balance": req.store.ledger_balance(account_id),
            "ledger": req.store.ledger(account_id),
            "topups": req.store.recent_topups(500, account_id),
        }
    )


def topups(req: Request) -> Response:
    return json_response(req.store.recent_topups(_limit(req, 200, 5000)))


def alerts(req: Request) -> Response:
    state = alert_state(req.query.get("state"))
    return json_response(select_alerts(req.store, state, req.query.get("meter") or None))


def alert(req: Request) -> Response:
    a = req.store.alert(int(req.params["id"]))
    if a is None:
        raise HTTPError(404, "unknown alert %s" % req.params["id"])
    return json_response({**a, "audit": req.store.alert_audit(a["id"])})


def work_orders(req: Request) -> Response:
    state = wo_state(req.query.get("state"))
    return json_response(req.store.work_orders(None if state == "all" else state))


def work_order(req: Request) -> Response:
    w = req.store.work_order(int(req.params["id"]))
    if w is None:
        raise HTTPError(404, "unknown work order %s" % req.params["id"])
    return json_response(w)
