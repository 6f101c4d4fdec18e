"""Tariff design (``/tariffs?a=ID&b=ID&year=YYYY``): every account's stored load profile for a
year billed under two of the stored tariffs (``headend.billing.compare``, the engine of ``headend
tariff compare``): revenue under each, the revenue-neutral factor, how many accounts pay less or
more and by how much, the distribution of bill changes as an inline SVG histogram, and the
accounts with the largest changes. The comparison runs when the page is asked for (the whole
fleet, in the request): for large fleets ``headend tariff compare`` is the tool."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from headend.billing.compare import changes, compare, read_profiles, year_window
from headend.billing.compare_svg import histogram_svg
from headend.billing.tariff.load import parse_tariff
from headend.errors import HeadendError
from headend.web.layout import Markup, esc, table
from headend.web.request import Request, Response, page

SHOWN = 20  # accounts with the largest changes, each way


def _stored(store) -> dict[str, str]:
    """tariff id -> name, of the tariffs accounts are on."""
    out = {}
    for a in store.accounts():
        tid = a.get("tariff_id")
        if tid and tid not in out:
            row = store.tariff(tid)
            out[tid] = row["name"] if row else tid
    return out


def _form(names: dict[str, str], a: str, b: str, year: int) -> Markup:
    def select(field: str, chosen: str) -> str:
        opts = "".join(
            '<option value="%s"%s>%s</option>' % (esc(tid), " selected" if tid == chosen else "", esc(name))
            for tid, name in names.items()
        )
        return '<select name="%s">%s</select>' % (field, opts)

    return Markup(
        '<form method="get" action="/tariffs" id="compare-form">'
        "<label>Baseline %s</label> <label>against %s</label> "
        '<label>Year <input type="number" name="year" value="%d" min="1970" max="9999"></label> '
        '<button type="submit">Compare</button></form>' % (select("a", a), select("b", b), year)
    )


def _change(account: dict) -> Decimal:
    return Decimal(account["totals"][1]) - Decimal(account["totals"][0])


def _result(store, a: str, b: str, year: int) -> Markup:
    tariffs = []
    for tid in (a, b):
        row = store.tariff(tid)
        tariffs.append(parse_tariff(row["text"], name=row["name"]))
    windows = [year_window(t, year) for t in tariffs]
    start, end = min(w[0] for w in windows), max(w[1] for w in windows)
    accounts = [x["account_id"] for x in store.accounts()]
    result = compare(tariffs, read_profiles(store, accounts, start, end), year)
    f, cur = result["fleet"], tariffs[0].currency
    (vs,) = f["versus_first"]
    summary = table(
        ("tariff", "revenue", "revenue-neutral factor"),
        [
            (t.name, "%s %s" % (rev, t.currency), fac)
            for t, rev, fac in zip(tariffs, f["revenue"], f["revenue_neutral_factor"], strict=True)
        ],  # fmt: skip
        num=(1, 2),
    )
    quant = table(
        ("", *vs["change"].keys()),
        [("change, %s" % cur, *vs["change"].values()), ("change, %", *vs["change_pct"].values())],
        num=tuple(range(1, 8)),
    )
    title = "%s against %s, %d accounts, %d" % (tariffs[1].name, tariffs[0].name, f["accounts"], year)
    svg = histogram_svg(changes(result), cur, title)
    ranked = sorted(result["accounts"], key=_change)
    shown = ranked[:SHOWN] + ranked[SHOWN:][-SHOWN:]
    rows = [(x["account_id"], x["kwh"], *x["totals"], str(_change(x))) for x in shown]
    return Markup(
        '<h2>Fleet</h2><p id="compare-counts">%d accounts: %d pay less, %d more, %d the same'
        " (%d skipped)</p>%s%s"
        '<figure class="chart" id="changes-chart">%s<figcaption>%s</figcaption></figure>'
        "<h2>Largest changes</h2>%s"
        % (
            f["accounts"],
            vs["less"],
            vs["more"],
            vs["same"],
            f["skipped"],
            summary,
            quant,
            svg,
            esc(title),
            table(("account", "kWh", tariffs[0].name, tariffs[1].name, "change"), rows, num=(1, 2, 3, 4)),
        )
    )


def tariffs_page(req: Request) -> Response:
    names = _stored(req.store)
    year = datetime.fromtimestamp(req.now, UTC).year
    try:
        year = int(req.query.get("year") or year)
    except ValueError:
        pass
    ids = list(names)
    a = req.query.get("a") or (ids[0] if ids else "")
    b = req.query.get("b") or (ids[1] if len(ids) > 1 else a)
    if not names:
        return page("Tariffs", Markup('<h1>Tariffs</h1><p class="note">No account is on a tariff yet.</p>'))
    body = Markup("<h1>Tariffs</h1>%s" % _form(names, a, b, year))
    if "a" in req.query and a in names and b in names:
        try:
            body = Markup(body + _result(req.store, a, b, year))
        except HeadendError as e:
            body = Markup(body + '<p class="note">%s</p>' % esc(e))
    else:
        body = Markup(
            body + '<p class="note">Choose two tariffs and a year: every account\'s load profile'
            " for the year is billed under both.</p>"
        )
    return page("Tariffs", body)
