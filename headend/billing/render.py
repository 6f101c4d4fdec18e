"""A bill as a readable document: plain text and HTML, from the stored bill and account rows.

Pure: the same rows always give the same document. Money is printed exactly as stored
(rounded line items, total = their sum) and the rounding rule is printed on the bill.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

ITEMS = {
    "energy_charge": "Energy",
    "fixed_charge": "Fixed charge",
    "demand_charge": "Demand charge",
    "minimum_charge": "Minimum charge top-up",
    "adjustment": "Adjustment",
}


def _day(ts) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _facts(bill: dict, account: dict) -> list[tuple[str, str]]:
    rates = bill.get("kwh_by_rate") or {}
    src = bill.get("sources") or {}
    est = src.get("estimated", 0) / 86400
    return [
        ("Account", account["account_id"]),
        ("Name", account.get("name") or "-"),
        ("Address", account.get("address") or "-"),
        ("Cycle", bill["cycle"]),
        ("Period", "%s to %s" % (_day(bill.get("period_start")), _day(bill.get("period_end")))),
        ("Tariff", bill.get("tariff_id") or "-"),
        ("Energy", "%s kWh" % (bill.get("energy_kwh") or "-")),
        ("By rate", ", ".join("T%s %s kWh" % (r, k) for r, k in rates.items()) or "-"),
        ("Estimated data", "%.2f days" % est if est else "none"),
        ("State", bill["state"]),
    ]


def _label(line: dict) -> str:
    label = ITEMS.get(line["item"], line["item"])
    return label + (" (%s)" % line["reason"] if line.get("reason") else "")


def render_text(bill: dict, account: dict) -> str:
    cur = bill.get("currency") or ""
    out = ["BILL %s / %s" % (account["account_id"], bill["cycle"]), ""]
    out += ["%-15s %s" % (k + ":", v) for k, v in _facts(bill, account)]
    out.append("")
    for line in bill["lines"]:
        out.append("%-48s %12s %s" % (_label(line), line["amount"], cur))
    out.append("%-48s %12s %s" % ("TOTAL", bill["total"], cur))
    out += ["", "Rounding: %s." % bill["rule"]]
    if bill["state"] == "held":
        out.append("HELD, not issued: " + "; ".join(bill["reasons"]))
    return "\n".join(out) + "\n"


def render_html(bill: dict, account: dict) -> str:
    e = html.escape
    cur = e(bill.get("currency") or "")
    facts = "".join("<tr><th>%s</th><td>%s</td></tr>" % (e(k), e(str(v))) for k, v in _facts(bill, account))
    lines = "".join(
        '<tr><td>%s</td><td class="amount">%s %s</td></tr>' % (e(_label(x)), e(x["amount"]), cur)
        for x in bill["lines"]
    )
    held = (
        '<p class="held">Held, not issued: %s</p>' % e("; ".join(bill["reasons"]))
        if bill["state"] == "held"
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Bill %s %s</title>'
        "<style>td.amount{text-align:right}th{text-align:left}</style></head><body>"
        "<h1>Bill %s / %s</h1><table>%s</table><h2>Charges</h2><table>%s"
        '<tr><th>Total</th><td class="amount"><strong>%s %s</strong></td></tr></table>'
        "<p>Rounding: %s.</p>%s</body></html>\n"
        % (
            e(account["account_id"]),
            e(bill["cycle"]),
            e(account["account_id"]),
            e(bill["cycle"]),
            facts,
            lines,
            e(bill["total"]),
            cur,
            e(bill["rule"]),
            held,
        )
    )
