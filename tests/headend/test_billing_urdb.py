"""OpenEI URDB import: field mapping, units, detection, refusals, and a hand-computed bill."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from headend.billing import bill_profile, parse_tariff
from headend.billing.calendar import MonthHourCalendar
from headend.billing.profile_csv import parse_profile_csv
from headend.errors import TariffError

WD = [[0] * 12 + [1] * 8 + [0] * 4 for _ in range(12)]  # 12:00-20:00 on weekdays: period 1
WE = [[0] * 24 for _ in range(12)]


def record(**extra) -> dict:
    rec = {
        "label": "5a0b1c2d3e4f",
        "name": "E-TOU example",
        "utility": "Example Utility",
        "energyratestructure": [
            [{"rate": 0.1, "adj": 0.01, "max": 300, "unit": "kWh"}, {"rate": 0.2, "unit": "kWh"}],
            [{"rate": 0.3, "max": 300}, {"rate": 0.4}],
        ],
        "energyweekdayschedule": WD,
        "energyweekendschedule": WE,
        "fixedchargefirstmeter": 10,
        "fixedchargeunits": "$/month",
    }
    rec.update(extra)
    return rec


def load(rec, **kw):
    return parse_tariff(json.dumps(rec), **kw)


def test_energy_structure_and_schedules():
    t = load(record())
    assert (t.source, t.name, t.currency, t.tier_mode, t.tier_basis) == (
        "urdb",
        "E-TOU example",
        "USD",
        "prorate",
        "monthly",
    )
    v = t.versions[0]
    assert [(x.rate, x.max_kwh) for x in v.energy[0]] == [(D("0.11"), D(300)), (D("0.2"), None)]
    assert isinstance(v.calendar, MonthHourCalendar) and v.calendar.weekday is not None
    assert t.extra["label"] == "5a0b1c2d3e4f"


@pytest.mark.parametrize(
    "units, monthly",
    [("$/month", D("12")), ("$/day", D("12") * 365 / 12), ("$/year", D(1)), (None, D("12"))],
)
def test_fixed_charge_units(units, monthly):
    rec = record(fixedchargefirstmeter=12)
    if units is None:
        del rec["fixedchargeunits"]
    else:
        rec["fixedchargeunits"] = units
    assert load(rec).versions[0].fixed_monthly == monthly


def test_minimum_charge_units():
    v = load(record(mincharge=20, minchargeunits="$/month")).versions[0]
    assert (v.min_monthly, v.min_annual) == (D(20), D(0))
    v = load(record(mincharge=240, minchargeunits="$/year")).versions[0]
    assert (v.min_monthly, v.min_annual) == (D(0), D(240))
    v = load(record(minmonthlycharge=7)).versions[0]
    assert v.min_monthly == D(7)


def test_flat_and_tou_demand():
    rec = record(
        flatdemandstructure=[[{"rate": 5}], [{"rate": 7, "max": 10}, {"rate": 9, "adj": 1}]],
        flatdemandmonths=[0] * 5 + [1] * 4 + [0] * 3,
        demandratestructure=[[{"rate": 0}], [{"rate": 12.5}]],
        demandweekdayschedule=WD,
        demandweekendschedule=WE,
    )
    v = load(rec).versions[0]
    assert v.flat_demand[0][0].rate == D(5) and v.flat_demand[5][1].rate == D(10)
    assert v.flat_demand[5][0].max_kw == D(10)
    assert v.demand[1][0].rate == D("12.5") and v.demand_calendar is not None


def test_detected_inside_an_api_answer():
    t = parse_tariff(json.dumps({"items": [record()]}))
    assert t.source == "urdb"
    with pytest.raises(TariffError, match="holds 2 rate records"):
        parse_tariff(json.dumps({"items": [record(), record()]}))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"energyweekdayschedule": WD[:11]}, "energyweekdayschedule"),
        ({"energyweekendschedule": [[0] * 24] * 11 + [[0] * 23 + [2]]}, "energyweekendschedule[11][23]"),
        ({"energyratestructure": [[{"rate": 0.1, "unit": "kWh/kW"}]]}, "energyratestructure[0][0].unit"),
        ({"energyratestructure": [[{"rate": 0.1}, {"rate": 0.2}]]}, "energyratestructure[0][0].max"),
        ({"fixedchargeunits": "$/week"}, "fixedchargeunits"),
        ({"demandratchetpercentage": [0.8] * 12}, "demandratchetpercentage"),
        (
            {"flatdemandstructure": [[{"rate": 1}]], "flatdemandmonths": [0] * 11 + [1]},
            "flatdemandmonths[11]",
        ),
        (
            {"flatdemandstructure": [[{"rate": 1}]], "flatdemandmonths": [0] * 12, "flatdemandunit": "kVA"},
            "flatdemandunit",
        ),
    ],
)
def test_bad_records_are_refused_by_field(change, field):
    with pytest.raises(TariffError) as e:
        load(record(**change))
    assert e.value.field == field


def test_hand_computed_urdb_bill():
    # January 2018 (starts on a Monday): 1 kWh every hour, 744 kWh.
    # Weekdays (23 of them) 12:00-20:00 are period 1: 23 x 8 = 184 kWh; period 0: 560 kWh.
    # Prorate (SAM): tier 1 300 kWh, tier 2 444 kWh of the month's 744.
    # period 0: 560/744 x (300 x 0.11 + 444 x 0.2) = 560/744 x 121.8 = 91.6774..
    # period 1: 184/744 x (300 x 0.3 + 444 x 0.4) = 184/744 x 267.6 = 66.1806..
    # energy 157.858.. -> 157.86; fixed 10.00; total 167.86
    csv = "timestamp,kwh\n" + "".join("2018-01-%02dT%02d:00,1\n" % (1 + h // 24, h % 24) for h in range(744))
    t = load(record())
    m = bill_profile(t, parse_profile_csv(csv)).months[0]
    assert m.kwh_by_period == {"period0": D(560), "period1": D(184)}
    assert abs(m.exact["energy_charge"] - (D(560) * D("121.8") + D(184) * D("267.6")) / 744) < D("1e-20")
    assert (m.energy_charge, m.fixed_charge, m.total) == (D("157.86"), D("10.00"), D("167.86"))
    # In time order instead the first 300 kWh (to Jan 13 11:00) take tier 1 whatever the period.
    m2 = bill_profile(load(record(), tier_mode="time_order"), parse_profile_csv(csv)).months[0]
    assert m2.energy_charge != m.energy_charge
