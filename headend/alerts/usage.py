"""Import energy from cumulative register readings: pure helpers for the consumption rules.

A reading's import is the sum of its rate registers (``imp``), integer Wh. Energy between
two times is the difference of the imports of the last readings at or before each: no
interpolation, so a value always comes from two real readings (and their span is returned
with it). Register rollover is not handled here: a decrease gives None (no verdict).
Local day ``d`` covers local time [d*86400, (d+1)*86400).
"""

from __future__ import annotations

import bisect
from statistics import median

DAY = 86400


def total_imp(r: dict) -> int:
    return sum(r["imp"])


def local_day(ts: int, utc_offset_minutes: int) -> int:
    return (ts + utc_offset_minutes * 60) // DAY


def day_start(day: int, utc_offset_minutes: int) -> int:
    return day * DAY - utc_offset_minutes * 60


def at_or_before(readings: list[dict], ts: int) -> dict | None:
    """The last reading (readings sorted by ts) with ts <= the given time."""
    i = bisect.bisect_right([r["ts"] for r in readings], ts)
    return readings[i - 1] if i else None


def energy_between(readings: list[dict], t0: int, t1: int) -> tuple[int, int] | None:
    """(Wh, seconds between the two readings used) for [t0, t1], or None without readings."""
    a, b = at_or_before(readings, t0), at_or_before(readings, t1)
    if a is None or b is None or b["ts"] <= a["ts"]:
        return None
    wh = total_imp(b) - total_imp(a)
    return (wh, b["ts"] - a["ts"]) if wh >= 0 else None


def daily_usage(readings: list[dict], first_day: int, last_day: int, utc_offset_minutes: int,
                tolerance_s: int) -> dict[int, int]:  # fmt: skip
    """local day -> import Wh, for days in [first_day, last_day] that have a reading within
    ``tolerance_s`` before each of their midnights (others are left out: unknown)."""
    ts = [r["ts"] for r in readings]
    marks = {}
    for d in range(first_day, last_day + 2):
        edge = day_start(d, utc_offset_minutes)
        i = bisect.bisect_right(ts, edge)
        if i and edge - ts[i - 1] <= tolerance_s:
            marks[d] = total_imp(readings[i - 1])
    out = {}
    for d in range(first_day, last_day + 1):
        if d in marks and d + 1 in marks and marks[d + 1] >= marks[d]:
            out[d] = marks[d + 1] - marks[d]
    return out


def history_median(daily: dict[int, int], day: int, n_days: int) -> tuple[float | None, int]:
    """Median of the known days among the ``n_days`` before ``day``, and how many there were."""
    values = [daily[d] for d in range(day - n_days, day) if d in daily]
    return (median(values) if values else None, len(values))


def zero_run(readings: list[dict]) -> tuple[dict, dict] | None:
    """(first, last) readings of the trailing run with no import increase, or None."""
    if not readings:
        return None
    last = readings[-1]
    first = last
    for r in reversed(readings[:-1]):
        if total_imp(r) != total_imp(last):
            break
        first = r
    return first, last


def median_without(values: list[int], x: int) -> float:
    """Median of sorted ``values`` with one occurrence of ``x`` (a member) left out, in O(log n):
    the peers' median of each of n members without n sorts."""
    i = bisect.bisect_left(values, x)
    n = len(values) - 1

    def kth(k: int) -> int:
        return values[k] if k < i else values[k + 1]

    return kth(n // 2) if n % 2 else (kth(n // 2 - 1) + kth(n // 2)) / 2
