"""Integer energy of a load profile's intervals, gathered for the month lines of ``engine``.

``accumulate(tariff, interval, ts, units, d, nonneg)`` takes intervals starting at ``ts`` with
``units[i] / 10^d`` kWh each and returns ``_Month`` records: runs of intervals in one local
month under one tariff version (``_groups``), each run's sums per period by the calendar's
layout (``segments``: the calendar walked once per rate change), and with tiers in time order
the energy charge as rate x units, interval by interval only where a run crosses a tier bound
with a negative interval or falling bounds (``_time_order``). ``profile_units`` turns Decimal
kWh into such integers at the profile's finest decimal place. Errors are ``BillingError``s
naming the interval, as the per-interval engine named them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from decimal import MAX_PREC, Decimal, Inexact, InvalidOperation, Rounded, localcontext
from itertools import accumulate as running

from headend.billing.calendar import civil, day_start, days_in_month, hhmm, local_days, month_start
from headend.billing.segments import layout
from headend.billing.tariff.model import Tariff, TariffVersion
from headend.errors import BillingError

ZERO = Decimal(0)


@dataclass
class _Month:
    year: int
    month: int
    i0: int  # its first interval's index in the profile
    i1: int = 0
    units: int = 0  # kWh x 10^decimals
    energy: Decimal = ZERO  # time_order: sum of rate x units
    tier_start: int = 0  # units of the tier window before this month
    covered: dict = field(default_factory=dict)  # version index -> seconds
    by_vp: dict = field(default_factory=dict)  # (version index, period) -> units
    by_name: dict = field(default_factory=dict)  # period name -> units
    mu: list = field(default_factory=list)  # units[i0:i1]


def _split_units(start: int, amount: int, table):
    """``tier_split`` in integer units over a table of (rate, upper bound in units or None)."""
    end, lo = start + amount, 0
    for rate, hi in table:
        a, b = max(start, lo), end if hi is None else min(end, hi)
        if b > a:
            yield rate, b - a
        if hi is None or end <= hi:
            return
        lo = hi


def _version(tariff: Tariff, ts: int) -> tuple[int, TariffVersion]:
    day = local_days(ts, tariff.utc_offset)
    found = tariff.version_index(day)
    if found is None:
        first = "%04d-%02d-%02d" % civil(tariff.versions[0].effective_from)
        raise BillingError(
            "no tariff in force at %s (the first version starts %s)" % (hhmm(ts, tariff.utc_offset), first)
        )
    return found, tariff.versions[found]


def split_error(what: str, ts: int, interval: int, utc_offset: int) -> BillingError:
    return BillingError(
        "the %s period changes inside the %d-minute interval starting %s (local); "
        "use a profile with shorter intervals" % (what, interval // 60, hhmm(ts, utc_offset))
    )


def _decimals(x: Decimal) -> int:
    """Decimal places of ``x``: as written up to 20, beyond that of its value (0E-999 has none)."""
    _sign, digits, e = x.as_tuple()
    if e >= -20:
        return max(0, -e)
    if not any(digits):
        return 0
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(e + zeros))


def profile_units(points) -> tuple[list[int], list[int], int]:
    """(interval starts, kWh x 10^d as ints, d): kWh at the profile's finest decimal place."""
    ts = [t for t, _ in points]
    kwh = [k for _, k in points]
    try:  # no rounding in the sum: its exponent is the smallest of the points'
        with localcontext(prec=60, traps=[Inexact, Rounded, InvalidOperation]):
            d = max(0, -sum(kwh, ZERO).as_tuple().exponent)
    except (Inexact, Rounded, InvalidOperation):
        d = max(map(_decimals, kwh), default=0)
    with localcontext(prec=MAX_PREC):
        scale = Decimal(10) ** d
        return ts, [int(k * scale) for k in kwh], d


def bound_decimals(tariff: Tariff) -> int:
    return max(
        (_decimals(t.max_kwh) for v in tariff.versions for tiers in v.energy for t in tiers if t.max_kwh),
        default=0,
    )


def _groups(tariff: Tariff, ts: list[int]) -> list[tuple[int, int, int, int, int]]:
    """(i0, i1, year, month, version index): runs of intervals starting in one local month
    under one tariff version, in time order."""
    off, n, i, out = tariff.utc_offset, len(ts), 0, []
    while i < n:
        vi, _v = _version(tariff, ts[i])
        y, m, _d = civil(local_days(ts[i], off))
        end = month_start(y + 1, 1, off) if m == 12 else month_start(y, m + 1, off)
        if vi + 1 < len(tariff.versions):
            end = min(end, day_start(tariff.versions[vi + 1].effective_from, off))
        i1 = bisect_left(ts, end, i)
        out.append((i, i1, y, m, vi))
        i = i1
    return out


class _Tables:
    """Energy tiers of (version, period, days in month) in integer units: (rate, bound) pairs,
    and whether the bounds rise (a window total then sits in one tier between two bounds)."""

    def __init__(self, tariff: Tariff, decimals: int):
        self.tariff, self.scale, self.cache = tariff, Decimal(10) ** decimals, {}

    def get(self, vi: int, p: int, dim: int):
        key = (vi, p, dim)
        got = self.cache.get(key)
        if got is None:
            table = []
            for t in self.tariff.versions[vi].energy[p]:
                b = t.bound(dim)
                table.append((t.rate, None if b is None else int(b * self.scale)))
            his = [hi for _, hi in table[:-1]]
            rising = table[-1][1] is None and all(his[k] < his[k + 1] for k in range(len(his) - 1))
            got = self.cache[key] = (table, rising and all(h is not None for h in his))
        return got


def _one_tier(table, rising: bool, start: int, end: int):
    """The rate of the one tier holding window kWh ``start .. end`` (units), or None."""
    if not rising:
        return None
    for rate, hi in table:
        if hi is None or start < hi:
            return rate if hi is None or end <= hi else None
    return None


def _rising_tiers(seg: list[int], w: int, table) -> tuple[Decimal, int]:
    """(charge, window after) of intervals ``seg`` (none negative) from window ``w`` over rising
    tiers: the intervals between two bounds at the tier's rate together, each interval that
    crosses a bound split as ``tier_split`` splits it."""
    cum = list(running(seg, initial=w))  # cum[k]: the window before interval k
    charge, k, n = ZERO, 0, len(seg)
    while k < n:
        w = cum[k]
        rate, hi = next((r, h) for r, h in table if h is None or w < h)
        end = n if hi is None else min(n, bisect_right(cum, hi, k) - 1)
        if end > k:  # intervals k .. end - 1 end at or below the bound
            charge += rate * (cum[end] - w)
            k = end
        if k < n and hi is not None:  # interval k crosses the bound
            for rate, part in _split_units(cum[k], seg[k], table):
                charge += rate * part
            k += 1
    return charge, cum[n]


def _time_order(tables: _Tables, vi, lay, mu, sums, before, total, dim, nonneg) -> Decimal:
    """Energy charge (rate x units) of one run with tiers in time order, from window ``before``."""
    charge = ZERO
    if nonneg:
        for p, s in sums.items():
            rate = _one_tier(*tables.get(vi, p, dim), before, before + total)
            if rate is None:
                break
            charge += rate * s
        else:
            return charge
        charge = ZERO
    w = before
    for lo, hi, p in lay.ranges:
        table, rising = tables.get(vi, p, dim)
        seg = mu[lo:hi]
        if nonneg and rising:
            c, w = _rising_tiers(seg, w, table)
            charge += c
            continue
        for x in seg:
            for rate, part in _split_units(w, x, table):
                charge += rate * part
            w += x
    return charge


def layouts(tariff: Tariff, interval: int, ts, groups: list) -> list:
    """Each group's calendar layout (``segments.layout``); an interval a rate change splits is a
    BillingError naming it."""
    lays = []
    for i0, i1, _y, _m, vi in groups:
        lay = layout(tariff.versions[vi].calendar, ts, i0, i1, interval)
        if lay.bad is not None:
            raise split_error("energy", ts[i0 + lay.bad], interval, tariff.utc_offset)
        lays.append(lay)
    return lays


def accumulate(tariff: Tariff, interval: int, ts: list[int], units: list[int], d: int, nonneg) -> list:
    groups = _groups(tariff, ts)
    lays = layouts(tariff, interval, ts, groups)
    months: list[_Month] = []
    window: dict = {}  # tier window -> cumulative units
    tables = _Tables(tariff, d)
    time_order = tariff.tier_mode == "time_order"
    if nonneg is None:
        nonneg = time_order and min(units, default=0) >= 0
    for (i0, i1, y, m, vi), lay in zip(groups, lays, strict=True):
        key = (y, m) if tariff.tier_basis == "monthly" else y
        if not months or (months[-1].year, months[-1].month) != (y, m):
            months.append(_Month(y, m, i0, tier_start=window.get(key, 0)))
        mo = months[-1]
        mo.i1 = i1
        mu = units[i0:i1]
        mo.mu = mu if mo.i0 == i0 else units[mo.i0 : i1]
        names = tariff.versions[vi].period_names
        mo.covered[vi] = mo.covered.get(vi, 0) + interval * (i1 - i0)
        total = sum(mu)
        sums, rest = {}, total
        for p, pick in lay.pick.items():
            if p != lay.big:
                rest -= sums.setdefault(p, sum(map(sum, map(mu.__getitem__, pick))))
            else:
                sums[p] = 0
        sums[lay.big] = rest
        for p, s in sums.items():
            mo.by_vp[(vi, p)] = mo.by_vp.get((vi, p), 0) + s
            mo.by_name[names[p]] = mo.by_name.get(names[p], 0) + s
        mo.units += total
        before = window.get(key, 0)
        if time_order:
            dim = days_in_month(y, m)
            mo.energy += _time_order(tables, vi, lay, mu, sums, before, total, dim, nonneg)
        window[key] = before + total
    return months
