# Tariff calendar: which rate of a set-tariff (docs/protocol.md command 3) is in force when.
#
# Pure functions over ints, lists and dicts, shared by meter firmware (MicroPython)
# and head-end (CPython) so both agree, to the minute, on the rate that applies.
# Nothing here reads a clock: callers pass the unix time ``ts`` (int seconds).
# Dates use integer civil-date math (Howard Hinnant's days_from_civil /
# civil_from_days, proleptic Gregorian), never time.gmtime, whose epoch differs
# between boards.
#
# A tariff is the set-tariff args map with int keys: 0 id, 1 activate_at,
# 2 prices, 3 day profiles, 4 week profiles, 5 seasons, 6 special days,
# 7 utc_offset. validate_tariff checks one once, at load; the lookups then trust
# it. Errors are ProtocolError whose ``field`` names the bad part with the names
# in FIELD_NAMES, e.g. "tariff.day_profiles[1][2][0]" (key 3, day profile 1,
# entry 2, its minute) or "tariff.seasons[0]"; "tariff" is the map itself.
#
# Comments, not docstrings: compiling this file from source must fit, next to a
# test module, in a 64 KiB MicroPython heap, and docstrings sit in the parse tree.

from protocol.errors import ProtocolError

ID = 0
ACTIVATE_AT = 1
PRICES = 2
DAY_PROFILES = 3
WEEK_PROFILES = 4
SEASONS = 5
SPECIAL_DAYS = 6
UTC_OFFSET = 7
FIELD_NAMES = (
    "id",
    "activate_at",
    "prices",
    "day_profiles",
    "week_profiles",
    "seasons",
    "special_days",
    "utc_offset",
)

UINT_MAX = 0xFFFFFFFFFFFFFFFF  # CBOR unsigned int (major type 0)
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


# -- civil dates ----------------------------------------------------------------


# Days since 1970-01-01 of the proleptic Gregorian date y-m-d.
def days_from_civil(y, m, d):
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400  # 0..399
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1  # 0..365, the year starting Mar 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy  # 0..146096
    return era * 146097 + doe - 719468


# (year, month, day) of the date ``days`` after 1970-01-01.
def civil_from_days(days):
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    if mp < 10:
        return (yoe + era * 400, mp + 3, d)
    return (yoe + era * 400 + 1, mp - 9, d)


# 0..6, Monday = 0, of the date ``days`` after 1970-01-01 (a Thursday).
def weekday(days):
    return (days + 3) % 7


def is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


# Days in month m of year y; year 0 means "every year", so February has 29.
def days_in_month(y, m):
    if m == 2 and y and not is_leap(y):
        return 28
    return _MONTH_DAYS[m - 1]


# -- validation -----------------------------------------------------------------


def _is_seq(x):
    return isinstance(x, (list, tuple))


# type(), not isinstance(): True/False are not ints on the wire.
def _int_in(x, lo, hi):
    return type(x) is int and lo <= x <= hi


# Field strings are built only on failure, so valid tariffs allocate none.
def _fail(msg, key=None, *idx):
    f = "tariff"
    if key is not None:
        f += "." + FIELD_NAMES[key]
        for i in idx:
            f += "[%d]" % i
    raise ProtocolError("%s: %s" % (f, msg), f)


def _list(args, key, required):
    if key not in args:
        if required:
            _fail("missing", key)
        return []
    x = args[key]
    if not _is_seq(x) or (required and not x):
        _fail("must be a non-empty list" if required else "must be a list", key)
    return x


def _check_day_profile(dp, i, nrates):
    if not _is_seq(dp) or not dp:
        _fail("must be a non-empty list of [minute_of_day, rate]", DAY_PROFILES, i)
    last = -1
    for j, e in enumerate(dp):
        if not _is_seq(e) or len(e) != 2:
            _fail("must be [minute_of_day, rate]", DAY_PROFILES, i, j)
        if not _int_in(e[0], 0, 1439):
            _fail("minute_of_day must be 0..1439", DAY_PROFILES, i, j, 0)
        if e[0] <= last or (j == 0 and e[0] != 0):
            _fail("minutes must start at 0 and increase", DAY_PROFILES, i, j, 0)
        if not _int_in(e[1], 1, nrates):
            _fail("rate must be 1..%d" % nrates, DAY_PROFILES, i, j, 1)
        last = e[0]


def _check_seasons(seasons, nweeks):
    prev = 0
    for i, s in enumerate(seasons):
        if not _is_seq(s) or len(s) != 3:
            _fail("must be [month, day, week_profile_index]", SEASONS, i)
        if not _int_in(s[0], 1, 12):
            _fail("month must be 1..12", SEASONS, i, 0)
        if not _int_in(s[1], 1, days_in_month(0, s[0])):
            _fail("no such day in month %d" % s[0], SEASONS, i, 1)
        if not _int_in(s[2], 0, nweeks - 1):
            _fail("week profile index must be 0..%d" % (nweeks - 1), SEASONS, i, 2)
        if s[0] * 32 + s[1] <= prev:
            _fail("seasons must be strictly sorted by (month, day)", SEASONS, i)
        prev = s[0] * 32 + s[1]


def _check_special_days(special, ndays):
    for i, s in enumerate(special):
        if not _is_seq(s) or len(s) != 4:
            _fail("must be [year, month, day, day_profile_index]", SPECIAL_DAYS, i)
        if not (_int_in(s[0], 1970, 9999) or _int_in(s[0], 0, 0)):
            _fail("year must be 0 (every year) or 1970..9999", SPECIAL_DAYS, i, 0)
        if not _int_in(s[1], 1, 12):
            _fail("month must be 1..12", SPECIAL_DAYS, i, 1)
        if not _int_in(s[2], 1, days_in_month(s[0], s[1])):
            _fail("no such day in %d-%d" % (s[0], s[1]), SPECIAL_DAYS, i, 2)
        if not _int_in(s[3], 0, ndays - 1):
            _fail("day profile index must be 0..%d" % (ndays - 1), SPECIAL_DAYS, i, 3)
        for k in range(i):
            if special[k][0] == s[0] and special[k][1] == s[1] and special[k][2] == s[2]:
                _fail("same date as special_days[%d]" % k, SPECIAL_DAYS, i)


# Check set-tariff args (int keys, lists or tuples) and return a new map, a
# shallow copy with the defaults filled in: 5 and 6 an empty list when absent,
# 7 zero when absent. The argument is not modified; unknown keys are carried
# over unchecked. An empty seasons list means no seasons (week profile 0 all
# year). Keys are checked in order 0..7 and the first bad field is raised.
def validate_tariff(args):
    if not isinstance(args, dict):
        _fail("must be a map")
    for key in (ID, ACTIVATE_AT):
        if not _int_in(args.get(key), 0, UINT_MAX):
            _fail("must be an unsigned integer" if key in args else "missing", key)
    prices = _list(args, PRICES, True)
    for i, p in enumerate(prices):
        if not _int_in(p, 0, UINT_MAX):
            _fail("price must be an unsigned integer", PRICES, i)
    days = _list(args, DAY_PROFILES, True)
    for i, dp in enumerate(days):
        _check_day_profile(dp, i, len(prices))
    weeks = _list(args, WEEK_PROFILES, True)
    for i, wp in enumerate(weeks):
        if not _is_seq(wp) or len(wp) != 7:
            _fail("must be 7 day profile indexes, Monday first", WEEK_PROFILES, i)
        for k, x in enumerate(wp):
            if not _int_in(x, 0, len(days) - 1):
                _fail("day profile index must be 0..%d" % (len(days) - 1), WEEK_PROFILES, i, k)
    seasons = _list(args, SEASONS, False)
    _check_seasons(seasons, len(weeks))
    special = _list(args, SPECIAL_DAYS, False)
    _check_special_days(special, len(days))
    offset = args.get(UTC_OFFSET, 0)
    if not _int_in(offset, -1439, 1439):
        _fail("must be -1439..1439 minutes", UTC_OFFSET)
    out = dict(args)
    out[SEASONS] = seasons
    out[SPECIAL_DAYS] = special
    out[UTC_OFFSET] = offset
    return out


# validate_tariff of args as JSON carries them, keys "0".."7". Keys that are not
# canonical decimal strings ("07", "x") are ignored like any unknown key.
def tariff_from_json(obj):
    if not isinstance(obj, dict):
        _fail("must be a map")
    args = {}
    for k in obj:
        if type(k) is str and k and (k == "0" or k[0] != "0"):
            for c in k:
                if c < "0" or c > "9":
                    break
            else:
                args[int(k)] = obj[k]
    return validate_tariff(args)


# -- lookups (the tariff is validated) --------------------------------------------


# The day profile, a list of [minute, rate], of local date ``days``: a special
# day of that year, else one of year 0, else the week profile of the season in
# force (the last one started; before the first start date, the last of the
# list, wrapping over the new year; none: week profile 0), by weekday.
def _day_profile(tariff, days):
    y, m, d = civil_from_days(days)
    found = -1
    for s in tariff.get(SPECIAL_DAYS) or ():
        if s[1] == m and s[2] == d:
            if s[0] == y:
                return tariff[DAY_PROFILES][s[3]]
            if s[0] == 0:
                found = s[3]
    if found < 0:
        week = 0
        seasons = tariff.get(SEASONS)
        if seasons:
            season = seasons[-1]
            for s in seasons:
                if s[0] * 32 + s[1] > m * 32 + d:
                    break
                season = s
            week = season[2]
        found = tariff[WEEK_PROFILES][week][weekday(days)]
    return tariff[DAY_PROFILES][found]


# The 1-based rate in force at unix time ts: the last day-profile entry whose
# minute <= the local minute of day.
def rate_at(tariff, ts):
    local = ts + tariff.get(UTC_OFFSET, 0) * 60
    days = local // 86400
    minute = (local - days * 86400) // 60
    rate = 0
    for e in _day_profile(tariff, days):
        if e[0] > minute:
            break
        rate = e[1]
    return rate


# The first instant t > ts that is a day-profile switch point or a local
# midnight; the rate is constant on [ts, t). Every entry and every midnight
# counts, so the rate at t may be the same as before it.
def next_change(tariff, ts):
    offset = tariff.get(UTC_OFFSET, 0) * 60
    days = (ts + offset) // 86400
    midnight = days * 86400 - offset  # unix time of this local midnight
    minute = (ts - midnight) // 60
    for e in _day_profile(tariff, days):
        if e[0] > minute:
            return midnight + e[0] * 60
    return midnight + 86400


# ``pending`` (may be None) once ts >= its activate_at (0: at once), else
# ``current``, returned as given.
def in_force(current, pending, ts):
    if pending is not None and (pending[ACTIVATE_AT] == 0 or ts >= pending[ACTIVATE_AT]):
        return pending
    return current


def rate_in_force(current, pending, ts):
    return rate_at(in_force(current, pending, ts), ts)
