"""headend.console.commands: the console's input line -> an action with the wire args the meter
gets, and errors that name the bad word."""

from __future__ import annotations

import pytest

from headend.console.commands import parse_line
from headend.errors import ConsoleError
from protocol import commands, messages

NOW = 1714521600.0


def err(line: str) -> str:
    with pytest.raises(ConsoleError) as e:
        parse_line(line, NOW)
    return str(e.value)


def test_relay():
    a = parse_line("relay m1 open", NOW)
    assert (a.verb, a.meter_id, a.cmd, a.ttl) == ("relay", "m1", messages.CMD_RELAY, None)
    assert commands.command_args(a.cmd, a.args) == {"state": commands.RELAY_OPEN, "reason": 0}
    a = parse_line("  RELAY m-2 Close tamper ttl=60 ", NOW)
    assert a.args == {0: commands.RELAY_CLOSE, 1: commands.REASON_TAMPER} and a.ttl == 60


def test_read_now_time_sync_and_topup():
    a = parse_line("read-now m1", NOW)
    assert (a.cmd, a.args) == (messages.CMD_READ_NOW, {})
    assert parse_line("time-sync m1", NOW).args == {0: int(NOW)}
    assert parse_line("time-sync m1 2024-05-01T08:00:00+08:00", NOW).args == {0: 1714521600}
    assert parse_line("time-sync m1 1700000000", NOW).args == {0: 1700000000}
    a = parse_line("topup m1 12.5", NOW)
    assert (a.verb, a.meter_id, a.amount, a.cmd) == ("topup", "m1", 12500, messages.CMD_TOPUP)


def test_config_builds_the_set_config_args():
    a = parse_line(
        "config m1 interval=900 low-balance=5 emergency-credit=2.5 friendly-hours=0:22:00-24:00", NOW
    )
    assert a.cmd == messages.CMD_SET_CONFIG
    assert a.args == {0: 900, 1: 5000, 2: 2500, 3: [[0, 1320, 1440]]}
    assert parse_line("config m1 friendly_hours=none", NOW).args == {3: []}
    assert parse_line('config m1 friendly-hours="[[1, 0, 60]]"', NOW).args == {3: [[1, 0, 60]]}


def test_tariff_filter_help_quit_and_blank():
    a = parse_line('tariff m1 "my tariffs/t.toml" activate-at=2024-06-01T00:00:00Z tariff-id=7', NOW)
    assert (a.verb, a.path, a.activate_at, a.tariff_id) == (
        "tariff",
        "my tariffs/t.toml",
        "2024-06-01T00:00:00Z",
        7,
    )
    assert parse_line("tariff m1 t.toml", NOW).activate_at == "now"
    assert parse_line("filter m1", NOW).meter_id == "m1"
    assert parse_line("filter all", NOW).meter_id is None
    assert parse_line("help", NOW).verb == "help"
    assert parse_line("quit", NOW).verb == parse_line("exit", NOW).verb == "quit"
    assert parse_line("   ", NOW) is None


@pytest.mark.parametrize(
    "line, words",
    [
        ("relya m1 open", ["unknown command 'relya'", "help"]),
        ("relay m1 opn", ["relay:", "'opn'", "open or close"]),
        ("relay m1 open sometimes", ["'sometimes'", "operator, credit, load-limit, tamper"]),
        ("relay m1 open tamper now", ["unexpected word 'now'"]),
        ("relay m1/x open", ["bad meter id 'm1/x'"]),
        ("relay", ["relay: missing METER"]),
        ("relay m1", ["missing open or close"]),
        ("relay m1 open colour=red", ["unknown option 'colour=red'", "ttl"]),
        ("relay m1 open ttl=0", ["ttl=0", "1.."]),
        ("relay m1 open ttl=soon", ["ttl=soon", "whole number"]),
        ("read-now", ["read-now: missing METER"]),
        ("time-sync m1 yesterday", ["time-sync:", "'yesterday'"]),
        ("topup m1 -5", ["topup:", "'-5'"]),
        ("topup m1 0", ["topup:", "'0'", "above 0"]),
        ("topup m1", ["missing AMOUNT"]),
        ("config m1", ["config:", "at least one", "interval="]),
        ("config m1 intervl=900", ["unknown option 'intervl=900'"]),
        ("config m1 interval=0", ["interval=0", "1..86400"]),
        ("config m1 interval=abc", ["interval=abc", "whole number"]),
        ("config m1 low-balance=lots", ["low-balance=lots", "currency units"]),
        ("config m1 friendly-hours=9:00:00-01:00", ["friendly-hours=9:00:00-01:00"]),
        ("config m1 friendly-hours=0:08:00-06:00", ["must end after it starts"]),
        ("config m1 interval=60 interval=90", ["'interval' given twice"]),
        ("tariff m1", ["missing FILE"]),
        ("tariff m1 t.toml tariff-id=0", ["tariff-id=0"]),
        ("tariff m1 t.toml activate-at=soon", ["activate-at=soon"]),
        ("filter", ["missing METER or all"]),
        ("filter m1 m2", ["unexpected word 'm2'"]),
        ("quit now", ["quit:", "unexpected word 'now'"]),
        ('relay "m1 open', ["cannot split", "quotation"]),
    ],
)
def test_errors_name_the_bad_word(line, words):
    text = err(line)
    for w in words:
        assert w in text, (w, text)
