"""Operator commands end to end with a real Mosquitto: `headend command` queues, `headend dispatch`
publishes the sealed frame to the meter's down topic, the meter's signed ack (built with the
independent `cwt` package) is ingested by a real `headend serve` and settles the command;
a command nobody acks expires. `headend command show` tells the whole story."""

from __future__ import annotations

import time

import pytest

from headend.db.storage import Storage
from protocol import commands, messages, topics
from tests.headend.broker_support import MeterClient, Serve, cli_json, cwt_frame, start_broker, wait_for


@pytest.fixture
def rig(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "h.db")
    meter = cli_json(capsys, "--db", db, "meter", "add", "m1")
    broker, url = start_broker(capsys, db, str(broker_tmp / "broker"))
    serve = Serve(db, url)
    sub = MeterClient("m1", meter["mqtt_password"], broker.port)
    sub.client.subscribe(topics.meter_down_filter("m1"), qos=1)
    wait_for(lambda: sub.subacks, 10, "the meter's SUBACK")
    try:
        yield {"db": db, "url": url, "key": bytes.fromhex(meter["key"]), "meter": sub}
    finally:
        sub.close()
        if serve.terminate() != 0:
            pytest.fail("headend serve: " + "".join(serve.lines))
        broker.stop()


def dispatch(capsys, rig, now: float | None = None) -> dict:
    argv = ["--db", rig["db"], "dispatch", "--broker", rig["url"], "--once"]
    argv += ["--client-id", "headend.dispatch-test"]
    return cli_json(capsys, *argv, *(["--now", str(now)] if now is not None else []))


def show(capsys, rig, command_id: int) -> dict:
    return cli_json(capsys, "--db", rig["db"], "command", "show", str(command_id), "--json")


def ack_from_meter(rig, seq: int, cmd_seq: int, result: int, detail=None) -> None:
    """The meter's ack, signed as the meter signs it, published on its up/ack topic."""
    msg = {0: messages.TYPE_ACK, 1: seq, 2: int(time.time()), 30: cmd_seq, 31: result}
    if detail is not None:
        msg[32] = detail
    rig["meter"].publish(topics.up("m1", "ack"), cwt_frame(rig["key"], "m1", msg)).wait_for_publish(10)

    def stored():
        with Storage(rig["db"]) as store:
            return any(a["seq"] == seq for a in store.acks("m1"))

    wait_for(stored, 15, "headend serve to store the ack")


def test_a_relay_command_reaches_the_meter_and_its_ack_settles_it(rig, capsys):
    q = cli_json(
        capsys, "--db", rig["db"], "command", "relay", "m1", "--open", "--reason", "tamper", "--json"
    )
    assert dispatch(capsys, rig) == {"sent": 1, "acked": 0, "failed": 0, "expired": 0}
    got = wait_for(lambda: rig["meter"].received, 10, "the command on the meter's down topic")
    topic, frame = got[0]
    assert topic == "ami/v1/m1/down/cmd"
    msg = messages.open_frame(rig["key"], "m1", frame)  # the meter's key verifies it
    assert (msg["type"], msg["seq"], msg["cmd"]) == (messages.TYPE_COMMAND, q["seq"], messages.CMD_RELAY)
    assert commands.command_args(msg["cmd"], msg["args"]) == {"state": commands.RELAY_OPEN, "reason": 3}
    with Storage(rig["db"]) as store:
        assert frame == store.command(q["id"])["frame"]  # sent unchanged, as sealed when queued

    ack_from_meter(rig, 1, q["seq"], messages.ACK_DONE)
    ack_from_meter(rig, 2, q["seq"], messages.ACK_DUPLICATE)  # a resend the meter had already run
    assert dispatch(capsys, rig) == {"sent": 0, "acked": 1, "failed": 0, "expired": 0}
    s = show(capsys, rig, q["id"])
    assert (s["state"], s["result"], s["result_name"], s["attempts"]) == ("acked", 0, "done", 1)
    assert [e["event"] for e in s["history"]] == ["queued", "sent", "acked"]
    assert s["history"][1]["attempt"] == 1 and s["history"][2]["result_name"] == "done"
    assert [(a["seq"], a["result_name"]) for a in s["acks"]] == [(1, "done"), (2, "duplicate")]
    assert dispatch(capsys, rig)["sent"] == 0  # settled: never sent again


def test_a_refused_command_keeps_the_meters_result_and_an_unacked_one_expires(rig, capsys):
    db = rig["db"]
    bad = cli_json(capsys, "--db", db, "command", "config", "m1", "--interval", "60", "--json")
    lost = cli_json(capsys, "--db", db, "command", "read-now", "m1", "--ttl", "60", "--json")
    assert dispatch(capsys, rig)["sent"] == 2
    wait_for(lambda: len(rig["meter"].received) == 2, 10, "both commands")
    seqs = [messages.open_frame(rig["key"], "m1", f)["seq"] for _, f in rig["meter"].received]
    assert seqs == [bad["seq"], lost["seq"]]

    ack_from_meter(rig, 1, bad["seq"], messages.ACK_BAD_ARGS, {0: "interval below the minimum"})
    now = time.time()
    assert dispatch(capsys, rig, now + 61) == {"sent": 0, "acked": 0, "failed": 1, "expired": 1}
    s = show(capsys, rig, bad["id"])
    assert (s["state"], s["result"], s["result_name"]) == ("failed", 4, "bad arguments")
    assert s["acks"][0]["detail"] == {"0": "interval below the minimum"}
    s = show(capsys, rig, lost["id"])
    assert (s["state"], s["result"], s["reason"]) == ("expired", None, "not acked before it expired")
    assert [e["event"] for e in s["history"]] == ["queued", "sent", "expired"] and s["acks"] == []
    assert dispatch(capsys, rig, now + 10**5)["sent"] == 0
    time.sleep(0.3)
    assert len(rig["meter"].received) == 2  # the expired one was not published again
