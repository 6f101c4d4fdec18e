"""Test helpers: a Mosquitto started from `headend broker-config`, `headend serve`
as a real subprocess, meter clients, frames built with the independent `cwt`
package, and polling with a deadline."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
from cwt import COSE, COSEKey

from headend.cli import main as headend_main
from tests.mosquitto_broker import MosquittoBroker, free_ports

ROOT = pathlib.Path(__file__).resolve().parents[2]


def wait_for(cond, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def cli_json(capsys, *argv):
    """Run `headend ARGV` in-process; its stdout parsed as JSON."""
    capsys.readouterr()
    assert headend_main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def Broker(conf: str, port: int) -> MosquittoBroker:
    """`mosquitto -c CONF` from broker-config output: ``port`` (the meters' listener) and every
    other listener of CONF (the head-end's) accept connections when it returns."""
    return MosquittoBroker.from_conf(conf, port).start()


def start_broker(capsys, db: str, out_dir: str) -> tuple[MosquittoBroker, str]:
    """Mosquitto from `headend broker-config` on two free ports: ``.port`` is the meters'
    listener, ``.headend_port`` the head-end's (where the returned headend_url points). out_dir
    must be reachable by the broker's user (the ``broker_tmp`` fixture) when run as root."""
    port, headend_port = free_ports(2)
    argv = ["broker-config", "--db", db, "--out", out_dir, "--port", str(port)]
    cfg = cli_json(capsys, *argv, "--headend-port", str(headend_port))
    broker = Broker(cfg["conf"], port)
    broker.headend_port = headend_port
    return broker, cfg["headend_url"]


class Serve:
    """`headend serve` as a subprocess; returns once it (each of its `--workers`) has subscribed."""

    def __init__(self, db: str, url: str, *extra: str, subscribed: int = 1) -> None:
        cmd = [sys.executable, "-m", "headend.cli", "serve", "--db", db, "--broker", url, *extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(
            lambda: (
                sum("subscribed" in line for line in self.lines) >= subscribed or self.proc.poll() is not None
            ),
            15,
            "headend serve to subscribe",
        )
        assert self.proc.poll() is None, "".join(self.lines)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(10)
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


class MeterClient:
    """A meter's broker connection (paho, MQTT 3.1.1 like the firmware). ``client_id`` (default
    the meter id) is what the client sends: on the meters' listener the broker replaces it with
    the username; a head-end-user client (on the head-end's listener) needs its own, not serve's."""

    def __init__(
        self, meter_id: str, password: str, port: int, will: bytes | None = None, client_id: str | None = None
    ) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or meter_id)
        self.client.username_pw_set(meter_id, password)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        if will is not None:
            self.client.will_set("ami/v1/%s/up/status" % meter_id, will, qos=1, retain=True)
        self.received: list[tuple[str, bytes]] = []
        self.subacks: list = []
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.append(codes)
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: rc.is_failure or self.connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10), "meter %s could not connect" % meter_id

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_all(self, items) -> None:
        infos = [self.publish(t, p) for t, p in items]
        for info in infos:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------- frames with cwt (independent COSE)


def cwt_frame(key: bytes, kid: str, message: dict, protected=None) -> bytes:
    cose_key = COSEKey.from_symmetric_key(key, alg="HS256", kid=kid.encode())
    return COSE.new().encode_and_mac(
        cbor2.dumps(message), cose_key, protected=protected or {1: 5}, unprotected={4: kid.encode()}
    )


def reading_map(seq: int, ts: int, wh: int) -> dict:
    return {
        0: 1,
        1: seq,
        2: ts,
        3: 900,
        4: [wh, 0, 0, 0],
        5: [0, 0, 0, 0],
        6: [0, 0, 0, 0],
        7: {0: 230000, 1: 1000, 2: 230},
        9: 0,
    }
