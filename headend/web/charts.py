"""Inline SVG charts (no scripts, no external files): a stacked bar chart of energy by rate.

``stacked_bars(buckets, start, step, title, names)`` draws one bar per time bucket, one segment
per rate (rate 1 at the bottom), with a y axis in Wh or kWh, time labels on x and a legend
naming each rate (``names``: the tariff's periods, else T1, T2, ...). Each
segment is a ``<rect class="bar">`` with ``data-rate``, ``data-wh`` and a ``<title>``
tooltip; the chart is ``<svg id="load-profile" ...>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from headend.web.layout import Markup, esc

COLOURS = ("#c2410c", "#e0a100", "#2563eb", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d")
WIDTH, HEIGHT = 960, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 30, 30


def rate_name(i: int) -> str:
    """T1, T2, ...: the meter's rate registers (which tariff period each is depends on the tariff)."""
    return "T%d" % (i + 1)


def nice_max(value: float) -> tuple[float, float]:
    """(axis maximum, tick step) with steps of 1, 2 or 5 times a power of ten, about 5 ticks."""
    if value <= 0:
        return 1.0, 0.2
    raw = value / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step), step


def _energy(wh: float, kwh: bool) -> str:
    return ("%.3g kWh" % (wh / 1000)) if kwh else ("%d Wh" % round(wh))


def _time_label(ts: int, daily: bool) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%m-%d" if daily else "%H:%M")


def stacked_bars(
    buckets: Sequence[Sequence[float]],
    start: int,
    step: int,
    title: str = "",
    names: Sequence[str] = (),
) -> Markup:
    """``names``: each rate's name (its tariff period), ``rate_name`` where not given."""
    n = len(buckets)

    def name(r: int) -> str:
        return names[r] if r < len(names) else rate_name(r)

    rates = max((len(b) for b in buckets), default=0)
    top, tick = nice_max(max((sum(b) for b in buckets), default=0))
    kwh = top >= 10000
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    scale = (y1 - y0) / top
    bw = (x1 - x0) / n if n else 0
    gap = 1 if bw > 3 else 0
    out = [
        '<svg id="load-profile" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d"'
        ' role="img" aria-label="%s">' % (WIDTH, HEIGHT, WIDTH, HEIGHT, esc(title or "load profile")),
        "<title>%s</title>" % esc(title or "load profile"),
    ]
    v = 0.0
    while v <= top + tick / 2:
        y = y1 - v * scale
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e1e6eb"/>' % (x0, x1, y, y))
        out.append(
            '<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#5a6b7b">%s</text>'
            % (x0 - 6, y + 4, esc(_energy(v, kwh)))
        )
        v += tick
    for i, b in enumerate(buckets):
        x, base = x0 + i * bw, float(y1)
        t = start + i * step
        for r, wh in enumerate(b):
            h = wh * scale
            if h <= 0:
                continue
            base -= h
            out.append(
                '<rect class="bar" data-rate="%d" data-wh="%.1f" x="%.2f" y="%.2f" width="%.2f" height="%.2f"'
                ' fill="%s"><title>%s %s: %s</title></rect>'
                % (
                    r + 1,
                    wh,
                    x,
                    base,
                    max(bw - gap, 0.5),
                    h,
                    COLOURS[r % len(COLOURS)],
                    esc(datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")),
                    esc(name(r)),
                    esc(_energy(wh, False)),
                )
            )
    daily = n * step > 86400
    period = 86400 if daily else 10800
    for i in range(n + 1):
        t = start + i * step
        if t % period == 0:
            x = x0 + i * bw
            out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#9aa7b4"/>' % (x, x, y1, y1 + 4))
            out.append(
                '<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#5a6b7b">%s</text>'
                % (x, y1 + 17, esc(_time_label(t, daily)))
            )
    out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#5a6b7b"/>' % (x0, x1, y1, y1))
    lx = x0
    for r in range(rates):
        out.append(
            '<rect class="key" x="%d" y="8" width="12" height="12" fill="%s"/>'
            % (lx, COLOURS[r % len(COLOURS)])
        )
        out.append('<text x="%d" y="18" font-size="12" fill="#1d2733">%s</text>' % (lx + 16, esc(name(r))))
        lx += max(60, 28 + 7 * len(name(r)))
    out.append("</svg>")
    return Markup("".join(out))
