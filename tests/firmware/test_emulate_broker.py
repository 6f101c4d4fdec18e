"""The emulated meter (real firmware, unix port) against a real Mosquitto broker.

A week-long broker outage with power cuts (SIGKILL of the firmware process) during it: once the broker is
back every message arrives, in seq order, exactly once (repeats only as QoS 1 resends of the same seq and
bytes), with one reading per 15 minutes and none twice. Commands over the broker run once and are acked,
including one published while the meter was away (persistent session) and one that expired meanwhile.
Every frame is verified with ``cwt``, an independent COSE implementation.
"""

import os
import random
import threading
import time

import paho.mqtt.client as mqtt

from protocol import messages as M
from protocol import topics
from tests.firmware.emulate_support import emulate, write_scenario
from tests.firmware.meter_messages import KEY, METER_ID, verify
from tools.mosquitto_broker import MosquittoBroker, free_port

START = 1710115200  # Monday 2024-03-11 00:00 UTC
LOAD = {"urms": 230, "irms": 4, "phase_deg": 10}
WEEK = 7 * 86400


class Listener:
    """A paho subscriber on every meter topic; keeps (topic, payload) in arrival order."""

    def __init__(self, port):
        self.got = []
        self.lock = threading.Lock()
        self.trigger = None  # (n, action): run action when the n-th message has arrived
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-listener")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("ami/v1/+/up/#", 1)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload)))
            if self.trigger is not None and len(self.got) >= self.trigger[0]:
                self.trigger[1]()  # e.g. a power cut, at once, from the broker's delivery of the n-th message
                self.trigger = None

    def frames(self, kind=None):
        with self.lock:
            return [p for t, p in self.got if kind is None or t.endswith("/" + kind)]

    def wait(self, pred, timeout=60.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return True
            time.sleep(0.05)
        return False

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def _first_arrivals(signed):
    """({seq: frame}, seqs in order of first arrival) of (message, frame) pairs; a repeat must be the
    very same frame (a QoS 1 resend)."""
    by_seq, firsts = {}, []
    for msg, raw in signed:
        if msg[1] in by_seq:
            assert by_seq[msg[1]] == raw, "a repeat is a resend of the same frame"
        else:
            by_seq[msg[1]] = raw
            firsts.append(msg[1])
    return by_seq, firsts


def _outbox_segments(flash):
    d = flash / "outbox"
    return len([n for n in os.listdir(d) if n.startswith("s")]) if d.is_dir() else 0


def _signed(msgs):
    """Authenticated frames (the will excluded) decoded by cwt, in arrival order."""
    out = []
    for p in msgs:
        if p == topics.will_payload():
            continue
        out.append((verify(p), p))
    return out


def test_week_outage_with_power_cuts_then_every_message_once_in_order(tmp_path):
    port = free_port()
    url = "mqtt://%s:x@127.0.0.1:%d" % (METER_ID, port)
    flash = tmp_path / "flash"
    week = write_scenario(tmp_path / "week.json", start=START, segments=[{"seconds": WEEK, **LOAD}])
    emulate.ensure_built()
    rng = random.Random(4)
    cuts = 0
    for _ in range(3):  # the broker is down: power cuts at random moments while the backlog grows
        grown = _outbox_segments(flash) + rng.randint(2, 8)  # cut once the outbox has grown this far
        s = emulate.Session(str(week), str(flash), broker=url)
        done = []
        t = threading.Thread(target=lambda s=s, done=done: done.append(s.wait(600)))
        t.start()
        while not done and _outbox_segments(flash) < grown:
            time.sleep(0.01)
        s.proc.kill()
        t.join()
        state, err, _rc = done[0]
        cuts += state is None and "boot " in err  # it had booted, and not finished the week
    s = emulate.Session(str(week), str(flash), broker=url)  # the rest of the week, still no broker
    state, err, rc = s.wait(600)
    assert rc == 0 and state is not None, err
    assert cuts == 3, "each cut hit a running meter"
    assert state["comms"]["pending"] >= 7 * 96, "the whole week waits in the outbox"
    assert state["comms"]["dropped"] == 0
    with MosquittoBroker(tmp_path, port=port) as _broker:
        lis = Listener(port)
        segs = [{"seconds": WEEK + 3600, **LOAD}]
        more = write_scenario(tmp_path / "more.json", start=START, segments=segs)
        state, err = emulate.run(str(more), str(flash), broker=url, linger=60)
        assert state["comms"]["pending"] == 0, err
        last = state["seq"]
        assert lis.wait(lambda: len(_signed(lis.frames())) >= last), "everything arrives"
        lis.close()
    signed = _signed(lis.frames())
    by_seq, firsts = _first_arrivals(signed)
    assert sorted(by_seq) == list(range(1, last + 1)), "no seq missing, none invented"
    assert firsts == sorted(firsts), "first arrivals in seq order"
    readings = [msg for msg, _raw in signed if msg[0] == M.TYPE_READING]
    ts = sorted({r[2] for r in readings})
    assert ts == list(range(START + 900, START + WEEK + 3600 + 1, 900)), "one reading per interval"
    once = {}
    for r in readings:
        once.setdefault(r[2], r[1])
        assert once[r[2]] == r[1], "an interval is reported under one seq only"
    assert all(r[9] & M.FLAG_BACKLOG for r in readings if r[2] <= START + WEEK), "outage readings say so"
    imp = [sum(r[4]) for r in sorted(readings, key=lambda r: r[1])]
    assert imp == sorted(imp), "registers never decrease"
    codes = [msg[10] for msg, _raw in signed if msg[0] == M.TYPE_EVENT]
    assert codes.count(1) == cuts, "each power cut is reported once (power down at the next boot)"


def _command(seq, cmd, args, expires=None, ts=START):
    return M.seal(KEY, METER_ID, M.command(seq, ts, cmd, args, expires))


def test_commands_over_the_broker_run_once_and_queue_for_an_absent_meter(tmp_path):
    flash = tmp_path / "flash"
    cmd_topic = topics.down_cmd(METER_ID)
    with MosquittoBroker(tmp_path) as broker:
        url = "mqtt://%s:x@127.0.0.1:%d" % (METER_ID, broker.port)
        lis = Listener(broker.port)
        sc = write_scenario(
            tmp_path / "a.json",
            start=START,
            segments=[{"seconds": 3600, **LOAD}],
            prepaid={"balance": 10000},
        )
        emulate.ensure_built()
        s = emulate.Session(str(sc), str(flash), broker=url, speed=240)  # 15 s of real time
        done = []
        served = threading.Thread(target=lambda: done.append(s.wait(120)))
        served.start()
        assert lis.wait(lambda: lis.frames("status")), "online"
        lis.publish(cmd_topic, _command(1, M.CMD_TOPUP, {0: 77, 1: 5000}))
        lis.publish(cmd_topic, _command(1, M.CMD_TOPUP, {0: 77, 1: 5000}))  # the same frame again
        lis.publish(cmd_topic, _command(2, M.CMD_READ_NOW, {}))
        assert lis.wait(lambda: len(lis.frames("ack")) >= 3, 30)
        served.join()
        state, err, rc = done[0]
        assert rc == 0 and state is not None, err
        # the meter is away: one command waits in its persistent session, one will have expired
        lis.publish(cmd_topic, _command(3, M.CMD_RELAY, {0: 0, 1: 0}))
        lis.publish(cmd_topic, _command(4, M.CMD_RELAY, {0: 1, 1: 0}, expires=START + 60))
        sc2 = write_scenario(
            tmp_path / "b.json", start=START, segments=[{"seconds": 7200, **LOAD}], prepaid={"balance": 10000}
        )
        state, err = emulate.run(str(sc2), str(flash), broker=url, speed=600, linger=30)
        assert lis.wait(lambda: len(lis.frames("ack")) >= 5, 30)
        lis.close()
    acks = [(m[30], m[31]) for m, _raw in _signed(lis.frames("ack"))]
    assert sorted(set(acks)) == [(1, 0), (1, 1), (2, 0), (3, 0), (4, 3)]
    assert state["relay"] == "open", "the queued relay command ran when the meter came back"
    topups = [m for m, _raw in _signed(lis.frames("event")) if m[10] == 10]
    assert len({m[1] for m in topups}) == 1, "credited once"
    now = [m for m, _raw in _signed(lis.frames("reading")) if m[3] != 900]
    assert len(now) == 1, "read now answered once"
    status = [m for m, _raw in _signed(lis.frames("status"))]
    assert status and status[-1][40] == 1 and status[-1][42] == "unix"


def test_power_cuts_during_the_backlog_flush_lose_and_reorder_nothing(tmp_path):
    port = free_port()
    url = "mqtt://%s:x@127.0.0.1:%d" % (METER_ID, port)
    flash = tmp_path / "flash"
    days = 4
    segs = [{"seconds": days * 86400, **LOAD}]
    backlog_sc = write_scenario(tmp_path / "a.json", start=START, segments=segs)
    emulate.ensure_built()
    state, err = emulate.run(str(backlog_sc), str(flash), broker=url)  # no broker yet: all in the outbox
    backlog = state["comms"]["pending"]
    assert backlog >= days * 96
    segs = [{"seconds": days * 86400 + 1800, **LOAD}]
    more = write_scenario(tmp_path / "b.json", start=START, segments=segs)
    rng = random.Random(7)
    cuts = 0
    with MosquittoBroker(tmp_path, port=port):
        lis = Listener(port)
        for _ in range(12):  # power cuts while the meter is sending its backlog
            seen = len(lis.frames())
            s = emulate.Session(str(more), str(flash), broker=url, linger=30)
            done = []
            t = threading.Thread(target=lambda s=s, done=done: done.append(s.wait(60)))
            t.start()
            lis.trigger = (seen + rng.randint(2, 60), s.proc.kill)  # cut after n more of its messages
            t.join()
            lis.trigger = None
            state, err, _rc = done[0]
            cuts += state is None
        state, err = emulate.run(str(more), str(flash), broker=url, linger=60)
        assert state["comms"]["pending"] == 0, err
        last = state["seq"]
        assert lis.wait(lambda: {m[1] for m, _r in _signed(lis.frames())} >= set(range(1, last + 1)))
        lis.close()
    assert cuts >= 10, "the cuts hit a meter in the middle of its flush"
    by_seq, firsts = _first_arrivals(_signed(lis.frames()))
    assert sorted(by_seq) == list(range(1, last + 1)) and firsts == sorted(firsts)
    ts = sorted(m[2] for m in (verify(r) for r in by_seq.values()) if m[0] == M.TYPE_READING)
    assert ts == list(range(START + 900, START + days * 86400 + 1800 + 1, 900)), "each interval once"
