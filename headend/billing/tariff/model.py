"""The billing tariff model (loading a tariff file is ``headend.billing.tariff.load``).

A ``Tariff`` is a list of ``TariffVersion``s with effective dates. Each version prices
energy per time-of-use period (with tiers), and adds fixed, demand and minimum charges.
The file format is documented in docs/tariff-format.md; ``headend.billing.tariff.native`` reads
it, ``headend.billing.tariff.urdb`` reads URDB records, ``load`` tells which a file
is. Money and energy are ``Decimal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from headend.errors import TariffError

TIER_MODES = ("time_order", "prorate")
TIER_BASES = ("monthly", "annual")
NATIVE_FORMAT = "open-ami-tariff"
ZERO = Decimal(0)


@dataclass(frozen=True)
class Tier:
    """One block of an energy price: ``rate`` per kWh up to ``max_kwh`` of cumulative use in
    the tier window (month or year); None is unbounded. ``per_day``: the bound is per day of
    the month (URDB ``kWh daily``)."""

    rate: Decimal
    max_kwh: Decimal | None = None
    per_day: bool = False

    def bound(self, days_in_month: int) -> Decimal | None:
        if self.max_kwh is None or not self.per_day:
            return self.max_kwh
        return self.max_kwh * days_in_month


@dataclass(frozen=True)
class DemandTier:
    """One block of a demand charge: ``rate`` per kW of peak demand up to ``max_kw``."""

    rate: Decimal
    max_kw: Decimal | None = None


NO_DEMAND: tuple = tuple(() for _ in range(12))


@dataclass(frozen=True)
class TariffVersion:
    """The tariff in force from local date ``effective_from`` (days since 1970-01-01; None:
    from the beginning of time) until the next version's."""

    calendar: object  # MeterCalendar | MonthHourCalendar: energy period at a time
    period_names: tuple[str, ...]
    energy: tuple[tuple[Tier, ...], ...]  # per energy period, its tiers
    effective_from: int | None = None
    fixed_monthly: Decimal = ZERO
    fixed_daily: Decimal = ZERO
    flat_demand: tuple[tuple[DemandTier, ...], ...] = NO_DEMAND  # per month 1..12 (index m-1)
    demand_calendar: object | None = None  # demand period at a time (None: no TOU demand)
    demand_period_names: tuple[str, ...] = ()
    demand: tuple[tuple[DemandTier, ...], ...] = ()  # per demand period, its tiers
    min_monthly: Decimal = ZERO
    min_annual: Decimal = ZERO


@dataclass(frozen=True)
class Tariff:
    name: str
    versions: tuple[TariffVersion, ...]
    currency: str = ""
    minor_unit: Decimal = Decimal("0.01")
    utc_offset: int = 0  # minutes east of UTC: the local time of calendars, months and days
    tier_mode: str = "time_order"
    tier_basis: str = "monthly"
    source: str = "native"
    extra: dict = field(default_factory=dict, compare=False)

    def version_index(self, local_day: int) -> int | None:
        """Index of the version in force on local date ``local_day``, or None before the first."""
        found = None
        for i, v in enumerate(self.versions):
            if v.effective_from is not None and v.effective_from > local_day:
                break
            found = i
        return found


def check_overrides(overrides: dict) -> dict:
    """Validate ``tier_mode`` / ``utc_offset`` overrides (None values are dropped)."""
    out = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(out) - {"tier_mode", "utc_offset"}
    if unknown:
        raise TypeError("unknown tariff override: %s" % ", ".join(sorted(unknown)))
    if "tier_mode" in out and out["tier_mode"] not in TIER_MODES:
        raise TariffError("tier_mode must be one of %s" % ", ".join(TIER_MODES), "tier_mode")
    if "utc_offset" in out and not (type(out["utc_offset"]) is int and -1439 <= out["utc_offset"] <= 1439):
        raise TariffError("utc_offset must be -1439..1439 minutes", "utc_offset")
    return out
