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

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from headend.billing.calendar import days_in_month, month_seconds, year_seconds
from headend.billing.intervals import _Month, accumulate, bound_decimals, profile_units, split_error
from headend.billing.profile_csv import Profile
from headend.billing.segments import layout
from headend.billing.tariff.model import Tariff, TariffVersion

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
        raise split_error("demand", ts[mo.i0 + lay.bad], interval, tariff.utc_offset)
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
    extra = bound_decimals(tariff) - decimals
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

        months = accumulate(tariff, interval, ts, units, decimals, nonneg)
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
