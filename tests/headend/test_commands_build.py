"""`headend command` for every type: args the protocol accepts, sealed frames that open with the
meter's key, the per-meter seq, expiry, option parsing and errors that name the option."""

from __future__ import annotations

import json

import pytest

from headend.cli import main as headend_main
from headend.commands import build
from headend.commands.queue import DEFAULT_TTL, describe, queue
from headend.db.storage import Storage
from headend.errors import CommandError
from protocol import commands, messages
from protocol.errors import ProtocolError

KEY = bytes(range(1, 33))
T0 = 1717200000.0  # 2024-06-01T00:00:00Z


@pytest.fixture
def db(db_target):  # both engines (tests/conftest.py)
    path = db_target
    with Storage(path) as store:
        store.add_meter("m1", KEY.hex(), "$7$x", now=0)
        store.add_meter("m2", bytes(32).hex(), "$7$x", now=0)
    return path


def run(capsys, db, *argv) -> dict:
    capsys.readouterr()
    assert headend_main(["command", *argv, "--db", db, "--json", "--now", str(T0)]) == 0
    return json.loads(capsys.readouterr().out)


def error(capsys, db, *argv) -> str:
    capsys.readouterr()
    now = [] if argv[0] == "show" else ["--now", str(T0)]
    assert headend_main(["--db", db, "command", *argv, *now]) == 1
    return capsys.readouterr().err


def opened(db, command_id) -> dict:
    """The stored frame verified with the meter's key and parsed, its args checked."""
    with Storage(db) as store:
        c = store.command(command_id)
    msg = messages.open_frame(KEY, "m1", c["frame"])
    assert msg["type"] == messages.TYPE_COMMAND and msg["seq"] == c["seq"] and msg["cmd"] == c["cmd"]
    assert {str(k): v for k, v in msg["args"].items()} == c["args"]  # the stored args are the sealed ones
    return {**msg, "named": commands.command_args(msg["cmd"], msg["args"])}


CASES = [
    (["relay", "m1", "--open"], messages.CMD_RELAY, {"state": 0, "reason": 0}),
    (["relay", "m1", "--close", "--reason", "credit"], messages.CMD_RELAY, {"state": 1, "reason": 1}),
    (["relay", "m1", "--open", "--reason", "load-limit"], messages.CMD_RELAY, {"state": 0, "reason": 2}),
    (["relay", "m1", "--open", "--reason", "tamper"], messages.CMD_RELAY, {"state": 0, "reason": 3}),
    (["time-sync", "m1"], messages.CMD_TIME_SYNC, {"ts": int(T0)}),
    (["time-sync", "m1", "--ts", "2024-06-01T08:00:05+08:00"], messages.CMD_TIME_SYNC, {"ts": int(T0) + 5}),
    (["time-sync", "m1", "--ts", "2024-06-01T00:01:00"], messages.CMD_TIME_SYNC, {"ts": int(T0) + 60}),
    (["read-now", "m1"], messages.CMD_READ_NOW, {}),
    (["config", "m1", "--interval", "300"], messages.CMD_SET_CONFIG, {"interval": 300}),
    (
        ["config", "m1", "--low-balance", "5", "--emergency-credit", "12.345",
         "--friendly-hours", "0:22:00-24:00,5:00:00-08:00"],
        messages.CMD_SET_CONFIG,
        {"low_balance": 5000, "emergency_limit": 12345, "friendly_hours": [[0, 1320, 1440], [5, 0, 480]]},
    ),
    (["config", "m1", "--friendly-hours", "[[6, 0, 1440]]"], messages.CMD_SET_CONFIG,
     {"friendly_hours": [[6, 0, 1440]]}),
    (["config", "m1", "--friendly-hours", "none"], messages.CMD_SET_CONFIG, {"friendly_hours": []}),
]  # fmt: skip


# every type through the one storage path: SQLite only (the queue is run on both engines below)
@pytest.mark.parametrize("engine", ["sqlite"])
@pytest.mark.parametrize("argv, cmd, named", CASES)
def test_each_type_queues_args_the_protocol_accepts_in_a_frame_sealed_with_the_meters_key(
    capsys, db, argv, cmd, named
):
    row = run(capsys, db, *argv)
    assert (row["meter_id"], row["seq"], row["cmd"], row["state"], row["attempts"]) == (
        "m1",
        1,
        cmd,
        "queued",
        0,
    )
    msg = opened(db, row["id"])
    assert msg["named"] == named and msg["ts"] == int(T0)
    assert row["expires"] == int(T0) + DEFAULT_TTL[cmd]
    # time sync: no key 22, the meter's own clock is what it corrects; every other type has it
    assert msg.get("expires") == (None if cmd == messages.CMD_TIME_SYNC else row["expires"])
    with Storage(db) as store, pytest.raises(ProtocolError):
        messages.open_frame(bytes(32), "m1", store.command(row["id"])["frame"])


def test_seq_increases_per_meter_and_ttl_sets_expiry(capsys, db):
    a = run(capsys, db, "relay", "m1", "--open", "--ttl", "60")
    b = run(capsys, db, "read-now", "m1")
    c = run(capsys, db, "read-now", "m2")
    assert (a["seq"], b["seq"], c["seq"]) == (1, 2, 1)
    assert a["expires"] == int(T0) + 60 and opened(db, a["id"])["expires"] == int(T0) + 60
    with Storage(db) as store:
        assert [x["seq"] for x in store.commands("m1")] == [1, 2]


def test_show_names_the_args_and_lists_the_history(capsys, db):
    row = run(capsys, db, "relay", "m1", "--close", "--reason", "credit")
    capsys.readouterr()
    assert headend_main(["--db", db, "command", "show", str(row["id"]), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["args"] == {"state": "close", "reason": "credit"} and shown["name"] == "relay"
    assert [(e["event"], e["at"]) for e in shown["history"]] == [("queued", T0)] and shown["acks"] == []
    assert headend_main(["--db", db, "command", "show", str(row["id"])]) == 0
    text = capsys.readouterr().out
    assert "relay" in text and "queued" in text and "state queued, attempts 0" in text


def test_a_topup_queued_by_credit_shows_like_any_command(tmp_path):
    from headend.prepaid.service import credit
    from tests.headend.prepaid_support import add_prepaid

    with Storage(str(tmp_path / "p.db")) as store:
        add_prepaid(store, "m1", "P1", key=KEY)
        got = credit(store, "PAY-1", 2500, now=T0, meter_id="m1")
        row = queue(store, "m1", messages.CMD_READ_NOW, {}, T0 + 1)
        shown = describe(store, got["command_id"], history=True)
    assert shown["name"] == "top-up" and shown["args"] == {"topup_id": 1, "amount": 2500}
    assert [e["event"] for e in shown["history"]] == ["queued"]
    assert row["seq"] == got["seq"] + 1  # one seq counter per meter for every type


# argument checks: SQLite only (nothing is stored; the queue is run on both engines)
@pytest.mark.parametrize("engine", ["sqlite"])
@pytest.mark.parametrize(
    "argv, text",
    [
        (["relay", "nope", "--open"], "unknown meter 'nope'"),
        (["read-now", "m1", "--ttl", "0"], "--ttl must be at least 1 s"),
        (["config", "m1"], "needs at least one of --interval"),
        (["config", "m1", "--interval", "86401"], "args.interval: must be an integer 1..86400"),
        (["config", "m1", "--low-balance", "1.2345"], "--low-balance must be currency units"),
        (["config", "m1", "--emergency-credit", "-3"], "--emergency-credit must be currency units"),
        (["config", "m1", "--low-balance", "1000001"], "--low-balance must be at most 1000000 units"),
        (["config", "m1", "--friendly-hours", "7:00:00-01:00"], "entry 1 '7:00:00-01:00' must be WEEKDAY"),
        (["config", "m1", "--friendly-hours", "0:22:00-02:00"], "split one that crosses midnight"),
        (["config", "m1", "--friendly-hours", "0:24:30-24:40"], "no such time of day 24:30"),
        (["config", "m1", "--friendly-hours", "[[0, 10, 5]]"], "args.friendly_hours[0][2]"),
        (["config", "m1", "--friendly-hours", "[[0, 1"], "--friendly-hours is not valid JSON"),
        (["time-sync", "m1", "--ts", "yesterday"], "--ts must be now, epoch seconds or an ISO 8601 time"),
        (["time-sync", "m1", "--ts", "1960-01-01T00:00"], "--ts must not be before 1970"),
        (["show", "42"], "unknown command id 42"),
    ],
)
def test_errors_name_what_was_wrong_and_queue_nothing(capsys, db, argv, text):
    assert text in error(capsys, db, *argv)
    with Storage(db) as store:
        assert store.commands() == []


def test_relay_needs_open_or_close(capsys, db):
    with pytest.raises(SystemExit):
        headend_main(["--db", db, "command", "relay", "m1"])
    assert "one of the arguments --open --close is required" in capsys.readouterr().err


def test_builders_refuse_an_unknown_relay_reason():
    with pytest.raises(CommandError, match="--reason must be one of operator, credit"):
        build.relay(True, "whim")


def test_text_output_prints_id_meter_seq_cmd_and_expiry(capsys, db):
    capsys.readouterr()
    assert headend_main(["--db", db, "command", "read-now", "m1", "--now", str(T0)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("command 1 to m1: seq 1 read-now {}, queued, expires 2024-06-01T00:10:00+00:00")


def test_the_log_records_every_send_the_expiry_and_a_late_ack(db):
    from headend.ingest.store import IngestBatch

    with Storage(db) as store:
        row = queue(store, "m1", messages.CMD_READ_NOW, {}, T0, ttl=100)
        store.mark_sent(row["id"], T0 + 1, T0 + 31)
        store.mark_sent(row["id"], T0 + 31, T0 + 91)
        assert store.expire_commands(T0 + 100) == 1
        batch = IngestBatch()
        batch.acks = [("m1", 1, row["seq"], messages.ACK_DONE, None, int(T0) + 50, T0 + 120)]
        store.commit_batch(batch)  # the meter ran it after all: its word wins
        store.apply_acks(T0 + 121)
        log = describe(store, row["id"], history=True)["history"]
    assert [(e["event"], e["attempt"], e["at"]) for e in log] == [
        ("queued", 0, T0),
        ("sent", 1, T0 + 1),
        ("sent", 2, T0 + 31),
        ("expired", 2, T0 + 100),
        ("acked", 2, T0 + 121),
    ]
    assert log[3]["reason"] == "not acked before it expired" and log[4]["result_name"] == "done"
