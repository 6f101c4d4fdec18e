"""One meter (``/meters/<id>?day=YYYY-MM-DD&days=N``): its state, the load profile chart by
rate (interval import Wh from consecutive readings' registers) for a day or the N days
ending with it, its recent events, alerts, commands and its account's bills."""

from __future__ import annotations

from headend.commands import CMD_NAMES, RESULT_NAMES
from headend.web import charts, data, fmt, tariffs
from headend.web.fmt import EVENT_NAMES, event_name  # noqa: F401  (names of the events table)
from headend.web.layout import Markup, dl, esc, fmt_ts, link, table, tag, url
from headend.web.request import HTTPError, Request, Response, page


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


def _span(p: dict) -> str:
    last = p["to"] - data.DAY
    if p["days"] == 1:
        return "%s (UTC)" % p["day"]
    return "%s to %s (UTC, %d days)" % (data.iso_day(p["from"]), data.iso_day(last), p["days"])


def _chart(meter_id: str, p: dict, info: tariffs.TariffInfo) -> Markup:
    title = "Import Wh per rate, %s, %s intervals" % (_span(p), fmt.duration(p["step"]))
    if not p["rates"]:
        return Markup('<p class="note" id="no-profile">No readings in %s.</p>' % esc(_span(p)))
    names = [info.rate_name(i + 1) for i in range(p["rates"])]
    svg = charts.stacked_bars([b["wh"] for b in p["buckets"]], p["from"], p["step"], title, names)
    totals = ", ".join("%s %s" % (names[i], fmt.wh(wh)) for i, wh in enumerate(p["totals_wh"]))
    return Markup(
        '<div class="chart">%s</div><p class="note" id="profile-note">%s. Totals: %s.</p>'
        % (svg, esc(title), esc(totals))
    )


def _latest_link(req: Request, meter_id: str, profile: dict) -> str:
    """A link to the latest reading's day when the chart does not reach it."""
    latest = req.store.latest_reading_ts(meter_id)
    if latest is None or latest <= profile["to"]:
        return ""
    day = data.iso_day(data.day_start(latest - 1))
    return '<p class="note">Latest readings: %s (%s). %s</p>' % (
        esc(fmt_ts(latest)),
        "day in progress" if latest % data.DAY else "whole day",
        link(url("meters", meter_id, day=day, days=1), "Show %s" % day),
    )


def meter(req: Request) -> Response:
    meter_id = req.params["meter_id"]
    m = req.store.meter(meter_id)
    if m is None:
        raise HTTPError(404, "unknown meter %r" % meter_id)
    day, days = data.parse_day(req.query.get("day")), data.parse_days(req.query.get("days"))
    if day is None:  # opening the page: the last whole week of readings
        day, week = data.default_view(req.store, meter_id, req.now)
        days = days if req.query.get("days") else week
    profile = data.meter_profile(req.store, meter_id, day, days, req.now)
    info = tariffs.meter_tariff(req.store, meter_id)
    facts = dl(
        (
            ("state", "online" if m["online"] == 1 else "offline"),
            ("last seen", fmt_ts(m["last_seen"])),
            ("account", _account(req.store.meter_account(meter_id))),
            ("tariff", info.name),
            ("firmware", m["fw"] or fmt.NONE),
            ("board", m["board"] or fmt.NONE),
            ("metering", m["metering"] or fmt.NONE),
        )
    )
    events = [
        (e["seq"], fmt_ts(e["ts"]), e["code"], event_name(e["code"]), data_text(e["code"], e["detail"], info))
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
            fmt.amount(b["total"], b["currency"]),
            fmt.NONE if b["energy_kwh"] is None else b["energy_kwh"],
        )
        for b in req.store.meter_bills(meter_id)
    ]
    body = Markup(
        "<h1>Meter %s</h1>%s<h2>Load profile</h2>%s%s%s<h2>Events</h2>%s<h2>Alerts</h2>%s"
        "<h2>Commands</h2>%s<h2>Bills</h2>%s"
        % (
            esc(meter_id),
            facts,
            _picker(meter_id, profile),
            _chart(meter_id, profile, info),
            _latest_link(req, meter_id, profile),
            table(("seq", "time", "code", "event", "detail"), events, num=(0, 2), nw=(1,)),
            table(("id", "severity", "state", "rule", "summary"), alerts, num=(0,)),
            table(
                ("seq", "command", "state", "attempts", "result", "reason", "queued"),
                commands,
                num=(0, 3),
                nw=(6,),
            ),
            table(("cycle", "account", "state", "total", "kWh"), bills, num=(3, 4), nw=(3,)),
        )
    )
    return page("Meter %s" % meter_id, body)


def _account(acc: dict | None):
    if acc is None:
        return fmt.NONE
    where = ", ".join(x for x in (acc["billing"], acc["address"], acc["zone"] and "zone " + acc["zone"]) if x)
    target = url("prepaid", acc["account_id"]) if acc["billing"] == "prepaid" else None
    text = "%s (%s)" % (acc["account_id"], where)
    return link(target, text) if target else text


def data_text(code: int, detail, info: tariffs.TariffInfo = tariffs.NO_TARIFF) -> str:
    """An event's detail as named fields (``old: 2024-03-17T02:00:00Z, new: ...``)."""
    if detail is None:
        return ""
    return fmt.pairs_text(fmt.event_fields(code, detail, info.currency))
