"""One meter (``/meters/<id>?day=YYYY-MM-DD&days=N``): its state, the load profile chart by
rate (interval import Wh from consecutive readings' registers) for a day or the N days
ending with it, its recent events, alerts, commands and its account's bills."""

from __future__ import annotations

from headend.commands import CMD_NAMES, RESULT_NAMES
from headend.web import charts, data
from headend.web.layout import Markup, dl, esc, fmt_ts, link, table, tag, url
from headend.web.request import HTTPError, Request, Response, page
from protocol import messages

EVENT_NAMES = {
    getattr(messages, n): n[4:].lower().replace("_", " ") for n in dir(messages) if n.startswith("EVT_")
}


def event_name(code: int) -> str:
    return EVENT_NAMES.get(code, "event %d" % code)


def _picker(meter_id: str, profile: dict) -> Markup:
    day = profile["day"]
    return Markup(
        '<form method="get" action="%s" id="day-picker">'
        '<label>Day <input type="date" name="day" value="%s"></label> '
        '<label>Days <select name="days">%s</select></label> '
        '<button type="submit">Show</button></form>'
        % (
            esc(url("meters", meter_id)),
            esc(day),
            "".join(
                '<option value="%d"%s>%s</option>'
                % (n, " selected" if n == profile["days"] else "", "%d" % n if n > 1 else "1 (the day)")
                for n in (1, 7)
            ),
        )
    )


def _chart(meter_id: str, p: dict) -> Markup:
    title = "Import Wh per rate, %s%s (UTC), %d-minute intervals" % (
        p["day"],
        " and the %d days before" % (p["days"] - 1) if p["days"] > 1 else "",
        p["step"] // 60,
    )
    if not p["rates"]:
        return Markup('<p class="note" id="no-profile">No readings in this period.</p>')
    svg = charts.stacked_bars([b["wh"] for b in p["buckets"]], p["from"], p["step"], title)
    totals = ", ".join(
        "%s %.3f kWh" % (charts.rate_name(i), wh / 1000) for i, wh in enumerate(p["totals_wh"])
    )
    return Markup(
        '<div class="chart">%s</div><p class="note">%s. Totals: %s.</p>' % (svg, esc(title), esc(totals))
    )


def meter(req: Request) -> Response:
    meter_id = req.params["meter_id"]
    m = req.store.meter(meter_id)
    if m is None:
        raise HTTPError(404, "unknown meter %r" % meter_id)
    day, days = data.parse_day(req.query.get("day")), data.parse_days(req.query.get("days"))
    profile = data.meter_profile(req.store, meter_id, day, days, req.now)
    info = dl(
        (
            ("state", "online" if m["online"] == 1 else "offline"),
            ("last seen", fmt_ts(m["last_seen"])),
            ("account", _account(req.store.meter_account(meter_id))),
            ("firmware", m["fw"] or "-"),
            ("board", m["board"] or "-"),
            ("metering", m["metering"] or "-"),
        )
    )
    events = [
        (e["seq"], fmt_ts(e["ts"]), e["code"], event_name(e["code"]), data_text(e["detail"]))
        for e in req.store.recent_events(meter_id, 100)
    ]
    alerts = [
        (link(url("alerts", a["id"]), a["id"]), tag(a["severity"]), tag(a["state"]), a["rule"], a["summary"])
        for a in req.store.alerts(meter_id=meter_id)[-50:]
    ]
    commands = [
        (
            c["seq"],
            CMD_NAMES.get(c["cmd"], c["cmd"]),
            tag(c["state"]),
            c["attempts"],
            "" if c["result"] is None else RESULT_NAMES.get(c["result"], c["result"]),
            c["reason"] or "",
            fmt_ts(c["created_at"]),
        )
        for c in req.store.recent_commands(meter_id, 50)
    ]
    bills = [
        (
            link(url("bills", b["id"]), b["cycle"]),
            b["account_id"],
            tag(b["state"]),
            "%s %s" % (b["total"], b["currency"] or ""),
            b["energy_kwh"] or "",
        )
        for b in req.store.meter_bills(meter_id)
    ]
    body = Markup(
        "<h1>Meter %s</h1>%s<h2>Load profile</h2>%s%s<h2>Events</h2>%s<h2>Alerts</h2>%s"
        "<h2>Commands</h2>%s<h2>Bills</h2>%s"
        % (
            esc(meter_id),
            info,
            _picker(meter_id, profile),
            _chart(meter_id, profile),
            table(("seq", "time", "code", "event", "detail"), events, num=(0, 2)),
            table(("id", "severity", "state", "rule", "summary"), alerts, num=(0,)),
            table(
                ("seq", "command", "state", "attempts", "result", "reason", "queued"), commands, num=(0, 3)
            ),
            table(("cycle", "account", "state", "total", "kWh"), bills, num=(4,)),
        )
    )
    return page("Meter %s" % meter_id, body)


def _account(acc: dict | None):
    if acc is None:
        return "-"
    where = ", ".join(x for x in (acc["billing"], acc["address"], acc["zone"] and "zone " + acc["zone"]) if x)
    target = url("prepaid", acc["account_id"]) if acc["billing"] == "prepaid" else None
    text = "%s (%s)" % (acc["account_id"], where)
    return link(target, text) if target else text


def data_text(detail) -> str:
    if detail is None:
        return ""
    if isinstance(detail, dict):
        return ", ".join("%s=%s" % (k, v) for k, v in sorted(detail.items(), key=lambda kv: str(kv[0])))
    return str(detail)
