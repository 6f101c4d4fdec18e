"""Estimation methods against hand-computed expectations (the arithmetic is in the comments)."""

from headend.vee.config import VeeConfig
from headend.vee.estimate import OPEN_END, estimate_gaps, outages_from_events
from headend.vee.profile import measured_intervals
from tests.headend.vee_fakes import DAY, reading

T0 = 1704067200  # 2024-01-01 00:00 UTC, a Monday
CFG = VeeConfig()
H = 3600
HOURLY = VeeConfig(interval_s=H, profile_resolutions=(H,))


def run(rows, cfg=CFG, outages=(), now=None, iv=None):
    iv = iv or cfg.interval_s
    measured = measured_intervals(rows, iv, cfg)
    now = rows[-1]["ts"] if now is None else now
    return estimate_gaps(rows, measured, list(outages), cfg, iv, now)


def imps(est):
    return [e["imp"][0] for e in est]


def test_outages_from_events():
    events = [
        {"seq": 1, "ts": 100, "code": 1},  # power down at 100 ...
        {"seq": 2, "ts": 200, "code": 2},  # ... up at 200
        {"seq": 3, "ts": 300, "code": 2},  # a reboot with no power-down: zero length
        {"seq": 4, "ts": 400, "code": 5},  # not a power event
        {"seq": 5, "ts": 500, "code": 1},  # down, not up yet
    ]
    assert outages_from_events(events) == [(100, 200), (300, 300), (500, OPEN_END)]


def test_linear_interpolation_example_from_the_brief():
    # 00:00 1000 Wh, gap to 01:15 1050 Wh: 5 slots of 15 min, 50 Wh -> 10 Wh each
    est = run([reading(1, T0, 1000), reading(2, T0 + 4500, 1050)])
    assert [(e["interval_start"] - T0, e["interval_end"] - T0) for e in est] == [
        (0, 900), (900, 1800), (1800, 2700), (2700, 3600), (3600, 4500),
    ]  # fmt: skip
    assert imps(est) == [10] * 5 and {e["method"] for e in est} == {"linear"}


def test_linear_keeps_integer_sum_per_rate_and_export():
    # rate 1: 53 Wh over 5 slots -> running floors 10, 21, 31, 42, 53 -> 10, 11, 10, 11, 11
    # rate 2: 5 Wh over 5 -> 1 each; export 2 Wh -> floors 0, 0, 1, 1, 2 -> 0, 0, 1, 0, 1
    est = run([reading(1, T0, [1000, 0], exp=[0, 0]), reading(2, T0 + 4500, [1053, 5], exp=[2, 0])])
    assert [e["imp"] for e in est] == [[10, 1], [11, 1], [10, 1], [11, 1], [11, 1]]
    assert [e["exp"][0] for e in est] == [0, 0, 1, 0, 1]


def test_linear_up_to_two_hours_only():
    # a 2 h gap (8 slots, 80 Wh) is interpolated: 10 Wh each
    est = run([reading(1, T0, 0), reading(2, T0 + 7200, 80)])
    assert imps(est) == [10] * 8 and est[0]["method"] == "linear"
    # 2 h 15 min (9 slots, 90 Wh) is not: no like days here, so the delta is spread evenly
    est = run([reading(1, T0, 0), reading(2, T0 + 8100, 90)])
    assert imps(est) == [10] * 9 and est[0]["method"] == "even"
    assert (
        run([reading(1, T0, 0), reading(2, T0 + 8100, 90)], VeeConfig(linear_max_span_s=8100))[0]["method"]
        == "linear"
    )


def test_never_interpolates_across_an_outage():
    # 00:00 0 Wh .. 01:00 40 Wh; power down 00:10, up 00:50: the slots 00:15-00:30 and
    # 00:30-00:45 lie wholly inside the outage (0 Wh); the 40 Wh go to the other two: 20, 0, 0, 20
    rows = [reading(1, T0, 0), reading(2, T0 + 3600, 40)]
    est = run(rows, outages=[(T0 + 600, T0 + 3000)])
    assert imps(est) == [20, 0, 0, 20] and est[0]["method"] == "even"
    # a reboot (zero-length outage) inside the gap also forbids a straight line
    assert run(rows, outages=[(T0 + 1000, T0 + 1000)])[0]["method"] == "even"
    # an outage outside the gap does not
    assert run(rows, outages=[(T0 - 500, T0 - 100)])[0]["method"] == "linear"


# ---------------------------------------------------------------- like days (hourly meter)

# per-day hourly use: (hours 0-11, hours 12-23), Wh per hour
WEEK = {0: (1000, 0), 1: (10, 30), 2: (20, 40), 4: (30, 50)}  # Mon, Tue, Wed, Fri; Thursday missing


def hourly_week(days=WEEK, upto_day=5):
    """Hourly readings Mon 00:00 .. upto_day 00:00, hours of missing days left out except
    the reading at the midnight that opens and closes them (Thursday: 360 Wh in total)."""
    rows, total, seq = [], 0, 1
    for d in range(upto_day):
        start = T0 + d * DAY
        if d not in days:  # only its opening midnight is kept; the day uses 360 Wh
            rows.append(reading(seq, start, total, interval=H))
            seq, total = seq + 1, total + 360
            continue
        for h in range(24):
            rows.append(reading(seq, start + h * H, total, interval=H))
            seq, total = seq + 1, total + days[d][h >= 12]
    rows.append(reading(seq, T0 + upto_day * DAY, total, interval=H))
    return rows


def test_like_days_average_of_the_three_nearest_weekdays():
    # Thursday's nearest weekdays: Wed (1 day), Fri (1), Tue (2); Mon (3) is left out.
    # Average shape: hours 0-11 (20+30+10)/3 = 20, hours 12-23 (40+50+30)/3 = 40; sum 12*20 + 12*40 = 720.
    # Thursday's 360 Wh scaled to it: 360*20/720 = 10 per morning hour, 360*40/720 = 20 per afternoon hour.
    est = run(hourly_week(), HOURLY)
    assert [e["interval_start"] for e in est] == [T0 + 3 * DAY + h * H for h in range(24)]
    assert imps(est) == [10] * 12 + [20] * 12
    assert {e["method"] for e in est} == {"like_day"}


def test_like_days_skip_holidays_and_outage_days():
    # Wednesday a holiday: the nearest weekdays become Fri (1), Tue (2), Mon (3).
    # Shape: mornings (30+10+1000)/3 = 1040/3, afternoons (50+30+0)/3 = 80/3;
    # total 12*1040/3 + 12*80/3 = 4160 + 320 = 4480.
    # The first 12 slots together get floor(360 * 4160/4480) = floor(334.28...) = 334 Wh, the rest 26 Wh.
    cfg = VeeConfig(interval_s=H, profile_resolutions=(H,), holidays=["2024-01-03"])
    est = run(hourly_week(), cfg)
    assert sum(imps(est)[:12]) == 334 and sum(imps(est)[12:]) == 26
    # the same when Wednesday had an outage instead (a 10-minute one at noon)
    wed_noon = T0 + 2 * DAY + 12 * H
    est = run(hourly_week(), HOURLY, outages=[(wed_noon, wed_noon + 600)])
    assert sum(imps(est)[:12]) == 334 and sum(imps(est)[12:]) == 26


def test_like_days_use_only_same_day_type():
    # Saturday missing (a weekend day) with only weekdays measured: no like day -> even spread
    days = {0: (10, 10), 1: (10, 10), 2: (10, 10), 3: (10, 10), 4: (10, 10)}
    est = run(hourly_week(days, upto_day=7), HOURLY)
    sat, sun = est[:24], est[24:]
    assert {e["method"] for e in est} == {"even"}
    # each day is its own gap (a reading at Sun 00:00 splits them): 360 Wh over 24 slots = 15 Wh
    assert sum(imps(sat)) == sum(imps(sun)) == 360
    assert imps(est) == [15] * 48


def test_trailing_gap_like_day_average_rounded():
    # Data Mon..Wed, the meter silent since Thu 00:00; now = Thu 06:00, grace 1 h:
    # slots ending 01:00 .. 05:00 are estimated. Like days for Thursday: Wed (1), Tue (2), Mon (3);
    # a morning hour averages (20 + 10 + 1000)/3 = 343.33 -> 343 Wh.
    rows = hourly_week({0: WEEK[0], 1: WEEK[1], 2: WEEK[2]}, upto_day=3)
    est = run(rows, HOURLY, now=T0 + 3 * DAY + 6 * H)
    assert [e["interval_end"] - (T0 + 3 * DAY) for e in est] == [H, 2 * H, 3 * H, 4 * H, 5 * H]
    assert imps(est) == [343] * 5 and {e["method"] for e in est} == {"like_day"}
    # inside an open outage (power down at 02:00, no power-up yet) the slots are 0 Wh
    est = run(rows, HOURLY, now=T0 + 3 * DAY + 6 * H, outages=[(T0 + 3 * DAY + 2 * H, OPEN_END)])
    assert imps(est) == [343, 343, 0, 0, 0] and est[-1]["method"] == "outage"
    # and never more than trailing_max_s past the last reading
    cfg = VeeConfig(interval_s=H, profile_resolutions=(H,), trailing_max_s=2 * H)
    assert len(run(rows, cfg, now=T0 + 3 * DAY + 6 * H)) == 2


def test_no_estimates_for_measured_slots():
    rows = [reading(1, T0, 0), reading(2, T0 + 900, 5), reading(3, T0 + 2700, 25)]
    est = run(rows)
    # only 00:15-00:30 and 00:30-00:45 are missing: 20 Wh -> 10 + 10
    assert [(e["interval_start"] - T0, e["imp"]) for e in est] == [(900, [10]), (1800, [10])]
