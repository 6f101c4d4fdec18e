"""Bills: the review queue (held and in review, every cycle), a cycle's bills, one bill, and
the operator's review actions through ``headend.billing.review`` (approve, correct), each
with a reason and audited under the signed-in user's name."""

from __future__ import annotations

from headend.billing import review
from headend.billing.render import ITEMS
from headend.web import fmt, tariffs
from headend.web.layout import Markup, action_form, dl, esc, fmt_ts, link, table, tag, url
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
            fmt.amount(b["total"], b["currency"]),
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
        table(
            ("account", "cycle", "state", "total", "reasons"),
            queue,
            empty="no bill waits for review",
            nw=(3,),
        ),
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
                fmt.amount(b["total"], b["currency"]),
                fmt.NONE if b["energy_kwh"] is None else b["energy_kwh"],
            )
            for b in rows
        ]
        parts += [
            "<h2>Cycle %s%s</h2>" % (esc(cycle), esc(" (%s)" % state if state else "")),
            table(("account", "state", "total", "kWh"), listed, num=(2, 3), nw=(2,)),
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


def no_energy_reason(b: dict) -> str:
    """Why a bill has no energy figure: its hold reasons, or that nothing was measured."""
    if b["state"] == "held" and b["reasons"]:
        return "not measured: the bill is held: %s" % "; ".join(b["reasons"])
    return "no usage was measured for the cycle"


def energy_text(b: dict) -> str:
    return fmt.missing(no_energy_reason(b)) if b["energy_kwh"] is None else fmt.kwh(b["energy_kwh"])


def rate_rows(kwh_by_rate: dict, info: tariffs.TariffInfo) -> list[tuple]:
    """(rate, tariff period, kWh) per rate register, in rate order: rate n is the tariff's
    n-th period; a one-period tariff prices every rate under that period."""
    names = info.period_names
    rows = []
    for key, value in sorted(kwh_by_rate.items(), key=lambda kv: int(kv[0])):
        rate = int(key)
        if len(names) == 1:
            period = names[0]
        else:
            period = names[rate - 1] if 1 <= rate <= len(names) else fmt.missing("not in the tariff")
        rows.append(("T%d" % rate, period, fmt.kwh(value)))
    return rows


def _sources(sources: dict | None) -> str:
    if not sources:
        return fmt.NONE
    parts = ["%s %s" % (k, fmt.duration(v)) for k, v in sources.items() if v]
    return ", ".join(parts) or fmt.NONE


def bill(req: Request) -> Response:
    b = _bill(req)
    info = tariffs.tariff_info(req.store, b["tariff_id"], b["period_start"])
    cur = b["currency"] or info.currency
    done = DONE.get(req.query.get("done", ""))
    lines = [
        (ITEMS.get(ln.get("item"), ln.get("item")), ln.get("reason", ""), fmt.amount(ln.get("amount"), cur))
        for ln in b["lines"]
    ]
    audit = [
        (
            fmt_ts(a["at"]),
            a["action"],
            "%s -> %s" % (a["old_state"], a["new_state"]),
            fmt.amount(a["amount"], cur) if a["amount"] else "",
            a["user"],
            a["reason"],
        )
        for a in req.store.bill_audit(b["id"])
    ]
    if b["kwh_by_rate"] is None:
        by_rate = Markup('<p class="note" id="kwh-by-rate">%s</p>' % esc(fmt.missing(no_energy_reason(b))))
    else:
        by_rate = Markup(
            '<div id="kwh-by-rate">%s</div>'
            % table(("rate", "tariff period", "kWh"), rate_rows(b["kwh_by_rate"], info), num=(2,))
        )
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
    span = None
    if b["period_start"] is not None and b["period_end"] is not None:
        span = fmt.duration(b["period_end"] - b["period_start"])
    tariff = (
        Markup('<span title="%s">%s</span>' % (esc(b["tariff_id"]), esc(info.name)))
        if b["tariff_id"]
        else fmt.NONE
    )
    body = Markup(
        '<h1>Bill %s %s</h1>%s%s<h2>Lines</h2>%s<p>Total <strong id="bill-total">%s</strong></p>'
        "<h2>kWh by rate</h2>%s%s<h2>Audit</h2>%s"
        % (
            esc(b["account_id"]),
            esc(b["cycle"]),
            '<p class="note" id="done">%s</p>' % esc(done) if done else "",
            dl(
                (
                    ("state", tag(b["state"])),
                    ("reasons", "; ".join(b["reasons"]) or fmt.NONE),
                    (
                        "period",
                        "%s to %s%s"
                        % (
                            fmt_ts(b["period_start"]),
                            fmt_ts(b["period_end"]),
                            " (%s)" % span if span else "",
                        ),
                    ),
                    ("energy", energy_text(b)),
                    ("data", _sources(b["sources"])),
                    ("tariff", tariff),
                    ("rule", b["rule"] or fmt.NONE),
                )
            ),
            table(("item", "reason", "amount"), lines, num=(2,), empty="no charge lines", nw=(2,)),
            esc(fmt.amount(b["total"], cur)),
            by_rate,
            forms,
            table(("when", "action", "state", "amount", "user", "reason"), audit, num=(3,), nw=(0, 3)),
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
