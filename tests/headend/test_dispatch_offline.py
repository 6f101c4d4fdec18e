"""Issue 17 item 7: a command queued while the meter is offline (its will, ingested by a real
`headend serve`) is published once; no retry while the meter stays offline, however many
rounds; the broker keeps that copy in the meter's persistent session and delivers it on
reconnection, where the meter acks it once (no duplicates). A real Mosquitto, serve and
dispatcher; the dispatcher's rounds run on an injected clock."""

from __future__ import annotations

import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest

from headend.commands.dispatch import Dispatcher
from headend.db.storage import Storage
from protocol import messages, topics
from tests.headend.broker_support import Serve, cli_json, cwt_frame, start_broker, wait_for

WILL = cbor2.dumps({0: 4, 40: 0})  # docs/protocol.md: the plain, unsigned will (offline)
BACKOFF = 30


class PersistentMeter:
    """A meter's broker link as the firmware makes it: clean_session 0 (the broker keeps its
    subscription and QoS 1 messages while it is away), the will set; it acks every command
    it receives with `done` (the first time) or `duplicate` (a repeat of the same seq)."""

    def __init__(self, meter_id: str, password: str, port: int, key: bytes, seq0: int) -> None:
        self.meter_id, self.key, self.seq = meter_id, key, seq0
        self.commands: list[int] = []  # command seqs received, in order
        self.taken: set[int] = set()
        self.marker = threading.Event()  # a test's marker after the commands (see ``marker_after``)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=meter_id, clean_session=False)
        self.client.username_pw_set(meter_id, password)
        self.client.will_set(topics.up(meter_id, "status"), WILL, qos=1, retain=True)
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: rc.is_failure or self.connected.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10), "meter could not connect"

    def _send(self, kind: str, msg: dict, retain: bool = False) -> None:
        self.seq += 1
        msg = {1: self.seq, 2: int(time.time()), **msg}
        frame = cwt_frame(self.key, self.meter_id, msg)
        self.client.publish(topics.up(self.meter_id, kind), frame, qos=1, retain=retain)

    def status(self) -> None:
        fields = {40: 1, 41: "1.2.0", 42: "unix", 43: "adc", 44: 4, 45: 3, 46: 12}
        self._send("status", {0: messages.TYPE_STATUS, **fields}, retain=True)

    def _on_message(self, client, userdata, m) -> None:
        if m.topic.endswith("/marker"):
            self.marker.set()
            return
        cmd = messages.open_frame(self.key, self.meter_id, m.payload)
        self.commands.append(cmd["seq"])
        result = messages.ACK_DUPLICATE if cmd["seq"] in self.taken else messages.ACK_DONE
        self.taken.add(cmd["seq"])
        self._send("ack", {0: messages.TYPE_ACK, 30: cmd["seq"], 31: result})

    def subscribe(self) -> None:
        got = threading.Event()
        self.client.on_subscribe = lambda *a: got.set()
        self.client.subscribe(topics.meter_down_filter(self.meter_id), qos=1)
        assert got.wait(10), "no SUBACK"

    def drop(self) -> None:
        """The connection ends without DISCONNECT (power or link lost): the broker sends the will."""
        self.client.loop_stop()
        self.client.socket().close()


def online(db: str) -> int | None:
    with Storage(db) as s:
        return s.meter("m1")["online"]


@pytest.fixture
def rig(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "h.db")
    meter = cli_json(capsys, "--db", db, "meter", "add", "m1")
    broker, url = start_broker(capsys, db, str(broker_tmp / "broker"))
    serve = Serve(db, url)
    store = Storage(db)
    d = Dispatcher(store, url, client_id="headend.dispatch-test", backoff=BACKOFF, backoff_max=600,
                   log=lambda text: None)  # fmt: skip
    d.connect()
    try:
        key = bytes.fromhex(meter["key"])
        yield {"db": db, "broker": broker, "key": key, "password": meter["mqtt_password"], "store": store,
               "dispatcher": d}  # fmt: skip
    finally:
        d.close()
        store.close()
        if serve.terminate() != 0:
            pytest.fail("headend serve: " + "".join(serve.lines))
        broker.stop()


def test_a_command_for_an_offline_meter_is_sent_once_and_acked_once_on_its_return(rig, capsys):
    db, store, d = rig["db"], rig["store"], rig["dispatcher"]
    meter = PersistentMeter("m1", rig["password"], rig["broker"].port, rig["key"], 0)
    meter.subscribe()
    meter.status()
    wait_for(lambda: online(db) == 1, 15, "serve to store the meter's status (online)")
    meter.drop()
    wait_for(lambda: online(db) == 0, 15, "serve to store the meter's will (offline)")

    q = cli_json(capsys, "--db", db, "command", "relay", "m1", "--open", "--json")
    t0 = time.time()
    sends = [d.round(t0 + dt)["sent"] for dt in (0, 1, BACKOFF, 2 * BACKOFF, 5 * BACKOFF, 40 * BACKOFF)]
    assert sends == [1, 0, 0, 0, 0, 0], "one publish while the meter is offline, whatever the rounds"
    [c] = store.commands("m1")
    assert (c["state"], c["attempts"]) == ("sent", 1)

    # back: the broker delivers the copy it kept in the meter's session; the meter acks it
    back = PersistentMeter("m1", rig["password"], rig["broker"].port, rig["key"], meter.seq)
    back.status()
    wait_for(lambda: back.commands, 15, "the command the broker kept for the meter")

    def acked():
        with Storage(db) as s:
            return len(s.command_acks("m1", q["seq"])) >= 1 and s.meter("m1")["online"] == 1

    wait_for(acked, 15, "serve to store the meter's ack and status")
    now = t0 + 40 * BACKOFF + 1
    assert d.round(now) == {"sent": 0, "acked": 1, "failed": 0, "expired": 0}
    for dt in (BACKOFF, 10 * BACKOFF):
        assert d.round(now + dt)["sent"] == 0
    # a marker from the dispatcher's own connection, after its rounds: the broker delivers one
    # publisher's messages to a subscriber in order, so a stray resend would arrive before it
    d.client.publish("ami/v1/m1/down/marker", b"", qos=1)
    assert back.marker.wait(15), "the marker after the rounds"
    assert back.commands == [q["seq"]]
    assert [a["result"] for a in store.command_acks("m1", q["seq"])] == [messages.ACK_DONE]
    assert store.commands("m1")[0]["state"] == "acked"
    back.client.disconnect()
    back.client.loop_stop()


def test_back_online_and_still_unacked_it_is_resent_after_the_backoff(db_target):
    """The same rules on the store alone (both engines): a command sent to an offline meter is held;
    once the meter's status says online it is resent only when the back-off since its return has
    run out."""
    store = Storage(db_target)
    store.add_meter("m1", "00" * 32, "$7$x", now=0)
    store.set_online("m1", True, 100, seq=1)
    store.set_online("m1", False, 200)  # the will
    cmd = store.enqueue_command("m1", lambda seq: (2, {0: 0, 1: 0}, b"frame", None), 1000)

    def round_(now):  # Dispatcher.round without the broker: what it would publish
        store.apply_acks(now)
        store.hold_offline(now, BACKOFF)
        due = store.due_commands(now)
        for c in due:
            store.mark_sent(c["id"], now, now + BACKOFF * 2 ** c["attempts"])
        return [c["id"] for c in due]

    assert round_(1000) == [cmd["id"]]  # the first send goes: the broker keeps it for the meter
    assert [round_(1000 + dt) for dt in range(1, 5000, 7)] == [[]] * len(range(1, 5000, 7))
    store.set_online("m1", True, 6000, seq=2)  # back (its status)
    assert round_(6000) == [] and round_(6000 + BACKOFF - 10) == []  # its ack may be on the way
    assert round_(6000 + BACKOFF) == [cmd["id"]]  # still unacked a back-off later: sent again
    assert store.command(cmd["id"])["attempts"] == 2
    # a meter never heard from has no session at the broker: its retries are not held
    store.add_meter("m2", "00" * 32, "$7$x", now=0)
    c2 = store.enqueue_command("m2", lambda seq: (2, {0: 0, 1: 0}, b"frame", None), 7000)
    assert c2["id"] in round_(7000) and c2["id"] in round_(7000 + BACKOFF)
    store.close()
