"""Read the native tariff format (docs/tariff-format.md) into a ``Tariff``.

Every field is checked once, here, and a bad one raises ``TariffError`` naming it, e.g.
``versions[1].energy.peak[2]``. The calendar is handed to ``protocol.tariff_calendar``'s
``validate_tariff``, the meter's own validator, so both ends accept the same calendars.
"""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation

from headend.billing.calendar import MeterCalendar, days_from_civil
from headend.billing.tariff.model import (
    NATIVE_FORMAT,
    TIER_BASES,
    TIER_MODES,
    DemandTier,
    Tariff,
    TariffVersion,
    Tier,
    check_overrides,
)
from headend.errors import TariffError
from protocol import tariff_calendar as tc
from protocol.errors import ProtocolError

TOP_KEYS = {"format", "name", "currency", "minor_unit", "utc_offset", "tier_mode", "tier_basis", "versions"}
VERSION_KEYS = {"effective_from", "periods", "calendar", "tiers", "energy", "fixed", "demand", "minimum"}


def fail(where: str, msg: str):
    raise TariffError("%s: %s" % (where, msg), where)


MAX_NUMBER = Decimal(10) ** 15  # far above any real price, bound or charge; keeps sums finite


def decimal_of(x, where: str, *, signed: bool = False) -> Decimal:
    """A finite Decimal from an int, a Decimal (TOML/JSON floats are read as Decimal) or a
    numeric string, below ``MAX_NUMBER`` in magnitude; negative only when ``signed``."""
    if isinstance(x, bool) or not isinstance(x, (int, Decimal, str, float)):
        fail(where, "must be a number")
    try:
        d = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    except InvalidOperation:
        fail(where, "not a number: %r" % (x,))
    if not d.is_finite():
        fail(where, "must be finite")
    if d.copy_abs() >= MAX_NUMBER:  # copy_abs: abs() rounds to the context and may overflow
        fail(where, "must be below %s in magnitude" % MAX_NUMBER)
    if d < 0 and not signed:
        fail(where, "must not be negative")
    return d


def _keys(obj, allowed: set, where: str) -> dict:
    if not isinstance(obj, dict):
        fail(where, "must be a table")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        fail(where, "unknown key %r (allowed: %s)" % (unknown[0], ", ".join(sorted(allowed))))
    return obj


def _date(x, where: str) -> int:
    if isinstance(x, datetime.datetime) or not isinstance(x, (datetime.date, str)):
        fail(where, "must be a date YYYY-MM-DD")
    if isinstance(x, str):
        try:
            x = datetime.date.fromisoformat(x)
        except ValueError:
            fail(where, "must be a date YYYY-MM-DD, not %r" % x)
    return days_from_civil(x.year, x.month, x.day)


def _minute(x, where: str) -> int:
    if type(x) is int:
        return x
    if isinstance(x, str) and len(x) == 5 and x[2] == ":" and x[:2].isdigit() and x[3:].isdigit():
        h, m = int(x[:2]), int(x[3:])
        if h < 24 and m < 60:
            return h * 60 + m
    fail(where, 'must be minutes of the day or "HH:MM", not %r' % (x,))


def _calendar(cal, names: list[str], utc_offset: int, where: str) -> MeterCalendar:
    if cal is None:
        if len(names) != 1:
            fail(where + ".calendar", "missing: needed when there is more than one period")
        cal = {"day_profiles": [[[0, 1]]], "week_profiles": [[0] * 7]}
    _keys(cal, {"day_profiles", "week_profiles", "seasons", "special_days"}, where + ".calendar")
    if not isinstance(cal.get("day_profiles", []), list):
        fail(where + ".calendar.day_profiles", "must be a list of day profiles")
    days = []
    for i, dp in enumerate(cal.get("day_profiles") or []):
        entries = []
        for j, e in enumerate(dp if isinstance(dp, list) else []):
            w = "%s.calendar.day_profiles[%d][%d]" % (where, i, j)
            if not isinstance(e, list) or len(e) != 2:
                fail(w, 'must be [minute or "HH:MM", period name or number]')
            p = e[1]
            if isinstance(p, str):
                if p not in names:
                    fail(w + "[1]", "unknown period %r (periods: %s)" % (p, ", ".join(names)))
                p = names.index(p) + 1
            entries.append([_minute(e[0], w + "[0]"), p])
        days.append(entries if isinstance(dp, list) else dp)
    args = {0: 0, 1: 0, 2: [0] * len(names), 3: days, 4: cal.get("week_profiles"), 7: utc_offset}
    for key, k in ((5, "seasons"), (6, "special_days")):
        if k in cal:
            args[key] = cal[k]
    try:
        return MeterCalendar(tc.validate_tariff(args))
    except ProtocolError as e:
        f = (e.field or "tariff").replace("tariff", where + ".calendar", 1)
        fail(f, str(e).split(": ", 1)[-1])


def _demand_tiers(x, where: str) -> tuple[DemandTier, ...]:
    if not isinstance(x, list):
        return (DemandTier(decimal_of(x, where)),)
    out, last = [], Decimal(0)
    for i, t in enumerate(x):
        w = "%s[%d]" % (where, i)
        _keys(t, {"rate", "max_kw"}, w)
        if "rate" not in t:
            fail(w + ".rate", "missing")
        mx = t.get("max_kw")
        if mx is None and i != len(x) - 1:
            fail(w + ".max_kw", "missing: only the last tier is unbounded")
        if mx is not None:
            mx = decimal_of(mx, w + ".max_kw")
            if mx <= last:
                fail(w + ".max_kw", "must be above the previous tier's")
            last = mx
        out.append(DemandTier(decimal_of(t["rate"], w + ".rate"), mx))
    if not out:
        fail(where, "must not be empty")
    return tuple(out)


def _energy(v: dict, names: list[str], where: str) -> tuple:
    tiers = _keys(v.get("tiers", {}), {"max_kwh", "surcharge"}, where + ".tiers")
    if not isinstance(tiers.get("max_kwh", []), list):
        fail(where + ".tiers.max_kwh", "must be a list of tier bounds, kWh")
    bounds = []
    for i, b in enumerate(tiers.get("max_kwh", [])):
        b = decimal_of(b, "%s.tiers.max_kwh[%d]" % (where, i))
        if b <= (bounds[-1] if bounds else 0):
            fail("%s.tiers.max_kwh[%d]" % (where, i), "must be above zero and the previous bound")
        bounds.append(b)
    n = len(bounds) + 1
    surcharge = tiers.get("surcharge", [0] * n)
    if not isinstance(surcharge, list) or len(surcharge) != n:
        fail(where + ".tiers.surcharge", "must list %d values, one per tier" % n)
    adders = [
        decimal_of(s, "%s.tiers.surcharge[%d]" % (where, i), signed=True) for i, s in enumerate(surcharge)
    ]
    energy = _keys(v.get("energy"), set(names), where + ".energy")
    out = []
    for name in names:
        w = "%s.energy.%s" % (where, name)
        if name not in energy:
            fail(w, "missing: every period needs a price")
        prices = energy[name] if isinstance(energy[name], list) else [energy[name]] * n
        if len(prices) != n:
            fail(w, "must be one price or %d, one per tier" % n)
        row = []
        for k in range(n):
            rate = decimal_of(prices[k], "%s[%d]" % (w, k)) + adders[k]
            if rate < 0:
                fail("%s[%d]" % (w, k), "price plus surcharge is negative")
            row.append(Tier(rate, bounds[k] if k < len(bounds) else None))
        out.append(tuple(row))
    return tuple(out)


def _version(v: dict, utc_offset: int, where: str) -> TariffVersion:
    _keys(v, VERSION_KEYS, where)
    names = v.get("periods")
    if names is None:
        energy = v.get("energy")
        names = list(energy) if isinstance(energy, dict) and "calendar" not in v else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        fail(where + ".periods", "must be a non-empty list of period names")
    if len(set(names)) != len(names):
        fail(where + ".periods", "names must be unique")
    calendar = _calendar(v.get("calendar"), names, utc_offset, where)
    fixed = _keys(v.get("fixed", {}), {"monthly", "daily"}, where + ".fixed")
    minimum = _keys(v.get("minimum", {}), {"monthly", "annual"}, where + ".minimum")
    demand = _keys(v.get("demand", {}), {"monthly", "months", "periods"}, where + ".demand")
    flat = [()] * 12
    if "monthly" in demand:
        tiers = _demand_tiers(demand["monthly"], where + ".demand.monthly")
        months = demand.get("months", list(range(1, 13)))
        if not isinstance(months, list) or not all(type(m) is int and 1 <= m <= 12 for m in months):
            fail(where + ".demand.months", "must be a list of months 1..12")
        for m in months:
            flat[m - 1] = tiers
    per = _keys(demand.get("periods", {}), set(names), where + ".demand.periods")
    tou = tuple(_demand_tiers(per[n], "%s.demand.periods.%s" % (where, n)) if n in per else () for n in names)
    return TariffVersion(
        calendar=calendar,
        period_names=tuple(names),
        energy=_energy(v, names, where),
        effective_from=_date(v["effective_from"], where + ".effective_from")
        if "effective_from" in v
        else None,
        fixed_monthly=decimal_of(fixed.get("monthly", 0), where + ".fixed.monthly"),
        fixed_daily=decimal_of(fixed.get("daily", 0), where + ".fixed.daily"),
        flat_demand=tuple(flat),
        demand_calendar=calendar if per else None,
        demand_period_names=tuple(names) if per else (),
        demand=tou if per else (),
        min_monthly=decimal_of(minimum.get("monthly", 0), where + ".minimum.monthly"),
        min_annual=decimal_of(minimum.get("annual", 0), where + ".minimum.annual"),
    )


def tariff_from_native(doc: dict, *, name: str = "tariff", **overrides) -> Tariff:
    over = check_overrides(overrides)
    if doc.get("format") != NATIVE_FORMAT:
        fail("format", 'must be "%s"' % NATIVE_FORMAT)
    top = {k: doc[k] for k in doc if k in TOP_KEYS}
    versions = doc.get("versions")
    if versions is None:  # a single version written at the top level
        versions = [{k: doc[k] for k in doc if k not in TOP_KEYS}]
    else:
        _keys(doc, TOP_KEYS, "tariff")
        if not isinstance(versions, list) or not versions:
            fail("versions", "must be a non-empty list of tables")
    utc_offset = over.get("utc_offset", top.get("utc_offset", 0))
    if not (type(utc_offset) is int and -1439 <= utc_offset <= 1439):
        fail("utc_offset", "must be -1439..1439 minutes east of UTC")
    tier_mode = over.get("tier_mode", top.get("tier_mode", "time_order"))
    if tier_mode not in TIER_MODES:
        fail("tier_mode", "must be one of: %s" % ", ".join(TIER_MODES))
    tier_basis = top.get("tier_basis", "monthly")
    if tier_basis not in TIER_BASES:
        fail("tier_basis", "must be one of: %s" % ", ".join(TIER_BASES))
    minor = decimal_of(top.get("minor_unit", "0.01"), "minor_unit")
    if minor <= 0 or minor > 1 or minor != Decimal(1).scaleb(minor.adjusted()):
        fail("minor_unit", "must be a power of ten no larger than 1, such as 0.01 or 1")
    minor = Decimal(1).scaleb(minor.adjusted())
    single = doc.get("versions") is None
    out = []
    for i, v in enumerate(versions):
        where = "tariff" if single else "versions[%d]" % i
        ver = _version(v, utc_offset, where)
        if i and ver.effective_from is None:
            fail(where + ".effective_from", "missing: every version after the first needs one")
        if i and out[-1].effective_from is not None and ver.effective_from <= out[-1].effective_from:
            fail(where + ".effective_from", "must be after the previous version's")
        out.append(ver)
    return Tariff(
        name=str(top.get("name", name)),
        versions=tuple(out),
        currency=str(top.get("currency", "")),
        minor_unit=minor,
        utc_offset=utc_offset,
        tier_mode=tier_mode,
        tier_basis=tier_basis,
        source="native",
    )
