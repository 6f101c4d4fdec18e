"""Native tariff format: loading, detection, and errors that name the bad field."""

from __future__ import annotations

import json
import pathlib
import re
from decimal import Decimal as D

import pytest

from headend.billing import load_tariff, parse_tariff
from headend.billing.calendar import MeterCalendar, days_from_civil
from headend.errors import TariffError

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "tariff-format.md"
MIN = 'format = "open-ami-tariff"\n'


def doc_example() -> str:
    return re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)


def test_the_documented_example_loads():
    t = parse_tariff(doc_example())
    assert (t.name, t.currency, t.utc_offset, t.tier_mode, t.tier_basis) == (
        "Example residential TOU with ladder",
        "CNY",
        480,
        "time_order",
        "monthly",
    )
    v0, v1 = t.versions
    assert v0.period_names == ("peak", "flat", "valley") and v0.effective_from is None
    assert v1.effective_from == days_from_civil(2024, 7, 1)
    # valley tier prices plus surcharges 0, 0.05, 0.30
    assert [x.rate for x in v0.energy[2]] == [D("0.288"), D("0.338"), D("0.618")]
    assert [x.max_kwh for x in v0.energy[0]] == [D(240), D(400), None]
    assert (v0.fixed_monthly, v0.fixed_daily, v0.min_monthly) == (D("5.00"), D("0.10"), D("10.00"))
    assert v0.flat_demand[0] == () and v0.flat_demand[6][1].rate == D("25.0")
    assert v0.demand[0][0].rate == D("8.0") and v0.demand[1] == ()


def test_calendar_is_the_meters():
    t = parse_tariff(doc_example())
    cal = t.versions[0].calendar
    assert isinstance(cal, MeterCalendar)
    local = lambda s: int(__import__("datetime").datetime.fromisoformat(s + "+08:00").timestamp())  # noqa: E731
    assert cal.period_at(local("2024-01-03T19:00")) == 0  # Wednesday 18-22: peak
    assert cal.period_at(local("2024-01-06T19:00")) == 1  # Saturday: weekend profile, flat
    assert cal.period_at(local("2024-10-01T19:00")) == 2  # special day: all valley
    assert cal.period_at(local("2024-01-03T07:59")) == 2


def test_json_and_toml_are_the_same_model():
    toml = MIN + 'name = "x"\nenergy = { all = 0.52 }\nfixed = { monthly = 3 }\n'
    js = json.dumps(
        {"format": "open-ami-tariff", "name": "x", "energy": {"all": "0.52"}, "fixed": {"monthly": 3}}
    )
    a, b = parse_tariff(toml), parse_tariff(js)
    assert a.versions[0].energy == b.versions[0].energy == ((a.versions[0].energy[0][0],),)
    assert a.versions[0].energy[0][0].rate == D("0.52") and b.versions[0].fixed_monthly == D(3)


def test_floats_are_read_exactly(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(MIN + "energy = { all = 0.1 }\n")
    assert str(load_tariff(p).versions[0].energy[0][0].rate) == "0.1"


@pytest.mark.parametrize(
    "body, field",
    [
        ("energy = { all = -1 }", "tariff.energy.all[0]"),
        ("energy = { all = 'x' }", "tariff.energy.all[0]"),
        ('periods = ["a", "b"]\nenergy = { a = 1, b = 2 }', "tariff.calendar"),
        ('periods = ["a"]\nenergy = { b = 1 }', "tariff.energy"),
        ("energy = { all = [1, 2] }", "tariff.energy.all"),
        ("tiers = { max_kwh = [400, 240] }\nenergy = { all = 1 }", "tariff.tiers.max_kwh[1]"),
        ("energy = { all = 1 }\nfixed = { weekly = 1 }", "tariff.fixed"),
        ("energy = { all = 1 }\nbogus = 1", "tariff"),
        (
            'periods = ["a", "b"]\nenergy = { a = 1, b = 2 }\n[calendar]\n'
            'day_profiles = [[["00:00", "a"], ["06:00", "c"]]]\nweek_profiles = [[0,0,0,0,0,0,0]]',
            "tariff.calendar.day_profiles[0][1][1]",
        ),
        (
            'periods = ["a", "b"]\nenergy = { a = 1, b = 2 }\n[calendar]\n'
            'day_profiles = [[["06:00", "a"]]]\nweek_profiles = [[0,0,0,0,0,0,0]]',
            "tariff.calendar.day_profiles[0][0][0]",
        ),
        (
            'periods = ["a"]\nenergy = { a = 1 }\n[calendar]\n'
            "day_profiles = [[[0, 1]]]\nweek_profiles = [[0,0,0,0,0,0]]",
            "tariff.calendar.week_profiles[0]",
        ),
        (
            "energy = { all = 1 }\n"
            "demand = { monthly = [{ max_kw = 5, rate = 1 }, { max_kw = 4, rate = 2 }] }",
            "tariff.demand.monthly[1].max_kw",
        ),
        ("utc_offset = 1440\nenergy = { all = 1 }", "utc_offset"),
        ('tier_mode = "ladder"\nenergy = { all = 1 }', "tier_mode"),
        ('minor_unit = "0.05"\nenergy = { all = 1 }', "minor_unit"),
    ],
)
def test_bad_fields_are_named(body, field):
    with pytest.raises(TariffError) as e:
        parse_tariff(MIN + body + "\n")
    assert e.value.field == field
    assert str(e.value).startswith(field + ": ")


def test_versions_need_increasing_dates():
    v = "[[versions]]\neffective_from = %s\nenergy = { all = 1 }\n"
    with pytest.raises(TariffError, match=r"versions\[1\].effective_from: must be after"):
        parse_tariff(MIN + v % "2024-03-01" + v % "2024-02-01")
    with pytest.raises(TariffError, match=r"versions\[1\].effective_from: missing"):
        parse_tariff(MIN + v % "2024-03-01" + "[[versions]]\nenergy = { all = 1 }\n")
    with pytest.raises(TariffError, match="must be a date"):
        parse_tariff(MIN + v % '"March"')


def test_detection_refuses_what_is_neither():
    with pytest.raises(TariffError, match="neither a native tariff"):
        parse_tariff('{"name": "x"}')
    with pytest.raises(TariffError, match="not valid JSON or TOML"):
        parse_tariff("{not json")


def test_overrides_replace_the_documents_settings():
    t = parse_tariff(MIN + "energy = { all = 1 }\n", tier_mode="prorate", utc_offset=-300)
    assert (t.tier_mode, t.utc_offset) == ("prorate", -300)
    with pytest.raises(TariffError, match="tier_mode"):
        parse_tariff(MIN + "energy = { all = 1 }\n", tier_mode="ladder")
