"""Price one account's cycle: a fast path over kWh per period, or the full engine.

``CyclePricer(tariff, year, month)`` is built once per tariff and cycle. Energy per TOU
period comes from the meter's rate registers (rate r is period r - 1, the tariff file's
numbering, since the meter runs the same calendar); a one-period tariff takes every rate.

- ``fast`` is possible when one version is in force for the whole month, the month has no
  demand charge and no annual minimum, tiers count per month, and either every period has
  one price, the tariff has one period, or tiers are prorated (NREL SAM): then the bill
  depends only on kWh per period and the covered seconds, and ``price_fast`` computes
  exactly what ``engine.bill_profile`` computes for any profile with those sums (the same
  Decimal operations in the same order; tested against it).
- a TOU-only tariff (``from_registers``: fast, and one price per period without tiers) is
  billed from the per-rate register deltas between the cycle's boundary reads when the
  account has them; its load profile then only has to agree with them (``checks``).
- otherwise ``price_profile`` bills the interval profile (total kWh per 15-min or hourly
  interval) with ``engine.bill_profile``.

Both return ``{"lines": {item: Decimal}, "total": Decimal}`` with lines rounded as the
engine rounds them (half-up to the minor unit; total = sum of the rounded lines).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

from headend.billing.calendar import days_in_month, local_days, month_seconds, month_start
from headend.billing.engine import LINES, PRECISION, Bill, bill_profile, tier_split
from headend.billing.profile_csv import Profile
from headend.billing.tariff.model import Tariff
from headend.errors import BillingError

ZERO = Decimal(0)
RULE = Bill.rule


class _ZeroDemand(dict):
    """minor unit -> a zero demand charge quantized to it (as ``_round`` would give)."""

    def __missing__(self, q: Decimal) -> Decimal:
        self[q] = ZERO.quantize(q, ROUND_HALF_UP)
        return self[q]


ZERO_DEMAND = _ZeroDemand()


class CyclePricer:
    def __init__(self, tariff: Tariff, year: int, month: int):
        self.tariff = tariff
        self.year, self.month = year, month
        self.start = month_start(year, month, tariff.utc_offset)
        self.end = self.start + month_seconds(year, month)
        self.ms = month_seconds(year, month)
        self.dim = days_in_month(year, month)
        first = tariff.version_index(local_days(self.start, tariff.utc_offset))
        last = tariff.version_index(local_days(self.end - 1, tariff.utc_offset))
        self.version = tariff.versions[first] if first is not None and first == last else None
        self.n_periods = len(self.version.period_names) if self.version else 0
        self.fast = self._fast_ok()
        # TOU only (one version all month, one price per period, no tiers, no demand): billed from
        # the meter's rate registers, the way utilities bill TOU meters (run.price)
        self.from_registers = self.fast and self._flat is not None

    def _fast_ok(self) -> bool:
        v, t = self.version, self.tariff
        if (
            v is None
            or t.tier_basis != "monthly"
            or v.min_annual
            or v.demand
            or v.flat_demand[self.month - 1]
        ):
            return False
        one_price = all(len(tiers) == 1 for tiers in v.energy)
        return one_price or len(v.energy) == 1 or t.tier_mode == "prorate"

    def period_kwh(self, kwh_by_rate: dict[int, Decimal]) -> dict[int, Decimal]:
        """kWh per 0-based period from kWh per 1-based rate."""
        if self.n_periods == 1:
            return {0: sum(kwh_by_rate.values(), ZERO)}
        out: dict[int, Decimal] = {}
        for rate, kwh in kwh_by_rate.items():
            if not 1 <= rate <= self.n_periods:
                if kwh:
                    raise BillingError(
                        "rate T%d has no period in the tariff (%d periods)" % (rate, self.n_periods)
                    )
                continue
            out[rate - 1] = out.get(rate - 1, ZERO) + kwh
        return out

    def price_fast(self, kwh_by_rate: dict[int, Decimal], covered_s: int) -> dict:
        v, q = self.version, self.tariff.minor_unit
        with localcontext(prec=PRECISION):
            by_period = self.period_kwh(kwh_by_rate)
            total = sum(by_period.values(), ZERO)
            energy = ZERO
            if self.tariff.tier_mode == "prorate":
                if total:
                    num = ZERO
                    for p, e in by_period.items():
                        num += e * sum(r * part for r, part in tier_split(ZERO, total, v.energy[p], self.dim))
                    energy = num / total
            elif self._flat is not None:  # one price per period: no tier walk
                flat = self._flat
                for p, e in by_period.items():
                    if e > 0:  # as tier_split: nothing for no or negative use
                        energy += flat[p] * e
            else:
                for p, e in sorted(by_period.items()):
                    for rate, part in tier_split(ZERO, e, v.energy[p], self.dim):
                        energy += rate * part
            fixed, minimum = self._fixed(covered_s)
            energy = energy.quantize(q, ROUND_HALF_UP)
            subtotal = energy + fixed + ZERO_DEMAND[q]
            lines = {
                "energy_charge": energy,
                "fixed_charge": fixed,
                "demand_charge": ZERO_DEMAND[q],
                "minimum_charge": max(ZERO, minimum - subtotal).quantize(q),
            }
            return {"lines": lines, "total": subtotal + lines["minimum_charge"], "kwh": total}

    @property
    def _flat(self) -> list[Decimal] | None:
        """Each period's single price, when no period has tiers (None otherwise)."""
        if "_flat_cache" not in self.__dict__:
            energy = self.version.energy if self.version else ()
            flat = all(len(tiers) == 1 and tiers[0].max_kwh is None for tiers in energy)
            self.__dict__["_flat_cache"] = [tiers[0].rate for tiers in energy] if flat else None
        return self.__dict__["_flat_cache"]

    def _fixed(self, covered_s: int) -> tuple[Decimal, Decimal]:
        """(fixed charge, minimum) rounded, for ``covered_s`` seconds of data: the same for
        most accounts of a cycle, so computed once per distinct coverage."""
        cache = self.__dict__.setdefault("_fixed_cache", {})
        got = cache.get(covered_s)
        if got is None:
            v, q = self.version, self.tariff.minor_unit
            with localcontext(prec=PRECISION):
                share = Decimal(covered_s) / self.ms
                fixed = ZERO + v.fixed_monthly * share + v.fixed_daily * covered_s / 86400
                got = (fixed.quantize(q, ROUND_HALF_UP), (v.min_monthly * share).quantize(q, ROUND_HALF_UP))
            if len(cache) < 4096:
                cache[covered_s] = got
        return got

    def price_profile(self, interval_s: int, points: list[tuple[int, Decimal]]) -> dict:
        bill = bill_profile(self.tariff, Profile(interval_s, tuple(points)))
        want = "%04d-%02d" % (self.year, self.month)
        for m in bill.months:
            if m.month == want:
                lines = {k: getattr(m, k) for k in LINES}
                return {"lines": lines, "total": m.total, "kwh": m.energy_kwh}
        raise BillingError("no data in %s" % want)
