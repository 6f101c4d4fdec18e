"""Prepaid accounts and top-up delivery: every prepaid account with its ledger and reported
balances and top-ups in flight, the latest top-ups with their command's state, and one
account's ledger and top-ups (``/prepaid/<account_id>``). Money shown in currency units."""

from __future__ import annotations

from headend.prepaid.ledger import units
from headend.web.layout import Markup, esc, fmt_ts, link, table, tag, url
from headend.web.request import HTTPError, Request, Response, page

TOPUP_HEADERS = (
    "payment",
    "account",
    "meter",
    "amount",
    "source",
    "received",
    "command seq",
    "delivery",
    "attempts",
    "sent",
    "done",
    "reason",
)


def _money(milli) -> str:
    return "-" if milli is None else units(milli)


def topup_rows(rows) -> list[tuple]:
    return [
        (
            t["payment_id"],
            link(url("prepaid", t["account_id"]), t["account_id"]),
            link(url("meters", t["meter_id"]), t["meter_id"]),
            _money(t["amount"]),
            t["source"],
            fmt_ts(t["received_at"]),
            t["seq"] if t["seq"] is not None else "-",
            tag(t["state"] or "none"),
            t["attempts"] if t["attempts"] is not None else "-",
            fmt_ts(t["sent_at"]),
            fmt_ts(t["done_at"]),
            t["reason"] or "",
        )
        for t in rows
    ]


def overview(req: Request) -> Response:
    accounts = [
        (
            link(url("prepaid", a["account_id"]), a["account_id"]),
            a["name"] or "",
            link(url("meters", a["meter_id"]), a["meter_id"]) if a["meter_id"] else "-",
            _money(a["ledger_balance"]),
            _money(a["meter_balance"]),
            a["in_flight"],
        )
        for a in req.store.prepaid_overview()
    ]
    body = Markup(
        "<h1>Prepaid</h1><h2>Accounts</h2>%s<h2>Latest top-ups</h2>%s"
        % (
            table(
                ("account", "name", "meter", "ledger balance", "meter balance", "top-ups in flight"),
                accounts,
                num=(3, 4, 5),
                empty="no prepaid account",
            ),
            table(
                TOPUP_HEADERS, topup_rows(req.store.recent_topups(200)), num=(3, 6, 8), empty="no top-up yet"
            ),
        )
    )
    return page("Prepaid", body)


def account(req: Request) -> Response:
    account_id = req.params["account_id"]
    acc = req.store.account(account_id)
    if acc is None or acc["billing"] != "prepaid":
        raise HTTPError(404, "unknown prepaid account %r" % account_id)
    ledger = [
        (
            e["id"],
            fmt_ts(e["at"]),
            e["kind"],
            _money(e["amount"]),
            e["ref"] or "",
            e["user"] or "",
            tag(e["delivery"]) if e["delivery"] else "",
        )
        for e in req.store.ledger(account_id)
    ]
    body = Markup(
        '<h1>Prepaid account %s</h1><p>Ledger balance <strong id="ledger-balance">%s</strong></p>'
        "<h2>Top-ups</h2>%s<h2>Ledger</h2>%s"
        % (
            esc(account_id),
            esc(units(req.store.ledger_balance(account_id))),
            table(TOPUP_HEADERS, topup_rows(req.store.recent_topups(500, account_id)), num=(3, 6, 8)),
            table(("id", "when", "kind", "amount", "ref", "user", "delivery"), ledger, num=(0, 3)),
        )
    )
    return page("Prepaid %s" % account_id, body)
