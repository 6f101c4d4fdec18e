"""Validation rules over consumption through time: zero use, daily high/low, interval spike.

Same signature and result convention as ``headend.vee.rules`` (which lists
them in ``RULES``). They read the interval series: readings at the expected
interval with ts aligned to it, in ts order, repeats dropped; energy between
two of them is the import register delta summed over the rates.
"""

from __future__ import annotations

import datetime

from headend.vee.config import VeeConfig
from headend.vee.registers import EPOCH_ORDINAL, day_start_utc, deltas, local_day, on_grid, ordered
from headend.vee.result import FLAG_RELAY_OPEN, Result, expected_interval


def _series(readings: list[dict], meter: dict, cfg: VeeConfig) -> tuple[list[dict], int]:
    iv = expected_interval(meter, cfg)
    return [r for r in ordered(readings)[0] if on_grid(r, iv)], iv


def _used(a: dict, b: dict, cfg: VeeConfig) -> int | None:
    d = deltas(a["imp"], b["imp"], cfg)[0]
    return None if d is None else sum(d)


def _date(day: int) -> str:
    return datetime.date.fromordinal(EPOCH_ORDINAL + day).isoformat()


def zero_consumption(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    """Warn on each reading that ends at least zero_span_s of unbroken zero import
    with the relay closed (an open relay explains zero use)."""
    series, _ = _series(readings, meter, cfg)
    out, since = [], None
    for a, b in zip(series, series[1:], strict=False):
        if _used(a, b, cfg) != 0 or b["flags"] & FLAG_RELAY_OPEN:
            since = None
            continue
        since = a["ts"] if since is None else since
        if b["ts"] - since >= cfg.zero_span_s:
            detail = "no import for %d s (since ts %d)" % (b["ts"] - since, since)
            out.append(Result(b["ts"], "zero_consumption", "warn", detail, (b["seq"],)))
    return out


def daily_use(series: list[dict], cfg: VeeConfig) -> dict[int, tuple[int, dict]]:
    """local day -> (import Wh, the reading at the day's end), for days with a reading
    at both local midnights."""
    at = {r["ts"]: r for r in series}
    days = sorted({local_day(r["ts"], cfg) for r in series})
    out = {}
    for d in days:
        a, b = at.get(day_start_utc(d, cfg)), at.get(day_start_utc(d + 1, cfg))
        if a is not None and b is not None:
            used = _used(a, b, cfg)
            if used is not None:
                out[d] = (used, b)
    return out


def high_low(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    """A whole day's import against the average of the whole days in the history_days
    before it (at least min_history_days of them): above high_pct % or below low_pct %
    of that average warns, on the reading that closes the day."""
    series, _ = _series(readings, meter, cfg)
    use = daily_use(series, cfg)
    out = []
    for d, (wh, closing) in sorted(use.items()):
        hist = [use[h][0] for h in range(d - cfg.history_days, d) if h in use]
        n, total = len(hist), sum(hist)
        if n < cfg.min_history_days or total == 0:
            continue
        # wh / (total / n) compared with pct / 100, in integers
        if wh * 100 * n > cfg.high_pct * total:
            word = "high"
        elif wh * 100 * n < cfg.low_pct * total:
            word = "low"
        else:
            continue
        detail = "%s: %s used %d Wh, %d-day average %d Wh (%d %%)" % (
            word, _date(d), wh, n, total // n, wh * 100 * n // total)  # fmt: skip
        out.append(Result(closing["ts"], "high_low", "warn", detail, (closing["seq"],)))
    return out


def spike(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    """Per local day, the highest interval against the third-highest: above
    spike_ratio_pct % of it (and at least spike_min_wh) warns on the highest one."""
    series, iv = _series(readings, meter, cfg)
    days: dict[int, list[tuple[int, int, dict]]] = {}
    for a, b in zip(series, series[1:], strict=False):
        used = _used(a, b, cfg)
        if b["ts"] - a["ts"] == iv and used is not None:
            days.setdefault(local_day(a["ts"], cfg), []).append((used, -b["ts"], b))
    out = []
    for d, slots in sorted(days.items()):
        if len(slots) < 3:
            continue
        slots.sort(key=lambda s: s[:2], reverse=True)  # highest first, earliest first among equals
        high, third, r = slots[0][0], slots[2][0], slots[0][2]
        if high >= cfg.spike_min_wh and high * 100 > third * cfg.spike_ratio_pct:
            detail = "%s: interval of %d Wh vs third-highest %d Wh (limit %d %%)" % (
                _date(d), high, third, cfg.spike_ratio_pct)  # fmt: skip
            out.append(Result(r["ts"], "spike", "warn", detail, (r["seq"],)))
    return out
