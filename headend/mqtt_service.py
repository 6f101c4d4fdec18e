"""``headend serve``: the MQTT edge of ingest (paho-mqtt 2, MQTT 5).

Exactly-once into SQLite over an at-least-once broker:

- a persistent session (stable client id, clean_start False, session expiry
  "never") so the broker keeps QoS 1 messages while the head-end is away;
- QoS 1 subscription to ``ami/v1/+/up/#`` (or ``$share/headend/ami/v1/+/up/#``
  with ``shared``, so several workers split the load);
- ``manual_ack``: the paho network thread verifies each message
  (``headend.ingest.add``) into the open batch; the main thread commits the
  batch (up to ``batch_max`` messages or ``batch_wait`` s after its first) in
  one transaction and only then sends the PUBACKs. A crash before the commit
  leaves the messages unacknowledged: the broker redelivers them and
  ``(meter_id, seq)`` makes the redelivery a no-op.
- stop() (SIGTERM/SIGINT in ``serve``): stop taking messages, commit, ack,
  disconnect. Messages that arrive meanwhile stay unacknowledged for next time.

Acks survive a reconnect unharmed: a resumed session redelivers an unacked
message under its original packet id, so a late PUBACK still names that message.
"""

from __future__ import annotations

import sys
import threading
import time
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from headend import ingest
from headend.storage import IngestBatch, Storage
from protocol import topics

RECEIVE_MAXIMUM = 1000  # unacked QoS 1 messages the broker may send us (matches broker max_inflight)
KEY_RELOAD_S = 5.0  # meters provisioned while serving become known within this


class ServiceError(Exception):
    """Bad broker URL, or the broker refused us; the message says which."""


def parse_broker_url(url: str) -> dict:
    """``mqtt://USER:PASS@HOST:PORT`` -> {host, port, username, password}."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ServiceError("broker URL must look like mqtt://USER:PASS@HOST:PORT, got %r" % url)
    try:
        port = parts.port or 1883
    except ValueError:
        raise ServiceError("broker URL has a bad port: %r" % url)
    return {
        "host": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }


class IngestService:
    def __init__(
        self,
        store: Storage,
        broker_url: str,
        client_id: str = "headend-ingest",
        shared: bool = False,
        batch_max: int = 500,
        batch_wait: float = 0.05,
        log=None,
    ) -> None:
        self.store = store
        self.broker = parse_broker_url(broker_url)
        self.shared = shared
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.log = log or (lambda text: print("headend serve: " + text, file=sys.stderr, flush=True))
        self.keys = store.meter_keys()
        self._cond = threading.Condition()
        self._batch = IngestBatch()
        self._acks: list[tuple[int, int]] = []
        self._first_at = 0.0
        self._closing = False
        self._stop = threading.Event()
        self.fatal: str | None = None
        self.totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        if self.broker["username"]:
            self.client.username_pw_set(self.broker["username"], self.broker["password"])
        self.client.reconnect_delay_set(0.2, 5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # ------------------------------------------------------------ paho thread

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.fatal = "broker refused the connection: %s" % reason_code
            self._stop.set()
            return
        flt = topics.HEADEND_SHARED_FILTER if self.shared else topics.HEADEND_UP_FILTER
        client.subscribe(flt, qos=topics.QOS)
        self.log(
            "connected to %s:%d (session present: %s), subscribed to %s"
            % (self.broker["host"], self.broker["port"], flags.session_present, flt)
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self._closing:
            self.log("disconnected (%s); reconnecting" % reason_code)

    def _on_message(self, client, userdata, message):
        received_at = time.time()
        with self._cond:
            if self._closing:
                return  # not acked: the broker keeps it for the next session
            ingest.add(self._batch, message.topic, message.payload, received_at, self.keys)
            self._acks.append((message.mid, message.qos))
            n = len(self._acks)
            if n == 1:
                self._first_at = received_at
                self._cond.notify()
            elif n >= self.batch_max:
                self._cond.notify()

    # ------------------------------------------------------------ main thread

    def stop(self) -> None:
        """Ask run() to finish (safe from a signal handler)."""
        self._stop.set()

    def _take(self, idle_wait: float) -> tuple[IngestBatch, list]:
        with self._cond:
            if not self._acks:
                self._cond.wait(idle_wait)
            while self._acks and len(self._acks) < self.batch_max and not self._stop.is_set():
                remaining = self._first_at + self.batch_wait - time.time()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, acks = self._batch, self._acks
            self._batch, self._acks = IngestBatch(), []
            return batch, acks

    def _commit(self, batch: IngestBatch, acks: list) -> None:
        if acks:
            result = self.store.commit_batch(batch)
            for mid, qos in acks:  # only now: the batch is durable in SQLite
                if qos:
                    self.client.ack(mid, qos)
            self.totals["accepted"] += result["accepted"]
            self.totals["duplicates"] += result["duplicates"]
            self.totals["rejected"] += len(batch.quarantine) + result["reused"]

    def run(self) -> int:
        """Ingest until stop(); 0 after a clean shutdown, 2 if the broker refused us."""
        self.client.connect_async(
            self.broker["host"],
            self.broker["port"],
            keepalive=60,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self.client.loop_start()
        next_reload = time.monotonic() + KEY_RELOAD_S
        try:
            while not self._stop.is_set():
                self._commit(*self._take(0.1))
                if time.monotonic() >= next_reload:
                    keys = self.store.meter_keys()
                    with self._cond:
                        self.keys = keys
                    next_reload = time.monotonic() + KEY_RELOAD_S
            with self._cond:
                self._closing = True
            self._commit(*self._take(0))
        finally:
            self._closing = True
            self.client.disconnect()
            self.client.loop_stop()
        if self.fatal:
            self.log(self.fatal)
            return 2
        self.log(
            "stopped: accepted %(accepted)d, duplicates %(duplicates)d, rejected %(rejected)d" % self.totals
        )
        return 0

    @staticmethod
    def _connect_properties() -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0xFFFFFFFF  # never: the session outlives any restart of ours
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        return props
