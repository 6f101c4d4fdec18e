"""Property tests of protocol.tariff_calendar against a datetime-based reference (CPython only)."""

import calendar
import copy
import importlib.util
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from protocol.tariff_calendar import (
    civil_from_days,
    days_from_civil,
    next_change,
    rate_at,
    tariff_from_json,
    validate_tariff,
    weekday,
)

ROOT = Path(__file__).resolve().parents[2]
TS_MIN = 0
TS_MAX = int(datetime(2101, 1, 1, tzinfo=UTC).timestamp()) - 1
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- independent reference: datetime does the calendar -----------------------------


def ref_local(t, ts):
    return datetime.fromtimestamp(ts, timezone(timedelta(minutes=t.get(7, 0))))


def ref_day_profile(t, day):
    key = (day.month, day.day)
    exact = [s for s in t.get(6, ()) if (s[1], s[2]) == key and s[0] == day.year]
    every = [s for s in t.get(6, ()) if (s[1], s[2]) == key and s[0] == 0]
    if exact or every:
        return t[3][(exact or every)[0][3]]
    seasons = list(t.get(5, ()))
    week = 0
    if seasons:
        begun = [s for s in seasons if (s[0], s[1]) <= key]
        week = begun[-1][2] if begun else seasons[-1][2]
    return t[3][t[4][week][day.weekday()]]


def ref_rate(t, ts):
    local = ref_local(t, ts)
    now = local.hour * 60 + local.minute
    return max((e for e in ref_day_profile(t, local.date()) if e[0] <= now), key=lambda e: e[0])[1]


def ref_next_change(t, ts):
    local = ref_local(t, ts)
    midnight = datetime.combine(local.date(), time(0), local.tzinfo)
    points = [midnight + timedelta(minutes=e[0]) for e in ref_day_profile(t, local.date())]
    points.append(midnight + timedelta(days=1))
    return int(min(p for p in points if p > local).timestamp())


# -- strategies ------------------------------------------------------------------------

# (month, day) of every date of a leap year, Feb 29 included.
MONTH_DAYS = [(d.month, d.day) for d in (date(2000, 1, 1) + timedelta(n) for n in range(366))]


@st.composite
def tariffs(draw, revealing=False):
    """Random valid tariffs. ``revealing``: every (week profile, weekday) and every
    special day has a day profile of its own, rate = index + 1 all day, so the rate
    tells exactly which one the calendar chose."""
    nweeks = draw(st.integers(1, 3))
    starts = sorted(draw(st.sets(st.sampled_from(MONTH_DAYS), max_size=4)))
    seasons = [[m, d, draw(st.integers(0, nweeks - 1))] for m, d in starts]
    dates = set()
    for _ in range(draw(st.integers(0, 4))):
        year = draw(st.sampled_from([0, 0, 1970, 2000, 2024, 2100]) | st.integers(1970, 2100))
        day = draw(st.dates(date(year or 2000, 1, 1), date(year or 2000, 12, 31)))
        dates.add((year, day.month, day.day))
        if year and draw(st.booleans()):  # the same date with and without a year
            dates.add((0, day.month, day.day))
    dates = draw(st.permutations(sorted(dates)))
    if revealing:
        weeks = [[w * 7 + k for k in range(7)] for w in range(nweeks)]
        days = [[[0, i + 1]] for i in range(7 * nweeks + len(dates))]
        special = [[y, m, d, 7 * nweeks + j] for j, (y, m, d) in enumerate(dates)]
        nrates = len(days)
    else:
        nrates = draw(st.integers(1, 4))
        days = []
        for _ in range(draw(st.integers(1, 3))):
            minutes = sorted(draw(st.sets(st.integers(1, 1439), max_size=6)))
            days.append([[m, draw(st.integers(1, nrates))] for m in [0, *minutes]])
        weeks = [draw(st.lists(st.integers(0, len(days) - 1), min_size=7, max_size=7)) for _ in range(nweeks)]
        special = [[y, m, d, draw(st.integers(0, len(days) - 1))] for y, m, d in dates]
    prices = draw(st.lists(st.integers(0, 10**6), min_size=nrates, max_size=nrates))
    t = {0: draw(st.integers(0, 2**32)), 1: 0, 2: prices, 3: days, 4: weeks}
    if seasons or draw(st.booleans()):
        t[5] = seasons
    if special or draw(st.booleans()):
        t[6] = special
    if draw(st.booleans()):
        t[7] = draw(st.integers(-1439, 1439))
    if draw(st.booleans()):  # lists may arrive as tuples
        t[3] = tuple(tuple(tuple(e) for e in dp) for dp in t[3])
    return t


@st.composite
def tariff_and_ts(draw, revealing=False):
    t = draw(tariffs(revealing))
    # Aim at season starts and special days as well as anywhere in 1970..2100.
    dates = [(0, s[0], s[1]) for s in t.get(5, ())] + [tuple(s[:3]) for s in t.get(6, ())] * 3
    dates += [(0, 1, 1), (0, 2, 28), (0, 2, 29), (0, 3, 1), (0, 12, 31)]
    year, month, day = draw(st.sampled_from(dates))
    year = year or draw(st.integers(1971, 2099))
    if (month, day) == (2, 29) and not calendar.isleap(year):
        month, day = 3, 1
    midnight = datetime(year, month, day, tzinfo=timezone(timedelta(minutes=t.get(7, 0))))
    near = max(0, int(midnight.timestamp()) + draw(st.integers(-3, 86402)))
    ts = draw(st.integers(TS_MIN, TS_MAX) | st.just(near) | st.just(near))
    return t, ts


# -- properties --------------------------------------------------------------------------


@SETTINGS
@given(tariff_and_ts())
def test_rate_at_matches_reference(case):
    t, ts = case
    v = validate_tariff(t)
    assert rate_at(v, ts) == ref_rate(t, ts)
    for k in range(-6, 7):  # and every 2 h 17 min over the day around it
        at = max(0, ts + k * 8220)
        assert rate_at(v, at) == ref_rate(t, at), at


@SETTINGS
@given(tariff_and_ts(revealing=True))
def test_day_profile_choice_matches_reference(case):
    # Special days, seasons (and their wrap) and weekdays: the rate is the profile.
    t, ts = case
    v = validate_tariff(t)
    for at in (ts - 86400, ts - 1, ts, ts + 1, ts + 86400):
        at = max(0, at)
        assert rate_at(v, at) == ref_rate(t, at), at


@SETTINGS
@given(tariff_and_ts(), st.lists(st.floats(0, 1, exclude_max=True), min_size=3, max_size=3))
def test_rate_constant_until_next_change(case, fractions):
    t, ts = case
    v = validate_tariff(t)
    nc = next_change(v, ts)
    assert ts < nc <= ts + 86400
    assert nc == ref_next_change(t, ts)
    rate = rate_at(v, ts)
    assert rate_at(v, nc - 1) == rate
    for f in fractions:
        assert rate_at(v, ts + int((nc - ts) * f)) == rate


@settings(max_examples=300, deadline=None)
@given(st.dates(date(1, 1, 1), date(9999, 12, 31)))
def test_civil_round_trip_matches_date(d):
    days = d.toordinal() - EPOCH_ORDINAL
    assert days_from_civil(d.year, d.month, d.day) == days
    assert civil_from_days(days) == (d.year, d.month, d.day)
    assert weekday(days) == d.weekday()


@settings(max_examples=100, deadline=None)
@given(st.integers(-(10**7), 10**7))
def test_civil_from_days_is_a_bijection(days):
    y, m, d = civil_from_days(days)
    assert days_from_civil(y, m, d) == days
    assert civil_from_days(days + 1) > (y, m, d)


@settings(SETTINGS, max_examples=40)
@given(tariffs())
def test_validate_returns_normalized_copy(t):
    before = copy.deepcopy(t)
    v = validate_tariff(t)
    assert t == before
    assert v is not t
    assert v[5] == t.get(5, []) and v[6] == t.get(6, []) and v[7] == t.get(7, 0)
    json_args = json.loads(json.dumps({str(k): val for k, val in t.items()}))
    assert tariff_from_json(json_args)[2] == t[2]


# Mutations: (name, applies to tariff?, mutate(t, draw) -> expected field).


def _pick(draw, seq):
    return draw(st.integers(0, len(seq) - 1))


def _mut_price(t, draw):
    i = _pick(draw, t[2])
    t[2][i] = draw(st.sampled_from([-1, True, 1.0, "5", None, 2**64]))
    return "tariff.prices[%d]" % i


def _mut_rate(t, draw):
    t[3] = [[list(e) for e in dp] for dp in t[3]]
    i = _pick(draw, t[3])
    j = _pick(draw, t[3][i])
    t[3][i][j][1] = draw(st.sampled_from([0, len(t[2]) + 1, -1, False]))
    return "tariff.day_profiles[%d][%d][1]" % (i, j)


def _mut_minute(t, draw):
    t[3] = [[list(e) for e in dp] for dp in t[3]]
    i = _pick(draw, t[3])
    dp = t[3][i]
    j = _pick(draw, dp)
    if j == 0:
        dp[0][0] = draw(st.sampled_from([1, 1440, -1, 0.0]))
    else:
        dp[j][0] = draw(st.sampled_from([dp[j - 1][0], 1440, 0]))
    return "tariff.day_profiles[%d][%d][0]" % (i, j)


def _mut_week(t, draw):
    i = _pick(draw, t[4])
    if draw(st.booleans()):
        t[4][i] = t[4][i][:6]
        return "tariff.week_profiles[%d]" % i
    k = draw(st.integers(0, 6))
    t[4][i][k] = len(t[3])
    return "tariff.week_profiles[%d][%d]" % (i, k)


def _mut_season(t, draw):
    if not t.get(5):
        t[5] = [[13, 1, 0]]
        return "tariff.seasons[0][0]"
    i = _pick(draw, t[5])
    part, value = draw(st.sampled_from([(0, 0), (0, 13), (1, 0), (1, 32), (2, len(t[4]))]))
    t[5][i][part] = value
    return "tariff.seasons[%d][%d]" % (i, part)


def _mut_season_order(t, draw):
    if len(t.get(5, ())) < 2:
        t[5] = [[6, 1, 0], [6, 1, 0]]
        return "tariff.seasons[1]"
    i = draw(st.integers(1, len(t[5]) - 1))
    t[5][i - 1], t[5][i] = t[5][i], t[5][i - 1]
    return "tariff.seasons[%d]" % i


def _mut_special(t, draw):
    if not t.get(6):
        t[6] = [[1969, 1, 1, 0]]
        return "tariff.special_days[0][0]"
    i = _pick(draw, t[6])
    part, value = draw(st.sampled_from([(0, 1969), (0, 10000), (1, 13), (2, 32), (3, len(t[3]))]))
    t[6][i][part] = value
    return "tariff.special_days[%d][%d]" % (i, part)


def _mut_offset(t, draw):
    t[7] = draw(st.sampled_from([1440, -1440, 10**6, True, 60.0, "+08:00"]))
    return "tariff.utc_offset"


def _mut_missing(t, draw):
    key = draw(st.integers(0, 4))
    del t[key]
    return "tariff." + ("id", "activate_at", "prices", "day_profiles", "week_profiles")[key]


MUTATIONS = [
    _mut_price,
    _mut_rate,
    _mut_minute,
    _mut_week,
    _mut_season,
    _mut_season_order,
    _mut_special,
    _mut_offset,
    _mut_missing,
]


@SETTINGS
@given(tariffs(), st.sampled_from(MUTATIONS), st.data())
def test_validate_rejects_mutations_naming_the_field(t, mutate, data):
    t = copy.deepcopy(t)
    t[3] = [list(dp) for dp in t[3]]
    field = mutate(t, data.draw)
    with pytest.raises(ProtocolError) as info:
        validate_tariff(t)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


# -- the golden vectors are what the generator writes --------------------------------------


def test_vectors_file_is_current():
    spec = importlib.util.spec_from_file_location(
        "gen_calendar_vectors", ROOT / "tools" / "gen_calendar_vectors.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    stored = json.loads((ROOT / "protocol" / "vectors" / "tariff_calendar.json").read_text())
    assert stored == json.loads(json.dumps(gen.build()))
