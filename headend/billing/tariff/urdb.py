"""Import an OpenEI Utility Rate Database (URDB) JSON record as a ``Tariff``.

Read as NREL SAM reads them (docs/tariff-format.md, "URDB import"): energy tiers are
monthly and, by default, prorated across periods (``tier_mode = "prorate"``); the 12x24
schedules hold 0-based periods (month rows, hour columns), weekend = Saturday and Sunday;
a fixed charge in $/day is $/day x 365/12 a month and one in $/year is $/year / 12.
Rate features this engine cannot bill (ratchets, coincident demand, kWh/kW tiers) are
refused by name rather than ignored.
"""

from __future__ import annotations

from decimal import Decimal

from headend.billing.calendar import MonthHourCalendar
from headend.billing.tariff.model import DemandTier, Tariff, TariffVersion, Tier, check_overrides
from headend.billing.tariff.native import decimal_of, fail
from headend.errors import TariffError

RATE_KEYS = ("energyratestructure", "flatdemandstructure", "demandratestructure", "fixedchargefirstmeter")
DAYS_PER_MONTH = Decimal(365) / Decimal(12)
REFUSED = (
    "coincidentratestructure",
    "demandratchetpercentage",
    "lookbackpercent",
    "lookbackrange",
    "lookbackmonths",
)


def find_record(doc) -> dict | None:
    """The URDB record in ``doc`` (a record, ``{"items": [record]}`` or ``[record]``), or None."""
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        doc = doc["items"]
    if isinstance(doc, list):
        records = [r for r in doc if isinstance(r, dict) and any(k in r for k in RATE_KEYS)]
        if len(records) > 1:
            raise TariffError("the URDB document holds %d rate records: keep one" % len(records))
        return records[0] if records else None
    if isinstance(doc, dict) and any(k in doc for k in RATE_KEYS):
        return doc
    return None


def _schedule(rec: dict, key: str, nperiods: int) -> list[list[int]]:
    s = rec.get(key)
    if not isinstance(s, list) or len(s) != 12:
        fail(key, "must be 12 rows (months) of 24 periods (hours)")
    for m, row in enumerate(s):
        if not isinstance(row, list) or len(row) != 24:
            fail("%s[%d]" % (key, m), "must be 24 periods, one per hour")
        for h, p in enumerate(row):
            if type(p) is not int or not 0 <= p < nperiods:
                fail("%s[%d][%d]" % (key, m, h), "period must be 0..%d" % (nperiods - 1))
    return s


def _tiers(structure, key: str, *, demand: bool) -> tuple[tuple, ...]:
    if not isinstance(structure, list) or not structure:
        fail(key, "must be a non-empty list of periods, each a list of tiers")
    periods = []
    for p, tiers in enumerate(structure):
        if not isinstance(tiers, list) or not tiers:
            fail("%s[%d]" % (key, p), "must be a non-empty list of tiers")
        out, last = [], Decimal(0)
        for t, tier in enumerate(tiers):
            w = "%s[%d][%d]" % (key, p, t)
            if not isinstance(tier, dict):
                fail(w, "must be an object {rate, adj?, max?, unit?}")
            rate = decimal_of(tier.get("rate", 0), w + ".rate", signed=True)
            rate += decimal_of(tier.get("adj", 0), w + ".adj", signed=True)
            if rate < 0:
                fail(w, "rate + adj is negative (credits are not billed here)")
            mx = tier.get("max")
            if t == len(tiers) - 1:
                mx = None  # the last tier is unbounded, as SAM bills it
            elif mx is None:
                fail(w + ".max", "missing: only the last tier is unbounded")
            else:
                mx = decimal_of(mx, w + ".max")
                if mx <= last:
                    fail(w + ".max", "must be above the previous tier's")
                last = mx
            if demand:
                out.append(DemandTier(rate, mx))
                continue
            unit = str(tier.get("unit", "kWh"))
            if unit.lower() not in ("kwh", "kwh daily"):
                fail(w + ".unit", "unit %r is not supported (kWh or kWh daily)" % unit)
            out.append(Tier(rate, mx, per_day=unit.lower() == "kwh daily"))
        periods.append(tuple(out))
    return tuple(periods)


def _per_month(rec: dict, value_key: str, unit_key: str) -> tuple[Decimal, Decimal]:
    """(monthly, annual) amount of a fixed or minimum charge with its units."""
    if value_key not in rec:
        return Decimal(0), Decimal(0)
    value = decimal_of(rec[value_key], value_key)
    unit = rec.get(unit_key, "$/month")
    if unit == "$/month":
        return value, Decimal(0)
    if unit == "$/day":
        return value * DAYS_PER_MONTH, Decimal(0)
    if unit == "$/year":
        return (value / 12, Decimal(0)) if value_key.startswith("fixed") else (Decimal(0), value)
    fail(unit_key, "unit %r is not supported ($/month, $/day, $/year)" % (unit,))


def _unit(rec: dict, key: str):
    if rec.get(key, "kW") != "kW":
        fail(key, "demand unit %r is not supported (kW)" % (rec[key],))


def tariff_from_urdb(rec: dict, *, name: str = "tariff", **overrides) -> Tariff:
    over = check_overrides(overrides)
    utc_offset = over.get("utc_offset", 0)
    for key in REFUSED:
        if rec.get(key) not in (None, 0, [], "", Decimal(0)):
            fail(key, "not supported by this billing engine")
    if "energyratestructure" in rec:
        energy = _tiers(rec["energyratestructure"], "energyratestructure", demand=False)
        wd = _schedule(rec, "energyweekdayschedule", len(energy))
        we = _schedule(rec, "energyweekendschedule", len(energy))
    else:  # no energy charge
        energy, wd, we = ((Tier(Decimal(0)),),), [[0] * 24] * 12, [[0] * 24] * 12
    flat = tuple(() for _ in range(12))
    if "flatdemandstructure" in rec:
        _unit(rec, "flatdemandunit")
        fds = _tiers(rec["flatdemandstructure"], "flatdemandstructure", demand=True)
        months = rec.get("flatdemandmonths")
        if not isinstance(months, list) or len(months) != 12:
            fail("flatdemandmonths", "must be 12 period indexes, one per month")
        for m, p in enumerate(months):
            if type(p) is not int or not 0 <= p < len(fds):
                fail("flatdemandmonths[%d]" % m, "period must be 0..%d" % (len(fds) - 1))
        flat = tuple(fds[p] for p in months)
    demand, dcal = (), None
    if "demandratestructure" in rec:
        _unit(rec, "demandrateunit")
        demand = _tiers(rec["demandratestructure"], "demandratestructure", demand=True)
        dwd = _schedule(rec, "demandweekdayschedule", len(demand))
        dwe = _schedule(rec, "demandweekendschedule", len(demand))
        dcal = MonthHourCalendar(dwd, dwe, utc_offset)
    fixed, _ = _per_month(rec, "fixedchargefirstmeter", "fixedchargeunits")
    min_monthly, min_annual = _per_month(rec, "mincharge", "minchargeunits")
    if "mincharge" not in rec:  # the older API's names
        min_monthly = decimal_of(rec.get("minmonthlycharge", 0), "minmonthlycharge")
        min_annual = decimal_of(rec.get("annualmincharge", 0), "annualmincharge")
    version = TariffVersion(
        calendar=MonthHourCalendar(wd, we, utc_offset),
        period_names=tuple("period%d" % p for p in range(len(energy))),
        energy=energy,
        fixed_monthly=fixed,
        flat_demand=flat,
        demand_calendar=dcal,
        demand_period_names=tuple("period%d" % p for p in range(len(demand))),
        demand=demand,
        min_monthly=min_monthly,
        min_annual=min_annual,
    )
    return Tariff(
        name=str(rec.get("name") or name),
        versions=(version,),
        currency="USD",
        utc_offset=utc_offset,
        tier_mode=over.get("tier_mode", "prorate"),
        tier_basis="monthly",
        source="urdb",
        extra={k: rec[k] for k in ("label", "utility", "startdate", "enddate") if k in rec},
    )
