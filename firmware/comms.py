"""The meter's link to the head-end: MQTT session, in-order delivery from the flash outbox, commands in.

``Comms(app, broker, reconnect_max_ms=300000)``; ``await comms.run()`` runs
forever (an asyncio task beside the metering loop of firmware/app.py):

    connect   board.network_up() (Wi-Fi on boards), then MQTT 3.1.1 CONNECT
              with client id = username = meter_id, persistent session
              (clean_session 0: the broker keeps QoS 1 commands for us while
              we are away), keepalive 60 s, will = the unauthenticated CBOR
              {0: 4, 40: 0} retained on ami/v1/<id>/up/status; SUBSCRIBE
              ami/v1/<id>/down/cmd at QoS 1; a status message joins the outbox.
    send      records leave the outbox in seq order (firmware/outbox.py), at
              most WINDOW in flight, QoS 1 (status retained); a record is
              removed only when every record up to it has been PUBACKed
              (outbox.ack of the contiguous prefix). A PUBACK missing for
              PUBACK_TIMEOUT_MS ends the connection; after a reconnect the
              unacknowledged records are sent again with the same seq (the
              head-end keeps one copy per seq).
    commands  each PUBLISH on down/cmd goes to firmware/commands_exec.py; its
              PUBACK is sent only after the command's effect and its ack are
              on flash, so the broker redelivers a command the meter died on.
    TLS       with config broker.tls the connection is MQTT over TLS, the broker's
              certificate verified against broker.cafile (firmware/tls.py, imported
              only then); when TLS cannot be had (no ssl module in this MicroPython,
              no CA file) the link says so at startup on stderr, in ``last_error``
              and ``fatal``, and never connects: no fallback to plaintext.
    back-off  after a failed or lost connection: capped exponential with full
              jitter (mqtt_client.Backoff), reset by a successful CONNACK.
    status    ``state`` (small int) says how the link stands: LINK_IDLE (no
              attempt yet), LINK_UP (CONNACK accepted; stays so after stop()),
              LINK_REFUSED (the last attempt's CONNACK refused the meter:
              ``refused`` holds its return code, 1..5 in MQTT 3.1.1, e.g. 4 bad
              user name or password, 5 not authorized), LINK_UNREACHABLE (the
              last attempt got no CONNACK: no route, connection refused, timeout)
              or LINK_LOST (an established session ended: broker gone, keepalive,
              PUBACK timeout). ``refused`` keeps the last refusal's code (0: never
              refused); ``connects``, ``failures``, ``published`` count, and
              ``last_error`` is the text of the last failure (made when it happens,
              never in the measurement loop).

Real time (asyncio) drives the network; the meter's clock is the app's.
"""

import asyncio

from micropython import const

from firmware import mqtt_client
from firmware.report import KIND_STATUS
from protocol import topics

WINDOW = 8
PUBACK_TIMEOUT_MS = 20000
KEEPALIVE_S = 60
ANSWER_MS = 30000  # drain(): how long past its timeout it waits for the first connection attempt to end
_KIND_TOPIC = {1: "reading", 2: "event", 3: "ack", 4: "status"}
LINK_IDLE = const(0)
LINK_UP = const(1)
LINK_REFUSED = const(2)
LINK_UNREACHABLE = const(3)
LINK_LOST = const(4)


class Comms:
    def __init__(self, app, broker, reconnect_max_ms=300000):
        self.app = app
        self.broker = broker  # {host, port, user, password}
        self.meter_id = app.reporter.meter_id
        self.topics = {k: topics.up(self.meter_id, v) for k, v in _KIND_TOPIC.items()}
        self.cmd_topic = topics.down_cmd(self.meter_id)
        self.backoff = mqtt_client.Backoff(1000, reconnect_max_ms)
        self.wake = asyncio.Event()
        self.client = None
        self.inflight = {}  # pid -> seq
        self.sent_hi = 0  # highest seq published on this connection
        self.inbox = []  # (payload, pid) commands received, not yet run
        self.connects = 0
        self.failures = 0
        self.last_error = None
        self.state = LINK_IDLE
        self.refused = 0  # CONNACK return code of the last refusal (0: none)
        self.published = 0
        self._stop = False
        self.ssl = None  # the SSLContext of a TLS broker (config broker.tls)
        self.fatal = None  # why the link cannot run at all (TLS asked for and not available)
        app.reporter.on_append = self.wake.set
        if broker.get("tls"):
            from firmware import tls

            try:
                self.ssl = tls.context(broker, app.board.flash_dir)
            except OSError as e:
                self.fatal = str(e)
                self._failed(e)
                import sys

                sys.stderr.write("link: %s\n" % self.fatal)

    # -- client callbacks ------------------------------------------------------------

    def _on_puback(self, pid):
        seq = self.inflight.pop(pid, None)
        if seq is None:
            return
        ob = self.app.outbox
        lowest = self.sent_hi + 1
        for s in self.inflight.values():
            if s < lowest:
                lowest = s
        if lowest - 1 > ob.acked:
            ob.ack(lowest - 1)
        self.wake.set()

    def _on_message(self, topic, payload, pid):
        if topic == self.cmd_topic:
            self.inbox.append((payload, pid))
            self.wake.set()

    # -- the session -------------------------------------------------------------------

    async def run(self):
        while not self._stop and self.fatal is None:
            try:
                await self._session()
                if not self._stop:  # the reader found the connection gone (its client says why)
                    c = self.client
                    self._failed((c.error if c is not None else None) or OSError("connection closed"))
            except (OSError, mqtt_client.MQTTError, asyncio.TimeoutError) as e:
                self._failed(e)
            self._close()
            if self._stop:
                break
            await asyncio.sleep_ms(self.backoff.next_ms())

    def _failed(self, e):
        """Record why the connection attempt or the session ended (``state``, ``refused``)."""
        self.failures += 1
        self.last_error = str(e) or type(e).__name__
        code = e.code if isinstance(e, mqtt_client.MQTTError) else None
        if code:
            self.refused = code
            self.state = LINK_REFUSED
        elif self.state == LINK_UP:
            self.state = LINK_LOST
        else:
            self.state = LINK_UNREACHABLE

    async def _session(self):
        app = self.app
        b = self.broker
        net = getattr(app.board, "network_up", None)
        if net is not None:
            await net()
        c = mqtt_client.MQTTClient(
            self.meter_id,
            username=b["user"],
            password=b["password"] or None,
            keepalive=KEEPALIVE_S,
            clean_session=False,
            on_message=self._on_message,
            on_puback=self._on_puback,
        )
        c.set_will(self.topics[KIND_STATUS], topics.will_payload(), 1, True)
        self.client = c
        if self.ssl is None:
            await c.connect(b["host"], b["port"])
        else:
            await c.connect(b["host"], b["port"], ssl=self.ssl)
        self.state = LINK_UP
        self.connects += 1
        self.backoff.reset()
        await c.subscribe(self.cmd_topic, 1)
        self.inflight = {}
        self.sent_hi = app.outbox.acked
        app.reporter.online = True
        app.reporter.status()
        app.save()
        reader = asyncio.create_task(c.loop())
        try:
            await self._pump(c, reader)
        finally:
            reader.cancel()

    async def _pump(self, c, reader):
        app = self.app
        ob = app.outbox
        since = None  # ticks when the oldest in-flight record went out
        while c.connected and not self._stop:
            self.wake.clear()
            while self.inbox:
                payload, pid = self.inbox.pop(0)
                app.cmdx.handle(payload)
                if pid:
                    await c.puback(pid)
            room = WINDOW - len(self.inflight)
            if room > 0:
                for seq, kind, frame in ob.peek(self.sent_hi, room):
                    pid = await c.publish(self.topics[kind], frame, 1, kind == KIND_STATUS)
                    self.inflight[pid] = seq
                    self.sent_hi = seq
                    self.published += 1
            if self.inflight:
                if since is None:
                    since = asyncio.ticks()
                elif asyncio.ticks_diff(asyncio.ticks(), since) > PUBACK_TIMEOUT_MS:
                    raise OSError("no PUBACK for %d ms" % PUBACK_TIMEOUT_MS)
            else:
                since = None
            try:
                await asyncio.wait_for_ms(self.wake.wait(), 1000)
            except asyncio.TimeoutError:
                pass

    def _close(self):
        c = self.client
        self.client = None
        self.app.reporter.online = False
        self.inflight = {}
        if c is not None:
            c.close()

    # -- the end of an emulated run -------------------------------------------------------

    async def drain(self, timeout_ms):
        """Wait until the outbox is empty and acknowledged, or timeout_ms real ms have passed and the
        broker has answered (the first connection attempt ended: ``state`` is no longer LINK_IDLE;
        at most ANSWER_MS more), so the caller learns what the broker said however slow the host;
        True when empty."""
        t0 = asyncio.ticks()
        while True:
            if self.app.outbox.pending() == 0 and not self.inbox:
                return True
            if self.fatal is not None:
                return False
            waited = asyncio.ticks_diff(asyncio.ticks(), t0)
            if waited >= timeout_ms and (self.state != LINK_IDLE or waited >= timeout_ms + ANSWER_MS):
                return False
            await asyncio.sleep_ms(20)

    def stop(self):
        """Stop without a clean DISCONNECT: the broker publishes the will (offline), as at a power cut."""
        self._stop = True
        self._close()
        self.wake.set()
