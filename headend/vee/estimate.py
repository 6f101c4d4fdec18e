"""Estimation of missing intervals: linear interpolation, like days, outages.

Input is the interval series (readings at the expected interval that passed
validation, in ts order), the measured intervals (``profile.measured_intervals``:
slot end -> (imp Wh per rate, exp Wh per rate)), outages as (start, end) pairs
and ``now``. Output is a list of estimate rows::

    {"interval_start", "interval_end", "method", "imp": [Wh per rate], "exp": [...]}

one per missing slot, never for a slot that has a measurement.

- A gap between two readings ``a`` and ``b`` is bounded: its energy is known
  exactly (the register delta), only its shape is estimated, so its slots add
  up to the delta per register.
  * ``linear``: b.ts - a.ts <= linear_max_span_s and no outage touches (a.ts, b.ts):
    the delta spread evenly (registers.spread keeps the integer sum).
  * ``like_day``: otherwise; each slot weighted by the average of the same slot on
    the ``like_days`` nearest like days (same day type: weekday/weekend/holiday)
    that are fully measured and had no outage; slots wholly inside an outage
    weigh 0.
  * ``even``: no like day for some slot (or all weights 0): spread evenly over the
    slots not inside an outage.
- Past the last reading (a trailing gap), slots that ended at least
  trailing_grace_s before now, up to trailing_max_s past the reading, get the
  like-day average rounded half up (``like_day``), 0 inside an outage
  (``outage``), or nothing when there is no like day.
"""

from __future__ import annotations

from fractions import Fraction

from headend.vee.config import DAY, VeeConfig
from headend.vee.registers import day_start_utc, day_type, deltas, local_day, spread

EVT_POWER_DOWN = 1  # docs/protocol.md event codes
EVT_POWER_UP = 2
OPEN_END = 2**62  # an outage with no power-up yet


def outages_from_events(events: list[dict]) -> list[tuple[int, int]]:
    """(start, end) outages from power-down/power-up events in ts order. A power-up with
    no power-down before it (a reboot) is a zero-length outage at its ts; a power-down
    with no power-up yet is open-ended."""
    out, down = [], None
    for e in sorted(events, key=lambda e: (e["ts"], e.get("seq", 0))):
        if e["code"] == EVT_POWER_DOWN:
            down = e["ts"] if down is None else down
        elif e["code"] == EVT_POWER_UP:
            out.append((e["ts"] if down is None else down, e["ts"]))
            down = None
    if down is not None:
        out.append((down, OPEN_END))
    return out


def crosses_outage(start: int, end: int, outages: list[tuple[int, int]]) -> bool:
    """True if an outage touches the open span (start, end)."""
    return any(s < end and e > start for s, e in outages) or any(start < s < end for s, _ in outages)


def inside_outage(start: int, end: int, outages: list[tuple[int, int]]) -> bool:
    return any(s <= start and e >= end for s, e in outages)


class LikeDays:
    """Like-day averages per slot, from the fully measured days without an outage."""

    def __init__(self, measured: dict, outages: list[tuple[int, int]], cfg: VeeConfig, iv: int) -> None:
        self.cfg, self.iv, self.measured = cfg, iv, measured
        per_day = DAY // iv
        counts: dict[int, int] = {}
        for end in measured:
            d = local_day(end - iv, cfg)
            counts[d] = counts.get(d, 0) + 1
        self.complete = sorted(
            d for d, n in counts.items()
            if n == per_day and not crosses_outage(day_start_utc(d, cfg), day_start_utc(d + 1, cfg), outages)
        )  # fmt: skip
        self._chosen: dict[int, list[int]] = {}

    def days_for(self, day: int) -> list[int]:
        """The like_days nearest fully measured days of the same type (earlier first on ties)."""
        if day not in self._chosen:
            kind = day_type(day, self.cfg)
            same = [d for d in self.complete if d != day and day_type(d, self.cfg) == kind]
            self._chosen[day] = sorted(same, key=lambda d: (abs(d - day), d))[: self.cfg.like_days]
        return self._chosen[day]

    def average(self, slot_end: int) -> tuple[list[Fraction], list[Fraction]] | None:
        """Average (imp, exp) of this slot's time of day over the like days, or None."""
        day = local_day(slot_end - self.iv, self.cfg)
        days = self.days_for(day)
        if not days:
            return None
        offset = slot_end - day_start_utc(day, self.cfg)
        rows = [self.measured[day_start_utc(d, self.cfg) + offset] for d in days]
        imp = [Fraction(sum(r[0][i] for r in rows), len(rows)) for i in range(len(rows[0][0]))]
        exp = [Fraction(sum(r[1][i] for r in rows), len(rows)) for i in range(len(rows[0][1]))]
        return imp, exp


def _row(end: int, iv: int, method: str, imp: list[int], exp: list[int]) -> dict:
    return {"interval_start": end - iv, "interval_end": end, "method": method, "imp": imp, "exp": exp}


def _columns(per_register: list[list[int]]) -> list[list[int]]:
    return [list(col) for col in zip(*per_register, strict=True)] if per_register else []


def bounded(a: dict, b: dict, like: LikeDays, outages, cfg: VeeConfig, iv: int) -> list[dict]:
    """Estimates for the slots (a.ts, b.ts], adding up to b - a per register."""
    d_imp, d_exp = deltas(a["imp"], b["imp"], cfg)[0], deltas(a["exp"], b["exp"], cfg)[0]
    if d_imp is None or d_exp is None:
        return []  # cannot happen for a validated series: the monotonic rule fails such readings
    ends = list(range(a["ts"] + iv, b["ts"] + 1, iv))
    live = [0 if inside_outage(e - iv, e, outages) else 1 for e in ends]
    if not any(live):
        live = [1] * len(ends)
    if b["ts"] - a["ts"] <= cfg.linear_max_span_s and not crosses_outage(a["ts"], b["ts"], outages):
        method, shapes = "linear", None
    else:
        shapes = [like.average(e) if ok else None for e, ok in zip(ends, live, strict=True)]
        bad = any(ok and (s is None or len(s[0]) != len(d_imp)) for s, ok in zip(shapes, live, strict=True))
        method, shapes = ("even", None) if bad else ("like_day", shapes)

    def weights(kind: int, i: int) -> list:
        if method == "linear":
            return [1] * len(ends)
        if method == "like_day":
            w = [s[kind][i] if s is not None and ok else 0 for s, ok in zip(shapes, live, strict=True)]
            if sum(w) > 0:
                return w
        return live

    imp = _columns([spread(d, weights(0, i)) for i, d in enumerate(d_imp)])
    exp = _columns([spread(d, weights(1, i)) for i, d in enumerate(d_exp)])
    return [_row(e, iv, method, imp[k], exp[k]) for k, e in enumerate(ends)]


def trailing(last: dict, like: LikeDays, outages, cfg: VeeConfig, iv: int, now: int) -> list[dict]:
    """Estimates past the last reading, for slots ended trailing_grace_s before now."""
    end = min((now - cfg.trailing_grace_s) // iv * iv, last["ts"] + cfg.trailing_max_s)
    out = []
    for e in range(last["ts"] + iv, end + 1, iv):
        if inside_outage(e - iv, e, outages):
            out.append(_row(e, iv, "outage", [0] * len(last["imp"]), [0] * len(last["exp"])))
            continue
        avg = like.average(e)
        if avg is not None and len(avg[0]) == len(last["imp"]):
            half = Fraction(1, 2)
            out.append(
                _row(e, iv, "like_day", [int(x + half) for x in avg[0]], [int(x + half) for x in avg[1]])
            )
    return out


def estimate_gaps(series: list[dict], measured: dict, outages: list[tuple[int, int]], cfg: VeeConfig,
                  iv: int, now: int) -> list[dict]:  # fmt: skip
    """Estimate rows for every missing slot between and after the series readings."""
    if not series:
        return []
    like = LikeDays(measured, outages, cfg, iv)
    out = []
    for a, b in zip(series, series[1:], strict=False):
        if b["ts"] - a["ts"] > iv:
            out.extend(bounded(a, b, like, outages, cfg, iv))
    out.extend(trailing(series[-1], like, outages, cfg, iv, now))
    return out
