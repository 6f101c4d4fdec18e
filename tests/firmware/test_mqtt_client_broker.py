"""firmware/mqtt_client.py against a real Mosquitto, run by MicroPython (and CPython).

Each scenario runs tests/firmware/mqtt_client_script.py as a subprocess with
cwd = the project root, under MicroPython (the default runtime, unix32: the
client frozen into the 32-bit unix port, as on a board) and (but for the
two 8-second keepalive tests) again under CPython, with paho-mqtt as the
head-end on the other side. The broker has the project's password file and
ACL (headend.meters.provision.ACL: a meter writes only its up topics, reads only its
down topics). A small socket server stands in for a broker that goes silent,
refuses a subscription or sends bad packets. The last tests run the client
in-process under CPython's asyncio.
"""

import asyncio
import itertools
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from firmware.mqtt_client import Backoff, MQTTClient, connect_forever
from firmware.mqtt_packets import decode_subscribe, encode_publish, encode_suback, encode_varint, split
from headend.meters.provision import ACL, HEADEND_USER, mosquitto_hash
from tests.firmware import emulate_support
from tests.mosquitto_broker import MosquittoBroker, free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = "tests/firmware/mqtt_client_script.py"
METER = "emu-0001"
METER_PW = "meter-password-1"
HEADEND_PW = "headend-password-1"
UP = "ami/v1/%s/up/" % METER
CMD = "ami/v1/%s/down/cmd" % METER
WILL = b"\xa2\x00\x04\x18\x28\x00"  # CBOR {0: 4, 40: 0}: the offline status (docs/protocol.md)
_ids = itertools.count(1)


def micropython_exe():
    return emulate_support.micropython_exe()  # unix32 by default: the client frozen in


@pytest.fixture(params=["micropython", "cpython"])
def runtime(request):
    return request.param


def start_broker(workdir, port=None):
    """Mosquitto with the meter's and the head-end's passwords and the project's ACL."""
    workdir = pathlib.Path(workdir)
    passwd, acl = workdir / "passwd", workdir / "acl"
    passwd.write_text(
        "%s:%s\n%s:%s\n" % (METER, mosquitto_hash(METER_PW), HEADEND_USER, mosquitto_hash(HEADEND_PW))
    )
    acl.write_text(ACL.format(user=HEADEND_USER))
    lines = [
        "allow_anonymous false",
        "password_file %s" % passwd,
        "acl_file %s" % acl,
        "set_tcp_nodelay true",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lines.append("user root")  # else mosquitto drops to a user that cannot read tmp_path
    return MosquittoBroker(workdir, lines, port=port).start()


@pytest.fixture
def meter_broker(tmp_path):
    b = start_broker(tmp_path)
    yield b
    b.stop()


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Headend:
    """A paho-mqtt 2.x client as the head-end user, subscribed to every meter's up topics."""

    def __init__(self, port, topic="ami/v1/+/up/#"):
        self.msgs = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="headend-%d" % next(_ids), protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(HEADEND_USER, HEADEND_PW)
        connected, subscribed = threading.Event(), threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: rc.is_failure or connected.set()
        self.client.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        self.client.on_message = lambda c, u, m: self.msgs.append((m.topic, m.payload, m.qos, m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), "head-end could not connect"
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "head-end could not subscribe"

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def write_config(tmp_path, port, steps, **extra):
    cfg = {
        "host": "127.0.0.1",
        "port": port,
        "client_id": METER,
        "username": METER,
        "password": METER_PW,
        "steps": steps,
    }
    cfg.update(extra)
    path = tmp_path / ("script-%d.json" % next(_ids))
    path.write_text(json.dumps(cfg))
    return path


def script_cmd(runtime, cfg_path):
    exe = micropython_exe() if runtime == "micropython" else sys.executable
    return [exe, SCRIPT, str(cfg_path)]


def parse(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_script(runtime, tmp_path, port, steps, rc=0, **extra):
    """Run the client script to its end; its JSON lines."""
    cmd = script_cmd(runtime, write_config(tmp_path, port, steps, **extra))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return parse(proc.stdout)


def step(lines, name, n=0):
    """The n-th output line of step ``name``."""
    found = [x for x in lines if x.get("step") == name]
    assert len(found) > n, "no %s step #%d in %r" % (name, n, lines)
    return found[n]


def events(lines, kind):
    return [x for x in lines if x.get("event") == kind]


def test_qos1_publish_reaches_paho_and_the_puback_callback_fires(runtime, meter_broker, tmp_path):
    headend = Headend(meter_broker.port)
    try:
        lines = run_script(
            runtime,
            tmp_path,
            meter_broker.port,
            [
                ["connect"],
                ["subscribe", CMD, 1],
                ["loop"],
                ["publish", UP + "reading", "a1b2c3", 1, False],
                ["wait", "puback", 1, 5000],
                ["publish", UP + "event", "0e", 0, False],
                ["publish", UP + "status", "5354", 1, True],
                ["wait", "puback", 2, 5000],
                ["status"],
                ["disconnect"],
                ["wait", "loop_end", 1, 3000],
            ],
        )
        wait_for(lambda: len(headend.msgs) >= 3, what="three messages at the head-end")
    finally:
        headend.close()
    assert step(lines, "connect")["session_present"] is False
    assert step(lines, "subscribe")["granted"] == 1
    first, second = step(lines, "publish", 0), step(lines, "publish", 2)
    assert first["inflight"] == 1 and first["pid"] != second["pid"] and step(lines, "publish", 1)["pid"] == 0
    assert [e["pid"] for e in events(lines, "puback")] == [first["pid"], second["pid"]]
    assert step(lines, "status")["inflight"] == 0 and step(lines, "status")["connected"] is True
    assert [e["error"] for e in events(lines, "loop_end")] == [None]  # ended by disconnect()
    assert sorted(headend.msgs) == [
        (UP + "event", b"\x0e", 0, False),
        (UP + "reading", b"\xa1\xb2\xc3", 1, False),
        (UP + "status", b"ST", 1, False),  # a live subscriber gets retained messages without the flag
    ]
    late = Headend(meter_broker.port, UP + "status")
    try:
        wait_for(lambda: late.msgs, what="the retained status")
        assert late.msgs == [(UP + "status", b"ST", 1, True)]
    finally:
        late.close()


def test_persistent_session_queues_qos1_while_away_and_redelivers_unacked_with_dup(
    runtime, meter_broker, tmp_path
):
    def session(steps):
        return run_script(runtime, tmp_path, meter_broker.port, steps, clean_session=False)

    away = session([["connect"], ["subscribe", CMD, 1], ["disconnect"]])
    assert step(away, "subscribe")["granted"] == 1
    headend = Headend(meter_broker.port)
    try:
        headend.publish(CMD, b"cmd-1")  # the meter is away: the broker queues it in its session
    finally:
        headend.close()
    back = session([["connect"], ["loop"], ["wait", "message", 1, 5000], ["disconnect"]])
    assert step(back, "connect")["session_present"] is True
    [msg] = events(back, "message")
    assert (msg["topic"], msg["payload"], msg["dup"]) == (CMD, b"cmd-1".hex(), False) and msg["pid"] > 0
    # never acknowledged: the broker sends it again in the next session, marked DUP
    again = session([["connect"], ["loop"], ["wait", "message", 1, 5000], ["puback_all"], ["disconnect"]])
    [dup] = events(again, "message")
    assert (dup["topic"], dup["payload"], dup["dup"]) == (CMD, b"cmd-1".hex(), True)
    assert step(again, "puback_all")["acked"] == [dup["pid"]]
    # acknowledged: gone from the session
    done = session([["connect"], ["loop"], ["wait", "message", 1, 1500], ["disconnect"]])
    assert step(done, "connect")["session_present"] is True and events(done, "message") == []


def test_clean_session_forgets_the_subscription_and_queue(runtime, meter_broker, tmp_path):
    run_script(
        runtime,
        tmp_path,
        meter_broker.port,
        [["connect"], ["subscribe", CMD, 1], ["disconnect"]],
        clean_session=False,
    )
    headend = Headend(meter_broker.port)
    try:
        headend.publish(CMD, b"cmd-lost")
    finally:
        headend.close()
    lines = run_script(
        runtime,
        tmp_path,
        meter_broker.port,
        [["connect"], ["loop"], ["wait", "message", 1, 1500], ["disconnect"]],
    )
    assert step(lines, "connect")["session_present"] is False and events(lines, "message") == []


def test_will_is_published_when_the_client_process_is_killed(runtime, meter_broker, tmp_path):
    headend = Headend(meter_broker.port)
    cfg = write_config(
        tmp_path,
        meter_broker.port,
        [["connect"], ["loop"], ["hang"]],
        will=[UP + "status", WILL.hex()],
        keepalive=60,
    )
    proc = subprocess.Popen(script_cmd(runtime, cfg), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(json.loads(line))
            if seen[-1].get("step") == "hang":
                break
        assert step(seen, "connect")["session_present"] is False
        time.sleep(0.2)
        assert headend.msgs == []  # nothing while it lives
        proc.kill()  # SIGKILL: no DISCONNECT, the socket just closes
        proc.wait(10)
        wait_for(lambda: headend.msgs, what="the will")
        assert headend.msgs == [(UP + "status", WILL, 1, False)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        headend.close()
    late = Headend(meter_broker.port, UP + "status")
    try:
        wait_for(lambda: late.msgs, what="the retained will")
        assert late.msgs == [(UP + "status", WILL, 1, True)]
    finally:
        late.close()


def test_will_is_not_published_after_disconnect(runtime, meter_broker, tmp_path):
    headend = Headend(meter_broker.port)
    try:
        lines = run_script(
            runtime,
            tmp_path,
            meter_broker.port,
            [
                ["connect"],
                ["loop"],
                ["publish", UP + "status", b"online".hex(), 1, False],
                ["wait", "puback", 1, 5000],
                ["disconnect"],
                ["wait", "loop_end", 1, 3000],
            ],
            will=[UP + "status", WILL.hex()],
        )
        wait_for(lambda: headend.msgs, what="the marker published before the disconnect")
        time.sleep(1.0)  # a will would follow the marker
        assert headend.msgs == [(UP + "status", b"online", 1, False)]
    finally:
        headend.close()
    assert events(lines, "loop_end")[0]["error"] is None


def test_close_without_disconnect_publishes_the_will(runtime, meter_broker, tmp_path):
    headend = Headend(meter_broker.port)
    try:
        lines = run_script(
            runtime,
            tmp_path,
            meter_broker.port,
            [["connect"], ["loop"], ["close"], ["wait", "loop_end", 1, 3000], ["status"]],
            will=[UP + "status", WILL.hex()],
        )
        wait_for(lambda: headend.msgs, what="the will after close()")
        assert headend.msgs == [(UP + "status", WILL, 1, False)]
    finally:
        headend.close()
    assert events(lines, "loop_end")[0]["error"] is None  # the application ended it: no error
    assert step(lines, "status")["connected"] is False


def test_bad_password_is_refused_with_the_connack_code_named(runtime, meter_broker, tmp_path):
    lines = run_script(runtime, tmp_path, meter_broker.port, [["connect"]], rc=3, password="wrong")
    err = step(lines, "connect")
    assert err["error"] == "MQTTError" and err["code"] == 5
    assert err["message"] == "CONNACK refused: not authorized (5)"


def test_keepalive_pings_keep_the_connection_alive_beyond_one_and_a_half_keepalives(meter_broker, tmp_path):
    """MicroPython only (8 s); CPython's keepalive path runs in the silent-broker test."""
    lines = run_script(
        "micropython",
        tmp_path,
        meter_broker.port,
        [
            ["connect"],
            ["loop"],
            ["sleep", 8000],  # > 1.5 * keepalive: Mosquitto 2.0 drops a silent client within 3..6 s
            ["status"],
            ["publish", UP + "reading", "01", 1, False],
            ["wait", "puback", 1, 3000],
            ["disconnect"],
        ],
        keepalive=2,
    )
    status = step(lines, "status")
    assert status["connected"] is True and status["pings"] >= 6  # every keepalive/2 = 1 s
    assert len(events(lines, "puback")) == 1
    log = pathlib.Path(meter_broker.log).read_text()
    assert "exceeded timeout" not in log


def test_without_the_loop_no_pings_are_sent_and_the_broker_drops_the_client(meter_broker, tmp_path):
    """Control for the test above (broker behaviour, so one runtime): no loop(), no pings, dropped."""
    lines = run_script(
        "micropython", tmp_path, meter_broker.port, [["connect"], ["sleep", 8000], ["status"]], keepalive=2
    )
    assert step(lines, "status")["pings"] == 0
    assert "Client %s has exceeded timeout" % METER in pathlib.Path(meter_broker.log).read_text()


class FakeBroker:
    """A TCP server that answers CONNECT with CONNACK 0, then sends ``then`` and records what it receives.

    It answers a SUBSCRIBE with a SUBACK carrying ``suback`` (if given) and
    never answers a PINGREQ: a broker gone silent with the TCP connection up.
    """

    def __init__(self, then=b"", close_after=False, suback=None):
        self.then = then
        self.close_after = close_after
        self.suback = suback
        self.received = bytearray()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(20)
            self.connect = conn.recv(1024)
            conn.sendall(b"\x20\x02\x00\x00" + self.then)
            if self.close_after:
                return
            try:
                while True:
                    data = conn.recv(4096)
                    if not data:
                        return
                    self.received += data
                    if self.suback is not None and data[0] == 0x82:  # a SUBSCRIBE, alone in its segment
                        pid = decode_subscribe(split(data)[2])[0]
                        conn.sendall(encode_suback(pid, [self.suback]))
            except OSError:
                return

    def close(self):
        self.sock.close()
        self.thread.join(5)


def test_subscribe_refused_with_suback_0x80_raises_a_named_error(runtime, tmp_path):
    fake = FakeBroker(suback=0x80)
    try:
        lines = run_script(
            runtime, tmp_path, fake.port, [["connect"], ["subscribe", CMD, 1], ["status"]], rc=3
        )
    finally:
        fake.close()
    err = step(lines, "subscribe")
    assert err["error"] == "MQTTError"
    assert err["message"] == "subscribe %s: refused by the broker (SUBACK 0x80)" % CMD
    assert fake.received[:1] == b"\x82"


def test_subscribe_reads_its_suback_with_or_without_the_loop(runtime, tmp_path):
    fake = FakeBroker(suback=1)
    try:
        lines = run_script(
            runtime,
            tmp_path,
            fake.port,
            [["connect"], ["subscribe", CMD, 1], ["loop"], ["subscribe", CMD + "2", 0], ["status"]],
        )
    finally:
        fake.close()
    assert step(lines, "subscribe", 0)["granted"] == 1 and step(lines, "subscribe", 1)["granted"] == 1
    assert step(lines, "status")["connected"] is True


def test_a_silent_broker_is_declared_dead_after_one_and_a_half_keepalives(runtime, tmp_path):
    fake = FakeBroker()
    try:
        lines = run_script(
            runtime,
            tmp_path,
            fake.port,
            [["connect"], ["loop"], ["wait", "loop_end", 1, 10000], ["status"]],
            keepalive=2,
        )
        fake.thread.join(5)
    finally:
        fake.close()
    [end] = events(lines, "loop_end")
    assert end["error"] == "MQTTError" and end["message"].startswith("keepalive: nothing from the broker")
    silent_ms = end["t"] - step(lines, "connect")["t"]
    assert 2900 <= silent_ms <= 4500, silent_ms
    assert step(lines, "status")["connected"] is False
    assert fake.received.startswith(b"\xc0\x00\xc0\x00")  # it pinged at 1 s and 2 s, then gave up
    assert fake.received == b"\xc0\x00" * (len(fake.received) // 2)


BAD_PACKETS = {
    "qos2": (encode_publish(CMD, b"x", qos=2, pid=5), False, "QoS 2 PUBLISH on %s: not supported" % CMD),
    "too_large": (b"\x30" + encode_varint(20000), False, "remaining length 20000 > max_packet 16384"),
    "bad_puback": (b"\x40\x03\x00\x01\x00", False, "malformed PUBACK: remaining length 3"),
    "reserved_type": (b"\x00\x00", False, "reserved packet type 0"),
    "long_varint": (b"\x30\xff\xff\xff\xff\x01", False, "more than 4 bytes"),
    "cut_short": (b"\x30\x10\x00\x03a/b", True, "inside a PUBLISH packet"),
    "unexpected": (b"\x20\x02\x00\x00", False, "unexpected CONNACK"),
}


@pytest.mark.parametrize("case", sorted(BAD_PACKETS))
def test_bad_packets_from_the_broker_end_the_connection_with_a_named_error(runtime, tmp_path, case):
    then, close_after, message = BAD_PACKETS[case]
    fake = FakeBroker(then, close_after)
    try:
        lines = run_script(
            runtime, tmp_path, fake.port, [["connect"], ["loop"], ["wait", "loop_end", 1, 5000], ["status"]]
        )
    finally:
        fake.close()
    [end] = events(lines, "loop_end")
    assert end["error"] == "MQTTError" and message in end["message"], end
    assert step(lines, "status")["connected"] is False


def test_connect_forever_retries_with_backoff_until_the_broker_comes_up(runtime, tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, port, [["connect_forever", 100, 400], ["status"], ["disconnect"]])
    proc = subprocess.Popen(script_cmd(runtime, cfg), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    broker = None
    try:
        seen = []  # nothing listens yet: refused, back off, again; the broker comes after 3 failures
        for line in proc.stdout:
            seen.append(json.loads(line))
            if len(events(seen, "connect_failed")) == 3:
                break
        assert len(events(seen, "connect_failed")) == 3 and proc.poll() is None, seen
        broker = start_broker(tmp_path, port)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if broker:
            broker.stop()
    assert proc.returncode == 0, out
    lines = seen + parse(out)
    res = step(lines, "connect_forever")
    assert res["session_present"] is False and res["failures"] >= 3
    assert [e["n"] for e in events(lines, "connect_failed")] == list(range(1, res["failures"] + 1))
    assert set(res["failure_kinds"]) <= {"OSError", "ConnectionRefusedError"}, res
    assert step(lines, "status")["connected"] is True


def test_backoff_values_under_the_runtime_stay_within_the_doubling_ceiling(runtime, tmp_path):
    lines = run_script(runtime, tmp_path, 1, [["backoff", 1000, 300000, 12]])
    res = step(lines, "backoff")
    ceilings = [min(300000, 1000 * 2**n) for n in range(12)]
    assert res["ceilings"] == ceilings
    assert all(0 <= v <= c for v, c in zip(res["values"], ceilings, strict=True))
    assert len(set(res["values"])) > 6  # random, not a constant


# ---------------------------------------------------------------- CPython only: policy and packet ids


def test_backoff_is_capped_exponential_with_full_jitter_from_the_injected_source():
    asked = []

    def top(bits):
        asked.append(bits)
        return (1 << bits) - 1

    b = Backoff(1000, 8000, rand=top)
    values = [b.next_ms() for _ in range(6)]
    assert asked == [30] * 6
    assert values == [(2**30 - 1) % (c + 1) for c in (1000, 2000, 4000, 8000, 8000, 8000)]
    zero = Backoff(1000, 8000, rand=lambda bits: 0)
    assert [zero.next_ms() for _ in range(3)] == [0, 0, 0]
    assert zero.ceiling_ms == 8000 and zero.attempts == 3
    zero.reset()
    assert zero.ceiling_ms == 1000 and zero.attempts == 0
    exact = Backoff(1000, 8000, rand=lambda bits: 1000)
    assert exact.next_ms() == 1000  # the ceiling itself is reachable
    with pytest.raises(ValueError, match="base_ms"):
        Backoff(0, 10)
    with pytest.raises(ValueError, match="base_ms"):
        Backoff(100, 50)


def test_backoff_spreads_over_the_whole_range():
    b = Backoff(1000, 1000)
    values = [b.next_ms() for _ in range(2000)]
    assert min(values) < 100 and max(values) > 900 and all(0 <= v <= 1000 for v in values)


async def test_packet_ids_wrap_after_65535_and_skip_ids_in_flight(broker):
    """Under CPython's asyncio, on an anonymous broker (conftest)."""
    acked = []
    client = MQTTClient("wrap-test", on_puback=acked.append)
    await client.connect("127.0.0.1", broker.port)
    client._pid = 65533  # white box: start near the wrap instead of after 65533 publishes
    assert [await client.publish("t/a", b"x") for _ in range(3)] == [65534, 65535, 1]
    assert await client.publish("t/a", b"y", pid=3) == 3  # an id of the caller's choosing
    assert [await client.publish("t/a", b"z") for _ in range(2)] == [2, 4]  # 3 is in flight
    assert client.inflight() == 6
    task = asyncio.create_task(client.loop())
    deadline = time.monotonic() + 10
    while client.inflight() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert sorted(acked) == [1, 2, 3, 4, 65534, 65535] and client.inflight() == 0
    await client.disconnect()
    assert await task is None and not client.connected


async def test_publish_refuses_bad_arguments_and_a_closed_connection(broker):
    client = MQTTClient("args-test", max_packet=1024)
    with pytest.raises(OSError, match="publish: not connected"):
        await client.publish("t/a", b"x")
    await client.connect("127.0.0.1", broker.port)
    with pytest.raises(ValueError, match="qos 2"):
        await client.publish("t/a", b"x", qos=2)
    with pytest.raises(ValueError, match="max_packet 1024"):
        await client.publish("t/a", b"x" * 1100)
    with pytest.raises(ValueError, match="wildcard"):
        await client.publish("t/#", b"x")
    assert client.inflight() == 0
    big = await client.publish("t/a", b"y" * 1000)  # over the reused 512-byte buffer
    assert big == 1 and client.inflight() == 1
    with pytest.raises(OSError, match="already connected"):
        await client.connect("127.0.0.1", broker.port)
    client.close()
    with pytest.raises(OSError, match="not connected"):
        await client.puback(1)


async def test_connect_forever_polls_the_network_without_spending_backoff(broker):
    polls = []

    def network_up():
        polls.append(1)
        return len(polls) > 3

    backoff = Backoff(10, 40)
    client = MQTTClient("net-test")
    assert await connect_forever(client, "127.0.0.1", broker.port, backoff, network_up) is False
    assert len(polls) == 4 and backoff.attempts == 0 and client.connected
    await client.disconnect()
    assert not client.connected and client.error is None
