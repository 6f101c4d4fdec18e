"""Which intervals of a run of load-profile intervals fall in which period of a calendar.

The calendar (``headend.billing.calendar``: a meter calendar or a month-hour table) is walked
once per rate change, with its ``next_change`` (for a meter calendar, protocol.tariff_calendar's,
the one definition shared with the meter), not once per interval: ``segments`` gives the
maximal runs of one period between change points, and ``layout`` maps intervals to them by
index. An interval whose ``[ts, ts + interval)`` is not inside one run is one where the period
changes inside the interval (``check_interval`` returns None for it): ``Layout.bad`` is the
first such. Layouts of a regular run (one interval apart) are cached on the calendar object,
keyed by (first ts, count, interval): a fleet's accounts of a month share them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

CACHE_MAX = 4096  # layouts kept per calendar


def segments(calendar, start: int, end: int) -> list[tuple[int, int, int]]:
    """``(t0, t1, period)`` runs covering ``[start, end)``, adjacent runs of different periods."""
    out = []
    t = seg = start
    p = calendar.period_at(start)
    while True:
        t = calendar.next_change(t)
        if t >= end:
            break
        q = calendar.period_at(t)
        if q != p:
            out.append((seg, t, p))
            seg, p = t, q
    out.append((seg, end, p))
    return out


class Layout:
    """``ranges``: (lo, hi, period) index ranges in time order (relative to the run's first
    interval); ``pick[period]``: that period's ranges as slices, periods in order of first
    appearance (``sum(map(sum, map(values.__getitem__, pick[p])))`` is its sum); ``big``: the
    period with the most intervals (its sum is the total less the others'); ``bad``: index of
    the first interval a period change splits."""

    __slots__ = ("ranges", "pick", "big", "bad")

    def __init__(self, ranges: list, bad: int | None):
        self.ranges, self.bad = ranges, bad
        pick: dict[int, list[slice]] = {}
        size: dict[int, int] = {}
        for lo, hi, p in ranges:
            pick.setdefault(p, []).append(slice(lo, hi))
            size[p] = size.get(p, 0) + hi - lo
        self.pick = {p: tuple(s) for p, s in pick.items()}
        self.big = max(size, key=size.__getitem__, default=None)


def _build(calendar, ts: list[int], interval: int) -> Layout:
    ranges, bad, covered = [], None, 0
    for t0, t1, p in segments(calendar, ts[0], ts[-1] + interval):
        lo, hi = bisect_left(ts, t0), bisect_right(ts, t1 - interval)
        if lo > covered and bad is None:
            bad = covered
        if hi > lo:
            ranges.append((lo, hi, p))
            covered = hi
    if covered < len(ts) and bad is None:
        bad = covered
    return Layout(ranges, bad)


def layout(calendar, ts: list[int], i0: int, i1: int, interval: int) -> Layout:
    """The layout of the intervals starting at ``ts[i0:i1]`` (increasing, at least one)."""
    n = i1 - i0
    if ts[i1 - 1] - ts[i0] != (n - 1) * interval:  # gaps: not shared with other accounts
        return _build(calendar, ts[i0:i1], interval)
    cache = calendar.__dict__.setdefault("_layouts", {})
    key = (ts[i0], n, interval)
    got = cache.get(key)
    if got is None:
        if len(cache) >= CACHE_MAX:
            cache.clear()
        got = cache[key] = _build(calendar, ts[i0:i1], interval)
    return got
