"""Alerts: the list by state (default active: open and acknowledged), one alert with its
evidence and audit trail, and the operator's acknowledge / resolve through the alert
engine's lifecycle (``Storage.set_alert_state``, audited under the signed-in user)."""

from __future__ import annotations

from headend.alerts import ACTIVE
from headend.errors import AlertError
from headend.web import fmt
from headend.web.evidence import evidence_for
from headend.web.layout import Markup, action_form, dl, esc, fmt_ts, link, table, tag, url
from headend.web.request import HTTPError, Request, Response, page, redirect

STATES = ("active", "open", "acknowledged", "resolved", "all")
DONE = {"acknowledged": "The alert was acknowledged.", "resolved": "The alert was resolved."}


def alert_state(text: str | None) -> str:
    state = text or "active"
    if state not in STATES:
        raise HTTPError(400, "state must be one of %s" % ", ".join(STATES))
    return state


def select_alerts(store, state: str, meter_id: str | None = None) -> list[dict]:
    rows = store.alerts(None if state in ("all", "active") else state, meter_id)
    return [a for a in rows if a["state"] in ACTIVE] if state == "active" else rows


def alerts(req: Request) -> Response:
    state = alert_state(req.query.get("state"))
    rows = [
        (
            link(url("alerts", a["id"]), a["id"]),
            tag(a["severity"]),
            tag(a["state"]),
            a["rule"],
            link(url("meters", a["meter_id"]), a["meter_id"]),
            a["summary"],
            fmt_ts(a["last_seen"]),
            a["count"],
        )
        for a in reversed(select_alerts(req.store, state, req.query.get("meter") or None))
    ]
    tabs = " | ".join(
        "<strong>%s</strong>" % esc(s) if s == state else str(link(url("alerts", state=s), s)) for s in STATES
    )
    body = Markup(
        "<h1>Alerts</h1><p>%s</p>%s"
        % (
            tabs,
            table(
                ("id", "severity", "state", "rule", "meter", "summary", "last seen", "count"),
                rows,
                num=(0, 7),
                nw=(6,),
                empty="no %s alert" % state,
            ),
        )
    )
    return page("Alerts", body)


def _alert(req: Request) -> dict:
    a = req.store.alert(int(req.params["id"]))
    if a is None:
        raise HTTPError(404, "unknown alert %s" % req.params["id"])
    return a


def alert(req: Request) -> Response:
    a = _alert(req)
    done = DONE.get(req.query.get("done", ""))
    audit = [
        (
            fmt_ts(e["at"]),
            e["action"],
            "%s -> %s" % (e["from_state"] or "", e["to_state"] or ""),
            e["user"],
            e["note"] or "",
        )
        for e in req.store.alert_audit(a["id"])
    ]
    forms = ""
    if req.role == "operator":
        if a["state"] == "open":
            forms += action_form(
                url("alerts", a["id"], "ack"), "Acknowledge", [("note", "Note", "text")], "ack"
            )
        if a["state"] in ACTIVE:
            forms += action_form(
                url("alerts", a["id"], "resolve"),
                "Resolve",
                [("note", "Note (what was done)", "textarea-required")],
                "resolve",
            )
    wo = a["work_order_id"]
    body = Markup(
        "<h1>Alert %d: %s</h1>%s%s<h2>Suggested action</h2><p>%s</p>"
        '<h2>Evidence</h2><div id="evidence">%s</div>%s'
        "<h2>Audit</h2>%s"
        % (
            a["id"],
            esc(a["rule"]),
            '<p class="note" id="done">%s</p>' % esc(done) if done else "",
            dl(
                (
                    ("state", tag(a["state"])),
                    ("severity", tag(a["severity"])),
                    ("meter", link(url("meters", a["meter_id"]), a["meter_id"])),
                    ("account", a["account_id"] or fmt.NONE),
                    ("summary", a["summary"]),
                    ("count", a["count"]),
                    ("first seen", fmt_ts(a["first_seen"])),
                    ("last seen", fmt_ts(a["last_seen"])),
                    ("work order", link(url("workorders", wo), wo) if wo else fmt.NONE),
                    (
                        "resolved",
                        "%s by %s" % (fmt_ts(a["resolved_at"]), a["resolved_by"])
                        if a["resolved_at"]
                        else fmt.NONE,
                    ),
                )
            ),
            esc(a["action"]),
            evidence_for(req.store, a["account_id"], a["evidence"]),
            forms,
            table(("when", "action", "state", "user", "note"), audit, nw=(0,)),
        )
    )
    return page("Alert %d" % a["id"], body)


def ack(req: Request) -> Response:
    a = _alert(req)
    req.store.set_alert_state(
        a["id"], "acknowledged", req.user, req.form.get("note", "").strip() or None, req.now
    )
    return redirect(url("alerts", a["id"], done="acknowledged"))


def resolve(req: Request) -> Response:
    a = _alert(req)
    note = req.form.get("note", "").strip()
    if not note:
        raise AlertError("a note is required to resolve an alert", "note")
    req.store.set_alert_state(a["id"], "resolved", req.user, note, req.now)
    return redirect(url("alerts", a["id"], done="resolved"))
