"""Helpers for the fault-injection tests: head-end commands as subprocesses (so SIGKILL is a real
crash), a provisioned fleet with a real Mosquitto that can be SIGKILLed and restarted on its port,
meter clients that behave like the firmware (paho, QoS 1, persistent session, resend of what the
broker has not acknowledged), and table snapshots to compare databases."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt

from headend.db.keystore import default_key_file
from headend.db.storage import Storage
from headend.meters import provision
from tests.headend.broker_support import Serve, wait_for
from tests.mosquitto_broker import MosquittoBroker, broker_tmpdir, free_ports

ROOT = Path(__file__).resolve().parents[2]
HEADEND = [sys.executable, "-m", "headend.cli"]


def headend(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`headend ARGV` as a subprocess; stdout and stderr captured as text."""
    return subprocess.run(
        [*HEADEND, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def spawn(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([*HEADEND, *argv], cwd=ROOT, **kw)


def sigkill(proc: subprocess.Popen) -> None:
    """A crash: SIGKILL, no cleanup of any kind."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def rows(db: str | Path, sql: str, args=()) -> list[tuple]:
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def integrity(db: str | Path) -> str:
    return rows(db, "PRAGMA integrity_check")[0][0]


def snapshot(db: str | Path, tables: dict[str, str]) -> dict[str, list[tuple]]:
    """table -> every row, ordered by the given ORDER BY columns."""
    return {t: rows(db, "SELECT * FROM %s ORDER BY %s" % (t, order)) for t, order in tables.items()}


class Broker:
    """The fleet's Mosquitto (from `headend broker-config --persistence`), killable and restartable."""

    def __init__(self, conf: str, port: int, persistence_dir: str) -> None:
        self.mq = MosquittoBroker.from_conf(conf, port)
        self.port = port
        self.db_file = os.path.join(persistence_dir, "mosquitto.db")
        self.mq.start()

    def save(self) -> None:
        """SIGUSR1: Mosquitto writes its persistence file (sessions, subscriptions, queues) now."""
        before = os.stat(self.db_file).st_mtime_ns if os.path.exists(self.db_file) else 0
        self.mq.proc.send_signal(signal.SIGUSR1)
        wait_for(
            lambda: os.path.exists(self.db_file) and os.stat(self.db_file).st_mtime_ns != before,
            10,
            "mosquitto to save its persistence file",
        )

    def kill(self) -> None:
        sigkill(self.mq.proc)
        self.mq._logf.close()
        self.mq.proc = None

    def restart(self) -> None:
        self.mq.start()

    def stop(self) -> None:
        self.mq.stop()


class Fleet:
    """``n`` meters provisioned in a head-end database and a broker that knows them. The broker's
    files are in a directory of their own that the broker can reach (run as root it reads them as
    user mosquitto, which cannot traverse ``tmp``); ``close()`` removes it."""

    def __init__(
        self, tmp: Path, n: int, persistence: bool = True, prefix: str = "m", db: str | None = None
    ) -> None:
        self.db = db or str(tmp / "headend.db")
        self.ids = ["%s%02d" % (prefix, i) for i in range(n)]
        with Storage(self.db) as st:
            self.meters = {m: provision.add_meter(st, m) for m in self.ids}
            port, headend_port = free_ports(2)
            self.broker_dir = broker_tmpdir()
            out = os.path.join(self.broker_dir, "broker")
            cfg = provision.write_broker_config(st, out, port, persistence, headend_port)
        self.url = cfg["headend_url"]
        self.broker = Broker(cfg["conf"], port, out)
        self.serves: list[Serve] = []
        self.clients: list[MeterClient] = []

    def key(self, meter_id: str) -> bytes:
        return bytes.fromhex(self.meters[meter_id]["key"])

    def serve(self, *extra: str) -> Serve:
        self.serves.append(Serve(self.db, self.url, *extra))
        return self.serves[-1]

    def meter(self, meter_id: str, port: int | None = None) -> MeterClient:
        c = MeterClient(meter_id, self.meters[meter_id]["mqtt_password"], port or self.broker.port)
        self.clients.append(c)
        return c

    def close(self) -> None:
        for s in self.serves:
            if s.proc.poll() is None:
                s.kill()
        for c in self.clients:
            c.close()
        self.broker.stop()
        shutil.rmtree(self.broker_dir, ignore_errors=True)


class MeterClient:
    """A meter's MQTT session as the firmware keeps it: MQTT 3.1.1, QoS 1, clean_session 0, a
    message leaves the sender only with the broker's PUBACK (paho resends the rest after a
    reconnect), reconnecting quickly after the link or the broker goes away."""

    def __init__(self, meter_id: str, password: str, port: int) -> None:
        self.meter_id = meter_id
        c = self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=meter_id, clean_session=False
        )
        c.username_pw_set(meter_id, password)
        c.max_inflight_messages_set(20)
        c.max_queued_messages_set(0)  # no limit: the outbox holds everything until PUBACK
        c.reconnect_delay_set(min_delay=1, max_delay=1)
        self.connected = threading.Event()
        self.connects = 0

        def on_connect(client, userdata, flags, rc, props):
            if not rc.is_failure:
                self.connects += 1
                self.connected.set()

        c.on_connect = on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        self.acked: set[int] = set()  # packet ids whose PUBACK came (ids are not reused here)
        c.on_publish = lambda client, userdata, mid, rc, props: self.acked.add(mid)
        c.connect_async("127.0.0.1", port, keepalive=60)
        c.loop_start()
        assert self.connected.wait(10), "meter %s could not connect" % meter_id
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1)
        self.infos.append(info)
        return info

    def unacked(self) -> int:
        # (a message published while the link was down reports "not connected" in its info
        # but stays queued in paho and goes out after the reconnect: count PUBACKs instead)
        return sum(i.mid not in self.acked for i in self.infos)

    def wait_acked(self, timeout: float = 30) -> None:
        wait_for(lambda: self.unacked() == 0, timeout, "meter %s: every PUBACK" % self.meter_id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Stream:
    """Meters publishing their frames at a steady pace, each from its own thread (as a fleet
    reports: many meters, a little each); ``join()`` waits until every frame was handed to paho.

    ``stops`` gates the stream instead of timing it: per-meter frame counts (ascending) at which
    every publisher stops until the test ``release()``s that stop, so a test acts (a backup, a
    kill) while the stream is at a known point whatever the machine's speed. ``wait_stopped(k)``
    returns once every publisher has handed exactly ``stops[k - 1]`` frames to paho and waits;
    ``handed()`` counts the frames handed to paho so far, all meters."""

    def __init__(
        self, items: dict[MeterClient, list[tuple[str, bytes]]], pace_s: float, stops: tuple[int, ...] = ()
    ) -> None:
        self.stops = list(stops)
        assert self.stops == sorted(self.stops), "stops ascend"
        self.released = 0  # stops the publishers may pass
        self.cond = threading.Condition()
        self.counts = [0] * len(items)  # frames handed to paho, per publisher
        self.threads = [
            threading.Thread(target=self._run, args=(i, c, frames, pace_s), daemon=True)
            for i, (c, frames) in enumerate(items.items())
        ]
        for t in self.threads:
            t.start()

    def _run(self, i: int, client: MeterClient, frames, pace_s: float) -> None:
        for n, (topic, payload) in enumerate(frames):
            with self.cond:
                while self.released < len(self.stops) and n >= self.stops[self.released]:
                    self.cond.wait()
            client.publish(topic, payload)
            with self.cond:
                self.counts[i] = n + 1
                self.cond.notify_all()
            time.sleep(pace_s)

    def handed(self) -> int:
        with self.cond:
            return sum(self.counts)

    def wait_stopped(self, k: int, timeout: float = 60) -> None:
        """Every publisher has handed stops[k - 1] frames to paho and is held there."""
        assert self.released == k - 1, "stop %d is not the next one" % k
        with self.cond:
            ok = self.cond.wait_for(lambda: all(n == self.stops[k - 1] for n in self.counts), timeout)
        assert ok, "the publishers did not reach stop %d: %r" % (k, self.counts)

    def release(self) -> None:
        """Let the publishers past the next stop."""
        with self.cond:
            self.released += 1
            self.cond.notify_all()

    def join(self, timeout: float = 60) -> None:
        assert self.released >= len(self.stops), "stops not released: the publishers would wait for ever"
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "a publisher did not finish"


def count(db: str, table: str = "readings") -> int:
    return rows(db, "SELECT count(*) FROM %s" % table)[0][0]


def copy_db(src: str | Path, dst: str | Path) -> None:
    """An independent copy of a database (SQLite's backup API, not headend.db.backup), with its
    default master key file beside it, as an operator copies both (docs/disaster-recovery.md)."""
    a, b = sqlite3.connect(str(src)), sqlite3.connect(str(dst))
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    key = default_key_file(src)
    if key.exists():
        shutil.copy2(key, default_key_file(dst))


def kill_when(proc: subprocess.Popen, cond, extra_s: float = 0.0, timeout: float = 60) -> bool:
    """SIGKILL ``proc`` once ``cond()`` holds (polled), ``extra_s`` later; False if the process
    had already exited by then (the kill came too late)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            sigkill(proc)
            raise AssertionError("the kill condition never came")
        time.sleep(0.005)
    if extra_s:
        time.sleep(extra_s)
    alive = proc.poll() is None
    sigkill(proc)
    return alive


class Lines:
    """A subprocess whose stderr lines are collected by a thread (for kill points on progress)."""

    def __init__(self, *argv: str) -> None:
        self.proc = spawn(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def saw(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for line in self.lines)

    def kill(self) -> None:
        """SIGKILL, then wait until every line it wrote has been read."""
        sigkill(self.proc)
        self._t.join(10)


def pay_post(port: int, body: bytes) -> tuple[int, dict] | None:
    """POST a payment callback to `headend pay serve`: (status, reply), or None when the server
    could not be reached or died before its reply was complete."""
    req = urllib.request.Request("http://127.0.0.1:%d/pay/notify" % port, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except (OSError, ValueError, http.client.HTTPException):  # refused, reset, reply cut short
        return None
