"""Generate protocol/vectors/tariff_calendar.json, the tariff-calendar golden vectors.

Usage: python tools/gen_calendar_vectors.py [--check]

Expected values come from an independent reference written here on top of
CPython's ``datetime`` / ``timezone`` (not from protocol.tariff_calendar),
and the reference is itself held to hand-written spot checks (``CHECKS``).
``--check`` exits 1 when the stored file differs from what would be written.
"""

import json
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "tariff_calendar.json"

DESCRIPTION = (
    "Golden vectors for protocol/tariff_calendar.py: set-tariff args (docs/protocol.md command 3) "
    "with string keys as JSON carries them. Lists of pairs are flat to fit a 64 KiB heap. "
    "tariffs.<name>.cases: ts, rate in force, ts, rate, ... next_change: ts, first switch "
    "point or local midnight after ts, ... in_force: [current, pending or null, [ts, id of "
    "the tariff in force, rate, ts, ...]]. civil: [days since 1970-01-01, year, month, day, "
    "weekday with Monday = 0]. invalid.cases: [field, path, value]: in a copy of base set "
    "path (a string key, then list indexes; [] is the whole map) to value, or delete that "
    "key when there is no value, and expect a ProtocolError whose field is as given. "
    "Written by tools/gen_calendar_vectors.py."
)

# 4-rate Chinese time-of-use: T1 sharp, T2 peak, T3 flat, T4 valley, every day alike.
CN4 = {
    0: 1,
    1: 0,
    2: [1200, 950, 650, 350],
    3: [[[0, 4], [420, 3], [600, 2], [660, 1], [720, 2], [840, 3], [1140, 1], [1260, 2], [1380, 4]]],
    4: [[0, 0, 0, 0, 0, 0, 0]],
    7: 480,
}
# Summer Apr 1 .. Oct 14, winter Oct 15 .. Mar 31 (wraps over the new year), weekends apart.
SEASONS_WRAP = {
    0: 2,
    1: 1735707600,  # 2025-01-01T00:00-05:00
    2: [300, 180, 90],
    3: [
        [[0, 3], [480, 2], [960, 1], [1200, 2], [1320, 3]],
        [[0, 3], [600, 2], [1200, 3]],
        [[0, 3], [420, 1], [660, 2], [1020, 1], [1260, 3]],
        [[0, 3]],
    ],
    4: [[0, 0, 0, 0, 0, 1, 1], [2, 2, 2, 2, 2, 3, 3]],
    5: [[4, 1, 0], [10, 15, 1]],
    7: -300,
}
# Special days with and without a year; a specific year beats year 0 in either order.
SPECIAL_LEAP = {
    0: 3,
    1: 0,
    2: [500, 200],
    3: [[[0, 2], [480, 1], [1320, 2]], [[0, 2]], [[0, 2], [720, 1], [780, 2]], [[0, 1]]],
    4: [[0, 0, 0, 0, 0, 1, 1]],
    6: [
        [0, 1, 1, 1],
        [2030, 12, 25, 3],
        [0, 12, 25, 2],
        [2024, 1, 1, 3],
        [0, 2, 29, 2],
        [2024, 2, 29, 3],
        [2100, 3, 1, 3],
    ],
    7: 540,
}
# A season that starts on Feb 29 (only in leap years), odd switch minutes, -03:30.
LEAP_SEASON_NEG = {
    0: 4,
    1: 0,
    2: [400, 300, 200],
    3: [[[0, 3]], [[0, 2]], [[0, 1], [1, 2], [1439, 3]]],
    4: [[0] * 7, [1] * 7, [2] * 7],
    5: [[1, 1, 0], [2, 29, 2], [3, 1, 1], [12, 31, 2]],
    7: -210,
}
# One rate, +05:45, pending from 2026-01-01T00:00+08:00.
FLAT = {0: 5, 1: 1767196800, 2: [700], 3: [[[0, 1]]], 4: [[0] * 7], 7: 345}

TARIFFS = {
    "cn4": CN4,
    "seasons_wrap": SEASONS_WRAP,
    "special_leap": SPECIAL_LEAP,
    "leap_season_neg": LEAP_SEASON_NEG,
    "flat": FLAT,
}

# fmt: off
# Local dates sampled at midnight (-1 s, at, +1 s) and, for the first date of each day
# profile, at every switch point (-1 s, at); see samples().
DATES = {
    "cn4": ["1970-01-02", "2024-02-29", "2024-03-15", "2099-12-31", "2100-01-01"],
    "seasons_wrap": [
        "2024-03-31", "2024-04-01", "2024-10-14", "2024-10-15", "2024-12-31",
        "2025-01-01", "2025-04-05", "2100-03-31", "2100-04-01",
    ],
    "special_leap": [
        "2023-12-31", "2024-01-01", "2025-01-01", "2024-02-29", "2028-02-29", "2030-12-25",
        "2031-12-25", "2100-02-28", "2100-03-01", "2096-02-29",
    ],
    "leap_season_neg": [
        "2023-02-28", "2023-03-01", "2024-02-28", "2024-02-29", "2024-03-01",
        "2024-12-30", "2024-12-31", "2025-01-01", "2100-02-28", "2100-03-01",
    ],
    "flat": ["2025-06-15", "2100-12-31"],
}

# Hand-written expectations (local time of the tariff -> rate); the reference must agree.
CHECKS = {
    "cn4": [
        ("2024-03-15 00:00:00", 4), ("2024-03-15 06:59:59", 4), ("2024-03-15 07:00:00", 3),
        ("2024-03-15 10:59:59", 2), ("2024-03-15 11:00:00", 1), ("2024-03-15 11:59:59", 1),
        ("2024-03-15 12:00:00", 2), ("2024-03-15 19:30:00", 1), ("2024-03-15 22:59:59", 2),
        ("2024-03-15 23:00:00", 4), ("2024-03-15 23:59:59", 4), ("2038-01-19 11:14:07", 1),
        ("2038-01-19 11:14:08", 1), ("2100-12-31 23:59:59", 4),
    ],
    "seasons_wrap": [
        ("2024-03-31 12:00:00", 3), ("2024-04-01 00:00:00", 3), ("2024-04-01 07:59:59", 3),
        ("2024-04-01 08:00:00", 2), ("2024-04-01 17:00:00", 1), ("2024-10-14 17:00:00", 1),
        ("2024-10-15 08:00:00", 1), ("2024-10-15 16:59:59", 2), ("2024-10-15 17:00:00", 1),
        ("2025-01-01 08:00:00", 1), ("2025-01-04 12:00:00", 3), ("2025-04-05 12:00:00", 2),
    ],
    "special_leap": [
        ("2024-01-01 03:00:00", 1), ("2025-01-01 12:00:00", 2), ("2024-02-29 03:00:00", 1),
        ("2028-02-29 12:30:00", 1), ("2028-02-29 14:00:00", 2), ("2030-12-25 03:00:00", 1),
        ("2031-12-25 14:00:00", 2), ("2100-02-28 12:00:00", 2), ("2100-03-01 03:00:00", 1),
        ("2024-03-01 12:00:00", 1), ("2023-12-31 23:59:59", 2), ("2024-01-01 00:00:00", 1),
    ],
    "leap_season_neg": [
        ("2024-02-28 12:00:00", 3), ("2024-02-29 00:00:30", 1), ("2024-02-29 00:01:00", 2),
        ("2024-02-29 23:58:59", 2), ("2024-02-29 23:59:00", 3), ("2024-03-01 00:00:00", 2),
        ("2023-02-28 23:59:59", 3), ("2023-03-01 00:00:00", 2), ("2024-12-31 00:00:59", 1),
        ("2025-01-01 00:00:00", 3), ("2100-02-28 23:59:59", 3), ("2100-03-01 00:00:00", 2),
    ],
    "flat": [("2025-06-15 12:34:56", 1), ("2100-12-31 23:59:59", 1)],
}

# fmt: on

# current, pending (or None), instants (ts) at which to ask.
A_FLAT = FLAT[1]
A_WRAP = SEASONS_WRAP[1]
IN_FORCE = [
    ("cn4", "flat", [A_FLAT - 1, A_FLAT, A_FLAT + 1]),
    ("cn4", "seasons_wrap", [A_WRAP - 1, A_WRAP, A_WRAP + 1]),
    ("cn4", "special_leap", [1, A_WRAP, A_FLAT]),  # activate_at 0: at once
    ("flat", None, [A_FLAT - 1, A_FLAT + 1]),
]

# fmt: off
CIVIL = [
    "0001-01-01", "1600-02-29", "1900-02-28", "1900-03-01", "1969-12-31", "1970-01-01",
    "1970-01-02", "2000-02-28", "2000-02-29", "2000-03-01", "2024-02-29", "2038-01-19",
    "2100-02-28", "2100-03-01", "2400-02-29", "9999-12-31",
]
# fmt: on

# Minimal complete tariff the invalid cases mutate.
BASE = {
    0: 9,
    1: 0,
    2: [100, 50],
    3: [[[0, 2], [480, 1], [1320, 2]], [[0, 2]]],
    4: [[0, 0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1, 1]],
    5: [[3, 1, 0], [11, 1, 1]],
    6: [[0, 1, 1, 1], [2024, 5, 1, 1]],
    7: 480,
}
# (name, path, value or DELETE, expected field)
DELETE = object()
INVALID = [
    ("not a map", [], [1, 2], "tariff"),
    ("id missing", ["0"], DELETE, "tariff.id"),
    ("id negative", ["0"], -1, "tariff.id"),
    ("id string", ["0"], "9", "tariff.id"),
    ("id above uint64", ["0"], 2**64, "tariff.id"),
    ("activate_at bool", ["1"], True, "tariff.activate_at"),
    ("activate_at float", ["1"], 1.5, "tariff.activate_at"),
    ("prices missing", ["2"], DELETE, "tariff.prices"),
    ("prices empty", ["2"], [], "tariff.prices"),
    ("prices not a list", ["2"], 100, "tariff.prices"),
    ("price negative", ["2", 1], -5, "tariff.prices[1]"),
    ("price bool", ["2", 0], True, "tariff.prices[0]"),
    ("day profiles empty", ["3"], [], "tariff.day_profiles"),
    ("day profile empty", ["3", 1], [], "tariff.day_profiles[1]"),
    ("entry too long", ["3", 0, 1], [480, 1, 0], "tariff.day_profiles[0][1]"),
    ("first minute not 0", ["3", 0, 0, 0], 1, "tariff.day_profiles[0][0][0]"),
    ("minute repeated", ["3", 0, 2, 0], 480, "tariff.day_profiles[0][2][0]"),
    ("minute decreasing", ["3", 0, 2, 0], 479, "tariff.day_profiles[0][2][0]"),
    ("minute 1440", ["3", 0, 2, 0], 1440, "tariff.day_profiles[0][2][0]"),
    ("rate 0", ["3", 0, 1, 1], 0, "tariff.day_profiles[0][1][1]"),
    ("rate above prices", ["3", 1, 0, 1], 3, "tariff.day_profiles[1][0][1]"),
    ("week profiles missing", ["4"], DELETE, "tariff.week_profiles"),
    ("week of 6 days", ["4", 0], [0, 0, 0, 0, 0, 1], "tariff.week_profiles[0]"),
    ("week index out of range", ["4", 1, 6], 2, "tariff.week_profiles[1][6]"),
    ("week index negative", ["4", 0, 0], -1, "tariff.week_profiles[0][0]"),
    ("seasons null", ["5"], None, "tariff.seasons"),
    ("season too short", ["5", 0], [3, 1], "tariff.seasons[0]"),
    ("season month 13", ["5", 1, 0], 13, "tariff.seasons[1][0]"),
    ("season Feb 30", ["5", 0], [2, 30, 0], "tariff.seasons[0][1]"),
    ("season Apr 31", ["5", 1], [4, 31, 1], "tariff.seasons[1][1]"),
    ("season week out of range", ["5", 0, 2], 2, "tariff.seasons[0][2]"),
    ("seasons unsorted", ["5", 1], [2, 28, 1], "tariff.seasons[1]"),
    ("season date repeated", ["5", 1], [3, 1, 1], "tariff.seasons[1]"),
    ("special year 1969", ["6", 0, 0], 1969, "tariff.special_days[0][0]"),
    ("special year 10000", ["6", 1, 0], 10000, "tariff.special_days[1][0]"),
    ("special month 0", ["6", 1, 1], 0, "tariff.special_days[1][1]"),
    ("special Feb 29 non-leap", ["6", 1], [2023, 2, 29, 0], "tariff.special_days[1][2]"),
    ("special day profile out of range", ["6", 0, 3], 2, "tariff.special_days[0][3]"),
    ("special day repeated", ["6", 1], [0, 1, 1, 0], "tariff.special_days[1]"),
    ("special too long", ["6", 0], [0, 1, 1, 1, 1], "tariff.special_days[0]"),
    ("utc_offset 1440", ["7"], 1440, "tariff.utc_offset"),
    ("utc_offset -1440", ["7"], -1440, "tariff.utc_offset"),
    ("utc_offset bool", ["7"], False, "tariff.utc_offset"),
    ("utc_offset string", ["7"], "+08:00", "tariff.utc_offset"),
]


# -- independent reference (datetime) ------------------------------------------


def _tz(t):
    return timezone(timedelta(minutes=t.get(7, 0)))


def local_ts(t, text):
    """Unix time of the tariff-local wall-clock time ``text``."""
    dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_tz(t))
    return int(dt.timestamp())


def ref_day_profile(t, day):
    md = (day.month, day.day)
    hits = [s for s in t.get(6, []) if (s[1], s[2]) == md and s[0] in (0, day.year)]
    if hits:
        hits.sort(key=lambda s: s[0] == 0)  # a specific year first
        return t[3][hits[0][3]]
    week = 0
    if t.get(5):
        started = [s for s in t[5] if (s[0], s[1]) <= md]
        week = (started or t[5])[-1][2]
    return t[3][t[4][week][day.weekday()]]


def ref_rate(t, ts):
    dt = datetime.fromtimestamp(ts, _tz(t))
    now = dt.hour * 60 + dt.minute
    return [rate for minute, rate in ref_day_profile(t, dt.date()) if minute <= now][-1]


def ref_next_change(t, ts):
    dt = datetime.fromtimestamp(ts, _tz(t))
    midnight = datetime.combine(dt.date(), time(0), dt.tzinfo)
    points = [midnight + timedelta(minutes=m) for m, _ in ref_day_profile(t, dt.date())]
    points.append(midnight + timedelta(days=1))
    return min(int(p.timestamp()) for p in points if p.timestamp() > ts)


def ref_in_force(current, pending, ts):
    if pending is not None and (pending[1] == 0 or ts >= pending[1]):
        return pending
    return current


# -- building the file ----------------------------------------------------------


def json_keys(t):
    return {str(k): v for k, v in sorted(t.items())}


def samples(t, day_text, seen):
    """A local date's midnight -1 s, at, +1 s, and, the first time its day profile
    is seen, each switch point -1 s and at (kept few: the vectors fit a 64 KiB heap)."""
    midnight = local_ts(t, day_text + " 00:00:00")
    out = [midnight - 1, midnight, midnight + 1]
    profile = ref_day_profile(t, date.fromisoformat(day_text))
    if id(profile) not in seen:
        seen.add(id(profile))
        out += [midnight + 60 * m + d for m, _ in profile[1:] for d in (-1, 0)]
    return out


def build_tariff(name):
    t = TARIFFS[name]
    checks = []
    for text, want in CHECKS[name]:
        ts = local_ts(t, text)
        got = ref_rate(t, ts)
        if got != want:
            raise AssertionError("reference disagrees on %s %s: %d != %d" % (name, text, got, want))
        checks.append(ts)
    stamps = set(checks)
    seen = set()
    for day_text in DATES[name]:
        stamps.update(samples(t, day_text, seen))
    nexts = set(checks)
    for day_text in DATES[name]:
        nexts.add(local_ts(t, day_text + " 00:00:00") - 1)
    return {
        "tariff": json_keys(t),
        "cases": [x for ts in sorted(stamps) for x in (ts, ref_rate(t, ts))],
        "next_change": [x for ts in sorted(nexts) for x in (ts, ref_next_change(t, ts))],
    }


def build_in_force():
    out = []
    for cur, pend, stamps in IN_FORCE:
        cases = []
        for ts in stamps:
            t = ref_in_force(TARIFFS[cur], TARIFFS[pend] if pend else None, ts)
            cases += [ts, t[0], ref_rate(t, ts)]
        out.append([cur, pend, cases])
    return out


def build_civil():
    epoch = date(1970, 1, 1).toordinal()
    out = []
    for text in CIVIL:
        d = date.fromisoformat(text)
        out.append([d.toordinal() - epoch, d.year, d.month, d.day, d.weekday()])
    return out


def build_invalid():
    cases = []
    for _name, path, value, field in INVALID:
        cases.append([field, path] if value is DELETE else [field, path, value])
    return {"base": json_keys(BASE), "cases": cases}


def build():
    return {
        "description": DESCRIPTION,
        "tariffs": {name: build_tariff(name) for name in TARIFFS},
        "in_force": build_in_force(),
        "civil": build_civil(),
        "invalid": build_invalid(),
    }


def dump(obj, indent=0):
    """JSON with short lists and maps on one line, long ones several items a line."""
    flat = json.dumps(obj)
    if len(flat) + indent <= 100 or not isinstance(obj, (list, dict)) or not obj:
        return flat
    pad = " " * (indent + 1)
    if isinstance(obj, dict):
        items = ["%s%s: %s" % (pad, json.dumps(k), dump(v, indent + 1)) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if all(type(v) is int for v in obj) and len(obj) % 2 == 0:  # flat pairs: 6 a line
        pairs = ["%d, %d" % (obj[i], obj[i + 1]) for i in range(0, len(obj), 2)]
        lines = [pad + ",  ".join(pairs[i : i + 6]) for i in range(0, len(pairs), 6)]
        return "[\n" + ",\n".join(lines) + "\n" + " " * indent + "]"
    items = [dump(v, indent + 1) for v in obj]
    lines = []
    for item in items:  # pack short items several to a line
        if lines and "\n" not in item and "\n" not in lines[-1] and len(lines[-1]) + len(item) < 98:
            lines[-1] += ", " + item
        else:
            lines.append(pad + item)
    return "[\n" + ",\n".join(lines) + "\n" + " " * indent + "]"


def main(argv):
    text = dump(build()) + "\n"
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("%s is stale: run python tools/gen_calendar_vectors.py" % OUT)
            return 1
        print("%s is up to date" % OUT)
        return 0
    OUT.write_text(text)
    print("wrote %s" % OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
