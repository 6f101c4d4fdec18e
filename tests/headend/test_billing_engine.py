"""Hand-computed bills: the arithmetic is in the comments, the engine must match exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headend.billing import bill_profile, parse_tariff
from headend.billing.profile_csv import Profile
from headend.errors import BillingError

BEIJING = """
format = "open-ami-tariff"
name = "Beijing residential"
currency = "CNY"
utc_offset = 480
tier_mode = "time_order"
[tiers]
max_kwh = [240, 400]
[energy]
all = [0.4883, 0.5383, 0.7883]
"""

PEAK_VALLEY = """
format = "open-ami-tariff"
name = "Shanghai-style peak/valley"
utc_offset = 480
periods = ["peak", "valley"]
[calendar]
day_profiles = [[["00:00", "valley"], ["06:00", "peak"], ["22:00", "valley"]]]
week_profiles = [[0, 0, 0, 0, 0, 0, 0]]
[energy]
peak = 0.617
valley = 0.307
"""


def profile(start: str, values, minutes: int = 60, utc_offset: int = 0) -> Profile:
    """Intervals from local ``start`` (tariff local time), one kWh value each."""
    t0 = int(datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp()) - utc_offset * 60
    return Profile(minutes * 60, tuple((t0 + i * minutes * 60, D(str(v))) for i, v in enumerate(values)))


def hours_in(year: int, month: int) -> int:
    nxt = datetime(year + month // 12, month % 12 + 1, 1)
    return int((nxt - datetime(year, month, 1)).total_seconds() // 3600)


def test_beijing_monthly_ladder_splits_the_crossing_interval():
    # 0.7 kWh every hour of January 2024 (744 h) = 520.8 kWh.
    # 342 hours bring 239.4 kWh; hour 343 crosses 240: 0.6 kWh at 0.4883, 0.1 at 0.5383.
    # tier 1: 240 x 0.4883 = 117.192; tier 2: 160 x 0.5383 = 86.128;
    # tier 3: (520.8 - 400) = 120.8 x 0.7883 = 95.22664; sum 298.54664 -> 298.55
    bill = bill_profile(parse_tariff(BEIJING), profile("2024-01-01T00:00", [0.7] * 744, utc_offset=480))
    (jan,) = bill.months
    assert jan.month == "2024-01" and jan.energy_kwh == D("520.8")
    assert jan.exact["energy_charge"] == D("298.54664")
    assert jan.energy_charge == D("298.55") and jan.total == D("298.55")
    # The crossing interval alone: 342 h at 0.7, then one 0.7 kWh interval split at 240.
    part = bill_profile(parse_tariff(BEIJING), profile("2024-01-01T00:00", [0.7] * 343, utc_offset=480))
    # 240 x 0.4883 + 0.1 x 0.5383 = 117.192 + 0.05383 = 117.24583
    assert part.months[0].exact["energy_charge"] == D("117.24583")


def test_one_interval_crossing_two_thresholds():
    # 15-minute data: 239 kWh, then 200 kWh in one interval: 1 kWh in tier 1, 160 in tier 2,
    # 39 in tier 3. 240 x 0.4883 + 160 x 0.5383 + 39 x 0.7883 = 117.192 + 86.128 + 30.7437
    bill = bill_profile(
        parse_tariff(BEIJING), profile("2024-02-01T00:00", [239, 200], minutes=15, utc_offset=480)
    )
    assert bill.months[0].exact["energy_charge"] == D("234.0637")
    assert bill.months[0].energy_charge == D("234.06")


def test_zhejiang_annual_ladder_in_time_order():
    # 0.538 up to 2760 kWh a year, +0.05 (0.588) up to 4800, +0.30 (0.838) above.
    # 0.7 kWh every hour of 2023: 16.8 kWh a day, 6132 kWh a year.
    # Jan: 31 x 16.8 = 520.8 kWh x 0.538 = 280.1904 -> 280.19
    # Jun: Jan-May = 151 days = 2536.8 kWh before; June brings 504 to 3040.8:
    #      223.2 x 0.538 + 280.8 x 0.588 = 120.0816 + 165.1104 = 285.192 -> 285.19
    #      (the crossing hour, Jun 14 06:00, is split 0.6 / 0.1)
    # Oct: Jan-Sep = 273 days = 4586.4 before; Oct brings 520.8 to 5107.2:
    #      213.6 x 0.588 + 307.2 x 0.838 = 125.5968 + 257.4336 = 383.0304 -> 383.03
    # Dec: 520.8 x 0.838 = 436.4304 -> 436.43
    # Year: 2760 x 0.538 + 2040 x 0.588 + 1332 x 0.838 = 1484.88 + 1199.52 + 1116.216 = 3800.616
    tariff = parse_tariff(
        """
        format = "open-ami-tariff"
        name = "Zhejiang residential"
        tier_basis = "annual"
        [tiers]
        max_kwh = [2760, 4800]
        surcharge = [0, 0.05, 0.30]
        [energy]
        all = 0.538
        """
    )
    bill = bill_profile(tariff, profile("2023-01-01T00:00", [0.7] * 8760))
    by = {m.month: m for m in bill.months}
    assert len(bill.months) == 12
    assert by["2023-01"].energy_charge == D("280.19")
    assert by["2023-06"].exact["energy_charge"] == D("285.192")
    assert by["2023-10"].exact["energy_charge"] == D("383.0304")
    assert by["2023-12"].energy_charge == D("436.43")
    assert sum(m.exact["energy_charge"] for m in bill.months) == D("3800.616")


def test_peak_valley_with_utc_offset():
    # One local day (UTC+8), 1 kWh an hour: peak 06-22 = 16 h x 0.617 = 9.872,
    # valley 8 h x 0.307 = 2.456; 12.328 -> 12.33
    bill = bill_profile(parse_tariff(PEAK_VALLEY), profile("2024-05-01T00:00", [1] * 24, utc_offset=480))
    m = bill.months[0]
    assert m.kwh_by_period == {"peak": D(16), "valley": D(8)}
    assert m.exact["energy_charge"] == D("12.328") and m.total == D("12.33")


TOU_LADDER = """
format = "open-ami-tariff"
name = "TOU ladder"
tier_mode = "%s"
periods = ["peak", "valley"]
[calendar]
day_profiles = [[["00:00", "valley"], ["08:00", "peak"], ["20:00", "valley"]]]
week_profiles = [[0, 0, 0, 0, 0, 0, 0]]
[tiers]
max_kwh = [100]
[energy]
peak = [0.6, 0.9]
valley = [0.3, 0.35]
"""


def _tou_ladder_load():
    # April 2024: days 1-10 use 10 kWh at 00:00 (valley), days 11-30 10 kWh at 12:00 (peak).
    out = []
    for day in range(30):
        hours = [0] * 24
        hours[0 if day < 10 else 12] = 10
        out += hours
    return profile("2024-04-01T00:00", out)


def test_time_order_tiers_by_when_energy_was_used():
    # Valley 100 kWh first fill tier 1: 100 x 0.3 = 30; then peak 200 kWh in tier 2:
    # 200 x 0.9 = 180; total 210
    bill = bill_profile(parse_tariff(TOU_LADDER % "time_order"), _tou_ladder_load())
    assert bill.months[0].exact["energy_charge"] == D("210")


def test_prorate_tiers_as_sam():
    # Month 300 kWh: tier 1 100, tier 2 200. Valley share 1/3, peak 2/3.
    # valley: 100/3 x 0.3 + 200/3 x 0.35 = 10 + 23.333..; peak: 200/3 x 0.6 + 400/3 x 0.9 = 40 + 120
    # = 193.333.. -> 193.33
    bill = bill_profile(parse_tariff(TOU_LADDER % "prorate"), _tou_ladder_load())
    assert bill.months[0].energy_charge == D("193.33")
    assert abs(bill.months[0].exact["energy_charge"] - D("193.33333333333333333333")) < D("1e-20")


MID_CYCLE = """
format = "open-ami-tariff"
name = "mid-cycle change"
[[versions]]
periods = ["all"]
energy = { all = 0.50 }
fixed = { monthly = 10 }
demand = { monthly = 5 }
[[versions]]
effective_from = 2024-03-16
periods = ["all"]
energy = { all = 0.60 }
fixed = { monthly = 12 }
demand = { monthly = 6 }
"""


def test_mid_cycle_tariff_change_is_prorated():
    # March 2024, 1 kWh an hour, 3 kWh at Mar 20 12:00 (the month's peak, 3 kW).
    # energy: Mar 1-15 = 360 kWh x 0.50 = 180; Mar 16-31 = 384 + 2 = 386 kWh x 0.60 = 231.6
    #         -> 411.60
    # fixed:  10 x 15/31 + 12 x 16/31 = 342/31 = 11.0322.. -> 11.03
    # demand: 3 kW x 5 x 15/31 + 3 kW x 6 x 16/31 = 513/31 = 16.5483.. -> 16.55
    # total 411.60 + 11.03 + 16.55 = 439.18
    values = [1] * 744
    values[19 * 24 + 12] = 3
    m = bill_profile(parse_tariff(MID_CYCLE), profile("2024-03-01T00:00", values)).months[0]
    assert (m.energy_charge, m.fixed_charge, m.demand_charge) == (D("411.60"), D("11.03"), D("16.55"))
    assert m.total == D("439.18")


def test_demand_from_15_minute_data_flat_and_per_period():
    # June 2024 in 15-minute data: 0.5 kWh each (2 kW), but on June 3 a 1.25 kWh interval at
    # 10:00 (5 kW, peak period, the month's peak) and a 0.75 kWh one at 02:00 (3 kW, valley).
    # flat: tiers 10/kW up to 4 kW, 15/kW above: 4 x 10 + 1 x 15 = 55
    # per period: peak 5 kW x 8 = 40; valley 3 kW x 2 = 6; demand total 101.00
    # energy: peak 30 x 64 intervals x 0.5 + 0.75 = 960.75 kWh x 0.617 = 592.78275,
    #   valley 30 x 32 x 0.5 + 0.25 = 480.25 kWh x 0.307 = 147.43675; 740.2195 -> 740.22
    tariff = parse_tariff(
        PEAK_VALLEY.replace("utc_offset = 480", "utc_offset = 0")
        + """
[demand]
monthly = [{max_kw = 4, rate = 10}, {rate = 15}]
[demand.periods]
peak = 8
valley = 2
"""
    )
    values = [0.5] * (30 * 96)
    values[2 * 96 + 40], values[2 * 96 + 8] = 1.25, 0.75
    m = bill_profile(tariff, profile("2024-06-01T00:00", values, minutes=15)).months[0]
    assert m.peak_kw == D(5) and m.energy_kwh == D(1441)
    assert m.demand_charge == D("101.00")
    assert m.exact["energy_charge"] == D("740.2195") and m.energy_charge == D("740.22")
    # A single day of June is 1/30 of the month: its demand charge is prorated, 101 / 30 -> 3.37
    day = bill_profile(tariff, profile("2024-06-03T00:00", values[2 * 96 : 3 * 96], minutes=15))
    assert day.months[0].demand_charge == D("3.37")


def test_minimum_charge_and_daily_fixed():
    # February 2024 (29 days), 0.1 kWh an hour = 69.6 kWh x 0.1 = 6.96 energy;
    # fixed 0.5 a day x 29 = 14.50; lines 21.46 < minimum 30.00: minimum_charge 8.54, total 30.00
    tariff = parse_tariff(
        """
        format = "open-ami-tariff"
        name = "minimum"
        energy = { all = 0.1 }
        fixed = { daily = 0.5 }
        minimum = { monthly = 30 }
        """
    )
    m = bill_profile(tariff, profile("2024-02-01T00:00", [0.1] * hours_in(2024, 2))).months[0]
    assert (m.energy_charge, m.fixed_charge, m.minimum_charge, m.total) == (
        D("6.96"),
        D("14.50"),
        D("8.54"),
        D("30.00"),
    )
    # Above the minimum there is no minimum line.
    m = bill_profile(tariff, profile("2024-02-01T00:00", [1] * hours_in(2024, 2))).months[0]
    assert m.minimum_charge == D("0.00") and m.total == D("69.60") + D("14.50")


def test_rounding_is_half_up_on_line_items_only():
    # 0.125 kWh at 1.0: 0.125 -> 0.13 (half-even would give 0.12); fixed 0.005/day x 1 day = 0.005
    # -> 0.01; total = 0.13 + 0.01 = 0.14 (rounding the sum 0.130 would give 0.13)
    tariff = parse_tariff('format = "open-ami-tariff"\nenergy = { all = 1 }\nfixed = { daily = 0.005 }\n')
    m = bill_profile(tariff, profile("2024-01-01T00:00", [0.125] + [0] * 23)).months[0]
    assert (m.energy_charge, m.fixed_charge, m.total) == (D("0.13"), D("0.01"), D("0.14"))
    bill = bill_profile(tariff, profile("2024-01-01T00:00", [0.125] + [0] * 23))
    assert bill.rounding == "ROUND_HALF_UP" and bill.as_json()["rounding"]["minor_unit"] == "0.01"


def test_minor_unit_of_one():
    tariff = parse_tariff('format = "open-ami-tariff"\nminor_unit = 1\nenergy = { all = 2.5 }\n')
    m = bill_profile(tariff, profile("2024-01-01T00:00", [1, 0])).months[0]
    assert m.energy_charge == D(3) and m.as_json()["energy_charge"] == "3"


def test_partial_month_prorates_the_monthly_fixed_charge():
    # 10 days of April (30 days): 10 x 10/30 = 3.333.. -> 3.33
    tariff = parse_tariff('format = "open-ami-tariff"\nenergy = { all = 0 }\nfixed = { monthly = 10 }\n')
    m = bill_profile(tariff, profile("2024-04-11T00:00", [0] * 240)).months[0]
    assert m.fixed_charge == D("3.33") and m.days == D(10)


def test_period_change_inside_an_interval_is_refused():
    tariff = parse_tariff(PEAK_VALLEY.replace('"06:00"', '"06:30"'))
    with pytest.raises(BillingError, match="changes inside the 60-minute interval starting 2024-05-01T06:00"):
        bill_profile(tariff, profile("2024-05-01T00:00", [1] * 24, utc_offset=480))


def test_profile_before_the_first_version_is_refused():
    tariff = parse_tariff(
        MID_CYCLE.replace("[[versions]]\nperiods", "[[versions]]\neffective_from = 2024-03-02\nperiods", 1)
    )
    with pytest.raises(BillingError, match="no tariff in force at 2024-03-01T00:00"):
        bill_profile(tariff, profile("2024-03-01T00:00", [1] * 48))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.decimals(min_value=0, max_value=30, places=3), min_size=2, max_size=200),
    st.sampled_from(["time_order", "prorate"]),
)
def test_bill_lines_add_up_and_single_period_modes_agree(values, mode):
    text = BEIJING.replace("[tiers]", "fixed = { daily = 0.33 }\n[tiers]")
    tariff = parse_tariff(text.replace('"time_order"', '"%s"' % mode))
    bill = bill_profile(tariff, profile("2024-01-31T12:00", values))
    for m in bill.months:
        assert m.total == m.energy_charge + m.fixed_charge + m.demand_charge + m.minimum_charge
    other = "prorate" if mode == "time_order" else "time_order"
    again = bill_profile(
        parse_tariff(BEIJING.replace('"time_order"', '"%s"' % other)), profile("2024-01-31T12:00", values)
    )
    # one period: tiering in time order and prorating the month's total are the same charge
    assert [m.energy_charge for m in bill.months] == [m.energy_charge for m in again.months]
    assert sum(m.energy_kwh for m in bill.months) == sum(values)
