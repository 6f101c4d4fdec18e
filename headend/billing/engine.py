"""Bill a load profile under a tariff: monthly bills, exact to the minor unit.

Rules (docs/tariff-format.md, "How a bill is computed"):

- Decimal arithmetic throughout (50 significant digits); only the final line items of a
  month are rounded, ROUND_HALF_UP to the tariff's minor unit; the total is the sum of the
  rounded lines, so a bill always adds up. The rule is recorded on the ``Bill``.
- Months are calendar months of the tariff's local time (fixed ``utc_offset``).
- Energy: each interval is priced by the version and period in force at its start.
  Tiers count cumulative kWh in the month (or the calendar year, ``tier_basis``).
  ``time_order``: an interval's kWh takes the tier the running total is in; the interval
  that crosses a threshold is split at it. ``prorate`` (NREL SAM): the month's total is
  split into tiers, and each (version, period) gets each tier's kWh in proportion to its
  share of the month's kWh.
- Fixed, demand and minimum charges are per month (or per day, or per year) and are
  prorated by time: a version's monthly amount x (its seconds in force and covered by the
  profile / the month's seconds). A mid-month tariff change so charges each version for
  its days; demand charges take the month's peaks (over the whole month) at each version's
  rates, weighted the same way.
- Demand kW = interval kWh / interval hours; flat demand on the month's peak, TOU demand
  on each period's peak.
- Minimum: if the rounded lines come to less than the (prorated) monthly minimum, a
  ``minimum_charge`` line makes up the difference; an annual minimum is made up in the
  last billed month of the calendar year.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from decimal import MAX_PREC, ROUND_HALF_UP, Decimal, Inexact, InvalidOperation, Rounded, localcontext
from itertools import accumulate

from headend.billing.calendar import (
    civil,
    day_start,
    days_in_month,
    hhmm,
    local_days,
    month_seconds,
    month_start,
    year_seconds,
)
from headend.billing.profile_csv import Profile
from headend.billing.segments import layout
from headend.billing.tariff.model import Tariff, TariffVersion
from headend.errors import BillingError

PRECISION = 50
ZERO = Decimal(0)
LINES = ("energy_charge", "fixed_charge", "demand_charge", "minimum_charge")
KWH = Decimal("0.001")


@dataclass(frozen=True)
class MonthBill:
    month: str  # "YYYY-MM"
    energy_kwh: Decimal
    energy_charge: Decimal
    fixed_charge: Decimal
    demand_charge: Decimal
    minimum_charge: Decimal
    total: Decimal
    exact: dict  # the unrounded line items
    kwh_by_period: dict
    peak_kw: Decimal
    days: Decimal  # days of the month covered by the profile

    def as_json(self) -> dict:
        out = {"month": self.month, "energy_kwh": str(self.energy_kwh.quantize(KWH, ROUND_HALF_UP))}
        for k in LINES + ("total",):
            out[k] = str(getattr(self, k))
        return out


@dataclass(frozen=True)
class Bill:
    tariff: str
    currency: str
    minor_unit: Decimal
    tier_mode: str
    months: tuple[MonthBill, ...]
    rounding: str = ROUND_HALF_UP
    rule: str = "each line item rounded half-up to the minor unit; total = sum of the rounded lines"

    def as_json(self) -> dict:
        return {
            "tariff": self.tariff,
            "currency": self.currency,
            "rounding": {"mode": self.rounding, "minor_unit": str(self.minor_unit), "rule": self.rule},
            "months": [m.as_json() for m in self.months],
        }


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


def tier_split(start: Decimal, amount: Decimal, tiers, dim: int):
    """(rate, kWh) of each tier that kWh ``start .. start + amount`` of the window falls in."""
    end, lo = start + amount, ZERO
    for tier in tiers:
        hi = tier.bound(dim)
        a, b = max(start, lo), end if hi is None else min(end, hi)
        if b > a:
            yield tier.rate, b - a
        if hi is None or end <= hi:
            return
        lo = hi


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


def demand_charge(kw: Decimal, tiers) -> Decimal:
    total, lo = ZERO, ZERO
    for t in tiers:
        hi = kw if t.max_kw is None else min(kw, t.max_kw)
        if hi > lo:
            total += (hi - lo) * t.rate
        if t.max_kw is None or kw <= t.max_kw:
            break
        lo = t.max_kw
    return total


def _version(tariff: Tariff, ts: int) -> tuple[int, TariffVersion]:
    day = local_days(ts, tariff.utc_offset)
    found = tariff.version_index(day)
    if found is None:
        first = "%04d-%02d-%02d" % civil(tariff.versions[0].effective_from)
        raise BillingError(
            "no tariff in force at %s (the first version starts %s)" % (hhmm(ts, tariff.utc_offset), first)
        )
    return found, tariff.versions[found]


def _split_error(what: str, ts: int, interval: int, utc_offset: int) -> BillingError:
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


def _bound_decimals(tariff: Tariff) -> int:
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
    cum = list(accumulate(seg, initial=w))  # cum[k]: the window before interval k
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


def _accumulate(tariff: Tariff, interval: int, ts: list[int], units: list[int], d: int, nonneg) -> list:
    groups = _groups(tariff, ts)
    lays = []
    for i0, i1, _y, _m, vi in groups:
        lay = layout(tariff.versions[vi].calendar, ts, i0, i1, interval)
        if lay.bad is not None:
            raise _split_error("energy", ts[i0 + lay.bad], interval, tariff.utc_offset)
        lays.append(lay)
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


def _prorated_energy(tariff: Tariff, mo: _Month, kwh) -> Decimal:
    total = kwh(mo.units)
    if total == 0:
        return ZERO
    dim = days_in_month(mo.year, mo.month)
    start = kwh(mo.tier_start)
    numerator = ZERO
    for (vi, p), e in mo.by_vp.items():
        tiers = tariff.versions[vi].energy[p]
        numerator += kwh(e) * sum(rate * part for rate, part in tier_split(start, total, tiers, dim))
    return numerator / total


def _tou_peaks(tariff: Tariff, v: TariffVersion, ts, mo: _Month, interval: int) -> dict[int, int]:
    """Version ``v``'s demand period -> the peak interval (units) of one month's intervals."""
    lay, mu = layout(v.demand_calendar, ts, mo.i0, mo.i1, interval), mo.mu
    if lay.bad is not None:
        raise _split_error("demand", ts[mo.i0 + lay.bad], interval, tariff.utc_offset)
    return {q: max(map(max, map(mu.__getitem__, pick))) for q, pick in lay.pick.items()}


def _demand(v: TariffVersion, month: int, peak_kw: Decimal, tou: dict | None, kw) -> Decimal:
    """The demand charge of one month at version ``v``'s rates: flat on the month's peak, TOU
    on each demand period's."""
    total = ZERO
    flat = v.flat_demand[month - 1]
    if flat:
        total += demand_charge(peak_kw, flat)
    for q, units in (tou or {}).items():
        total += demand_charge(kw(units), v.demand[q])
    return total


def bill_profile(tariff: Tariff, profile: Profile) -> Bill:
    """Monthly bills of ``profile`` under ``tariff`` (pure: no clock, no I/O)."""
    ts, units, d = profile_units(profile.points)
    return bill_intervals(tariff, profile.interval_s, ts, units, d)


def bill_intervals(
    tariff: Tariff, interval: int, ts: list[int], units: list[int], decimals: int, nonneg: bool | None = None
) -> Bill:
    """``bill_profile`` of intervals starting at ``ts`` (increasing) with ``units[i] / 10^decimals``
    kWh each: the engine's own form (integer energy; Wh are ``decimals = 3``). ``nonneg``: whether
    no interval is negative, when the caller knows (None: found here)."""
    extra = _bound_decimals(tariff) - decimals
    if extra > 0:  # a tier bound finer than the profile: count in its units
        f = 10**extra
        units, decimals = [u * f for u in units], decimals + extra
    q = tariff.minor_unit
    out: list[MonthBill] = []
    any_demand = any(v.demand or any(v.flat_demand) for v in tariff.versions)
    with localcontext(prec=PRECISION):
        hours = Decimal(interval) / 3600

        def kwh(u: int) -> Decimal:
            return Decimal(u).scaleb(-decimals)

        def kw(u: int) -> Decimal:
            return kwh(u) / hours

        months = _accumulate(tariff, interval, ts, units, decimals, nonneg)
        annual: dict[int, Decimal] = {}
        for mo in months:
            ms = month_seconds(mo.year, mo.month)
            if tariff.tier_mode == "prorate":
                energy = _prorated_energy(tariff, mo, kwh)
            else:
                energy = mo.energy.scaleb(-decimals)
            exact = {"energy_charge": energy, "fixed_charge": ZERO, "demand_charge": ZERO}
            tou = {}
            if any_demand:
                for vi in mo.covered:
                    if tariff.versions[vi].demand:
                        tou[vi] = _tou_peaks(tariff, tariff.versions[vi], ts, mo, interval)
                peaks = [u for d in tou.values() for u in d.values()]
                peak = kw(max(peaks) if peaks else max(mo.mu))
            else:
                peak = ZERO
            minimum = ZERO
            for vi, seconds in mo.covered.items():
                v = tariff.versions[vi]
                share = Decimal(seconds) / ms
                exact["fixed_charge"] += v.fixed_monthly * share + v.fixed_daily * seconds / 86400
                if any_demand:
                    exact["demand_charge"] += _demand(v, mo.month, peak, tou.get(vi), kw) * share
                minimum += v.min_monthly * share
                annual[mo.year] = annual.get(mo.year, ZERO) + v.min_annual * seconds / year_seconds(mo.year)
            lines = {k: x.quantize(q, ROUND_HALF_UP) for k, x in exact.items()}
            subtotal = sum(lines.values())
            lines["minimum_charge"] = max(ZERO, minimum.quantize(q, ROUND_HALF_UP) - subtotal).quantize(q)
            exact["minimum"] = minimum
            out.append(
                MonthBill(
                    month="%04d-%02d" % (mo.year, mo.month),
                    energy_kwh=kwh(mo.units),
                    total=subtotal + lines["minimum_charge"],
                    exact=exact,
                    kwh_by_period={name: kwh(u) for name, u in mo.by_name.items()},
                    peak_kw=peak,
                    days=Decimal(sum(mo.covered.values())) / 86400,
                    **lines,
                )
            )
        out = _annual_minimum(out, annual, q)
    return Bill(tariff.name, tariff.currency, q, tariff.tier_mode, tuple(out))


def _annual_minimum(months: list[MonthBill], annual: dict, q: Decimal) -> list[MonthBill]:
    """Make up each calendar year's shortfall below its annual minimum in its last month."""
    for year, minimum in annual.items():
        minimum = minimum.quantize(q, ROUND_HALF_UP)
        idx = [i for i, m in enumerate(months) if m.month.startswith("%04d-" % year)]
        shortfall = minimum - sum(months[i].total for i in idx)
        if minimum and shortfall > 0:
            last = months[idx[-1]]
            months[idx[-1]] = MonthBill(
                **{
                    **last.__dict__,
                    "minimum_charge": last.minimum_charge + shortfall,
                    "total": last.total + shortfall,
                    "exact": {**last.exact, "annual_minimum": minimum},
                }
            )
    return months
