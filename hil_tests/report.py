"""The HIL report: each accuracy test point against its class limit, as JSON, a text table and HTML.

``Recorder`` collects during the run: ``add_point(row)`` (one accuracy test point)
and ``add_test(nodeid, outcome, seconds, reason)``. ``write(directory, meta)``
writes

- ``report.json``: {"meta": {target, board, started, duration_s, ...},
  "points": [row, ...], "tests": [{nodeid, outcome, seconds, reason}, ...],
  "envelopes": {pf_kind: [[from x Ib, to x Ib, limit %], ...]}};
- ``report.html``: one error-versus-current chart per power factor (inline SVG,
  log current axis, the +-limit envelope drawn as step lines, one curve per
  front end, failing points in red), then the full table; no external JS/CSS;

and returns the paths. ``text_table(rows)`` is the plain-text table printed at
the end of the run.

A row: target, frontend, label, i_rel (x Ib), amps, pf_kind, pf_label,
measured_wh, reference_wh, error_pct, limit_pct (None: no class limit at that
point), verdict ("PASS", "FAIL" or "n/a"), seconds, nodeid.
"""

import html
import json
import math
import os

from hil_tests import iec

COLORS = {"atm90e26": "#1f5fa8", "adc": "#2a8a3a"}
_FALLBACK = ("#7a3fa0", "#b0641b", "#444444")


def verdict(error_pct, limit):
    if limit is None:
        return "n/a"
    return "PASS" if abs(error_pct) <= limit else "FAIL"


class Recorder:
    def __init__(self):
        self.points = []
        self.tests = []

    def add_point(self, row):
        row = dict(row)
        row.setdefault("pf_label", iec.PF_LABEL.get(row["pf_kind"], "PF " + row["pf_kind"]))
        row["verdict"] = verdict(row["error_pct"], row["limit_pct"])
        self.points.append(row)
        return row

    def add_test(self, nodeid, outcome, seconds, reason=""):
        self.tests.append(
            {"nodeid": nodeid, "outcome": outcome, "seconds": round(seconds, 3), "reason": reason}
        )

    def write(self, directory, meta):
        os.makedirs(directory, exist_ok=True)
        rows = sorted(self.points, key=_order)
        doc = {"meta": meta, "points": rows, "tests": self.tests, "envelopes": envelopes(rows)}
        jpath = os.path.join(directory, "report.json")
        with open(jpath, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        hpath = os.path.join(directory, "report.html")
        with open(hpath, "w") as f:
            f.write(render_html(doc))
        tpath = os.path.join(directory, "report.txt")
        with open(tpath, "w") as f:
            f.write(text_table(rows) + "\n")
        return jpath, hpath, tpath


def _order(row):
    kind = row["pf_kind"]
    return (iec.PF_KINDS.index(kind) if kind in iec.PF_KINDS else 9, kind, row["frontend"], row["i_rel"])


def envelopes(rows):
    out = {}
    for r in rows:
        if r["pf_kind"] in iec.PF_KINDS and r["pf_kind"] not in out:
            imax_rel = max(x["i_rel"] for x in rows if x["pf_kind"] == r["pf_kind"])
            imax_rel = max(imax_rel, r.get("imax_rel", imax_rel))
            out[r["pf_kind"]] = [list(b) for b in iec.bands(r["pf_kind"], imax_rel)]
    return out


def _fmt_limit(v):
    return "-" if v is None else "+-%.1f" % v


def text_table(rows):
    """Plain-text table: one line per test point."""
    head = (
        "target",
        "front end",
        "point",
        "current A",
        "PF",
        "measured Wh",
        "ref Wh",
        "error %",
        "limit %",
        "",
    )
    lines = ["%-8s %-9s %-18s %9s %-11s %12s %12s %8s %8s %s" % head]
    for r in sorted(rows, key=_order):
        lines.append(
            "%-8s %-9s %-18s %9.3f %-11s %12.4f %12.4f %+8.3f %8s %s"
            % (
                r["target"],
                r["frontend"],
                r["label"],
                r["amps"],
                r["pf_label"],
                r["measured_wh"],
                r["reference_wh"],
                r["error_pct"],
                _fmt_limit(r["limit_pct"]),
                r["verdict"],
            )
        )
    n_fail = sum(1 for r in rows if r["verdict"] == "FAIL")
    lines.append("%d points, %d outside the class limit" % (len(rows), n_fail))
    return "\n".join(lines)


# -- HTML / SVG -----------------------------------------------------------------------------------

W, H = 680, 330
ML, MR, MT, MB = 62, 150, 20, 48


def _chart(kind, rows, bands):
    """Inline SVG: error % against current (log axis) with the class envelope."""
    xs = [r["i_rel"] for r in rows] + [b[0] for b in bands] + [b[1] for b in bands]
    x0, x1 = math.log10(min(xs) / 1.4), math.log10(max(xs) * 1.4)
    worst = max([abs(r["error_pct"]) for r in rows] + [b[2] for b in bands] + [0.5])
    ylim = math.ceil(worst * 1.25 * 2) / 2.0
    pw, ph = W - ML - MR, H - MT - MB

    def px(i_rel):
        return ML + (math.log10(i_rel) - x0) / (x1 - x0) * pw

    def py(err):
        e = max(-ylim, min(ylim, err))
        return MT + (ylim - e) / (2 * ylim) * ph

    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
        'aria-label="error versus current, %s">' % (W, H, W, H, html.escape(iec.PF_LABEL.get(kind, kind))),
        '<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#999"/>' % (ML, MT, pw, ph),
    ]
    step = 0.5 if ylim <= 3 else (1.0 if ylim <= 6 else 5.0)
    v = -ylim
    while v <= ylim + 1e-9:
        y = py(v)
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e4e4e4"/>' % (ML, y, ML + pw, y))
        out.append('<text x="%d" y="%.1f" font-size="11" text-anchor="end">%+.1f</text>' % (ML - 6, y + 4, v))
        v += step
    out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888"/>' % (ML, py(0), ML + pw, py(0)))
    ticks = sorted({round(r["i_rel"], 6) for r in rows} | {round(b[k], 6) for b in bands for k in (0, 1)})
    imax_rel = max(b[1] for b in bands)
    for t in ticks:
        x = px(t)
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>' % (x, MT, x, MT + ph))
        out.append(
            '<text x="%.1f" y="%d" font-size="11" text-anchor="middle">%s</text>'
            % (x, MT + ph + 16, html.escape(iec.current_label(t, imax_rel)))
        )
    out.append(
        '<text x="%d" y="%d" font-size="12" text-anchor="middle">current (log scale)</text>'
        % (ML + pw // 2, H - 8)
    )
    out.append(
        '<text x="14" y="%d" font-size="12" transform="rotate(-90 14 %d)" '
        'text-anchor="middle">error %%</text>' % (MT + ph // 2, MT + ph // 2)
    )
    for sign in (1, -1):  # the envelope: step lines at +-limit
        pts = []
        for lo, hi, lim in bands:
            pts.append("%.1f,%.1f" % (px(lo), py(sign * lim)))
            pts.append("%.1f,%.1f" % (px(hi), py(sign * lim)))
        out.append(
            '<polyline points="%s" fill="none" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6 3"/>'
            % " ".join(pts)
        )
    series = {}
    for r in rows:
        series.setdefault((r["target"], r["frontend"]), []).append(r)
    legend_y = MT + 10
    for k, ((target, fe), pts) in enumerate(sorted(series.items())):
        color = COLORS.get(fe, _FALLBACK[k % len(_FALLBACK)])
        pts = sorted(pts, key=lambda r: r["i_rel"])
        line = " ".join("%.1f,%.1f" % (px(r["i_rel"]), py(r["error_pct"])) for r in pts)
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>' % (line, color))
        for r in pts:
            fill = "#d00000" if r["verdict"] == "FAIL" else color
            out.append(
                '<circle cx="%.1f" cy="%.1f" r="4" fill="%s">'
                "<title>%s %s: %+.3f %% (limit %s)</title></circle>"
                % (
                    px(r["i_rel"]),
                    py(r["error_pct"]),
                    fill,
                    html.escape(fe),
                    html.escape(r["label"]),
                    r["error_pct"],
                    _fmt_limit(r["limit_pct"]),
                )
            )
        lx = ML + pw + 14
        out.append(
            '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>'
            % (lx, legend_y, lx + 22, legend_y, color)
        )
        out.append(
            '<text x="%d" y="%d" font-size="12">%s</text>'
            % (lx + 28, legend_y + 4, html.escape(fe if target == "emulator" else "%s (%s)" % (fe, target)))
        )
        legend_y += 18
    lx = ML + pw + 14
    out.append(
        '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6 3"/>'
        % (lx, legend_y, lx + 22, legend_y)
    )
    out.append('<text x="%d" y="%d" font-size="12">class 1 limit</text>' % (lx + 28, legend_y + 4))
    out.append("</svg>")
    return "\n".join(out)


_CSS = (
    "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}"
    "td.l{text-align:left}.PASS{color:#1a7a1a;font-weight:bold}.FAIL{color:#d00000;font-weight:bold}"
    "h2{margin-top:28px}.meta td{text-align:left}"
)


def render_html(doc):
    meta = doc["meta"]
    rows = doc["points"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>HIL report</title>",
        "<style>%s</style></head><body>" % _CSS,
        "<h1>Hardware-in-the-loop report</h1>",
        "<table class='meta'>",
    ]
    for k in sorted(meta):
        parts.append("<tr><th>%s</th><td>%s</td></tr>" % (html.escape(k), html.escape(str(meta[k]))))
    n_fail = sum(1 for r in rows if r["verdict"] == "FAIL")
    outcomes = {}
    for t in doc["tests"]:
        outcomes[t["outcome"]] = outcomes.get(t["outcome"], 0) + 1
    parts.append(
        "<tr><th>tests</th><td>%s</td></tr>"
        % html.escape(", ".join("%d %s" % (n, o) for o, n in sorted(outcomes.items())) or "-")
    )
    parts.append(
        "<tr><th>accuracy points</th><td>%d, %d outside the class limit</td></tr></table>"
        % (len(rows), n_fail)
    )
    for kind in iec.PF_KINDS + tuple(sorted({r["pf_kind"] for r in rows} - set(iec.PF_KINDS))):
        group = [r for r in rows if r["pf_kind"] == kind]
        if not group:
            continue
        parts.append("<h2>Error versus current, %s</h2>" % html.escape(iec.PF_LABEL.get(kind, "PF " + kind)))
        bands = doc["envelopes"].get(kind)
        if bands:
            parts.append(_chart(kind, group, bands))
        else:
            parts.append("<p>No class 1 envelope is defined at this power factor.</p>")
    parts.append("<h2>All test points</h2><table><tr>")
    cols = (
        "target",
        "front end",
        "point",
        "current A",
        "PF",
        "measured Wh",
        "reference Wh",
        "error %",
        "limit %",
        "",
    )
    parts.append("".join("<th>%s</th>" % c for c in cols) + "</tr>")
    for r in rows:
        parts.append(
            "<tr><td class='l'>%s</td><td class='l'>%s</td><td class='l'>%s</td>"
            "<td>%.3f</td><td class='l'>%s</td>"
            "<td>%.4f</td><td>%.4f</td><td>%+.3f</td><td>%s</td><td class='%s'>%s</td></tr>"
            % (
                html.escape(r["target"]),
                html.escape(r["frontend"]),
                html.escape(r["label"]),
                r["amps"],
                html.escape(r["pf_label"]),
                r["measured_wh"],
                r["reference_wh"],
                r["error_pct"],
                _fmt_limit(r["limit_pct"]),
                r["verdict"],
                r["verdict"],
            )
        )
    parts.append("</table><h2>Tests</h2><table><tr><th>test</th><th>outcome</th><th>s</th><th>note</th></tr>")
    for t in doc["tests"]:
        parts.append(
            "<tr><td class='l'>%s</td><td class='l'>%s</td><td>%.2f</td><td class='l'>%s</td></tr>"
            % (html.escape(t["nodeid"]), html.escape(t["outcome"]), t["seconds"], html.escape(t["reason"]))
        )
    parts.append("</table></body></html>\n")
    return "\n".join(parts)
