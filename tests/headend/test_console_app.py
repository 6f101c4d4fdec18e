"""The console without a broker: actions queued through the command queue (real SQLite), and the
app's line mode, filter, alerts and key editing. A broker that cannot be reached leaves a queued
command for `headend dispatch`. (tests/headend/test_console_broker.py runs it against Mosquitto.)"""

from __future__ import annotations

import io

import pytest

from headend.console.actions import queue_action
from headend.console.app import ConsoleApp
from headend.console.commands import parse_line
from headend.console.decode import decode
from headend.errors import CommandError, ConsoleError, PrepaidError
from protocol import commands, messages, topics
from tests.headend.broker_support import cwt_frame, reading_map
from tests.headend.prepaid_support import KEY, TARIFF, prepaid_store
from tests.mosquitto_broker import free_port

NOW = 1714521600.0


@pytest.fixture
def store(tmp_path):
    s = prepaid_store(tmp_path / "h.db")
    s.add_meter("m2", bytes(32).hex(), "$7$x", now=0)
    yield s
    s.close()


def opened(store, command_id: int) -> dict:
    c = store.command(command_id)
    return messages.open_frame(KEY, c["meter_id"], c["frame"])


def test_commands_are_queued_sealed_with_the_meter_key(store):
    got = queue_action(store, parse_line("relay m1 open credit ttl=120", NOW), NOW)
    msg = opened(store, got["command_id"])
    assert (msg["cmd"], msg["seq"], msg["expires"]) == (messages.CMD_RELAY, got["seq"], int(NOW) + 120)
    assert commands.command_args(msg["cmd"], msg["args"]) == {"state": commands.RELAY_OPEN, "reason": 1}
    assert got["text"].startswith("queued command %d to m1: seq 1 relay" % got["command_id"])
    got = queue_action(store, parse_line("config m1 interval=300", NOW), NOW)
    assert opened(store, got["command_id"])["args"] == {0: 300} and got["seq"] == 2
    got = queue_action(store, parse_line("time-sync m1", NOW), NOW)
    assert "expires" not in opened(store, got["command_id"])  # as `headend command time-sync`
    assert [c["state"] for c in store.commands("m1")] == ["queued"] * 3


def test_a_topup_books_a_counter_payment_and_queues_its_command(store):
    got = queue_action(store, parse_line("topup m1 12.5", NOW), NOW)
    assert got["payment_id"].startswith("console-") and "12.500" in got["text"]
    t = store.topup(got["payment_id"])
    assert (t["meter_id"], t["amount"], t["source"], t["state"]) == ("m1", 12500, "counter", "queued")
    cmd = [c for c in store.commands("m1") if c["seq"] == got["seq"]][0]
    assert cmd["cmd"] == messages.CMD_TOPUP and cmd["args"]["1"] == 12500
    with pytest.raises(PrepaidError, match="'m2' is not linked to an account"):
        queue_action(store, parse_line("topup m2 5", NOW), NOW)


def test_a_tariff_file_is_converted_for_the_meter(store, tmp_path):
    path = tmp_path / "tou.toml"
    path.write_text(TARIFF)
    got = queue_action(store, parse_line("tariff m1 %s tariff-id=42" % path, NOW), NOW)
    msg = opened(store, got["command_id"])
    assert msg["cmd"] == messages.CMD_SET_TARIFF and msg["args"][0] == 42
    assert msg["args"][2] == [800, 333]  # the version in force now: the second one
    assert store.command(got["command_id"])["ref"] == "%s versions[1]" % path
    with pytest.raises(CommandError, match="unknown meter 'm9'"):
        queue_action(store, parse_line("relay m9 open", NOW), NOW)


def app_for(store, **kw) -> tuple[ConsoleApp, io.StringIO]:
    out = io.StringIO()
    url = "mqtt://u:p@127.0.0.1:%d" % free_port()  # nobody listens there
    return ConsoleApp(store, url, out=out, inp=io.StringIO(), **{"live": False, **kw}), out


def row(meter: str, seq: int, key: bytes) -> dict:
    frame = cwt_frame(key, meter, reading_map(seq, int(NOW), 1000 * seq))
    return decode(topics.up(meter, "reading"), frame, {"m1": KEY, "m2": bytes(32)}, NOW)


def test_line_mode_filter_alerts_and_errors(store):
    app, out = app_for(store, meter="m2")
    store.insert_alert({"rule": "tamper", "meter_id": "m1", "key": "cover", "severity": "critical",
                        "state": "open", "summary": "cover opened", "action": "inspect", "evidence": {},
                        "first_seen": NOW, "last_seen": NOW, "updated_at": NOW})  # fmt: skip
    app.refresh_alerts()
    assert out.getvalue() == "no open alerts\n"  # m1's alert is filtered out
    app.handle_event("row", row("m1", 1, KEY))
    app.handle_event("row", row("m2", 1, bytes(32)))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and " m2 reading seq 1 " in lines[1]
    app.handle_line("filter all")
    app.handle_event("row", row("m1", 2, KEY))
    app.handle_event("row", row("m1", 3, bytes(32)))  # forged
    text = out.getvalue()
    assert (
        "> filter all\nshowing all meters\nopen alerts: 1\nalert #1 open critical tamper m1: cover opened"
        in text
    )
    assert " m1 reading seq 2 at 2024-05-01 00:00:00Z  imp 2.000 kWh" in text
    assert " m1 UNVERIFIED reading refused (tag)" in text
    app.handle_line("relay m1 opn")
    assert "error: relay: 'opn': the relay state must be open or close" in out.getvalue()
    app.handle_line("read-now m9")
    assert "error: read-now m9 not queued: unknown meter 'm9'" in out.getvalue()
    app.handle_line("help")
    assert "  quit " in out.getvalue()
    assert not app._stop.is_set()
    app.handle_line("quit")
    assert app._stop.is_set()


def test_an_unreachable_broker_leaves_the_command_queued(store):
    app, out = app_for(store)
    app.handle_line("read-now m1")
    text = out.getvalue()
    assert "queued command 1 to m1: seq 1 read-now {}" in text
    assert "error: queued but not published now (cannot reach the broker" in text
    assert "`headend dispatch` will deliver it" in text
    assert [c["state"] for c in store.commands("m1")] == ["queued"]


def test_keys_edit_the_input_line_with_history(store):
    app, out = app_for(store, live=True)
    app.handle_event("keys", "filter m")
    assert app.state.input_buffer == "filter m"
    app.handle_event("keys", "x\x7f1\r")
    assert app.state.meter_filter == "m1" and app.state.input_buffer == ""
    app.handle_event("keys", "junk\x15filter all\r")
    assert app.state.meter_filter is None
    app.handle_event("keys", "\x1b[A\x1b[A")  # Up twice: the line before last
    assert app.state.input_buffer == "filter m1"
    app.handle_event("keys", "\x1b[B")
    assert app.state.input_buffer == "filter all"
    app.handle_event("keys", "\x04")  # Ctrl-D with text: nothing
    assert not app._stop.is_set()
    app.handle_event("keys", "\x15\x04")  # on an empty line: quit
    assert app._stop.is_set()
    assert out.getvalue() == ""  # the full screen shows notes in its panel, not as lines
    assert [n[1] for n in app.state.notes] == ["showing only m1", "showing all meters"]


def test_bad_options_are_refused(store):
    with pytest.raises(ConsoleError, match="--meter 'm/1' is not a meter id"):
        ConsoleApp(store, "mqtt://127.0.0.1:1883", meter="m/1")
    with pytest.raises(ConsoleError, match="refresh interval must be > 0"):
        ConsoleApp(store, "mqtt://127.0.0.1:1883", alerts_every=0)
    app, _ = app_for(store)
    attempts = []
    connect = app.client.connect
    app.client.connect = lambda *a, **kw: (attempts.append(a), connect(*a, **kw))
    with pytest.raises(Exception, match="cannot reach the broker"):
        app.run()
    assert len(attempts) == 1, "one attempt, then the error: no retrying against a broker that is not there"
