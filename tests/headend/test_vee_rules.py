"""Each validation rule against hand-computed expectations (the arithmetic is in the comments)."""

import pytest

from headend.errors import VeeConfigError
from headend.vee.config import VeeConfig, load_config
from headend.vee.registers import register_delta, spread
from headend.vee.rules import (
    RULE_NAMES,
    clock_drift,
    duplicate,
    gap,
    impossible_power,
    interval_length,
    registers_monotonic,
    reverse_flow,
    sum_check,
    validate,
)
from headend.vee.rules_daily import high_low, spike, zero_consumption
from tests.headend.vee_fakes import DAY, reading, series

T0 = 1704067200  # 2024-01-01 00:00 UTC, a Monday
CFG = VeeConfig()


def verdicts(results):
    return [(r.ts - T0, r.outcome, r.seqs) for r in results]


# ---------------------------------------------------------------- registers


def test_register_delta_plain_rollover_and_decrease():
    m, margin = 10**9, 10**6
    assert register_delta(1000, 1010, m, margin) == 10
    # 999_999_990 -> wraps at 10**9 -> 5: (10**9 - 999_999_990) + 5 = 10 + 5 = 15 Wh
    assert register_delta(999_999_990, 5, m, margin) == 15
    assert register_delta(500, 400, m, margin) is None  # a plain drop
    assert register_delta(600_000_000, 5, m, margin) is None  # large drop, but not near the modulus


def test_spread_keeps_the_integer_sum():
    # 53 Wh over 5 equal slots: running floors 53*k/5 = 10, 21, 31, 42, 53 -> 10, 11, 10, 11, 11
    assert spread(53, [1] * 5) == [10, 11, 10, 11, 11]
    assert spread(0, [1, 2]) == [0, 0]


def test_monotonic_fails_only_the_bad_reading():
    # 1000, 1010, 1005, 1020: seq 3 dropped 5 Wh (fail); seq 4 is compared with seq 2
    # (the last good reading): 1010 -> 1020 is fine
    rows = series(T0, [1000, 1010, 1005, 1020])
    res = registers_monotonic(rows, {}, CFG, T0)
    assert verdicts(res) == [(1800, "fail", (3,))]
    assert res[0].detail == "imp[0] decreased from 1010 to 1005 since seq 2"


def test_monotonic_rollover_is_a_warning_and_beyond_modulus_fails():
    rows = series(T0, [999_999_990, 5, 20, 10**9])
    res = registers_monotonic(rows, {}, CFG, T0)
    # seq 2: rollover (warn); seq 4: 10**9 is not a valid register value (fail)
    assert verdicts(res) == [(900, "warn", (2,)), (2700, "fail", (4,))]


def test_monotonic_checks_export_and_reactive_registers():
    rows = [reading(1, T0, 100, exp=50), reading(2, T0 + 900, 110, exp=40)]
    assert registers_monotonic(rows, {}, CFG, T0)[0].detail == "exp[0] decreased from 50 to 40 since seq 1"
    rows = [reading(1, T0, 100, q=[5, 0, 0, 0]), reading(2, T0 + 900, 110, q=[4, 0, 0, 0])]
    assert registers_monotonic(rows, {}, CFG, T0)[0].detail == "q[0] decreased from 5 to 4 since seq 1"


# ---------------------------------------------------------------- sum check


def test_sum_check_total_register_rates_and_interval_energy():
    rows = [
        reading(1, T0, [100, 200], imp_total=300),  # 100 + 200 = 300: pass
        reading(2, T0 + 900, [110, 200], imp_total=312),  # 110 + 200 = 310 vs 312: off by 2 > 1 Wh: fail
        reading(3, T0 + 1800, [120, 201], interval_imp=[10, 1]),  # delta 10, 1: pass
        reading(4, T0 + 2700, [130, 201], interval_imp=[12, 0]),  # delta 10 vs 12: fail
    ]
    res = sum_check(rows, {}, CFG, T0)
    assert verdicts(res) == [(900, "fail", (2,)), (2700, "fail", (4,))]
    assert res[0].detail == "sum of imp rates 310 != total register 312"
    # a 2-rate reading on a meter provisioned with 4 rates
    res = sum_check(rows[:1], {"rates": 4}, CFG, T0)
    assert res[0].detail == "2 rate registers, the meter has 4 rates"


# ---------------------------------------------------------------- gaps, duplicates, interval length


def test_gap_counts_missing_intervals():
    # readings at 00:00, 00:15 and 01:15: 01:15 - 00:15 = 3600 s = 4 intervals, 3 readings missing
    rows = [reading(1, T0, 1000), reading(2, T0 + 900, 1010), reading(3, T0 + 4500, 1050)]
    res = gap(rows, {}, CFG, T0)
    assert verdicts(res) == [(4500, "warn", (3,))]
    assert res[0].detail == "3 interval(s) missing since ts %d (seq 2)" % (T0 + 900)


def test_duplicates_same_values_warn_different_values_fail():
    rows = [reading(1, T0, 1000), reading(2, T0 + 900, 1010), reading(3, T0 + 900, 1010)]
    assert verdicts(duplicate(rows, {}, CFG, T0)) == [(900, "warn", (3,))]
    rows.append(reading(4, T0 + 900, 1011))  # same ts as seq 2, other registers
    res = duplicate(rows, {}, CFG, T0)
    assert verdicts(res) == [(900, "fail", (3, 4))]
    assert res[0].detail == "seq 4 conflict(s) with seq 2 at the same ts"


def test_interval_length():
    rows = [
        reading(1, T0, 1000),
        reading(2, T0 + 900, 1010, interval=300),  # aligned but 300 s: fail
        reading(3, T0 + 1000, 1011, interval=100),  # on-demand read, ts not on the 900 s grid: warn
        reading(4, T0 + 1800, 1020),
    ]
    assert verdicts(interval_length(rows, {}, CFG, T0)) == [(900, "fail", (2,)), (1000, "warn", (3,))]
    assert interval_length(rows[1:2], {"interval": 300}, CFG, T0) == []  # the meter's own interval


def test_clock_drift():
    rows = [
        reading(1, T0, 1, received_at=T0 - 301),  # ts 301 s ahead of receipt > 300: fail
        reading(2, T0 + 900, 2, received_at=T0 + 900 - 300),  # 300 s ahead: within tolerance
        reading(3, T0 + 1800, 3, flags=2),  # clock unsynchronised flag: warn
        reading(4, T0 + 2700, 4, received_at=T0 + 2700 + 3601),  # 3601 s late, no backlog flag: warn
        reading(5, T0 + 3600, 5, received_at=T0 + 3600 + 3601, flags=16),  # late but flagged backlog
        reading(6, T0 + 4500, 6, received_at=T0 + 4500 + 3600),  # exactly the limit: pass
    ]
    res = clock_drift(rows, {}, CFG, T0 + 10**6)
    assert verdicts(res) == [(0, "fail", (1,)), (1800, "warn", (3,)), (2700, "warn", (4,))]
    # a ts more than 300 s past `now` fails even if received_at says otherwise
    assert verdicts(clock_drift(rows[1:2], {}, CFG, T0 + 599)) == [(900, "fail", (2,))]


# ---------------------------------------------------------------- consumption through time


def test_zero_consumption_for_the_configured_span():
    cfg = VeeConfig(zero_span_s=3600)
    # flat at 1000 Wh from 00:00: the streak reaches 3600 s at 01:00 and goes on at 01:15;
    # 01:30 uses 5 Wh and ends it
    rows = series(T0, [1000, 1000, 1000, 1000, 1000, 1000, 1005])
    assert verdicts(zero_consumption(rows, {}, cfg, T0)) == [(3600, "warn", (5,)), (4500, "warn", (6,))]
    # with the relay open (flag bit 0) zero use is expected
    rows = series(T0, [1000] * 7, flags=1)
    assert zero_consumption(rows, {}, cfg, T0) == []


def test_high_low_against_average_daily_use():
    cfg = VeeConfig(history_days=3, min_history_days=3, high_pct=200, low_pct=50)
    midnights = [T0 + k * DAY for k in range(5)]

    def days(last_day_use):
        # days 0..2 use 100 Wh each (average 100); day 3 uses last_day_use
        values = [0, 100, 200, 300, 300 + last_day_use]
        return [reading(i + 1, ts, v) for i, (ts, v) in enumerate(zip(midnights, values, strict=True))]

    # 201 Wh: 201*100*3 = 60300 > 200*300 = 60000: high, reported on the reading closing day 3
    res = high_low(days(201), {}, cfg, T0)
    assert verdicts(res) == [(4 * DAY, "warn", (5,))]
    assert res[0].detail == "high: 2024-01-04 used 201 Wh, 3-day average 100 Wh (201 %)"
    assert high_low(days(200), {}, cfg, T0) == []  # exactly 200 %: not above
    assert high_low(days(50), {}, cfg, T0) == []  # exactly 50 %: not below
    res = high_low(days(49), {}, cfg, T0)  # 49*300 = 14700 < 50*300 = 15000: low
    assert res[0].detail.startswith("low: 2024-01-04 used 49 Wh")
    # only 2 days of history for day 2: no verdict there; day 1 and 0 have less
    assert high_low(days(201)[:4], {}, VeeConfig(history_days=3, min_history_days=3), T0) == []


def test_spike_highest_vs_third_highest():
    cfg = VeeConfig(spike_ratio_pct=500, spike_min_wh=100)
    # intervals 10, 20, 30, 40, 400 Wh: highest 400, third-highest 30:
    # 400*100 = 40000 > 30*500 = 15000: spike on the 400 Wh interval (ends 01:15, seq 6)
    rows = series(T0, [0, 10, 30, 60, 100, 500])
    res = spike(rows, {}, cfg, T0)
    assert verdicts(res) == [(4500, "warn", (6,))]
    assert res[0].detail == "2024-01-01: interval of 400 Wh vs third-highest 30 Wh (limit 500 %)"
    # 150 vs 30: 15000 is not above 15000
    assert spike(series(T0, [0, 10, 30, 60, 100, 250]), {}, cfg, T0) == []
    # 99 Wh is under the 100 Wh noise floor whatever the ratio
    assert spike(series(T0, [0, 0, 1, 2, 3, 102]), {}, cfg, T0) == []


def test_reverse_flow():
    rows = [reading(1, T0, 100, exp=0), reading(2, T0 + 900, 110, exp=0), reading(3, T0 + 1800, 120, exp=5)]
    res = reverse_flow(rows, {}, CFG, T0)
    assert verdicts(res) == [(1800, "warn", (3,))]
    assert res[0].detail == "5 Wh exported since seq 2 on a meter without export"
    assert reverse_flow(rows, {"export_allowed": True}, CFG, T0) == []


def test_impossible_power_for_the_rating():
    meter = {"imax_ma": 60_000, "un_mv": 230_000}
    # limit 60 A x 230 V x 120 % = 16560 W; over 900 s that is 16560 * 900 / 3600 = 4140 Wh
    ok = series(T0, [0, 4140])
    assert impossible_power(ok, meter, CFG, T0) == []
    bad = series(T0, [0, 4141])  # 4141 Wh in 900 s = 16564 W
    res = impossible_power(bad, meter, CFG, T0)
    assert verdicts(res) == [(900, "fail", (2,))]
    assert res[0].detail == "imp: average 16564 W over 900 s exceeds 16560 W (imax x un x 120 %)"
    # no rating, no verdict; un defaults to 230 V when only imax is known
    assert impossible_power(bad, {}, CFG, T0) == []
    assert len(impossible_power(bad, {"imax_ma": 60_000}, CFG, T0)) == 1


def test_validate_runs_every_rule_sorted():
    rows = series(T0, [1000, 1010, 1005, 1020])
    res = validate(rows, {}, CFG, T0 + 3600)
    assert [(r.ts - T0, r.rule) for r in res] == [(1800, "registers_monotonic")]
    assert len(RULE_NAMES) == 11


# ---------------------------------------------------------------- config


def test_config_defaults_and_sources(tmp_path):
    assert load_config().linear_max_span_s == 7200 and load_config().register_modulus_wh == 10**9
    assert load_config({"spike_min_wh": 5}).spike_min_wh == 5
    (tmp_path / "vee.toml").write_text('[vee]\nholidays = ["2024-12-25"]\nlinear_max_span_s = 10800\n')
    cfg = load_config(tmp_path / "vee.toml")
    assert cfg.holidays == ("2024-12-25",) and cfg.linear_max_span_s == 10800
    (tmp_path / "vee.json").write_text('{"weekend_days": [6, 4]}')
    assert load_config(str(tmp_path / "vee.json")).weekend_days == (4, 6)


@pytest.mark.parametrize(
    "values, field",
    [
        ({"spike_ratio": 5}, "spike_ratio"),
        ({"high_pct": 50}, "high_pct"),
        ({"interval_s": "900"}, "interval_s"),
        ({"interval_s": 7}, "interval_s"),  # does not divide a day
        ({"holidays": ["2024-13-01"]}, "holidays"),
        ({"weekend_days": [7]}, "weekend_days"),
        ({"rollover_margin_wh": 600_000_000}, "rollover_margin_wh"),
        ({"history_days": 3, "min_history_days": 4}, "min_history_days"),
    ],
)
def test_config_errors_name_the_field(values, field):
    with pytest.raises(VeeConfigError) as e:
        load_config(values)
    assert e.value.field == field and field in str(e.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(VeeConfigError, match="must end in .toml or .json"):
        load_config(tmp_path / "vee.yaml")
    (tmp_path / "bad.toml").write_text("linear_max_span_s = ")
    with pytest.raises(VeeConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
