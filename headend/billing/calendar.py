"""Time-of-use periods and local civil time for billing.

Two calendars answer "which period is in force at unix time ``ts``":

- ``MeterCalendar`` wraps a set-tariff map of ``protocol.tariff_calendar`` (day profiles,
  week profiles, seasons, special days, utc_offset) and asks that module, so the head-end
  bills with exactly the calendar semantics the meter uses to fill its rate registers.
- ``MonthHourCalendar`` is the OpenEI URDB / NREL SAM shape: a 12x24 period table for
  weekdays and another for weekends (Saturday, Sunday), no holidays.

Both return 0-based period indexes and read local time as ``ts + utc_offset`` (minutes east
of UTC, fixed: billing time has no daylight saving). Civil-date arithmetic is the protocol
module's (``days_from_civil`` / ``civil_from_days``), shared with the meter.
"""

from __future__ import annotations

from protocol import tariff_calendar as tc


class MeterCalendar:
    """Periods from a validated set-tariff map (int keys 0..7); period = rate - 1."""

    def __init__(self, tariff_map: dict):
        self.map = tariff_map
        self.utc_offset = tariff_map.get(tc.UTC_OFFSET, 0)

    def period_at(self, ts: int) -> int:
        return tc.rate_at(self.map, ts) - 1

    def next_change(self, ts: int) -> int:
        return tc.next_change(self.map, ts)


class MonthHourCalendar:
    """Periods from 12x24 weekday and weekend tables (0-based periods), read in local time."""

    def __init__(self, weekday: list[list[int]], weekend: list[list[int]], utc_offset: int = 0):
        self.weekday = weekday
        self.weekend = weekend
        self.utc_offset = utc_offset

    def period_at(self, ts: int) -> int:
        local = ts + self.utc_offset * 60
        days = local // 86400
        hour = (local - days * 86400) // 3600
        month = tc.civil_from_days(days)[1]
        table = self.weekend if tc.weekday(days) >= 5 else self.weekday
        return table[month - 1][hour]

    def next_change(self, ts: int) -> int:
        local = ts + self.utc_offset * 60
        return ts + 3600 - local % 3600


def check_interval(calendar, ts: int, seconds: int) -> int | None:
    """The period in force over all of ``[ts, ts + seconds)``, or None if it changes inside."""
    period = calendar.period_at(ts)
    t = ts
    while True:
        t = calendar.next_change(t)
        if t >= ts + seconds:
            return period
        if calendar.period_at(t) != period:
            return None


# -- local civil time ---------------------------------------------------------------------


def local_days(ts: int, utc_offset: int) -> int:
    """Local date of ``ts`` as days since 1970-01-01."""
    return (ts + utc_offset * 60) // 86400


def month_of(ts: int, utc_offset: int) -> tuple[int, int]:
    """Local (year, month) of ``ts``."""
    y, m, _ = tc.civil_from_days(local_days(ts, utc_offset))
    return (y, m)


def month_start(year: int, month: int, utc_offset: int) -> int:
    """Unix time of local midnight starting the month."""
    return tc.days_from_civil(year, month, 1) * 86400 - utc_offset * 60


def month_seconds(year: int, month: int) -> int:
    return tc.days_in_month(year, month) * 86400


def year_seconds(year: int) -> int:
    return (366 if tc.is_leap(year) else 365) * 86400


def days_in_month(year: int, month: int) -> int:
    return tc.days_in_month(year, month)


def day_start(days: int, utc_offset: int) -> int:
    """Unix time of the local midnight starting date ``days``."""
    return days * 86400 - utc_offset * 60


def civil(days: int) -> tuple[int, int, int]:
    return tc.civil_from_days(days)


def days_from_civil(y: int, m: int, d: int) -> int:
    return tc.days_from_civil(y, m, d)


def hhmm(ts: int, utc_offset: int) -> str:
    """Local ``YYYY-MM-DDTHH:MM`` of ``ts``, for error messages."""
    local = ts + utc_offset * 60
    days = local // 86400
    y, m, d = tc.civil_from_days(days)
    minute = (local - days * 86400) // 60
    return "%04d-%02d-%02dT%02d:%02d" % (y, m, d, minute // 60, minute % 60)
