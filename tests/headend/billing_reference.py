"""Today's engine before issue 19, kept as the reference the segment engine is checked against.

The per-interval engine of ``headend.billing.engine`` as it was: for every interval it asks the
calendar for the period (``check_interval``) and accumulates in ``Decimal``. Slow (a year of
15-minute data takes about half a second) but simple; ``test_billing_equivalence`` bills random
profiles under random tariffs with both and wants the same bills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext

from headend.billing.calendar import (
    check_interval,
    civil,
    days_in_month,
    hhmm,
    local_days,
    month_of,
    month_seconds,
    year_seconds,
)
from headend.billing.engine import PRECISION, Bill, MonthBill, _annual_minimum, demand_charge, tier_split
from headend.billing.profile_csv import Profile
from headend.billing.tariff.model import Tariff, TariffVersion
from headend.errors import BillingError

ZERO = Decimal(0)


@dataclass
class _Month:
    year: int
    month: int
    kwh: Decimal = ZERO
    energy_charge: Decimal = ZERO  # time_order
    tier_start: Decimal = ZERO  # cumulative kWh of the tier window before this month
    covered: dict = field(default_factory=dict)  # version index -> seconds
    by_vp: dict = field(default_factory=dict)  # (version index, period) -> kWh
    by_name: dict = field(default_factory=dict)
    demand: list = field(default_factory=list)  # (ts, kW)


def _version(tariff: Tariff, ts: int) -> tuple[int, TariffVersion]:
    day = local_days(ts, tariff.utc_offset)
    found = tariff.version_index(day)
    if found is None:
        first = "%04d-%02d-%02d" % civil(tariff.versions[0].effective_from)
        raise BillingError(
            "no tariff in force at %s (the first version starts %s)" % (hhmm(ts, tariff.utc_offset), first)
        )
    return found, tariff.versions[found]


def _period(calendar, ts: int, interval: int, utc_offset: int, what: str) -> int:
    p = check_interval(calendar, ts, interval)
    if p is None:
        raise BillingError(
            "the %s period changes inside the %d-minute interval starting %s (local); "
            "use a profile with shorter intervals" % (what, interval // 60, hhmm(ts, utc_offset))
        )
    return p


def _accumulate(tariff: Tariff, profile: Profile) -> list[_Month]:
    months: dict[tuple[int, int], _Month] = {}
    window: dict = {}  # tier window -> cumulative kWh
    hours = Decimal(profile.interval_s) / 3600
    off = tariff.utc_offset
    any_demand = any(v.demand or any(v.flat_demand) for v in tariff.versions)
    for ts, kwh in profile.points:
        vi, v = _version(tariff, ts)
        y, m = month_of(ts, off)
        mo = months.get((y, m))
        key = (y, m) if tariff.tier_basis == "monthly" else y
        if mo is None:
            mo = months[(y, m)] = _Month(y, m, tier_start=window.get(key, ZERO))
        p = _period(v.calendar, ts, profile.interval_s, off, "energy")
        mo.kwh += kwh
        mo.covered[vi] = mo.covered.get(vi, 0) + profile.interval_s
        mo.by_vp[(vi, p)] = mo.by_vp.get((vi, p), ZERO) + kwh
        name = v.period_names[p]
        mo.by_name[name] = mo.by_name.get(name, ZERO) + kwh
        before = window.get(key, ZERO)
        if tariff.tier_mode == "time_order":
            for rate, part in tier_split(before, kwh, v.energy[p], days_in_month(y, m)):
                mo.energy_charge += rate * part
        window[key] = before + kwh
        if any_demand:
            mo.demand.append((ts, kwh / hours))
    return [months[k] for k in sorted(months)]


def _prorated_energy(tariff: Tariff, mo: _Month) -> Decimal:
    if mo.kwh == 0:
        return ZERO
    dim = days_in_month(mo.year, mo.month)
    numerator = ZERO
    for (vi, p), e in mo.by_vp.items():
        tiers = tariff.versions[vi].energy[p]
        numerator += e * sum(rate * part for rate, part in tier_split(mo.tier_start, mo.kwh, tiers, dim))
    return numerator / mo.kwh


def _demand(tariff: Tariff, v: TariffVersion, mo: _Month, interval: int) -> Decimal:
    total = ZERO
    flat = v.flat_demand[mo.month - 1]
    if flat and mo.demand:
        total += demand_charge(max(kw for _, kw in mo.demand), flat)
    if v.demand:
        peaks: dict[int, Decimal] = {}
        for ts, kw in mo.demand:
            q = _period(v.demand_calendar, ts, interval, tariff.utc_offset, "demand")
            if kw > peaks.get(q, -1):
                peaks[q] = kw
        for q, kw in peaks.items():
            total += demand_charge(kw, v.demand[q])
    return total


def bill_profile(tariff: Tariff, profile: Profile) -> Bill:
    """Monthly bills of ``profile`` under ``tariff`` (pure: no clock, no I/O)."""
    q = tariff.minor_unit
    out: list[MonthBill] = []
    with localcontext(prec=PRECISION):
        months = _accumulate(tariff, profile)
        annual: dict[int, Decimal] = {}
        for mo in months:
            ms = month_seconds(mo.year, mo.month)
            exact = {"energy_charge": mo.energy_charge, "fixed_charge": ZERO, "demand_charge": ZERO}
            if tariff.tier_mode == "prorate":
                exact["energy_charge"] = _prorated_energy(tariff, mo)
            minimum = ZERO
            for vi, seconds in mo.covered.items():
                v = tariff.versions[vi]
                share = Decimal(seconds) / ms
                exact["fixed_charge"] += v.fixed_monthly * share + v.fixed_daily * seconds / 86400
                exact["demand_charge"] += _demand(tariff, v, mo, profile.interval_s) * share
                minimum += v.min_monthly * share
                annual[mo.year] = annual.get(mo.year, ZERO) + v.min_annual * seconds / year_seconds(mo.year)
            lines = {k: x.quantize(q, ROUND_HALF_UP) for k, x in exact.items()}
            subtotal = sum(lines.values())
            lines["minimum_charge"] = max(ZERO, minimum.quantize(q, ROUND_HALF_UP) - subtotal).quantize(q)
            exact["minimum"] = minimum
            peak = max((kw for _, kw in mo.demand), default=ZERO)
            out.append(
                MonthBill(
                    month="%04d-%02d" % (mo.year, mo.month),
                    energy_kwh=mo.kwh,
                    total=subtotal + lines["minimum_charge"],
                    exact=exact,
                    kwh_by_period=dict(mo.by_name),
                    peak_kw=peak,
                    days=Decimal(sum(mo.covered.values())) / 86400,
                    **lines,
                )
            )
        out = _annual_minimum(out, annual, q)
    return Bill(tariff.name, tariff.currency, q, tariff.tier_mode, tuple(out))
