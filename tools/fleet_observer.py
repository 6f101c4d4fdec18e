"""The fleet simulator's window on the broker: counts what each meter published (tools/fleet_sim.py).

``Observer(url, keys, client_id)`` connects as the head-end's broker user
(the ACL lets it read ``ami/v1/+/up/#``) with its own client id (never one a
meter could have: headend.mqtt.check_service_client_id) and a
persistent session (so nothing published while it reconnects after a broker
outage is missed: the simulator's broker keeps sessions on disk), verifies
every frame with the meter's key (protocol.messages.open_frame) and counts
per meter: ``msgs`` (every PUBLISH, resends included), ``readings`` and
``events`` (distinct seqs; events keep their codes), ``wills`` and ``bad``
(frames that failed verification). ``snapshot()`` copies the counts,
``seqs()`` the distinct reading and event seqs;
``close()`` disconnects and then clears the session (a clean connect), so
the broker does not queue for an observer that never returns.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from headend.mqtt import check_service_client_id, parse_broker_url, tls_context
from protocol import messages, topics
from protocol.errors import ProtocolError


class Observer:
    def __init__(self, url: str, keys: dict[str, bytes], client_id: str = "fleet-sim.observer") -> None:
        self.broker = parse_broker_url(url)
        self.client_id = check_service_client_id(client_id)
        self.keys = keys
        self.lock = threading.Lock()
        self.counts = {m: self._empty() for m in keys}
        self.connected = threading.Event()
        self.client = self._client(clean=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 1.0)
        self.client.connect_async(self.broker["host"], self.broker["port"], keepalive=60)
        self.client.loop_start()

    @staticmethod
    def _empty() -> dict:
        return {"msgs": 0, "readings": set(), "events": {}, "wills": 0, "bad": 0, "last_ts": None}

    def _client(self, clean: bool) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=clean)
        if self.broker["username"]:
            c.username_pw_set(self.broker["username"], self.broker["password"])
        if self.broker["tls"]:  # mqtts://...?cafile=PATH (headend.mqtt)
            c.tls_set_context(tls_context(self.broker["cafile"]))
        return c

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(topics.HEADEND_UP_FILTER, qos=topics.QOS)
            self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            meter_id, _direction, kind = topics.parse(msg.topic)
        except ProtocolError:
            return
        key = self.keys.get(meter_id)
        if key is None:
            return  # another fleet's meter on the same broker
        payload = bytes(msg.payload)
        with self.lock:
            c = self.counts[meter_id]
            c["msgs"] += 1
            if kind == "status" and payload == topics.will_payload():
                c["wills"] += 1
                return
            try:
                m = messages.open_frame(key, meter_id, payload)
            except ProtocolError:
                c["bad"] += 1
                return
            if m["type"] == messages.TYPE_READING:
                c["readings"].add(m["seq"])
                c["last_ts"] = max(c["last_ts"] or 0, m["ts"])
            elif m["type"] == messages.TYPE_EVENT:
                c["events"][m["seq"]] = m["code"]

    def snapshot(self) -> dict[str, dict]:
        with self.lock:
            return {
                m: {
                    "msgs": c["msgs"],
                    "readings": len(c["readings"]),
                    "events": sorted(c["events"].values()),
                    "wills": c["wills"],
                    "bad": c["bad"],
                    "last_ts": c["last_ts"],
                }
                for m, c in self.counts.items()
            }

    def seqs(self) -> dict[str, tuple[set[int], set[int]]]:
        """Per meter the distinct seqs of (readings, events) seen."""
        with self.lock:
            return {m: (set(c["readings"]), set(c["events"])) for m, c in self.counts.items()}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        try:  # a clean connect drops the persistent session and whatever the broker queued for it
            c = self._client(clean=True)
            c.connect(self.broker["host"], self.broker["port"], keepalive=10)
            c.disconnect()
        except OSError:
            pass
