"""HTML building blocks: the page layout, tables, action forms, formatting. Every value that
reaches HTML goes through ``esc`` (``html.escape`` with quotes) here or in the callers;
``Markup`` marks text that is already HTML (built from escaped parts)."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from headend.web import fmt

NAV = (
    ("/", "Overview"),
    ("/meters", "Meters"),
    ("/bills", "Bills"),
    ("/prepaid", "Prepaid"),
    ("/alerts", "Alerts"),
    ("/workorders", "Work orders"),
    ("/tariffs", "Tariffs"),
)

CSS = """
*,*::before,*::after{box-sizing:border-box}
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#17324d;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;
align-items:center}
header nav{display:flex;flex-wrap:wrap;gap:.2rem .3rem;min-width:0}
header a{color:#dbe8f5;text-decoration:none;padding:.2rem .4rem;border-radius:3px;white-space:nowrap}
header a.on{background:#2c5c8a;color:#fff}
header .who{margin-left:auto;font-size:.9em;display:flex;flex-wrap:wrap;gap:.3rem;align-items:center}
header form{display:inline}
main{padding:1rem 1.5rem;max-width:1200px}
h1{font-size:1.4rem;margin:.2rem 0 1rem;overflow-wrap:anywhere}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
.tw{max-width:100%;overflow-x:auto;margin-bottom:.5rem}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e1e6eb;vertical-align:top}
th{background:#e9eef3;font-weight:600;white-space:nowrap}
.nw{white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv>tbody>tr>th,table.kv>tr>th{width:11rem}
table.kv>tbody>tr>td{overflow-wrap:anywhere}
table.kv table td{overflow-wrap:normal}
table.evidence{margin:0}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:.8rem 1.2rem;min-width:10rem}
.card .v{font-size:1.8rem;font-weight:600}
.card .k{color:#5a6b7b}
.ok{color:#17803d}.bad{color:#b42318}.warn{color:#b54708}
.tag{display:inline-block;padding:0 .4rem;border-radius:3px;background:#e9eef3;font-size:.85em}
.tag.critical,.tag.held,.tag.failed,.tag.expired{background:#fde2e0;color:#8a1c12}
.tag.warning,.tag.review,.tag.queued,.tag.sent{background:#fef0c7;color:#7a4a05}
.tag.approved,.tag.issued,.tag.acked,.tag.resolved,.tag.closed{background:#dcfae6;color:#0f5b2c}
form.act{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:.6rem .8rem;margin:.5rem 0}
form.act label{display:block;margin:.2rem 0}
input,textarea,select,button{font:inherit;max-width:100%}
input[type=text],input[type=password],textarea{width:22rem;max-width:100%}
button{background:#2c5c8a;color:#fff;border:0;border-radius:4px;padding:.3rem .9rem;cursor:pointer}
.error{background:#fde2e0;color:#8a1c12;padding:.5rem .8rem;border-radius:4px}
.note{color:#5a6b7b}
pre{background:#fff;border:1px solid #e1e6eb;padding:.5rem;overflow:auto}
.chart{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:.5rem;overflow-x:auto}
.chart svg{display:block;max-width:100%;height:auto}
.login{max-width:22rem;margin:4rem auto}
@media (max-width:640px){
header{padding:.4rem .5rem}
header strong{width:100%}
header .who{margin-left:0}
main{padding:.6rem .5rem}
th,td{padding:.25rem .35rem}
table.kv>tbody>tr>th,table.kv>tr>th{width:auto}
.card{flex:1 1 8rem;min-width:0;padding:.5rem .7rem}
.card .v{font-size:1.4rem}
.login{margin:1.5rem auto;padding:0 .5rem}
.chart svg{max-width:none;width:720px}
}
"""


class Markup(str):
    """Text that is already safe HTML."""


def esc(value) -> str:
    if isinstance(value, Markup):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def url(*parts, **query) -> str:
    """A local URL from path parts (each percent-quoted) and query fields."""
    path = "/" + "/".join(quote(str(p), safe="") for p in parts)
    q = "&".join("%s=%s" % (quote(k), quote(str(v), safe="")) for k, v in query.items() if v is not None)
    return path + ("?" + q if q else "")


def link(href: str, text) -> Markup:
    return Markup('<a href="%s">%s</a>' % (esc(href), esc(text)))


def tag(text) -> Markup:
    return Markup('<span class="tag %s">%s</span>' % (esc(text), esc(text)))


def fmt_ts(ts) -> str:
    """Epoch seconds as ISO 8601 UTC (``headend.web.fmt.iso``)."""
    return fmt.iso(ts)


def fmt_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence],
    num: Sequence[int] = (),
    empty="none",
    nw: Sequence[int] = (),
) -> Markup:
    """A table (in a box that scrolls sideways on a narrow screen); ``num`` are the indexes of
    right-aligned columns, ``nw`` of columns kept on one line (times); cells are escaped."""

    def cls(i: int) -> str:
        names = " ".join(n for n, cols in (("num", num), ("nw", nw)) if i in cols)
        return ' class="%s"' % names if names else ""

    head = "".join("<th%s>%s</th>" % (cls(i), esc(h)) for i, h in enumerate(headers))
    body = [
        "<tr>%s</tr>" % "".join("<td%s>%s</td>" % (cls(i), esc(c)) for i, c in enumerate(row)) for row in rows
    ]
    if not body:
        body = ['<tr><td colspan="%d" class="note">%s</td></tr>' % (len(headers), esc(empty))]
    return Markup(
        '<div class="tw"><table><thead><tr>%s</tr></thead><tbody>%s</tbody></table></div>'
        % (head, "".join(body))
    )


def dl(pairs: Iterable[tuple[str, object]]) -> Markup:
    rows = "".join("<tr><th>%s</th><td>%s</td></tr>" % (esc(k), esc(v)) for k, v in pairs)
    return Markup('<div class="tw"><table class="kv">%s</table></div>' % rows)


def action_form(action: str, button: str, fields: Sequence[tuple[str, str, str]] = (), name="") -> Markup:
    """A POST form for an operator action; fields: (name, label, kind), kind ``text`` or
    ``textarea``, ``-required`` appended for a required one. ``layout`` puts the session's
    CSRF token in place of ``CSRF_SLOT``."""
    inputs = []
    for field, label, kind in fields:
        required = " required" if kind.endswith("-required") else ""
        if kind.startswith("textarea"):
            control = '<textarea name="%s" rows="3"%s></textarea>' % (esc(field), required)
        else:
            control = '<input type="text" name="%s"%s>' % (esc(field), required)
        inputs.append("<label>%s<br>%s</label>" % (esc(label), control))
    return Markup(
        '<form class="act" method="post" action="%s" data-form="%s">%s%s'
        '<button type="submit">%s</button></form>'
        % (esc(action), esc(name or button), CSRF_SLOT, "".join(inputs), esc(button))
    )


# replaced by the session's hidden CSRF input when the page is rendered (never user data:
# it contains characters esc() would have escaped, so it cannot come from a value)
CSRF_SLOT = "<!--csrf-->"


def layout(
    title: str, body: str, user: str | None, role: str | None, csrf: str | None, nonce: str, path: str
) -> str:
    hidden = '<input type="hidden" name="csrf" value="%s">' % esc(csrf or "")
    body = body.replace(CSRF_SLOT, hidden)
    nav = ""
    if user:
        links = " ".join(
            '<a href="%s"%s>%s</a>'
            % (
                href,
                ' class="on"' if (path == href or (href != "/" and path.startswith(href))) else "",
                esc(text),
            )
            for href, text in NAV
        )
        nav = (
            '<header><strong>head-end</strong> <nav>%s</nav> <span class="who"><span>%s (%s)</span> '
            '<form method="post" action="/logout">%s<button type="submit">Log out</button></form>'
            "</span></header>" % (links, esc(user), esc(role), hidden)
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        '<title>%s - head-end</title><style nonce="%s">%s</style></head>'
        "<body>%s<main>%s</main></body></html>" % (esc(title), esc(nonce), CSS, nav, body)
    )
