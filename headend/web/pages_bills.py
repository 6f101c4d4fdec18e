"""Bills: the review queue (held and in review, every cycle), a cycle's bills, one bill, and
the operator's review actions through ``headend.billing.review`` (approve, correct), each
with a reason and audited under the signed-in user's name."""

from __future__ import annotations

from headend.billing import review
from headend.web.layout import Markup, action_form, dl, esc, fmt_json, fmt_ts, link, table, tag, url
from headend.web.request import HTTPError, Request, Response, page, redirect

STATES = ("held", "review", "approved", "issued")
DONE = {"approved": "The bill was approved and released.", "corrected": "The adjustment was added."}
PAGE = 200


def bills(req: Request) -> Response:
    cycle, state = req.query.get("cycle"), req.query.get("state") or None
    if state is not None and state not in STATES:
        raise HTTPError(400, "state must be one of %s" % ", ".join(STATES))
    queue = [
        (
            link(url("bills", b["id"]), b["account_id"]),
            b["cycle"],
            tag(b["state"]),
            "%s %s" % (b["total"], b["currency"] or ""),
            "; ".join(b["reasons"]),
        )
        for b in req.store.review_queue()
    ]
    cycles = [
        (
            link(url("bills", cycle=c["cycle"]), c["cycle"]),
            ", ".join("%s %d" % (s, n) for s, n in sorted(c["states"].items())),
        )
        for c in req.store.bill_cycles()
    ]
    parts = [
        "<h1>Bills</h1><h2>Review queue</h2>",
        table(("account", "cycle", "state", "total", "reasons"), queue, empty="no bill waits for review"),
        "<h2>Cycles</h2>",
        table(("cycle", "bills by state"), cycles, empty="no bill run yet"),
    ]
    if cycle:
        after = req.query.get("after", "")
        rows = req.store.cycle_bills(cycle, state, after, PAGE)
        listed = [
            (
                link(url("bills", b["id"]), b["account_id"]),
                tag(b["state"]),
                "%s %s" % (b["total"], b["currency"] or ""),
                b["energy_kwh"] or "",
            )
            for b in rows
        ]
        parts += [
            "<h2>Cycle %s%s</h2>" % (esc(cycle), esc(" (%s)" % state if state else "")),
            table(("account", "state", "total", "kWh"), listed, num=(3,)),
        ]
        if len(rows) == PAGE:
            parts.append(
                link(url("bills", cycle=cycle, state=state, after=rows[-1]["account_id"]), "next page")
            )
    return page("Bills", Markup("".join(parts)))


def _bill(req: Request) -> dict:
    b = req.store.bill_by_id(int(req.params["id"]))
    if b is None:
        raise HTTPError(404, "unknown bill %s" % req.params["id"])
    return b


def bill(req: Request) -> Response:
    b = _bill(req)
    done = DONE.get(req.query.get("done", ""))
    lines = [(ln.get("item"), ln.get("reason", ""), ln.get("amount")) for ln in b["lines"]]
    audit = [
        (
            fmt_ts(a["at"]),
            a["action"],
            "%s -> %s" % (a["old_state"], a["new_state"]),
            a["amount"] or "",
            a["user"],
            a["reason"],
        )
        for a in req.store.bill_audit(b["id"])
    ]
    forms = ""
    if b["state"] in review.OPEN_STATES and req.role == "operator":
        forms = (
            "<h2>Review</h2>"
            + action_form(
                url("bills", b["id"], "approve"),
                "Approve",
                [("reason", "Reason", "text-required")],
                "approve",
            )
            + action_form(
                url("bills", b["id"], "correct"),
                "Add adjustment",
                [("amount", "Amount (e.g. -12.50)", "text-required"), ("reason", "Reason", "text-required")],
                "correct",
            )
        )
    body = Markup(
        '<h1>Bill %s %s</h1>%s%s<h2>Lines</h2>%s<p>Total <strong id="bill-total">%s %s</strong></p>'
        "<h2>kWh by rate</h2><pre>%s</pre>%s<h2>Audit</h2>%s"
        % (
            esc(b["account_id"]),
            esc(b["cycle"]),
            '<p class="note" id="done">%s</p>' % esc(done) if done else "",
            dl(
                (
                    ("state", tag(b["state"])),
                    ("reasons", "; ".join(b["reasons"]) or "-"),
                    ("period", "%s .. %s" % (fmt_ts(b["period_start"]), fmt_ts(b["period_end"]))),
                    ("energy", "%s kWh" % b["energy_kwh"]),
                    ("tariff", b["tariff_id"]),
                    ("rule", b["rule"] or "-"),
                )
            ),
            table(("item", "reason", "amount"), lines, num=(2,)),
            esc(b["total"]),
            esc(b["currency"] or ""),
            esc(fmt_json(b["kwh_by_rate"])),
            forms,
            table(("when", "action", "state", "amount", "user", "reason"), audit),
        )
    )
    return page("Bill %s %s" % (b["account_id"], b["cycle"]), body)


def approve(req: Request) -> Response:
    b = _bill(req)
    review.approve(req.store, b["account_id"], b["cycle"], req.form.get("reason", ""), req.user, req.now)
    return redirect(url("bills", b["id"], done="approved"))


def correct(req: Request) -> Response:
    b = _bill(req)
    amount = review.parse_amount(req.form.get("amount", "").strip())
    review.correct(
        req.store, b["account_id"], b["cycle"], amount, req.form.get("reason", ""), req.user, req.now
    )
    return redirect(url("bills", b["id"], done="corrected"))
