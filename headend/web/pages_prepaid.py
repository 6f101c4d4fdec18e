"""Prepaid accounts and top-up delivery: every prepaid account with its ledger and reported
balances and top-ups in flight, the latest top-ups with their command's state, and one
account's ledger and top-ups (``/prepaid/<account_id>``). Money shown in currency units."""

from __future__ import annotations

from headend.web import fmt, tariffs
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


def currencies(store) -> dict[str, str]:
    """account_id -> its tariff's currency, for every prepaid account."""
    infos: dict[str | None, tariffs.TariffInfo] = {}
    out = {}
    for account_id, tid in store.account_tariff_ids("prepaid").items():
        if tid not in infos:
            infos[tid] = tariffs.tariff_info(store, tid)
        out[account_id] = infos[tid].currency
    return out


def topup_rows(rows, currency: dict[str, str]) -> list[tuple]:
    return [
        (
            t["payment_id"],
            link(url("prepaid", t["account_id"]), t["account_id"]),
            link(url("meters", t["meter_id"]), t["meter_id"]),
            fmt.money(t["amount"], currency.get(t["account_id"])),
            t["source"],
            fmt_ts(t["received_at"]),
            t["seq"] if t["seq"] is not None else fmt.NONE,
            tag(t["state"] or "none"),
            t["attempts"] if t["attempts"] is not None else fmt.NONE,
            fmt_ts(t["sent_at"]),
            fmt_ts(t["done_at"]),
            t["reason"] or "",
        )
        for t in rows
    ]


def overview(req: Request) -> Response:
    cur = currencies(req.store)
    accounts = [
        (
            link(url("prepaid", a["account_id"]), a["account_id"]),
            a["name"] or "",
            link(url("meters", a["meter_id"]), a["meter_id"]) if a["meter_id"] else fmt.NONE,
            fmt.money(a["ledger_balance"], cur.get(a["account_id"])),
            fmt.money(a["meter_balance"], cur.get(a["account_id"])),
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
                nw=(3, 4),
                empty="no prepaid account",
            ),
            table(
                TOPUP_HEADERS,
                topup_rows(req.store.recent_topups(200), cur),
                num=(3, 6, 8),
                nw=(3, 5, 9, 10),
                empty="no top-up yet",
            ),
        )
    )
    return page("Prepaid", body)


def account(req: Request) -> Response:
    account_id = req.params["account_id"]
    acc = req.store.account(account_id)
    if acc is None or acc["billing"] != "prepaid":
        raise HTTPError(404, "unknown prepaid account %r" % account_id)
    currency = tariffs.tariff_info(req.store, acc.get("tariff_id")).currency
    ledger = [
        (
            e["id"],
            fmt_ts(e["at"]),
            e["kind"],
            fmt.money(e["amount"], currency),
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
            esc(fmt.money(req.store.ledger_balance(account_id), currency)),
            table(
                TOPUP_HEADERS,
                topup_rows(req.store.recent_topups(500, account_id), {account_id: currency}),
                num=(3, 6, 8),
                nw=(3, 5, 9, 10),
            ),
            table(("id", "when", "kind", "amount", "ref", "user", "delivery"), ledger, num=(0, 3), nw=(1, 3)),
        )
    )
    return page("Prepaid %s" % account_id, body)
