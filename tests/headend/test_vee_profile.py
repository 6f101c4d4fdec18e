"""The load profile from register deltas (integer Wh), hand-computed."""

from headend.vee.config import VeeConfig
from headend.vee.profile import build_profile, measured_intervals
from tests.headend.vee_fakes import reading, series

T0 = 1704067200  # 2024-01-01 00:00 UTC
CFG = VeeConfig()


def rows_of(profile, resolution, rate=1):
    return [
        (r["interval_start"] - T0, r["wh_imp"], r["source"]) for r in profile[resolution] if r["rate"] == rate
    ]


def test_quarter_hours_and_hour_from_register_deltas():
    # 1000, 1010, 1025, 1045, 1070: quarter hours 10, 15, 20, 25; the hour 00:00-01:00 70 Wh
    s = series(T0, [1000, 1010, 1025, 1045, 1070])
    p = build_profile(measured_intervals(s, 900, CFG), [], {}, 900, CFG)
    assert rows_of(p, 900) == [(0, 10, "real"), (900, 15, "real"), (1800, 20, "real"), (2700, 25, "real")]
    assert rows_of(p, 3600) == [(0, 70, "real")]


def test_per_rate_and_export_rows():
    s = [reading(1, T0, [100, 7], exp=[0, 0]), reading(2, T0 + 900, [110, 9], exp=[3, 0])]
    p = build_profile(measured_intervals(s, 900, CFG), [], {}, 900, CFG)
    assert p[900] == [
        {"interval_start": T0, "rate": 1, "source": "real", "wh_imp": 10, "wh_exp": 3},
        {"interval_start": T0, "rate": 2, "source": "real", "wh_imp": 2, "wh_exp": 0},
    ]
    assert p[3600] == []  # one quarter hour is not an hour


def test_rollover_delta_in_the_profile():
    # 999_999_990 -> 5 with the 10**9 Wh modulus: 15 Wh
    s = series(T0, [999_999_990, 5])
    assert rows_of(build_profile(measured_intervals(s, 900, CFG), [], {}, 900, CFG), 900) == [(0, 15, "real")]


def test_gaps_are_not_invented_estimates_fill_them():
    # 00:00 1000, 00:15 1010, gap, 01:00 1070: only 00:00-00:15 is measured (10 Wh)
    s = [reading(1, T0, 1000), reading(2, T0 + 900, 1010), reading(3, T0 + 3600, 1070)]
    measured = measured_intervals(s, 900, CFG)
    p = build_profile(measured, [], {}, 900, CFG)
    assert rows_of(p, 900) == [(0, 10, "real")] and p[3600] == []
    # with the three estimated slots of 20 Wh (60 Wh linear) the hour exists: 10 + 60 = 70, estimated
    est = [{"interval_start": T0 + k, "interval_end": T0 + k + 900, "method": "linear",
            "imp": [20], "exp": [0]} for k in (900, 1800, 2700)]  # fmt: skip
    p = build_profile(measured, est, {}, 900, CFG)
    assert rows_of(p, 900) == [(0, 10, "real"), (900, 20, "estimated"), (1800, 20, "estimated"),
                               (2700, 20, "estimated")]  # fmt: skip
    assert rows_of(p, 3600) == [(0, 70, "estimated")]


def test_edits_take_precedence():
    s = series(T0, [1000, 1010, 1025, 1045, 1070])
    edits = {T0 + 1800: {"imp": [5], "exp": [0]}}  # the 00:15-00:30 slot (15 Wh) edited to 5 Wh
    p = build_profile(measured_intervals(s, 900, CFG), [], edits, 900, CFG)
    assert rows_of(p, 900)[1] == (900, 5, "edited")
    assert rows_of(p, 3600) == [(0, 60, "edited")]  # 10 + 5 + 20 + 25


def test_hours_follow_local_time():
    # UTC+00:30: local hours start at :30 UTC. Registers at 00:00..01:30 every 15 min:
    # 0, 10, 25, 45, 70, 100, 130 -> quarters 10, 15, 20, 25, 30, 30. The only whole local hour
    # is 00:30-01:30 UTC: 20 + 25 + 30 + 30 = 105 Wh (00:00-00:30 belongs to an incomplete hour)
    cfg = VeeConfig(utc_offset_minutes=30)
    s = series(T0, [0, 10, 25, 45, 70, 100, 130])
    p = build_profile(measured_intervals(s, 900, cfg), [], {}, 900, cfg)
    assert rows_of(p, 3600) == [(1800, 105, "real")]
