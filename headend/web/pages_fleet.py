"""The fleet overview (``/``) and the list of meters (``/meters?state=offline&after=ID``, a page
at a time)."""

from __future__ import annotations

from headend.web import data, fmt
from headend.web.layout import Markup, esc, fmt_ts, link, table, tag, url
from headend.web.request import Request, Response, page

PAGE = 500


def _card(value, label: str, cls: str = "") -> str:
    return '<div class="card"><div class="v %s">%s</div><div class="k">%s</div></div>' % (
        esc(cls),
        esc(value),
        esc(label),
    )


def overview(req: Request) -> Response:
    s = data.fleet_summary(req.store, req.now)
    a = s["alerts"]
    cards = "".join(
        (
            _card(s["meters"], "meters"),
            _card(s["online"], "online", "ok"),
            _card(s["offline"], "offline", "bad" if s["offline"] else ""),
            _card(a["open"], "open alerts", "bad" if a["open"] else ""),
            _card(a["acknowledged"], "acknowledged alerts"),
            _card("%.3f kWh" % (s["energy_today_wh"] / 1000), "energy today (%s UTC)" % s["today"]),
        )
    )
    offline = req.store.fleet_meters(limit=50, offline=True)
    rows = [
        (
            link(url("meters", m["meter_id"]), m["meter_id"]),
            m["account_id"] or fmt.NONE,
            fmt_ts(m["last_seen"]),
        )
        for m in offline
    ]
    queue = req.store.review_queue(limit=10)
    bills = [
        (link(url("bills", b["id"]), b["account_id"]), b["cycle"], tag(b["state"]), "; ".join(b["reasons"]))
        for b in queue
    ]
    body = Markup(
        '<h1>Fleet overview</h1><div class="cards" id="fleet-cards">%s</div>'
        "<h2>Offline meters</h2>%s<h2>Bills waiting for review</h2>%s"
        % (
            cards,
            table(("meter", "account", "last seen"), rows, empty="every meter is online", nw=(2,)),
            table(("account", "cycle", "state", "reasons"), bills, empty="no bill waits for review"),
        )
    )
    return page("Overview", body)


def meters(req: Request) -> Response:
    offline = req.query.get("state") == "offline"
    listed = req.store.fleet_meters(req.query.get("after", ""), PAGE, offline)
    rows = [
        (
            link(url("meters", m["meter_id"]), m["meter_id"]),
            m["account_id"] or fmt.NONE,
            Markup(
                '<span class="%s">%s</span>'
                % ("ok" if m["online"] == 1 else "bad", "online" if m["online"] == 1 else "offline")
            ),
            fmt_ts(m["last_seen"]),
            m["fw"] or fmt.NONE,
            m["alerts"],
        )
        for m in listed
    ]
    more = ""
    if len(listed) == PAGE:
        after = listed[-1]["meter_id"]
        more = link(url("meters", after=after, state="offline" if offline else None), "next page")
    tabs = link(url("meters"), "all") if offline else link(url("meters", state="offline"), "offline only")
    body = Markup(
        "<h1>Meters</h1><p>%s</p>%s%s"
        % (
            tabs,
            table(
                ("meter", "account", "state", "last seen", "firmware", "active alerts"),
                rows,
                num=(5,),
                nw=(3,),
            ),
            more,
        )
    )
    return page("Meters", body)
