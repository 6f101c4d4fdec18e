"""tools/emulate.py --broker says what became of the meter's messages (issue 17, item 1): the broker link's
end (``broker``: connected, refused with the CONNACK return code named, unreachable) and how many
messages were left undelivered in the outbox, and it exits non-zero when delivery was asked for
(``--linger``) and did not happen: 3 when the broker refused the meter or could not be reached, 4 when
the meter was connected but its outbox was not empty when the linger ran out.

Against a real Mosquitto from `headend broker-config` (per-meter passwords; meters on ``broker.port``)
and, for the CONNACK codes Mosquitto does not send and a broker that never acknowledges, a fake broker
of a few lines. The firmware waits, past --linger if need be, until the broker has answered its first
connection attempt (firmware/comms.py Comms.drain), so a short --linger is enough on any machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest

from protocol import board_config as config
from tests.firmware.emulate_support import ROOT, emulate, write_scenario
from tests.firmware.meter_messages import verify
from tests.headend.broker_support import cli_json, start_broker, wait_for
from tools.mosquitto_broker import free_port

START = 1710115200  # Monday 2024-03-11 00:00 UTC
METER = "m-0001"
HOUR = [{"seconds": 3600, "urms": 230, "irms": 4, "phase_deg": 10}]  # 4 readings and a power-up event


def _cli(scenario, flash, broker_url, *extra):
    cmd = [sys.executable, str(ROOT / "tools" / "emulate.py"), "--scenario", str(scenario)]
    cmd += ["--flash", str(flash), "--broker", broker_url, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _flash(tmp_path, key_hex=None):
    """A meter's flash with config.json (meter METER, calibrated; its key when given)."""
    flash = tmp_path / "flash"
    flash.mkdir()
    sc = emulate.emulate_bench.Scenario({"start": START, "segments": [{"seconds": 60}]})
    cfg = emulate.emulate_bench.default_config(sc)
    cfg["meter_id"] = METER
    if key_hex is not None:
        cfg["key"] = bytes.fromhex(key_hex)
    (flash / "config.json").write_text(config.to_json(cfg))
    return flash


class Listener:
    """The head-end's view: a paho client on the head-end listener, every meter topic, QoS 1."""

    def __init__(self, headend_url: str, key: bytes) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(headend_url)
        self.key = key
        self.got: list[bytes] = []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="headend.delivery-test")
        self.c.username_pw_set(u.username, u.password)
        self.c.on_message = lambda c, u_, msg: self.got.append(bytes(msg.payload))
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_connect = lambda c, *a: c.subscribe("ami/v1/+/up/#", 1)
        self.c.connect(u.hostname, u.port)
        self.c.loop_start()
        assert self.subscribed.wait(15), "the listener subscribed"

    def seqs(self) -> set[int]:
        out = set()
        for p in list(self.got):
            try:
                out.add(verify(p, self.key, METER)[1])
            except Exception:  # the will (unauthenticated)
                pass
        return out

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_wrong_password_names_the_refusal_keeps_every_message_and_exits_3(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "h.db")
    meter = cli_json(capsys, "--db", db, "meter", "add", METER)
    broker, headend_url = start_broker(capsys, db, str(broker_tmp / "broker"))
    flash = _flash(tmp_path, meter["key"])
    sc = write_scenario(tmp_path / "hour.json", start=START, segments=HOUR)
    emulate.ensure_built()
    try:
        wrong = "mqtt://%s:WRONG@127.0.0.1:%d" % (METER, broker.port)
        out = _cli(sc, flash, wrong, "--linger", "1", "--json")
        assert out.returncode == emulate.EXIT_UNDELIVERED == 3, out.stderr
        state = json.loads(out.stdout)
        made = state["seq"]  # a fresh meter: seq 1..made, every one of them still in the outbox
        assert made >= 5 and state["comms"]["pending"] == made
        assert state["broker"] == "refused: not authorized (CONNACK 5)"
        assert state["undelivered"] == made
        assert state["comms"]["link"]["connects"] == 0 and state["comms"]["link"]["refused"] == 5
        assert (
            "error: the broker at 127.0.0.1:%d refused the meter (user %s): not authorized (CONNACK 5); "
            "%d messages left undelivered in the outbox (exit 3)" % (broker.port, METER, made)
        ) in out.stderr
        with open(broker.log) as f:
            assert "not authorised" in f.read(), "the broker's side of it"

        # the right password: everything left on the flash goes out, exit 0, nothing pending
        lis = Listener(headend_url, bytes.fromhex(meter["key"]))
        right = "mqtt://%s:%s@127.0.0.1:%d" % (METER, meter["mqtt_password"], broker.port)
        out = _cli(sc, flash, right, "--linger", "60")  # an upper bound: it ends once the outbox is empty
        assert out.returncode == 0, out.stderr
        assert "broker: connected   undelivered: 0" in out.stdout.splitlines()
        assert "error" not in out.stderr
        wait_for(lambda: lis.seqs() >= set(range(1, made + 1)), 30, "the refused run's messages")
        lis.close()
    finally:
        broker.stop()


def test_unreachable_broker_is_said_and_exits_3_unless_no_delivery_was_asked(tmp_path):
    port = free_port()  # nothing listens there
    sc = write_scenario(tmp_path / "hour.json", start=START, segments=HOUR)
    flash = tmp_path / "flash"
    emulate.ensure_built()
    url = "mqtt://%s:x@127.0.0.1:%d" % (METER, port)
    out = _cli(sc, flash, url, "--linger", "1", "--json")
    assert out.returncode == 3, out.stderr
    state = json.loads(out.stdout)
    made = state["seq"]
    assert state["broker"].startswith("unreachable: ") and "ECONNREFUSED" in state["broker"], state["broker"]
    assert state["undelivered"] == state["comms"]["pending"] == made >= 5
    assert "error: the broker at 127.0.0.1:%d could not be reached (" % port in out.stderr
    assert "; %d messages left undelivered in the outbox (exit 3)" % made in out.stderr

    out = _cli(sc, flash, url, "--linger", "0", "--json")  # filling the outbox on purpose
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    assert state["undelivered"] == state["seq"] == made + 1, "kept, and the second boot's power-up event"
    assert "error" not in out.stderr


class FakeBroker:
    """A TCP server speaking just enough MQTT 3.1.1: CONNACK with ``rc`` (closing on a refusal),
    SUBACK QoS 1, PINGRESP; PUBLISHes are counted and never acknowledged."""

    def __init__(self, rc: int) -> None:
        self.rc = rc
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connects = 0
        self.publishes = 0
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _packet(f):
        first = f.read(1)
        if not first:
            return None, b""
        n, shift = 0, 0
        while True:
            b = f.read(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return first[0] >> 4, f.read(n)

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        try:
            while True:
                ptype, body = self._packet(f)
                if ptype is None:
                    return
                if ptype == 1:  # CONNECT
                    self.connects += 1
                    conn.sendall(bytes((0x20, 2, 0, self.rc)))
                    if self.rc:
                        return
                elif ptype == 8:  # SUBSCRIBE: pid, then the filters
                    conn.sendall(bytes((0x90, 3, body[0], body[1], 1)))
                elif ptype == 3:
                    self.publishes += 1
                elif ptype == 12:  # PINGREQ
                    conn.sendall(bytes((0xD0, 0)))
        except (OSError, IndexError):
            return
        finally:
            f.close()
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_bad_user_name_or_password_refusal_is_named_by_its_code(tmp_path):
    broker = FakeBroker(4)  # Mosquitto says 5 (not authorized); other brokers say 4
    try:
        sc = write_scenario(tmp_path / "hour.json", start=START, segments=HOUR)
        emulate.ensure_built()
        out = _cli(sc, tmp_path / "flash", "mqtt://u:p@127.0.0.1:%d" % broker.port, "--linger", "1")
    finally:
        broker.close()
    assert out.returncode == 3, out.stderr
    assert broker.connects >= 1 and broker.publishes == 0
    lines = out.stdout.splitlines()
    [line] = [x for x in lines if x.startswith("broker: ")]
    assert line.startswith("broker: refused: bad user name or password (CONNACK 4)   undelivered: ")
    made = int(line.split()[-1])
    assert made >= 5
    assert (
        "refused the meter (user u): bad user name or password (CONNACK 4); %d messages" % made in out.stderr
    )


def test_connected_but_not_done_when_the_linger_ran_out_exits_4(tmp_path):
    broker = FakeBroker(0)  # accepts the meter, never acknowledges a message
    try:
        sc = write_scenario(tmp_path / "hour.json", start=START, segments=HOUR)
        emulate.ensure_built()
        url = "mqtt://%s:x@127.0.0.1:%d" % (METER, broker.port)
        out = _cli(sc, tmp_path / "flash", url, "--linger", "1", "--json")
    finally:
        broker.close()
    assert out.returncode == emulate.EXIT_BACKLOG == 4, out.stderr
    state = json.loads(out.stdout)
    assert state["broker"] == "connected" and state["comms"]["link"]["connects"] == 1
    assert state["undelivered"] == state["comms"]["pending"] == state["seq"] >= 5
    assert (
        "error: connected to the broker at 127.0.0.1:%d, but %d messages left undelivered"
        % (
            broker.port,
            state["seq"],
        )
        in out.stderr
        and "raise --linger" in out.stderr
    )


@pytest.mark.parametrize(
    "link,pending,linger,code,text",
    [
        ({"state": 2, "refused": 1}, 3, 5, 3, "unacceptable protocol version (CONNACK 1)"),
        (
            {"state": 2, "refused": 2},
            0,
            5,
            3,
            "identifier rejected (CONNACK 2)",
        ),  # refused: even with none left
        ({"state": 2, "refused": 3}, 3, 5, 3, "server unavailable (CONNACK 3)"),
        ({"state": 2, "refused": 4}, 3, 5, 3, "bad user name or password (CONNACK 4)"),
        ({"state": 2, "refused": 5}, 3, 5, 3, "not authorized (CONNACK 5)"),
        ({"state": 4, "last_error": "keepalive"}, 2, 5, 3, "was lost and not re-established (keepalive)"),
        ({"state": 4, "last_error": "keepalive"}, 0, 5, 0, None),  # everything was delivered first
        ({"state": 1}, 2, 5, 4, "raise --linger"),
        ({"state": 1}, 0, 5, 0, None),
        ({"state": 2, "refused": 5}, 3, 0, 0, None),  # --linger 0: no delivery asked
    ],
)
def test_delivery_codes_and_messages(link, pending, linger, code, text):
    state = {"comms": {"pending": pending, "link": link}}
    got, message = emulate.delivery(state, {"host": "h", "port": 1, "user": "u"}, linger)
    assert got == code
    assert (message is None) if text is None else (text in message), message
