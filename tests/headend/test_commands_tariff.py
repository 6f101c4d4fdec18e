"""`headend command tariff`: tariff files (the documented native example, the prepaid test
tariff, URDB records) become set-tariff args whose calendar agrees with the billing calendar
to the hour, and what a meter cannot represent is refused naming the field."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from datetime import UTC, datetime

import pytest

from headend.billing import parse_tariff
from headend.cli import main as headend_main
from headend.commands.tariff import load, set_tariff
from headend.db.storage import Storage
from headend.errors import CommandError
from headend.prepaid.ledger import price_schedule
from protocol import commands, messages
from protocol import tariff_calendar as tc
from tests.headend.prepaid_support import TARIFF as PREPAID_TARIFF

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "tariff-format.md"
KEY = bytes(range(1, 33))
NOW = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp())
YEAR = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


def doc_example() -> str:
    return re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)


def record(**fields) -> dict:
    """An OpenEI URDB record: two periods, weekdays 12:00-20:00 in period 1, a fixed charge."""
    rec = {
        "name": "E-TOU example",
        "energyratestructure": [[{"rate": 0.1, "adj": 0.01}], [{"rate": 0.3}]],
        "energyweekdayschedule": [[0] * 12 + [1] * 8 + [0] * 4 for _ in range(12)],
        "energyweekendschedule": [[0] * 24 for _ in range(12)],
        "fixedchargefirstmeter": 10,
        "fixedchargeunits": "$/month",
    }
    return {**rec, **fields}


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def agrees_hourly(args: dict, calendar, start: int = YEAR, hours: int = 366 * 24) -> None:
    """The meter's rate (protocol.tariff_calendar) is the billing period + 1 at every hour of 2024."""
    t = tc.validate_tariff(args)
    for h in range(hours):
        at = start + 3600 * h
        assert tc.rate_at(t, at) == calendar.period_at(at) + 1, at


def file(tmp_path, text: str, name: str = "t.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ---------------------------------------------------------------- conversion


def test_the_documented_example_before_its_second_version(tmp_path):
    tariff, single = load(file(tmp_path, doc_example()))
    got = set_tariff(tariff, ts("2024-05-01T00:00+08:00"), NOW - 86400 * 60, 8)
    a = got.args
    assert not single and got.version == 0 and got.periods == ("peak", "flat", "valley")
    assert a[tc.ACTIVATE_AT] == ts("2024-05-01T00:00+08:00")
    assert a[tc.PRICES] == [568, 488, 288]  # valley: first tier (0.288 + surcharge 0)
    assert a[tc.DAY_PROFILES] == [
        [[0, 3], [480, 2], [1080, 1], [1320, 3]],
        [[0, 3], [480, 2], [1320, 3]],
        [[0, 3]],
    ]
    assert a[tc.WEEK_PROFILES] == [[0, 0, 0, 0, 0, 1, 1]]
    assert (a[tc.SEASONS], a[tc.SPECIAL_DAYS], a[tc.UTC_OFFSET]) == ([[1, 1, 0]], [[0, 10, 1, 2]], 480)
    assert commands.command_args(messages.CMD_SET_TARIFF, a)["id"] == a[tc.ID] != 0
    assert got.notes == [
        "head-end billing only, not sent: tiers (the meter gets each period's first-tier price),"
        " demand charges, fixed charges, minimum charges",
        "versions[1] is not sent: queue it with --activate-at 2024-07-01T00:00:00+08:00",
    ]
    agrees_hourly(a, tariff.versions[0].calendar)


def test_the_version_in_force_when_the_meter_switches_is_sent(tmp_path):
    tariff, _ = load(file(tmp_path, doc_example()))
    # activate_at 0 (on receipt) or already passed: the version in force now, 2024-06-01 -> v0
    assert set_tariff(tariff, 0, NOW, 8).version == 0
    assert set_tariff(tariff, ts("2024-01-01T00:00+08:00"), NOW, 8).version == 0
    late = set_tariff(tariff, ts("2024-07-01T00:00+08:00"), NOW, 8)
    assert late.version == 1 and late.notes == []
    # one period, no calendar in the file: one rate all the time; optional keys left out
    assert late.args == {0: late.args[0], 1: ts("2024-07-01T00:00+08:00"), 2: [520], 3: [[[0, 1]]],
                         4: [[0] * 7], 7: 480}  # fmt: skip
    assert set_tariff(tariff, 0, ts("2024-06-30T16:00Z"), 8).version == 1  # local midnight, +08:00


def test_the_prepaid_tariff_sends_the_prices_the_ledger_debits(tmp_path):
    tariff, _ = load(file(tmp_path, PREPAID_TARIFF))
    schedule = price_schedule(tariff)
    mar1 = ts("2024-03-01T00:00Z")
    for version, at in ((0, mar1), (1, mar1 + 86400)):
        got = set_tariff(tariff, at, mar1 - 3600, 2)
        assert got.version == version and got.notes == ([] if version else [got.notes[0]])
        assert tuple(got.args[tc.PRICES]) == schedule[version].prices
        agrees_hourly(got.args, tariff.versions[version].calendar, hours=24 * 14)
    assert set_tariff(tariff, mar1, mar1, 2).args[tc.PRICES] == [500, 300]
    assert set_tariff(tariff, mar1 + 86400, mar1, 2).args[tc.PRICES] == [800, 333]


def test_the_tariff_id_is_a_hash_of_what_the_meter_gets_unless_given(tmp_path):
    tariff, _ = load(file(tmp_path, doc_example()))
    a = set_tariff(tariff, 0, NOW, 8).args
    b = set_tariff(tariff, ts("2024-06-02T00:00Z"), NOW, 8).args  # activation is not the content
    c = set_tariff(tariff, ts("2024-07-02T00:00Z"), NOW, 8).args  # another version
    assert a[tc.ID] == b[tc.ID] != c[tc.ID] and 0 < a[tc.ID] < 2**31
    assert set_tariff(tariff, 0, NOW, 8, tariff_id=7).args[tc.ID] == 7
    with pytest.raises(CommandError, match="tariff id must be 1..4294967295, got 0"):
        set_tariff(tariff, 0, NOW, 8, tariff_id=0)


URDB_WD = [[0] * 12 + [1] * 8 + [0] * 4 for _ in range(12)]
URDB_SUMMER = [[0] * 24 for _ in range(5)] + [[0] * 14 + [2] * 6 + [0] * 4] * 4 + [[0] * 24] * 3


@pytest.mark.parametrize(
    "weekday, weekend, seasons",
    [
        (URDB_WD, [[0] * 24] * 12, []),
        (URDB_SUMMER, [[0] * 8 + [1] * 16] * 12, [[1, 1, 0], [6, 1, 1], [10, 1, 0]]),
    ],
)
def test_a_urdb_month_hour_table_becomes_the_meters_calendar(weekday, weekend, seasons):
    rates = [[{"rate": 0.1, "adj": 0.01}], [{"rate": 0.3}], [{"rate": 0.45}]]
    tariff = parse_tariff(json.dumps(record(energyweekdayschedule=weekday, energyweekendschedule=weekend,
                                            energyratestructure=rates)))  # fmt: skip
    got = set_tariff(tariff, 0, NOW, 8)
    assert got.args[tc.PRICES] == [110, 300, 450] and got.args.get(tc.SEASONS, []) == seasons
    assert got.notes == ["head-end billing only, not sent: fixed charges"]
    agrees_hourly(got.args, tariff.versions[0].calendar)


# ---------------------------------------------------------------- refusals


MIN = 'format = "open-ami-tariff"\n'
TWO = (
    MIN
    + """
[[versions]]
periods = ["peak", "valley"]
[versions.calendar]
day_profiles = [[["00:00", "valley"], ["08:00", "peak"]]]
week_profiles = [[0, 0, 0, 0, 0, 0, 0]]
[versions.energy]
peak = "%s"
valley = "0.3"
"""
)
P9 = ["p%d" % i for i in range(9)]  # nine periods, one a hour from midnight
NINE = MIN + "periods = %s\nenergy = { %s }\n[calendar]\nday_profiles = [%s]\nweek_profiles = [%s]\n" % (
    json.dumps(P9),
    ", ".join("%s = 0.1" % p for p in P9),
    json.dumps([[60 * i, p] for i, p in enumerate(P9)]),
    [0] * 7,
)


@pytest.mark.parametrize(
    "text, max_rates, field, message",
    [
        (MIN + "energy = { all = 0.5685 }", 8, "tariff.energy.all",
         "0.5685 per kWh is not a whole number of milli-units 0..1000000"),
        (MIN + "energy = { all = 1000.001 }", 8, "tariff.energy.all", "1000.001 per kWh is not a whole"),
        (TWO % "0.8005", 8, "versions[0].energy.peak", "0.8005 per kWh"),
        (TWO % "0.8", 1, "versions[0].periods", "2 rates (peak, valley) but the meter has 1 (test)"),
        (NINE, 8, "tariff.periods", "9 rates (p0, p1, p2, p3, p4, p5, p6, p7, p8) but the meter has 8"),
        (MIN + "effective_from = 2030-01-01\nenergy = { all = 1 }", 8, "tariff.effective_from",
         "no version of the tariff is in force at 2024-06-01T00:00:00+00:00"),
    ],
)  # fmt: skip
def test_what_the_meter_cannot_represent_is_refused_naming_the_field(
    tmp_path, text, max_rates, field, message
):
    tariff, single = load(file(tmp_path, text))
    with pytest.raises(CommandError) as e:
        set_tariff(tariff, 0, NOW, max_rates, "test", single=single)
    assert e.value.field == field and str(e.value).startswith(field + ": ") and message in str(e.value)


def test_a_calendar_the_meter_cannot_express_is_refused(tmp_path):
    tariff, _ = load(file(tmp_path, TWO % "0.8"))
    odd = dataclasses.replace(tariff, versions=(dataclasses.replace(tariff.versions[0], calendar=object()),))
    with pytest.raises(CommandError, match=r"^versions\[0\]\.calendar: this time-of-use structure"):
        set_tariff(odd, 0, NOW, 8)


def test_a_urdb_price_that_is_not_whole_milli_units_names_its_structure_entry():
    tariff = parse_tariff(json.dumps(record(energyratestructure=[[{"rate": 0.1}], [{"rate": 0.12345}]])))
    with pytest.raises(CommandError, match=r"^energyratestructure\[1\]\[0\]: 0.12345 per kWh"):
        set_tariff(tariff, 0, NOW, 8)


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def db(db_target):  # both engines (tests/conftest.py)
    path = db_target
    with Storage(path) as store:
        store.add_meter("m1", KEY.hex(), "$7$x", now=0)
        store.add_meter("two", KEY.hex(), "$7$x", rating={"rates": 2}, now=0)
        store.add_meter("told", KEY.hex(), "$7$x", now=0)
        store.set_online("told", True, 1, seq=1, fields={"status_rates": 2})
    return path


def test_the_cli_queues_the_converted_tariff_sealed_for_the_meter(tmp_path, db, capsys):
    path = file(tmp_path, doc_example())
    argv = [
        "--db",
        db,
        "command",
        "tariff",
        "m1",
        "--tariff",
        path,
        "--activate-at",
        "2024-06-02T00:00+08:00",
    ]
    capsys.readouterr()
    assert headend_main([*argv, "--json", "--now", str(NOW)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["name"], row["seq"], row["ref"]) == ("set-tariff", 1, path + " versions[0]")
    assert row["args"]["prices"] == [568, 488, 288] and row["args"]["activate_at"] == ts(
        "2024-06-02T00:00+08:00"
    )
    assert row["expires"] == NOW + 7 * 86400 and len(row["notes"]) == 2
    with Storage(db) as store:
        msg = messages.open_frame(KEY, "m1", store.command(row["id"])["frame"])
    named = commands.command_args(msg["cmd"], msg["args"])
    expected = set_tariff(load(path)[0], ts("2024-06-02T00:00+08:00"), NOW, 8).args
    assert msg["args"] == expected and named["tariff"] == tc.validate_tariff(expected)
    assert headend_main([*argv, "--now", str(NOW)]) == 0  # text output: the command and its notes
    out = capsys.readouterr().out
    assert "command 2 to m1: seq 2 set-tariff" in out and "  note: versions[1] is not sent" in out


@pytest.mark.parametrize(
    "meter, text",
    [
        ("two", "error: versions[0].periods: 3 rates (peak, flat, valley) but the meter has 2"
                " (meters.rates of two)"),
        ("told", "but the meter has 2 (as told last reported in its status)"),
        ("nope", "error: unknown meter 'nope'"),
    ],
)  # fmt: skip
def test_the_cli_refuses_more_rates_than_the_meter_has(tmp_path, db, capsys, meter, text):
    path = file(tmp_path, doc_example())
    capsys.readouterr()
    assert headend_main(["--db", db, "command", "tariff", meter, "--tariff", path, "--now", str(NOW)]) == 1
    assert text in capsys.readouterr().err
    with Storage(db) as store:
        assert store.commands() == []


def test_the_cli_names_a_bad_tariff_file(tmp_path, db, capsys):
    path = file(tmp_path, MIN + "energy = { all = 0.1 }\nbogus = 1")
    capsys.readouterr()
    assert headend_main(["--db", db, "command", "tariff", "m1", "--tariff", path]) == 1
    assert "error: tariff: unknown key 'bogus'" in capsys.readouterr().err
    assert headend_main(["--db", db, "command", "tariff", "m1", "--tariff", str(tmp_path / "none.toml")]) == 1
    assert "No such file" in capsys.readouterr().err
