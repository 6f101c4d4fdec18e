"""Register arithmetic and reading order, shared by rules, estimation and the profile.

Rollover policy (explicit, because bills depend on it): a register counts up to
``modulus - 1`` Wh and wraps to 0. A drop from ``prev`` to ``cur`` is taken as
one wrap only when ``prev >= modulus - margin`` and ``cur < margin``; the energy
is then ``modulus - prev + cur``. Any other drop is a decrease: ``None``.

Local days: day number ``d`` covers local time [d*86400, (d+1)*86400); an
interval belongs to the day its START falls in, so the slot ending at local
midnight is the last slot of the previous day.
"""

from __future__ import annotations

import datetime

from headend.vee.config import DAY, VeeConfig

EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def register_delta(prev: int, cur: int, modulus: int, margin: int) -> int | None:
    """Energy between two readings of one cumulative register (Wh), None for a decrease."""
    if cur >= prev:
        return cur - prev
    if prev >= modulus - margin and cur < margin:
        return modulus - prev + cur
    return None


def deltas(prev: list[int], cur: list[int], cfg: VeeConfig) -> tuple[list[int] | None, bool]:
    """Per-register deltas (None if any register decreased or the lengths differ) and
    whether any register rolled over."""
    if len(prev) != len(cur):
        return None, False
    out = [c - p for p, c in zip(prev, cur, strict=True)]
    if not out or min(out) >= 0:
        return out, False  # the common case: nothing wrapped, nothing dropped
    out, rolled = [], False
    for p, c in zip(prev, cur, strict=True):
        d = register_delta(p, c, cfg.register_modulus_wh, cfg.rollover_margin_wh)
        if d is None:
            return None, False
        rolled = rolled or c < p
        out.append(d)
    return out, rolled


def ordered(readings: list[dict]) -> tuple[list[dict], list[tuple[dict, dict]]]:
    """Readings sorted by (ts, seq) without repeated timestamps, and the repeats
    as (repeat, first reading at that ts) pairs."""
    out: list[dict] = []
    dups: list[tuple[dict, dict]] = []
    for r in sorted(readings, key=lambda r: (r["ts"], r["seq"])):
        if out and out[-1]["ts"] == r["ts"]:
            dups.append((r, out[-1]))
        else:
            out.append(r)
    return out, dups


def on_grid(r: dict, interval: int) -> bool:
    """A reading of the interval series: the expected interval, ts aligned to it."""
    return r["interval"] == interval and r["ts"] % interval == 0


def local_day(slot_start: int, cfg: VeeConfig) -> int:
    """Local day number of the interval that starts at slot_start (epoch s)."""
    return (slot_start + cfg.utc_offset_minutes * 60) // DAY


def day_start_utc(day: int, cfg: VeeConfig) -> int:
    return day * DAY - cfg.utc_offset_minutes * 60


def day_type(day: int, cfg: VeeConfig) -> str:
    """'holiday', 'weekend' or 'weekday' for a local day number."""
    date = datetime.date.fromordinal(EPOCH_ORDINAL + day)
    if date.isoformat() in cfg.holidays:
        return "holiday"
    return "weekend" if date.weekday() in cfg.weekend_days else "weekday"


def spread(total: int, weights: list) -> list[int]:
    """Split integer total over weights (ints or Fractions, sum > 0) so the parts add up
    exactly: part k = floor(total*W_k/W) - floor(total*W_(k-1)/W), W_k the running sum."""
    whole = sum(weights)
    out, acc, before = [], 0, 0
    for w in weights:
        acc += w
        upto = (total * acc) // whole
        out.append(int(upto - before))
        before = upto
    return out
