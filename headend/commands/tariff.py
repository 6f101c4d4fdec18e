"""Set-tariff args (docs/protocol.md cmd 3) from a tariff file (docs/tariff-format.md).

``load(path) -> (Tariff, single)`` reads the file with the billing loader (native TOML/JSON,
or OpenEI URDB JSON); ``single`` is True for a native file written without ``[[versions]]``,
whose fields are named ``tariff.…`` rather than ``versions[i].…``.

``set_tariff(tariff, activate_at, now, max_rates, ...) -> SetTariff`` converts the version in
force when the meter will switch: at ``activate_at``, or on receipt (read as ``now``) when it
is 0 or has passed:

- the calendar: a native calendar is already the meter's (day profiles, week profiles,
  seasons, special days, validated by ``protocol.tariff_calendar``); a URDB 12 x 24
  weekday/weekend table becomes one day profile per distinct hour row, one week profile per
  month (five weekdays, then Saturday and Sunday) and a season wherever the month's week
  profile changes. Any other calendar is refused.
- prices: one per period (rate n = the n-th period), in integer milli-units per kWh,
  0..1000000 as the meter takes them; a price that is not a whole number of milli-units is
  refused naming its field. Tiers, demand, fixed and minimum charges are head-end billing
  only: the meter gets the first tier's price and ``notes`` say what was left out.
- rates: more periods than the meter has (``max_rates``) are refused.
- the tariff id: ``tariff_id``, or by default a 31-bit hash of what the meter receives (the
  same tariff content gets the same id on every meter; never 0, which means none).
- later versions are not sent: ``notes`` name each with the ``--activate-at`` that would
  queue it.

Errors are ``CommandError`` naming the field, e.g. ``versions[0].energy.peak``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal

from headend.billing import load_tariff
from headend.billing.calendar import MeterCalendar, MonthHourCalendar, civil, day_start, local_days
from headend.billing.tariff.model import Tariff
from headend.commands import build
from headend.errors import CommandError
from protocol import cbor, messages
from protocol import tariff_calendar as tc

MAX_PRICE = 1000000  # milli-units per kWh (firmware.prepaid.MAX_PRICE)
MAX_TARIFF_ID = 0xFFFFFFFF


@dataclass
class SetTariff:
    args: dict  # the int-keyed set-tariff map
    version: int  # index of the tariff version sent
    periods: tuple[str, ...]  # rate n = periods[n - 1]
    notes: list[str] = field(default_factory=list)


def load(path: str) -> tuple[Tariff, bool]:
    tariff = load_tariff(path)
    single = False
    if tariff.source == "native":
        with open(path, encoding="utf-8") as f:
            text = f.read().lstrip("\ufeff \t\r\n")
        doc = json.loads(text) if text.startswith(("{", "[")) else tomllib.loads(text)
        single = "versions" not in doc
    return tariff, single


def _iso(ts: int, utc_offset: int = 0) -> str:
    """ISO 8601 of unix time ``ts`` in local time ``utc_offset`` minutes east of UTC."""
    local = ts + utc_offset * 60
    y, m, d = civil(local // 86400)
    s = local % 86400
    zone = "%s%02d:%02d" % ("-" if utc_offset < 0 else "+", abs(utc_offset) // 60, abs(utc_offset) % 60)
    return "%04d-%02d-%02dT%02d:%02d:%02d%s" % (y, m, d, s // 3600, s // 60 % 60, s % 60, zone)


def _month_hour(cal: MonthHourCalendar) -> dict:
    days: list[list[list[int]]] = []
    weeks: list[list[int]] = []
    seasons: list[list[int]] = []

    def day_profile(row) -> int:
        dp: list[list[int]] = []
        for hour, period in enumerate(row):
            if not dp or dp[-1][1] != period + 1:
                dp.append([hour * 60, period + 1])
        if dp not in days:
            days.append(dp)
        return days.index(dp)

    for m in range(12):
        week = [day_profile(cal.weekday[m])] * 5 + [day_profile(cal.weekend[m])] * 2
        if week not in weeks:
            weeks.append(week)
        w = weeks.index(week)
        if not seasons or seasons[-1][2] != w:
            seasons.append([m + 1, 1, w])
    return {
        tc.DAY_PROFILES: days,
        tc.WEEK_PROFILES: weeks,
        tc.SEASONS: seasons if len(seasons) > 1 else [],  # one season: week profile 0 all year
        tc.SPECIAL_DAYS: [],
        tc.UTC_OFFSET: cal.utc_offset,
    }


def _calendar(cal, where: str) -> dict:
    if isinstance(cal, MeterCalendar):
        m = cal.map
        return {
            tc.DAY_PROFILES: [[list(e) for e in dp] for dp in m[tc.DAY_PROFILES]],
            tc.WEEK_PROFILES: [list(w) for w in m[tc.WEEK_PROFILES]],
            tc.SEASONS: [list(s) for s in m.get(tc.SEASONS) or ()],
            tc.SPECIAL_DAYS: [list(s) for s in m.get(tc.SPECIAL_DAYS) or ()],
            tc.UTC_OFFSET: m.get(tc.UTC_OFFSET, 0),
        }
    if isinstance(cal, MonthHourCalendar):
        return _month_hour(cal)
    raise CommandError(
        "%s: this time-of-use structure (%s) cannot be expressed as a meter calendar"
        % (where, type(cal).__name__),
        where,
    )


def _price(rate: Decimal, where: str) -> int:
    milli = rate * 1000
    if milli != milli.to_integral_value() or not 0 <= milli <= MAX_PRICE:
        raise CommandError(
            "%s: %s per kWh is not a whole number of milli-units 0..%d: the meter prices in"
            " integer milli-units per kWh" % (where, rate, MAX_PRICE),
            where,
        )
    return int(milli)


def default_id(args: dict) -> int:
    body = cbor.dumps({k: args[k] for k in sorted(args) if k not in (tc.ID, tc.ACTIVATE_AT)})
    return int.from_bytes(hashlib.sha256(body).digest()[:4], "big") & 0x7FFFFFFF or 1


def set_tariff(
    tariff: Tariff,
    activate_at: int,
    now: float,
    max_rates: int,
    rates_from: str = "the protocol's limit",
    tariff_id: int | None = None,
    single: bool = False,
) -> SetTariff:
    """The set-tariff args of the version in force when the meter switches (module docstring)."""
    urdb = tariff.source == "urdb"
    at = max(activate_at, int(now))  # the meter switches on receipt when activate_at has passed
    i = tariff.version_index(local_days(at, tariff.utc_offset))
    if i is None:
        where = "tariff.effective_from" if single else "versions[0].effective_from"
        when = _iso(at, tariff.utc_offset)
        raise CommandError("%s: no version of the tariff is in force at %s" % (where, when), where)
    v = tariff.versions[i]
    where = "tariff" if single or urdb else "versions[%d]" % i
    if urdb:
        cal_field, rates_field = "energyweekdayschedule", "energyratestructure"
    else:
        cal_field, rates_field = where + ".calendar", where + ".periods"
    names = v.period_names
    if len(names) > max_rates:
        raise CommandError(
            "%s: %d rates (%s) but the meter has %d (%s)"
            % (rates_field, len(names), ", ".join(names), max_rates, rates_from),
            rates_field,
        )
    args = {tc.ID: 0, tc.ACTIVATE_AT: activate_at, tc.PRICES: []}
    for p, tiers in enumerate(v.energy):
        f = "energyratestructure[%d][0]" % p if urdb else "%s.energy.%s" % (where, names[p])
        args[tc.PRICES].append(_price(tiers[0].rate, f))
    cal = _calendar(v.calendar, cal_field)
    for k in (tc.DAY_PROFILES, tc.WEEK_PROFILES, tc.SEASONS, tc.SPECIAL_DAYS, tc.UTC_OFFSET):
        if cal[k] or k in (tc.DAY_PROFILES, tc.WEEK_PROFILES):  # optional keys only when not default
            args[k] = cal[k]
    if tariff_id is not None and not 1 <= tariff_id <= MAX_TARIFF_ID:
        raise CommandError("tariff id must be 1..%d, got %d" % (MAX_TARIFF_ID, tariff_id), "tariff_id")
    args[tc.ID] = tariff_id if tariff_id is not None else default_id(args)
    out = SetTariff(args, i, names)
    left = []
    if any(len(t) > 1 for t in v.energy):
        left.append("tiers (the meter gets each period's first-tier price)")
    if any(v.flat_demand) or v.demand:
        left.append("demand charges")
    if v.fixed_monthly or v.fixed_daily:
        left.append("fixed charges")
    if v.min_monthly or v.min_annual:
        left.append("minimum charges")
    if left:
        out.notes.append("head-end billing only, not sent: " + ", ".join(left))
    for j in range(i + 1, len(tariff.versions)):
        start = day_start(tariff.versions[j].effective_from, tariff.utc_offset)
        out.notes.append(
            "versions[%d] is not sent: queue it with --activate-at %s" % (j, _iso(start, tariff.utc_offset))
        )
    return out


def for_meter(store, meter_id: str, path: str, activate_at: str, tariff_id, now: float):
    """(wire args, ref, notes) of a set-tariff command from the tariff file at ``path`` for this
    meter's rates (``headend command tariff`` and the console's ``tariff``); ``activate_at`` is
    "now" or a time ``build.parse_time`` reads."""
    meter = store.meter(meter_id)
    if meter is None:
        raise CommandError("unknown meter %r" % meter_id, "meter_id")
    if meter["rates"]:
        max_rates, source = meter["rates"], "meters.rates of %s" % meter_id
    elif meter["status_rates"]:
        max_rates, source = meter["status_rates"], "as %s last reported in its status" % meter_id
    else:
        max_rates, source = messages.MAX_RATES, "the protocol's limit"
    activate = 0 if activate_at == "now" else build.parse_time(activate_at, now, "--activate-at")
    tariff, single = load(path)
    got = set_tariff(tariff, activate, now, max_rates, source, tariff_id, single)
    return got.args, "%s versions[%d]" % (path, got.version), got.notes
