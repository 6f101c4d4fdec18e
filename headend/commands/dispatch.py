"""``headend dispatch``: deliver queued commands to meters over MQTT until acked or expired.

Each round (``Dispatcher.round(now)``):
1. acks stored by ingest (``acks`` rows) mark their commands ``acked`` (result 0 done,
   1 duplicate) or ``failed`` (2..6, with the reason);
2. commands past their ``expires`` become ``expired`` and are never sent again;
3. retries to meters offline by their will (``meters.online = 0``) are held: their next
   attempt is kept ``backoff`` s ahead for as long as the meter is offline;
4. due commands (``queued``, or ``sent`` whose back-off has run out) are published QoS 1 to
   ``ami/v1/<meter_id>/down/cmd``, the same sealed frame every time (the meter acks a
   repeat as a duplicate), and the next attempt is set ``backoff * 2**attempts`` s later,
   at most ``backoff_max``. An offline meter gets only a command's first send.

Meters keep a persistent session (clean_session 0), so the broker holds the first send of a
command for a meter that is away and delivers it when the meter reconnects: resending while
it is offline would only queue copies the meter then acks as duplicates. Once it is back, a
command still unacked ``backoff`` s later is sent again (its session may have been lost, e.g.
a broker restarted without persistence).
"""

from __future__ import annotations

import sys
import threading
import time

from headend.errors import ServiceError
from headend.mqtt import check_service_client_id, connect_error, make_client, parse_broker_url
from protocol import topics

PUBLISH_TIMEOUT = 10.0  # s for the broker's PUBACK
CLIENT_ID = "headend.dispatch"  # never a meter's id (check_service_client_id)


def backoff_delay(attempts: int, backoff: float, backoff_max: float) -> float:
    """Seconds before the next send after ``attempts`` sends (1, 2, ...): doubling, capped."""
    return min(backoff * 2 ** max(0, attempts - 1), backoff_max)


class Dispatcher:
    def __init__(
        self,
        store,
        broker_url: str,
        client_id: str = CLIENT_ID,
        backoff: float = 30.0,
        backoff_max: float = 3600.0,
        log=None,
    ) -> None:
        if backoff <= 0 or backoff_max < backoff:
            raise ServiceError("back-off must be > 0 and at most its maximum")
        check_service_client_id(client_id)
        self.store = store
        self.broker = parse_broker_url(broker_url)
        self.backoff, self.backoff_max = backoff, backoff_max
        self.log = log or (lambda text: print("headend dispatch: " + text, file=sys.stderr, flush=True))
        self.client = make_client(self.broker, client_id)
        self._connected = threading.Event()
        self._refused: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._stop = threading.Event()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._connected.is_set():  # closed before any CONNACK: e.g. a TLS listener spoken to in clear
            self._refused = (
                "the broker closed the connection before answering the CONNECT (is it a TLS listener?"
                " then use mqtts:// and --cafile)"
                if not self.broker.get("tls")
                else "the broker closed the TLS connection before answering the CONNECT"
            )
            self._connected.set()

    def connect(self, timeout: float = 10.0) -> None:
        try:
            self.client.connect(self.broker["host"], self.broker["port"], keepalive=60)
        except OSError as e:
            raise ServiceError("cannot reach the broker: %s" % connect_error(e, self.broker["tls"]))
        self.client.loop_start()
        if not self._connected.wait(timeout) or self._refused:
            self.close()
            raise ServiceError("broker refused the connection: %s" % (self._refused or "no answer"))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def stop(self) -> None:
        self._stop.set()

    def round(self, now: float) -> dict:
        acked = self.store.apply_acks(now)
        expired = self.store.expire_commands(now)
        self.store.hold_offline(now, self.backoff)
        sent = 0
        for c in self.store.due_commands(now):
            info = self.client.publish(topics.down_cmd(c["meter_id"]), c["frame"], qos=topics.QOS)
            try:
                info.wait_for_publish(PUBLISH_TIMEOUT)
            except (RuntimeError, ValueError) as e:
                self.log("publish to %s failed (%s); retrying next round" % (c["meter_id"], e))
                break
            if not info.is_published():
                self.log("no PUBACK for %s seq %d; retrying next round" % (c["meter_id"], c["seq"]))
                break
            delay = backoff_delay(c["attempts"] + 1, self.backoff, self.backoff_max)
            self.store.mark_sent(c["id"], now, now + delay)
            sent += 1
        for c in acked:
            self.log(
                "%s seq %d: %s%s"
                % (c["meter_id"], c["seq"], c["state"], " (%s)" % c["reason"] if c["reason"] else "")
            )
        return {"sent": sent, "acked": sum(c["state"] == "acked" for c in acked),
                "failed": sum(c["state"] == "failed" for c in acked), "expired": expired}  # fmt: skip

    def run(self, interval: float = 1.0, clock=time.time) -> int:
        """Rounds every ``interval`` s until stop()."""
        while not self._stop.is_set():
            self.round(clock())
            self._stop.wait(interval)
        return 0
