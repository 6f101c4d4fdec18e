"""Interval energy from cumulative import registers (pure; no clock, no database).

Readings (``meter_id, seq, ts, imp``, by meter then ts then seq, as
``Storage.readings_window`` gives them) become deltas: for consecutive readings of one
meter, each rate's Wh over (previous ts, ts]. A pair where any rate register went down
(a reset, a replaced meter) or with no time between them gives no delta.

``bucket`` spreads each delta over fixed-width time buckets in proportion to the seconds
it overlaps each one, so a reading gap shows as the average over the gap, not as one tall
bar, and every Wh inside the window is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

STEPS = (300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class Delta:
    meter_id: str
    start: int  # the previous reading's ts
    end: int  # this reading's ts
    wh: tuple[int, ...]  # per rate, rate 1 first


def deltas(rows: Iterable[Mapping]) -> list[Delta]:
    out: list[Delta] = []
    prev: Mapping | None = None
    for r in rows:
        if prev is not None and prev["meter_id"] == r["meter_id"] and r["ts"] > prev["ts"]:
            n = max(len(r["imp"]), len(prev["imp"]))
            cur = list(r["imp"]) + [0] * (n - len(r["imp"]))
            old = list(prev["imp"]) + [0] * (n - len(prev["imp"]))
            wh = tuple(c - o for c, o in zip(cur, old, strict=True))
            if all(w >= 0 for w in wh):
                out.append(Delta(r["meter_id"], prev["ts"], r["ts"], wh))
        prev = r
    return out


def energy_between(ds: Iterable[Delta], start: int, end: int) -> float:
    """Wh of all rates in [start, end), a delta counted by its share of seconds inside."""
    total = 0.0
    for d in ds:
        overlap = min(d.end, end) - max(d.start, start)
        if overlap > 0:
            total += sum(d.wh) * overlap / (d.end - d.start)
    return total


def pick_step(ds: Sequence[Delta], at_least: int) -> int:
    """A bucket width: the median reading interval, at least ``at_least``, from ``STEPS``."""
    lengths = sorted(d.end - d.start for d in ds)
    median = lengths[len(lengths) // 2] if lengths else at_least
    return next((s for s in STEPS if s >= max(median, at_least)), STEPS[-1])


def bucket(ds: Iterable[Delta], start: int, end: int, step: int, rates: int) -> list[list[float]]:
    """Wh per rate in each bucket [start + i*step, start + (i+1)*step) of [start, end)."""
    n = max(0, -(-(end - start) // step))
    out = [[0.0] * rates for _ in range(n)]
    for d in ds:
        lo, hi = max(d.start, start), min(d.end, end)
        if hi <= lo:
            continue
        span = d.end - d.start
        i = (lo - start) // step
        while i < n:
            b0 = start + i * step
            overlap = min(hi, b0 + step) - max(lo, b0)
            if overlap <= 0:
                break
            for r, w in enumerate(d.wh[:rates]):
                out[i][r] += w * overlap / span
            i += 1
    return out


def rate_count(ds: Iterable[Delta]) -> int:
    return max((len(d.wh) for d in ds), default=0)
