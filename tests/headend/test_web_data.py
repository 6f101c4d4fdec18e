"""The dashboard's read models: interval energy from register deltas, the fleet summary, a
meter's load profile by rate, the SVG chart, the web storage queries."""

import re

import pytest

from headend.web import charts, data, loadprofile
from tests.headend.alerts_support import DAY, NOW
from tests.headend.web_support import TODAY, build_fleet, new_store, rate_of, wh_of


def row(ts, imp, meter="m", seq=None):
    return {"meter_id": meter, "seq": seq or ts, "ts": ts, "imp": imp}


@pytest.fixture
def store(db_target):  # both engines (tests/conftest.py)
    with new_store(db_target) as s:
        yield s


def test_deltas_per_rate_skip_resets_and_same_time_pairs():
    rows = [
        row(0, [0, 0]),
        row(900, [10, 5]),
        row(900, [10, 5], seq=99),
        row(1800, [12, 9]),
        row(2700, [1, 0]),
        row(3600, [4, 2]),
        row(0, [7], meter="n"),
        row(900, [9, 1], meter="n"),
    ]
    got = [(d.meter_id, d.start, d.end, d.wh) for d in loadprofile.deltas(rows)]
    assert got == [
        ("m", 0, 900, (10, 5)),
        ("m", 900, 1800, (2, 4)),
        # 1800 -> 2700 went down (a reset): no delta; counting resumes from the reset
        ("m", 2700, 3600, (3, 2)),
        ("n", 0, 900, (2, 1)),  # a register that appears counts from 0
    ]


def test_buckets_spread_a_delta_over_the_seconds_it_covers():
    ds = [loadprofile.Delta("m", 0, 3600, (400, 0)), loadprofile.Delta("m", 3600, 4500, (0, 90))]
    got = loadprofile.bucket(ds, 0, 7200, 900, 2)
    assert got[:5] == [[100, 0], [100, 0], [100, 0], [100, 0], [0, 90]]
    assert sum(map(sum, got)) == 490
    # a window cutting a delta counts only its share
    assert loadprofile.energy_between(ds, 1800, 4500) == 200 + 90
    assert loadprofile.pick_step(ds, 900) == 3600 and loadprofile.pick_step([], 900) == 900


def test_fleet_summary_counts_meters_alerts_and_todays_energy(store):
    build_fleet(store)
    s = data.fleet_summary(store, NOW)
    assert (s["meters"], s["online"], s["offline"]) == (5, 2, 3)  # m1, m3 online; m2 and two bill meters not
    assert s["alerts"]["open"] == 3 and s["alerts"]["active"] == 3
    expected = 2 * sum(wh_of(ts) for ts in range(TODAY + 900, NOW + 1, 900))  # m1 and m3 alike
    assert s["today"] == "2024-03-17" and s["energy_today_wh"] == expected


def test_meter_profile_of_a_day_and_of_seven_days(store):
    build_fleet(store)
    day = data.meter_profile(store, "m1", TODAY - DAY, 1, NOW)
    assert (day["day"], day["step"], day["rates"], len(day["buckets"])) == ("2024-03-16", 900, 4, 96)
    first = day["buckets"][0]
    assert first["start"] == TODAY - DAY and first["wh"][rate_of(TODAY - DAY + 900)] == wh_of(
        TODAY - DAY + 900
    )
    by_rate = [0] * 4
    for ts in range(TODAY - DAY + 900, TODAY + 1, 900):
        by_rate[rate_of(ts)] += wh_of(ts)
    assert day["totals_wh"] == by_rate
    default = data.meter_profile(store, "m1", None, 1, NOW)  # the day of the latest reading
    assert default["day"] == "2024-03-17" and sum(default["totals_wh"]) > 0
    week = data.meter_profile(store, "m1", TODAY, 7, NOW)
    assert (week["from"], week["to"], week["step"], len(week["buckets"])) == (
        TODAY - 6 * DAY,
        TODAY + DAY,
        3600,
        168,
    )
    assert data.meter_profile(store, "m1", TODAY - 30 * DAY, 1, NOW)["rates"] == 0


def test_day_and_days_parameters_are_checked():
    assert data.parse_day("2024-03-16") == TODAY - DAY and data.parse_day(None) is None
    with pytest.raises(data.HTTPError) as e:
        data.parse_day("16/03/2024")
    assert e.value.status == 400
    assert data.parse_days("7") == 7
    for bad in ("0", "32", "x", "-1"):
        with pytest.raises(data.HTTPError):
            data.parse_days(bad)


def test_chart_draws_one_rect_per_rate_segment_scaled_to_its_energy():
    buckets = [[100, 0, 50], [0, 0, 0], [300, 200, 0]]
    svg = charts.stacked_bars(buckets, TODAY, 3600, 'title <with> "quotes"')
    bars = re.findall(
        r'<rect class="bar" data-rate="(\d)" data-wh="([\d.]+)" x="[\d.]+" y="[\d.]+"'
        r' width="[\d.]+" height="([\d.]+)"',
        svg,
    )
    assert [(r, float(w)) for r, w, _ in bars] == [("1", 100), ("3", 50), ("1", 300), ("2", 200)]
    heights = [float(h) for _, _, h in bars]
    assert heights[0] == pytest.approx(2 * heights[1]) and heights[2] == pytest.approx(3 * heights[0])
    assert "title &lt;with&gt; &quot;quotes&quot;" in svg and "<with>" not in svg
    assert charts.nice_max(530) == (600, 200) and charts.nice_max(0) == (1.0, 0.2)


def test_readings_window_gives_each_meter_its_baseline(store):
    build_fleet(store)
    rows = store.readings_window(TODAY, TODAY + 1800, "m1")
    assert [r["ts"] for r in rows] == [TODAY, TODAY + 900, TODAY + 1800]
    every = store.readings_window(TODAY, TODAY + 900)
    assert sorted({r["meter_id"] for r in every}) == ["m1", "m3"]
    assert store.fleet_counts() == {"meters": 5, "online": 2, "offline": 3}
