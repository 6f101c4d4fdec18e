"""The distribution of bill changes of a tariff comparison as an SVG histogram (no dependencies).

``histogram_svg(changes, currency, title)``: accounts per bin of the annual change (the
compared tariff's total - the first's); bins that pay less are green, more red, and the bin
holding 0 grey. The same picture is the web dashboard's Tariffs chart and ``headend tariff
compare --plot FILE.svg``. Every text goes through ``escape``.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape

W, H, LEFT, BOTTOM, TOP = 640, 260, 48, 36, 28
BINS = 24


def _bins(values: list[Decimal], n: int) -> tuple[Decimal, Decimal, list[int]]:
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    width = (hi - lo) / n
    counts = [0] * n
    for v in values:
        counts[min(n - 1, int((v - lo) / width))] += 1
    return lo, width, counts


def _text(x: float, y: float, content: str, size: int = 11, anchor: str = "start") -> str:
    return '<text x="%.1f" y="%.1f" font-size="%d" font-family="sans-serif" text-anchor="%s">%s</text>' % (
        x,
        y,
        size,
        anchor,
        escape(content),
    )


def histogram_svg(changes: list[Decimal], currency: str = "", title: str = "") -> str:
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img"'
        ' aria-label="%s">' % (W, H, W, H, escape(title or "bill changes")),
        '<rect width="%d" height="%d" fill="#fff"/>' % (W, H),
        _text(LEFT, 18, title, 13),
    ]
    if not changes:
        return "".join(out) + _text(LEFT, H // 2, "no accounts", 12) + "</svg>"
    lo, width, counts = _bins(changes, BINS)
    top = max(counts)
    plot_w, plot_h = W - LEFT - 12, H - TOP - BOTTOM
    bar = plot_w / BINS
    for k, c in enumerate(counts):
        a, b = lo + width * k, lo + width * (k + 1)
        color = "#9aa5b1" if a <= 0 <= b else ("#2e8b57" if b < 0 else "#c0392b")
        h = plot_h * c / top
        out.append(
            '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>'
            % (LEFT + k * bar + 1, TOP + plot_h - h, bar - 2, h, color, _range(a, b, currency, c))
        )
    y0 = TOP + plot_h
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>' % (LEFT, y0, W - 12, y0))
    for k in (0, BINS // 2, BINS):
        out.append(_text(LEFT + k * bar, y0 + 14, "%.2f" % (lo + width * k), anchor="middle"))
    label = "change of the annual bill, %s (green: pays less, red: pays more)" % (currency or "money")
    out.append(_text(LEFT + plot_w // 2, H - 6, label, anchor="middle"))
    out.append(_text(LEFT - 4, TOP + 10, str(top), anchor="end"))
    out.append(_text(LEFT - 4, y0, "0", anchor="end"))
    return "".join(out) + "</svg>"


def _range(a: Decimal, b: Decimal, currency: str, count: int) -> str:
    return escape("%.2f to %.2f %s: %d accounts" % (a, b, currency, count))
