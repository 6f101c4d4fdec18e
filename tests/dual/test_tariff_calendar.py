"""Tariff calendar against the golden vectors, on CPython and MicroPython alike.

Vectors: protocol/vectors/tariff_calendar.json (tools/gen_calendar_vectors.py).
"""

try:
    from tests.dual.support import load_vectors, raises
except ImportError:
    from support import load_vectors, raises

from protocol.errors import ProtocolError
from protocol.tariff_calendar import (
    civil_from_days,
    days_from_civil,
    in_force,
    next_change,
    rate_at,
    rate_in_force,
    tariff_from_json,
    validate_tariff,
    weekday,
)

VECTORS = "tariff_calendar.json"


def _tariffs(vectors):
    return {name: tariff_from_json(v["tariff"]) for name, v in vectors["tariffs"].items()}


def _small():
    return {
        0: 7,
        1: 0,
        2: [100, 50],
        3: [[[0, 2], [480, 1], [1320, 2]], [[0, 2]]],
        4: [[0, 0, 0, 0, 0, 1, 1]],
    }


def _copy(x):
    if isinstance(x, list):
        return [_copy(i) for i in x]
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    return x


def _apply(base, path, value=None, delete=False):
    """A copy of base with the item at path set to value (or deleted)."""
    if not path:
        return value
    obj = _copy(base)
    target = obj
    for k in path[:-1]:
        target = target[k]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


def test_civil_vectors():
    for days, y, m, d, wd in load_vectors(VECTORS)["civil"]:
        assert days_from_civil(y, m, d) == days, (y, m, d)
        assert civil_from_days(days) == (y, m, d), days
        assert weekday(days) == wd, days


def test_civil_round_trip_and_continuity():
    prev = civil_from_days(-719469)  # 0000-02-29; the loop starts at 0000-03-01
    for days in range(-719468, 3000000, 97):
        y, m, d = civil_from_days(days)
        assert days_from_civil(y, m, d) == days
        assert (y, m, d) > prev
        prev = (y, m, d)
    assert weekday(0) == 3  # 1970-01-01 was a Thursday
    assert weekday(-1) == 2


def test_rate_vectors():
    vectors = load_vectors(VECTORS)
    for name, v in vectors["tariffs"].items():
        t = tariff_from_json(v["tariff"])
        cases = v["cases"]
        for i in range(0, len(cases), 2):
            ts, want = cases[i], cases[i + 1]
            got = rate_at(t, ts)
            assert got == want, "%s ts=%d: rate %d, want %d" % (name, ts, got, want)


def test_next_change_vectors():
    vectors = load_vectors(VECTORS)
    for name, v in vectors["tariffs"].items():
        t = tariff_from_json(v["tariff"])
        cases = v["next_change"]
        for i in range(0, len(cases), 2):
            ts, want = cases[i], cases[i + 1]
            got = next_change(t, ts)
            assert got == want, "%s ts=%d: next %d, want %d" % (name, ts, got, want)


def test_rate_constant_until_next_change():
    vectors = load_vectors(VECTORS)
    for name, v in vectors["tariffs"].items():
        t = tariff_from_json(v["tariff"])
        cases = v["cases"]
        for i in range(0, len(cases), 2):
            ts, want = cases[i], cases[i + 1]
            nc = next_change(t, ts)
            assert ts < nc <= ts + 86400, (name, ts)
            assert rate_at(t, nc - 1) == want, (name, ts)
            assert rate_at(t, (ts + nc) // 2) == want, (name, ts)


def test_in_force_vectors():
    vectors = load_vectors(VECTORS)
    tariffs = _tariffs(vectors)
    for cur_name, pend_name, cases in vectors["in_force"]:
        cur = tariffs[cur_name]
        pend = tariffs[pend_name] if pend_name else None
        for i in range(0, len(cases), 3):
            ts, want_id, want_rate = cases[i], cases[i + 1], cases[i + 2]
            assert in_force(cur, pend, ts)[0] == want_id, (cur_name, pend_name, ts)
            assert rate_in_force(cur, pend, ts) == want_rate, (cur_name, pend_name, ts)


def test_invalid_base_is_valid():
    tariff_from_json(load_vectors(VECTORS)["invalid"]["base"])


def test_invalid_vectors():
    invalid = load_vectors(VECTORS)["invalid"]
    for case in invalid["cases"]:
        field, path = case[0], case[1]
        if len(case) > 2:
            obj = _apply(invalid["base"], path, case[2])
        else:
            obj = _apply(invalid["base"], path, delete=True)
        e = raises(ProtocolError, tariff_from_json, obj)
        assert e.field == field, "%r: field %r, want %r" % (case, e.field, field)
        assert isinstance(e, ValueError)
        assert field in str(e)


def test_validate_fills_defaults_in_a_copy():
    args = _small()
    args[9] = "future key"
    t = validate_tariff(args)
    assert t is not args
    assert 5 not in args and 6 not in args and 7 not in args
    assert t[5] == [] and t[6] == [] and t[7] == 0
    assert t[9] == "future key"
    assert t[3] is args[3]


def test_validate_accepts_tuples():
    t = validate_tariff(
        {
            0: 1,
            1: 5,
            2: (10, 20),
            3: (((0, 1), (600, 2)),),
            4: ((0, 0, 0, 0, 0, 0, 0),),
            5: ((1, 1, 0), (2, 29, 0)),
            6: ((0, 2, 29, 0),),
            7: -60,
        }
    )
    assert rate_at(t, 600 * 60 + 3600) == 2
    assert rate_at(t, 600 * 60 + 3599) == 1


def test_bool_is_not_an_int():
    cases = [
        ([0], True, "tariff.id"),
        ([2, 0], False, "tariff.prices[0]"),
        ([3, 0, 0, 0], False, "tariff.day_profiles[0][0][0]"),
        ([3, 0, 1, 1], True, "tariff.day_profiles[0][1][1]"),
        ([4, 0, 3], False, "tariff.week_profiles[0][3]"),
        ([7], True, "tariff.utc_offset"),
    ]
    for path, value, field in cases:
        e = raises(ProtocolError, validate_tariff, _apply(_small(), path, value))
        assert e.field == field, (path, e.field)
    args = _small()
    args[5] = [[True, 1, 0]]
    assert raises(ProtocolError, validate_tariff, args).field == "tariff.seasons[0][0]"
    args = _small()
    args[6] = [[False, 1, 1, 0]]
    assert raises(ProtocolError, validate_tariff, args).field == "tariff.special_days[0][0]"


def test_empty_seasons_mean_week_profile_0():
    args = _small()
    args[4] = [[0] * 7, [1] * 7]
    args[5] = []
    t = validate_tariff(args)
    assert rate_at(t, 8 * 3600) == 1  # profile 0 at 08:00, not profile 1
    args[5] = [[6, 1, 1]]  # one season: in force all year
    t = validate_tariff(args)
    assert rate_at(t, 8 * 3600) == 2


def test_from_json_keys():
    e = raises(ProtocolError, tariff_from_json, [])
    assert e.field == "tariff"
    obj = {"0": 1, "1": 0, "2": [5], "3": [[[0, 1]]], "4": [[0] * 7], "07": "junk", "x": 1}
    t = tariff_from_json(obj)
    assert t[7] == 0 and "x" not in t and 7 in t
    del obj["2"]
    assert raises(ProtocolError, tariff_from_json, obj).field == "tariff.prices"


def test_in_force_edges():
    cur = validate_tariff(_small())
    pend = _small()
    pend[0] = 8
    pend[1] = 1000
    pend = validate_tariff(pend)
    assert in_force(cur, None, 5000) is cur
    assert in_force(cur, pend, 999) is cur
    assert in_force(cur, pend, 1000) is pend
    assert in_force(None, pend, 0) is None
    pend[1] = 0
    assert in_force(cur, pend, 0) is pend


def test_next_change_may_repeat_rate():
    args = _small()
    args[3] = [[[0, 1], [60, 1]]]
    args[4] = [[0] * 7]
    args[7] = 60  # local midnight is 23:00 UTC
    t = validate_tariff(args)
    assert next_change(t, -1) == 0  # the 01:00 switch point
    assert next_change(t, 0) == 23 * 3600
    assert next_change(t, 23 * 3600 - 1) == 23 * 3600
    assert rate_at(t, -1) == rate_at(t, 0) == rate_at(t, 23 * 3600) == 1


def test_far_future_and_leap():
    t = validate_tariff(_small())
    ts = days_from_civil(9999, 12, 31) * 86400 + 86399  # a Friday
    assert weekday(ts // 86400) == 4
    assert rate_at(t, ts) == 2
    assert next_change(t, ts) == ts + 1
    assert civil_from_days(days_from_civil(2100, 2, 28) + 1) == (2100, 3, 1)
    assert civil_from_days(days_from_civil(2000, 2, 28) + 1) == (2000, 2, 29)
