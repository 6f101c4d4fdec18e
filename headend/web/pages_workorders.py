"""Field work orders (suspected theft): the list by state, one order with its evidence, and
closing it with the crew's findings (``headend.alerts.workorders.close``: audited, and the
alert it came from is resolved with the findings)."""

from __future__ import annotations

from headend.alerts import workorders
from headend.web import fmt
from headend.web.evidence import evidence_for
from headend.web.layout import Markup, action_form, dl, esc, fmt_ts, link, table, tag, url
from headend.web.request import HTTPError, Request, Response, page, redirect

STATES = ("open", "closed", "all")


def wo_state(text: str | None) -> str:
    state = text or "open"
    if state not in STATES:
        raise HTTPError(400, "state must be one of %s" % ", ".join(STATES))
    return state


def work_orders(req: Request) -> Response:
    state = wo_state(req.query.get("state"))
    rows = [
        (
            link(url("workorders", w["id"]), w["id"]),
            tag(w["state"]),
            link(url("meters", w["meter_id"]), w["meter_id"]),
            w["location"],
            w["reason"],
            fmt_ts(w["created_at"]),
        )
        for w in reversed(req.store.work_orders(None if state == "all" else state))
    ]
    tabs = " | ".join(
        "<strong>%s</strong>" % esc(s) if s == state else str(link(url("workorders", state=s), s))
        for s in STATES
    )
    body = Markup(
        "<h1>Work orders</h1><p>%s</p>%s"
        % (
            tabs,
            table(
                ("id", "state", "meter", "location", "reason", "opened"),
                rows,
                num=(0,),
                nw=(5,),
                empty="no %s work order" % state,
            ),
        )
    )
    return page("Work orders", body)


def _wo(req: Request) -> dict:
    w = req.store.work_order(int(req.params["id"]))
    if w is None:
        raise HTTPError(404, "unknown work order %s" % req.params["id"])
    return w


def work_order(req: Request) -> Response:
    w = _wo(req)
    form = ""
    if w["state"] == "open" and req.role == "operator":
        form = action_form(
            url("workorders", w["id"], "close"),
            "Close with findings",
            [("findings", "Findings on site", "textarea-required")],
            "close",
        )
    closed = "%s by %s" % (fmt_ts(w["closed_at"]), w["closed_by"]) if w["closed_at"] else fmt.NONE
    body = Markup(
        '<h1>Work order %d</h1>%s%s<h2>Evidence</h2><div id="evidence">%s</div>%s'
        % (
            w["id"],
            '<p class="note" id="done">The work order was closed.</p>'
            if req.query.get("done") == "closed"
            else "",
            dl(
                (
                    ("state", tag(w["state"])),
                    ("meter", link(url("meters", w["meter_id"]), w["meter_id"])),
                    ("account", w["account_id"] or fmt.NONE),
                    ("location", w["location"]),
                    ("reason", w["reason"]),
                    (
                        "alert",
                        link(url("alerts", w["alert_id"]), w["alert_id"]) if w["alert_id"] else fmt.NONE,
                    ),
                    ("opened", fmt_ts(w["created_at"])),
                    ("closed", closed),
                    ("findings", w["findings"] or fmt.NONE),
                )
            ),
            evidence_for(req.store, w["account_id"], w["evidence"]),
            form,
        )
    )
    return page("Work order %d" % w["id"], body)


def close(req: Request) -> Response:
    w = _wo(req)
    workorders.close(req.store, w["id"], req.user, req.form.get("findings", ""), req.now)
    return redirect(url("workorders", w["id"], done="closed"))
